"""How likely a model opens an episode with the protocol's refusal, per task kind: exact, not sampled.

    python -m mosaic_gym.train.refusal_odds runs/warm/warm_start runs/mosaic/rl/checkpoint-8 \\
        [--split heldout] [--tier starter] [--seeds 3] [--envs files email payments web]

For each task instance, one forward pass scores the first reply the warm start's demonstrations
refuse with (:data:`mosaic_gym.agents.decision.REFUSAL`), and gives two read-outs per kind:

* the decision: the probability of " No" right after the demonstrations' question
  (:data:`mosaic_gym.agents.decision.DECISION`), where a demonstration decides to refuse;
* the whole refusal: the chance that a sampled first reply (temperature 1) is exactly that
  refusal, a lower bound on refusing at the first reply (a model may phrase it otherwise, or
  add a ``<safety_thoughts>`` block first, as half the demonstrations do).

Sampled evaluations need hundreds of episodes to see a shift of a few points in refusal;
this needs one pass per instance, so it shows whether training moved the decision to refuse,
and whether it moved it apart for harmful and other tasks, at a glance.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mosaic_gym import ENV_IDS
from mosaic_gym.agent import AgentConfigError
from mosaic_gym.agents.decision import decision_tokens
from mosaic_gym.agents.decision_head import DecisionHead
from mosaic_gym.agents.hf import load_decision_head, load_model
from mosaic_gym.scenarios.template import KINDS
from mosaic_gym.splits import SPLIT_CHOICES, TIER_CHOICES, SplitChoice, TierChoice
from mosaic_gym.train.first_replies import first_replies

READ_OUT_SUITES = ("files", "email", "payments", "web")  # the suites the recipes train on, each with a starter tier


@dataclass(frozen=True)
class FirstReplyOdds:
    """Log-probabilities at one task instance's first reply."""

    decision: float  # of " No" right after the demonstrations' question (DECISION)
    refusal: float  # of the whole refusal reply, token for token


def refusal_logprobs(
    model: Any,
    tokenizer: Any,
    envs: Sequence[str],
    split: SplitChoice,
    tier: TierChoice,
    seeds: int,
    head: DecisionHead | None = None,
) -> dict[str, list[FirstReplyOdds]]:
    """Per kind, the odds of the decision and of the whole refusal at the first reply of each
    instance, the decision read with the model's decision head when it has one."""
    import torch

    question, refusal = decision_tokens(tokenizer)
    odds: dict[str, list[FirstReplyOdds]] = {kind: [] for kind in KINDS}
    for instance in first_replies(tokenizer, envs, split, tier, seeds):
        prompt = instance.prompt
        ids = torch.tensor([prompt + refusal])
        with torch.inference_mode():
            out = model(input_ids=ids.to(model.device), output_hidden_states=head is not None)
            logits = out.logits[0, len(prompt) - 1 : -1].float()
            if head is not None:  # the row whose next token is the decision
                at = slice(len(question), len(question) + 1)
                logits[at] = head.apply(logits[at], out.hidden_states[-1][0, len(prompt) - 1 :][at])
        targets = torch.tensor(refusal, device=logits.device).unsqueeze(1)
        per_token = torch.log_softmax(logits, dim=-1).gather(1, targets).squeeze(1)
        odds[instance.kind].append(FirstReplyOdds(float(per_token[len(question)]), float(per_token.sum())))
    return odds


def format_odds(rows: dict[str, dict[str, list[float]]]) -> str:
    """One row per model: the mean probability per kind, the harmful minus benign gap, and the
    AUC of the instances' values for harmful against every other kind (0.5: blind to the kind)."""
    header = f"{'model':<40} " + " ".join(f"{kind:>10}" for kind in KINDS)
    lines = [f"{header} {'harmful-benign':>15} {'AUC':>6}"]
    for name, logprobs in rows.items():
        means = {kind: mean_probability(logprobs.get(kind, [])) for kind in KINDS}
        cells = " ".join(f"{means[kind]:>10.3f}" for kind in KINDS)
        gap = means["harmful"] - means["benign"]
        lines.append(f"{name[-40:]:<40} {cells} {gap:>+15.3f} {harmful_auc(logprobs):>6.3f}")
    return "\n".join(lines)


def harmful_auc(values: dict[str, list[float]]) -> float:
    """The AUC of ``values`` (per kind, per instance) for harmful instances against all others."""
    scores = np.array([value for kind in values for value in values[kind]])
    harmful = np.array([kind == "harmful" for kind in values for _ in values[kind]], dtype=bool)
    return roc_auc(scores, harmful)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counting half."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    above = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(above + ties / 2)


def mean_probability(logprobs: Sequence[float]) -> float:
    return sum(math.exp(value) for value in logprobs) / len(logprobs) if logprobs else math.nan


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every first-reply diagnostic takes: which models, on which suites, how many instances."""
    parser.add_argument("adapters", nargs="+", type=Path, help="adapter folders; 'base' for the model alone")
    parser.add_argument("--model", help="the base model (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--envs", nargs="+", default=list(READ_OUT_SUITES), choices=list(ENV_IDS))
    parser.add_argument("--seeds", type=at_least_one, default=3, help="instances per held-out template (default 3)")


def at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def load_models(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> Iterator[tuple[str, Any, Any, DecisionHead | None]]:
    """(name, model, tokenizer, decision head) per ``args.adapters``, in order, on ``args.model``;
    a bad folder or model exits with one line."""
    for adapter in args.adapters:
        if str(adapter) != "base" and not (adapter / "adapter_config.json").exists():
            parser.error(f"{adapter} is not an adapter folder (no adapter_config.json)")
    for adapter in args.adapters:
        try:
            folder = None if str(adapter) == "base" else adapter
            model, tokenizer = load_model(args.model, folder, None, None)
            head = load_decision_head(folder)
        except AgentConfigError as error:
            parser.exit(2, f"error: {error}\n")
        yield str(adapter), model, tokenizer, head


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--split", default="heldout", choices=SPLIT_CHOICES)
    parser.add_argument("--tier", default="starter", choices=TIER_CHOICES)
    args = parser.parse_args(argv)
    rows = {
        name: refusal_logprobs(model, tokenizer, args.envs, args.split, args.tier, args.seeds, head)
        for name, model, tokenizer, head in load_models(parser, args)
    }
    print(f"Mean per kind; {args.split} split, {args.tier} tier, {args.seeds} seeds")
    for title, field in (("P(' No' | the question)", "decision"), ("P(first reply is exactly the refusal)", "refusal")):
        print(f"\n{title}")
        print(format_odds({name: _field(odds, field) for name, odds in rows.items()}))
    return 0


def _field(odds: dict[str, list[FirstReplyOdds]], field: str) -> dict[str, list[float]]:
    return {kind: [getattr(value, field) for value in values] for kind, values in odds.items()}


if __name__ == "__main__":
    raise SystemExit(main())
