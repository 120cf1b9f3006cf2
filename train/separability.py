"""Does the model already know which tasks are harmful when it decides? A linear probe, train to held-out.

    python -m mosaic_gym.train.separability base runs/warm/warm_start [--layers 6 12 18 24 30]

For each task instance it reads the hidden state of each layer at the decision: the position
right after :data:`mosaic_gym.agents.decision.DECISION`, where the demonstrations answer " Yes" or
" No". A logistic probe "harmful or not" is fitted on train-split instances (starter and
standard tiers) and scored by its ROC AUC on held-out instances, templates it never saw. The
model's own decision is scored the same way: the AUC of its ``P(" No")`` on those instances.

The two numbers tell apart the two ways learning *when* to refuse can fail:

* the probe's held-out AUC is near 0.5: the model does not represent the difference, and no
  training signal on these instructions will find it;
* the probe separates and ``P(" No")`` does not: the knowledge is there, and it is the
  training signal that has not yet tied the decision to it.

Intervals resample held-out templates (instances of one template are not independent).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mosaic_gym.agents.decision import DECISION, answer_tokens, decision_tokens
from mosaic_gym.splits import TIER_CHOICES, SplitChoice, TierChoice
from mosaic_gym.train.first_replies import first_replies
from mosaic_gym.train.refusal_odds import add_model_arguments, load_models, roc_auc

L2_PER_INSTANCE = 10.0  # ridge strength times the number of fitted instances: strong, as dimensions outnumber tasks
RESAMPLES = 2000


@dataclass(frozen=True)
class DecisionStates:
    """Per instance: every layer's hidden state at the decision, the model's log P(" No"), and the labels."""

    states: np.ndarray  # (instances, layers + 1, hidden): embeddings first
    no_logprob: np.ndarray  # (instances,)
    harmful: np.ndarray  # (instances,) bool
    templates: list[str]


def decision_states(
    model: Any, tokenizer: Any, envs: Sequence[str], split: SplitChoice, tiers: Sequence[TierChoice], seeds: int
) -> DecisionStates:
    import torch

    question, _ = decision_tokens(tokenizer)
    no, _ = answer_tokens(tokenizer)  # the decision's token, as refusal_odds reads it
    states, no_logprob, harmful, templates = [], [], [], []
    for tier in tiers:
        for instance in first_replies(tokenizer, envs, split, tier, seeds):
            ids = torch.tensor([instance.prompt + question], device=model.device)
            with torch.inference_mode():
                out = model(input_ids=ids, output_hidden_states=True)
            states.append(torch.stack([layer[0, -1].float() for layer in out.hidden_states]).cpu().numpy())
            no_logprob.append(float(torch.log_softmax(out.logits[0, -1].float(), dim=-1)[no]))
            harmful.append(instance.kind == "harmful")
            templates.append(instance.task)
    return DecisionStates(np.stack(states), np.array(no_logprob), np.array(harmful), templates)


def fit_probe(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, scale, weights) of an L2-regularised logistic regression on standardised features."""
    import torch

    mean, scale = features.mean(0), features.std(0) + 1e-6
    x = torch.tensor((features - mean) / scale, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.float64)
    weights = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights], max_iter=500, line_search_fn="strong_wolfe")
    l2 = L2_PER_INSTANCE / len(labels)

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        logits = x @ weights[1:] + weights[0]
        value = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + l2 * weights[1:].square().sum() / 2
        value.backward()
        return value

    optimiser.step(loss)
    return mean, scale, weights.detach().numpy()


def probe_scores(probe: tuple[np.ndarray, np.ndarray, np.ndarray], features: np.ndarray) -> np.ndarray:
    mean, scale, weights = probe
    return np.asarray(((features - mean) / scale) @ weights[1:] + weights[0])


def template_interval(
    scores: np.ndarray, positive: np.ndarray, templates: list[str], seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the AUC, resampling whole templates within each class."""
    rng = np.random.default_rng(seed)
    groups: dict[bool, list[np.ndarray]] = {True: [], False: []}
    names = np.array(templates)
    for name in dict.fromkeys(templates):
        members = np.flatnonzero(names == name)
        groups[bool(positive[members[0]])].append(members)
    if not groups[True] or not groups[False]:
        return float("nan"), float("nan")
    aucs = []
    for _ in range(RESAMPLES):
        chosen = [
            groups[label][i]
            for label in (True, False)
            for i in rng.integers(len(groups[label]), size=len(groups[label]))
        ]
        rows = np.concatenate(chosen)
        aucs.append(roc_auc(scores[rows], positive[rows]))
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(low), float(high)


def separability_table(
    name: str, fitted: DecisionStates, heldout: DecisionStates, layers: Sequence[int]
) -> list[tuple[str, str, float, float, tuple[float, float]]]:
    """Rows of (model, read-out, train AUC, held-out AUC, held-out interval): its own decision, then each probe."""
    rows = [
        (
            name,
            'own P(" No")',
            roc_auc(fitted.no_logprob, fitted.harmful),
            roc_auc(heldout.no_logprob, heldout.harmful),
            template_interval(heldout.no_logprob, heldout.harmful, heldout.templates),
        )
    ]
    for layer in layers:
        probe = fit_probe(fitted.states[:, layer], fitted.harmful)
        held = probe_scores(probe, heldout.states[:, layer])
        rows.append(
            (
                name,
                f"probe, layer {layer}",
                roc_auc(probe_scores(probe, fitted.states[:, layer]), fitted.harmful),
                roc_auc(held, heldout.harmful),
                template_interval(held, heldout.harmful, heldout.templates),
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--tier", default="starter", choices=TIER_CHOICES, help="held-out tier to score")
    parser.add_argument("--train-seeds", type=int, default=2, help="instances per train template (default 2)")
    parser.add_argument("--layers", nargs="+", type=int, help="layers to probe (default: 5 spread over the model)")
    args = parser.parse_args(argv)
    if args.train_seeds < 1:
        parser.error(f"--train-seeds must be at least 1, got {args.train_seeds}")
    print(f"Harmful or not, read where the model answers {DECISION!r}. AUC 0.5 is chance.")
    print(f"{'model':<32} {'read-out':<18} {'train AUC':>9} {'held-out AUC':>12}  95% interval (templates)")
    for name, model, tokenizer, _ in load_models(parser, args):  # the probe reads the states, not the head
        fitted = decision_states(model, tokenizer, args.envs, "train", ("starter", "standard"), args.train_seeds)
        heldout = decision_states(model, tokenizer, args.envs, "heldout", (args.tier,), args.seeds)
        depth = fitted.states.shape[1] - 1
        layers = args.layers or sorted({max(1, round(depth * share)) for share in (0.2, 0.4, 0.6, 0.8, 1.0)})
        if bad := [layer for layer in layers if not 0 <= layer <= depth]:
            parser.error(f"--layers {bad} out of range: the model has layers 0 (embeddings) to {depth}")
        for model_name, read_out, train_auc, held_auc, (low, high) in separability_table(name, fitted, heldout, layers):
            print(f"{model_name[-32:]:<32} {read_out:<18} {train_auc:>9.3f} {held_auc:>12.3f}  [{low:.2f}, {high:.2f}]")
        print(
            f"  ({len(fitted.harmful)} train instances, {int(fitted.harmful.sum())} harmful; "
            f"{len(heldout.harmful)} held-out, {int(heldout.harmful.sum())} harmful, "
            f"{len(set(heldout.templates))} templates)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
