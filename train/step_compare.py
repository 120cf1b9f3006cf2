"""Two decision steps side by side on one checkpoint's kept decisions: along the loss's gradient
(``rl.decision_optimizer: normalized``) and in margin space (``margins``).

    python -m mosaic_gym.train.step_compare runs/mosaic-m05/rl/checkpoint-4 --length 0.2 --rms 0.5

The checkpoint must come from a run with ``rl.decision_replay`` (its ``decision_replay.json``
holds the kept decisions) and a level; the run's ``config.yaml`` gives the loss. Prints how
spread the margins' gradients are (the top eigenvalues of their Gram matrix), then per step its
length in weight space, the ranking's loss after it, how far it moved the margins' mean and each
reply's, and how closely the margins moved as the loss asked. Each step starts from the
checkpoint's weights; nothing is written.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaic_gym.agents.decision import answer_tokens
from mosaic_gym.train.config import ConfigError, TrainConfig, load_config
from mosaic_gym.train.decision_points import DecisionReads, backward_weighted, point_weights, read_margins
from mosaic_gym.train.decision_replay import DecisionReplay
from mosaic_gym.train.margin_step import decision_jacobian, margin_step
from mosaic_gym.train.normalized_step import NormalizedStep


@dataclass(frozen=True)
class StepReport:
    """What one step did to the kept decisions' margins."""

    name: str
    length: float  # in weight space
    rank_loss: float  # the ranking's loss after the step
    mean_change: float  # the margins' mean change, in logits
    reply_changes: list[float]  # the mean change of the plays' n-th decisions, per n
    correlation: float  # between the margins' change and the change the loss asked for


def format_report(
    checkpoint: Path, plays: int, eigenvalues: Sequence[float], rank_loss: float, reports: Sequence[StepReport]
) -> str:
    decisions = len(eigenvalues)
    top = ", ".join(f"{e:.3g}" for e in eigenvalues[:3])
    lines = [
        f"{checkpoint}: {plays} kept plays, {decisions} decisions",
        f"Gram matrix of the margins' gradients: top eigenvalues {top}; smallest {eigenvalues[-1]:.3g}",
        f"ranking loss before: {rank_loss:.3f}",
        "",
        f"{'step':<22} {'length':>7} {'rank loss':>9} {'mean moved':>10} {'asked~moved':>11}  moved per reply",
    ]
    for r in reports:
        replies = " ".join(f"{c:+.2f}" for c in r.reply_changes)
        numbers = f"{r.length:>7.3f} {r.rank_loss:>9.3f} {r.mean_change:>+10.3f} {r.correlation:>11.2f}"
        lines.append(f"{r.name:<22} {numbers}  {replies}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="an RL checkpoint folder with decision_replay.json")
    parser.add_argument("--length", type=float, default=0.2, help="the gradient step's length in weight space")
    parser.add_argument("--rms", type=float, default=0.5, help="the margin step's RMS margin change, in logits")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    kept, run_config = args.checkpoint / "decision_replay.json", args.checkpoint.parent.parent / "config.yaml"
    for needed in (kept, run_config, args.checkpoint / "adapter_config.json"):
        if not needed.exists():
            parser.error(
                f"{args.checkpoint} is not a checkpoint of a run with rl.decision_replay ({needed} is missing)"
            )
    try:
        config = load_config(str(run_config))
    except ConfigError as error:
        parser.exit(2, f"error: {error}\n")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    replay = DecisionReplay(max(config.rl.decision_replay, 1))
    replay.load(kept)
    if replay.reference is None:
        parser.error(f"{kept} holds no frozen copy's margins: the run had no rl.decision_level")
    model, answers = _trainable(config, args.checkpoint)
    rl = config.rl
    reads, verdicts, start = replay.reads(), replay.verdicts, replay.reference

    def weights_at(margins: list[Any]) -> Any:
        by = rl.decision_level_by, rl.decision_rank_by
        return point_weights(
            margins, start, verdicts, 1, rl.decision_rank, rl.decision_level, rl.decision_level_on, *by
        )

    before = read_margins(model, reads, answers)
    weights = weights_at(before).weights
    jacobian = decision_jacobian(model, reads, answers)
    eigenvalues = torch.linalg.eigvalsh((jacobian @ jacobian.T).double()).flip(0).tolist()
    del jacobian
    saved = [p.detach().clone() for p in model.parameters() if p.requires_grad]

    def along_gradient() -> None:
        optimizer = NormalizedStep([p for p in model.parameters() if p.requires_grad], lr=args.length)
        optimizer.zero_grad(set_to_none=True)
        backward_weighted(model, reads, weights, answers)
        optimizer.step()

    def in_margin_space() -> None:
        margin_step(model, reads, weights, answers, args.rms)

    reports = []
    for name, step in (
        (f"gradient, length {args.length:g}", along_gradient),
        (f"margins, RMS {args.rms:g}", in_margin_space),
    ):
        reports.append(_measure(name, model, saved, step, reads, weights, before, weights_at, answers))
    loss = weights_at(before).stats.get("decision/rank_loss", 0.0)
    print(format_report(args.checkpoint, len(reads.sequences), eigenvalues, loss, reports))
    return 0


def _trainable(config: TrainConfig, checkpoint: Path) -> tuple[Any, tuple[int, int]]:
    """The checkpoint's adapter on the run's model, device and dtype, trainable."""
    from mosaic_gym.train.policy import from_warm_start, load_base

    base, tokenizer = load_base(config)
    return from_warm_start(base, checkpoint), answer_tokens(tokenizer)


def _measure(
    name: str,
    model: Any,
    saved: list[Any],
    step: Callable[[], None],
    reads: DecisionReads,
    weights: list[Any],
    before: list[Any],
    weights_at: Callable[[list[Any]], Any],
    answers: tuple[int, int],
) -> StepReport:
    """Step from the checkpoint's weights and read what moved; the weights are put back after."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    step()
    length = float(torch.sqrt(sum(((p.detach() - s) ** 2).sum() for p, s in zip(params, saved, strict=True))))
    after = read_margins(model, reads, answers)
    with torch.no_grad():
        for p, s in zip(params, saved, strict=True):
            p.copy_(s)
    moved = [a.float() - b.float() for a, b in zip(after, before, strict=True)]
    asked = torch.cat([-w.float() for w in weights])
    flat = torch.cat(moved)
    by_reply: dict[int, list[float]] = {}
    for play in moved:
        for n, change in enumerate(play.tolist()):
            by_reply.setdefault(n, []).append(change)
    return StepReport(
        name=name,
        length=length,
        rank_loss=weights_at(after).stats.get("decision/rank_loss", 0.0),
        mean_change=float(flat.mean()),
        reply_changes=[sum(v) / len(v) for _, v in sorted(by_reply.items())],
        correlation=float(torch.corrcoef(torch.stack([asked, flat]))[0, 1]),
    )


if __name__ == "__main__":
    raise SystemExit(main())
