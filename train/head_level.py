"""Holding a decision head's level on one set of decisions, or on several sets at once.

A head shifts each margin by ``weight · h + bias``, linear in both, so a set's weighted sum of
margins moves by its total weight times the bias change, plus the weight change dotted with its
weighted sum of states. One set (the shared level): the bias alone lands it on its target
exactly. Several sets each held at a level of their own (``rl.decision_level_by_tier``: the
starter and the standard anchors) need as many unknowns as sets: the bias, and the weight along
the line from the first set's mean state to each other set's. The agent is never told a task's
tier: each set's level comes from where its contexts lie, as it would on new tasks of that tier.
In session 29 one level over both tiers left the starter tier's benign/harmful P(" No") at
0.07/0.43 and the standard tier's at 0.28/0.58; in session 30 a level per tier, held exactly on
each tier's training anchors, met neither tier's targets on held-out tasks (docs/results.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mosaic_gym.agents.decision_head import DecisionHead


def part_sums(values: Sequence[Any], weights: Sequence[Any], parts: Sequence[int], count: int) -> list[Any]:
    """Per part, ``sum(weights * values)`` over its plays (``values`` per play: ``[n]`` margins or
    ``[n, hidden]`` states, in float64)."""
    import torch

    sums: list[Any] = [0.0] * count
    for value, weight, part in zip(values, weights, parts, strict=True):
        value, weight = value.double().cpu(), weight.double().cpu()
        sums[part] = sums[part] + (weight * value if value.dim() == 1 else weight[:, None] * value).sum(0)
    return [torch.as_tensor(s, dtype=torch.float64) for s in sums]


def part_totals(weights: Sequence[Any], parts: Sequence[int], count: int) -> list[float]:
    """Per part, the sum of its plays' weights."""
    return [float(total) for total in part_sums([w.new_ones(w.shape) for w in weights], weights, parts, count)]


def hold_levels(
    head: DecisionHead,
    base: Sequence[Any],
    states: Sequence[Any],
    weights: Sequence[Any],
    parts: Sequence[int],
    targets: Sequence[float],
) -> tuple[list[float], list[float]]:
    """Move ``head``'s bias, and with more than one part its weight, so that each part's
    ``sum(weights * margins)`` is its target, where a margin is ``base`` (the model's, without the
    head) plus the head's shift of its state. Returns each part's level before and after."""
    import torch

    count = len(targets)
    totals = part_totals(weights, parts, count)
    summed_states = part_sums(states, weights, parts, count)
    held = [part for part in range(count) if totals[part] != 0]  # a part without weight holds nothing

    def levels() -> list[float]:
        shifts = [head.shift(s.float().cpu()) for s in states]
        margins = [b.double().cpu() + shift.double() for b, shift in zip(base, shifts, strict=True)]
        return [float(level) for level in part_sums(margins, weights, parts, count)]

    before = levels()
    if held:
        means = [summed_states[part] / totals[part] for part in held]
        directions = [mean - means[0] for mean in means[1:]]  # none with one part: the bias alone
        system = torch.tensor(
            [[totals[part], *(float(d @ summed_states[part]) for d in directions)] for part in held],
            dtype=torch.float64,
        )
        gaps = torch.tensor([[targets[part] - before[part]] for part in held], dtype=torch.float64)
        change = torch.linalg.lstsq(system, gaps, driver="gelsd").solution[:, 0]
        head.bias += float(change[0])
        for amount, direction in zip(change[1:], directions, strict=True):
            head.weight += (amount * direction).to(head.weight.dtype)
    return before, levels()
