"""How much of *when* can the decision learn at RL's budget, given the verdicts it should get?

    python -m mosaic_gym.train.decision_ceiling runs/warm/warm_start [--steps 8] [--tasks-per-step 4] [--replay 0]
        [--learning-rate 1e-4] [--harmful-share 0.5] [--label-noise 0] [--every 2] [--head [--head-ridge 1]]

RL teaches the decision to refuse through the judge's verdicts on a few sampled groups per
step. This trains the same LoRA weights, with the same optimiser, on the decision token alone
(the answer after :data:`mosaic_gym.agents.decision.DECISION`) and on the verdict a perfect judge
would give each group: " No" on harmful tasks, " Yes" on every other kind. Each step takes
``--tasks-per-step`` fresh train-split starter instances, a ``--harmful-share`` of them harmful,
as RL's groups do; ``--label-noise`` flips that share of the labels, as a noisy judge would.
Every ``--every`` steps it reads ``P(" No")`` out at the first reply of the held-out instances
(``--split train``: of the train templates it draws from, at other instances). With ``--head``
it trains a decision head instead of the LoRA weights, with RL's step for it
(:func:`mosaic_gym.train.margin_step.head_step`: ``--learning-rate`` logits RMS per step, ridge
regression with ``--head-ridge``), on the pairwise loss.

It bounds what RL can do at that budget: if the harmful - benign gap does not open here, where
every token of signal is the decision's and every label is right, RL's groups (a verdict per
group, shared with hundreds of other tokens, through sampled plays) will not open it either,
and the budget, not the balance of the signal, is what to change.
"""

from __future__ import annotations

import argparse
import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mosaic_gym.agents.decision import answer_tokens, decision_tokens
from mosaic_gym.agents.decision_head import DecisionHead
from mosaic_gym.agents.transcript import TranscriptBuilder
from mosaic_gym.catalog import make_env
from mosaic_gym.env import ProtocolEnv
from mosaic_gym.scenarios.template import KINDS
from mosaic_gym.splits import SPLIT_CHOICES, TIER_CHOICES, SplitChoice, TierChoice
from mosaic_gym.train.decision_points import (
    DecisionReads,
    backward_weighted,
    decision_margins,
    point_weights,
    read_margins,
    read_states,
)
from mosaic_gym.train.first_replies import first_reply
from mosaic_gym.train.margin_step import head_step
from mosaic_gym.train.refusal_odds import (
    add_model_arguments,
    at_least_one,
    harmful_auc,
    mean_probability,
    refusal_logprobs,
)

LossName = Literal["ce", "pairwise"]
FIRST_TRAIN_SEED = 10_000  # train instances' seeds start here, apart from the read-outs' 0, 1, 2


@dataclass(frozen=True)
class Labelled:
    """One train instance's first-reply context up to the decision, and the answer to train."""

    kind: str
    ids: list[int]  # the prompt, then "<think>" and the question
    refuse: bool


@dataclass(frozen=True)
class ReadOut:
    """``P(" No")`` at the first reply of one split's instances, after ``step`` steps."""

    step: int
    by_kind: dict[str, float]
    auc: float  # of P(" No") for harmful against every other kind

    @property
    def gap(self) -> float:
        return self.by_kind["harmful"] - self.by_kind["benign"]


def train_batches(
    tokenizer: Any,
    envs: Sequence[str],
    tier: TierChoice,
    steps: int,
    per_step: int,
    harmful_share: float,
    label_noise: float,
    seed: int,
) -> Iterator[list[Labelled]]:
    """``steps`` batches of fresh train-split instances, each ``round(harmful_share * per_step)``
    harmful and the rest drawn from the other kinds; a ``label_noise`` share of labels flipped."""
    rng = np.random.default_rng(seed)
    transcripts = TranscriptBuilder(tokenizer)
    question, _ = decision_tokens(tokenizer)
    pools: dict[bool, list[tuple[ProtocolEnv[Any], str, str]]] = {True: [], False: []}
    for suite in envs:
        env = make_env(suite, split="train", tier=tier)
        for template in env.templates:
            pools[template.kind == "harmful"].append((env, template.id, template.kind))
    if not pools[True] or not pools[False]:
        raise ValueError(f"the train split of {list(envs)} at tier {tier!r} needs harmful and other templates")
    harmful = round(harmful_share * per_step)
    instance_seed = FIRST_TRAIN_SEED
    for _ in range(steps):
        batch = []
        for is_harmful in [True] * harmful + [False] * (per_step - harmful):
            env, task, kind = pools[is_harmful][int(rng.integers(len(pools[is_harmful])))]
            instance = first_reply(transcripts, env, task, kind, instance_seed)
            instance_seed += 1
            flipped = bool(rng.random() < label_noise)
            batch.append(Labelled(kind, instance.prompt + question, is_harmful != flipped))
        yield batch


def decision_step(
    model: Any, optimiser: Any, batch: Sequence[Labelled], answers: tuple[int, int], loss: LossName = "ce"
) -> float:
    """One optimiser step on the decision token over ``batch``; the loss, or nan when a pairwise
    step has no pair to rank (every label alike) and takes no step.

    ``ce``: cross-entropy of " No" or " Yes", as the label says, averaged over the instances.
    ``pairwise``: for every (refuse, act) pair of the batch, the logistic loss of ranking the
    refusal's ``logit(" No") - logit(" Yes")`` above the action's
    (:mod:`mosaic_gym.train.decision_rank`): blind to a shift shared by every context.
    """
    import torch

    no, yes = answers
    model.train()
    optimiser.zero_grad()
    if loss == "ce":
        total = 0.0
        for item in batch:  # one context per pass: the logits of a long prompt are the memory peak
            logits = model(input_ids=torch.tensor([item.ids], device=model.device)).logits[0, -1].float()
            target = torch.tensor(no if item.refuse else yes, device=logits.device)
            value = torch.nn.functional.cross_entropy(logits, target) / len(batch)
            value.backward()
            total += float(value.detach())
        optimiser.step()
        return total
    if not _has_pair(batch):
        return math.nan
    # As RL's ranking does it (decision_points): the margins read without grad, the loss's
    # gradient with respect to each, then one context's graph at a time, so a long replay fits.
    reads = _reads(batch)
    weights = point_weights(read_margins(model, reads, answers), None, _verdicts(batch), 1, 1.0, 0.0, "all", "group")
    backward_weighted(model, reads, weights.weights, answers)
    optimiser.step()
    return weights.stats["decision/rank_loss"]


def head_decision_step(
    model: Any, head: DecisionHead, batch: Sequence[Labelled], rms: float, ridge: float | None
) -> float:
    """One step of ``head`` on the pairwise loss over ``batch``, as RL takes it
    (``rl.decision_optimizer: head``); the loss before it, or nan when every label is alike."""
    if not _has_pair(batch):
        return math.nan
    model.eval()
    states = read_states(model, _reads(batch))
    margins = [decision_margins(model, s, head.answers, head) for s in states]
    weights = point_weights(margins, None, _verdicts(batch), 1, 1.0, 0.0, "all", "group")
    head_step(head, states, weights.weights, rms, ridge)
    return weights.stats["decision/rank_loss"]


def _has_pair(batch: Sequence[Labelled]) -> bool:
    """Whether ``batch`` holds a refusal and an action for the pairwise loss to rank."""
    return any(item.refuse for item in batch) and not all(item.refuse for item in batch)


def _reads(batch: Sequence[Labelled]) -> DecisionReads:
    return DecisionReads([item.ids for item in batch], [len(item.ids) for item in batch], [[0]] * len(batch))


def _verdicts(batch: Sequence[Labelled]) -> list[float]:
    return [1.0 if item.refuse else -1.0 for item in batch]


def read_out(
    model: Any,
    tokenizer: Any,
    envs: Sequence[str],
    split: SplitChoice,
    tier: TierChoice,
    seeds: int,
    step: int,
    head: DecisionHead | None = None,
) -> ReadOut:
    model.eval()
    odds = refusal_logprobs(model, tokenizer, envs, split, tier, seeds, head)
    values = {kind: [value.decision for value in odds[kind]] for kind in KINDS}
    return ReadOut(step, {kind: mean_probability(values[kind]) for kind in KINDS}, harmful_auc(values))


def format_read_out(row: ReadOut, loss: float) -> str:
    cells = " ".join(f"{row.by_kind[kind]:>10.3f}" for kind in KINDS)
    return f"{row.step:>5} {loss:>8.3f} {cells} {row.gap:>+15.3f} {row.auc:>6.3f}"


def run(args: argparse.Namespace, model: Any, tokenizer: Any) -> list[ReadOut]:
    import torch

    answers = answer_tokens(tokenizer)
    question, _ = decision_tokens(tokenizer)
    head = DecisionHead.zeros(question, answers, model.config.hidden_size, "first") if args.head else None
    # The LoRA weights' optimiser; with --head, the head's own step moves the head alone.
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=args.learning_rate) if head is None else None
    header = f"{'step':>5} {'loss':>8} " + " ".join(f"{kind:>10}" for kind in KINDS)
    print(f"{header} {'harmful-benign':>15} {'AUC':>6}", flush=True)
    rows = [read_out(model, tokenizer, args.envs, args.split, args.tier, args.seeds, 0, head)]
    print(format_read_out(rows[-1], math.nan), flush=True)
    batches = train_batches(
        tokenizer,
        args.envs,
        args.tier,
        args.steps,
        args.tasks_per_step,
        args.harmful_share,
        args.label_noise,
        args.seed,
    )
    kept: deque[Labelled] = deque(maxlen=args.replay or args.tasks_per_step)
    for step, batch in enumerate(batches, start=1):
        kept.extend(batch)  # with --replay, the latest instances so far, this step's included
        if head is None:
            loss = decision_step(model, optimiser, list(kept), answers, args.loss)
        else:
            loss = head_decision_step(model, head, list(kept), args.learning_rate, args.head_ridge)
        if step % args.every == 0 or step == args.steps:
            rows.append(read_out(model, tokenizer, args.envs, args.split, args.tier, args.seeds, step, head))
            print(format_read_out(rows[-1], loss), flush=True)
    return rows


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--split", default="heldout", choices=SPLIT_CHOICES, help="to read out (default heldout)")
    parser.add_argument("--tier", default="starter", choices=TIER_CHOICES)
    parser.add_argument("--steps", type=at_least_one, default=8, help="optimiser steps (default 8, as the RL arms)")
    parser.add_argument("--tasks-per-step", type=at_least_one, default=4, help="instances per step (default 4)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="AdamW's (default 1e-4, as rl.learning_rate)")
    parser.add_argument("--harmful-share", type=_share, default=0.5, help="of each step's instances (default 0.5)")
    parser.add_argument("--label-noise", type=_share, default=0.0, help="share of labels flipped (default 0)")
    parser.add_argument(
        "--loss", default="ce", choices=["ce", "pairwise"], help="per instance, or ranking refusals above actions"
    )
    parser.add_argument(
        "--replay",
        type=int,
        default=0,
        help="train each step on the latest N instances, this step's included, as rl.decision_replay (default 0: "
        "the step's own)",
    )
    parser.add_argument("--every", type=at_least_one, default=2, help="read out every N steps (default 2)")
    parser.add_argument(
        "--head",
        action="store_true",
        help="train a decision head with RL's step for it (--learning-rate logits RMS a step; pairwise loss)",
    )
    parser.add_argument(
        "--head-ridge", type=float, help="with --head, the step's ridge strength, as rl.decision_head_ridge"
    )
    parser.add_argument("--seed", type=int, default=0, help="which train instances, and which labels flip")
    parser.add_argument("--threads", type=at_least_one, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.learning_rate <= 0:
        parser.error(f"--learning-rate must be above 0, got {args.learning_rate}")
    if args.head and args.loss != "pairwise":
        parser.error("--head takes RL's step on the pairwise loss: add --loss pairwise")
    if args.head_ridge is not None and (not args.head or args.head_ridge <= 0):
        parser.error(f"--head-ridge shapes --head's step and must be above 0, got {args.head_ridge}")
    if args.replay and args.replay < args.tasks_per_step:
        parser.error(f"--replay must be 0 or at least --tasks-per-step {args.tasks_per_step}, got {args.replay}")
    if len(args.adapters) != 1:
        parser.error("give one adapter: the warm start to train from")
    adapter: Path = args.adapters[0]
    if str(adapter) == "base" or not (adapter / "adapter_config.json").exists():
        parser.error(f"{adapter} is not an adapter folder (no adapter_config.json)")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    model, tokenizer = _trainable(parser, args.model, adapter)
    ridge = f", ridge {args.head_ridge:g}" if args.head_ridge is not None else ""
    optimiser = (
        f"a decision head moved {args.learning_rate:g} logits a step{ridge}"
        if args.head
        else f"AdamW at {args.learning_rate:g}"
    )
    print(
        f"The decision alone, {args.loss} loss on perfect verdicts ({args.label_noise:.0%} flipped): "
        f"{args.steps} steps of "
        f"{args.tasks_per_step} train instances ({args.harmful_share:.0%} harmful)"
        f"{f', each trained with the latest {args.replay}' if args.replay else ''}, {optimiser}; "
        f'P(" No") at the first reply, {args.split} split, {args.tier} tier, {args.seeds} seeds per template'
    )
    run(args, model, tokenizer)
    return 0


def _trainable(parser: argparse.ArgumentParser, model_name: str | None, adapter: Path) -> tuple[Any, Any]:
    from mosaic_gym.agent import AgentConfigError
    from mosaic_gym.agents.hf import load_model
    from mosaic_gym.train.policy import from_warm_start

    try:
        base, tokenizer = load_model(model_name, None, None, None)
    except AgentConfigError as error:
        parser.exit(2, f"error: {error}\n")
    return from_warm_start(base, adapter), tokenizer


if __name__ == "__main__":
    raise SystemExit(main())
