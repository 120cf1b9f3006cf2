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
each tier's training anchors, met neither tier's targets on held-out tasks (docs/results-log.md).

A mean margin held is not a refusal rate held: as the head spreads the margins, the share of
sampled " No" rises at the same mean (on the benign anchors, 0.17 → 0.31 in session 30).
``rl.decision_level_hold: rate`` holds each set's mean ``sigmoid(margin / T)`` at the RL
temperature instead, solved for the same unknowns by Newton's method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mosaic_gym.agents.decision_head import DecisionHead

# The rate hold's Newton iteration: at most this many steps, each halved at most this many times,
# stopping once every part's rate is within the tolerance of its target.
MAX_NEWTON_STEPS = 50
MAX_HALVINGS = 30
RATE_TOLERANCE = 1e-7


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


def held_values(margins: Any, temperature: float | None) -> Any:
    """What a level holds of each margin: the margin itself, or with a ``temperature`` (the rate
    hold, ``rl.decision_level_hold: rate``) the chance ``sigmoid(margin / temperature)`` that a
    reply sampled at it says " No" rather than " Yes"."""
    import torch

    return margins if temperature is None else torch.sigmoid(margins / temperature)


def hold_levels(
    head: DecisionHead,
    base: Sequence[Any],
    states: Sequence[Any],
    weights: Sequence[Any],
    parts: Sequence[int],
    targets: Sequence[float],
    temperature: float | None = None,
) -> tuple[list[float], list[float]]:
    """Move ``head``'s bias, and with more than one part its weight, so that each part's
    ``sum(weights * held_values(margins, temperature))`` is its target, where a margin is ``base``
    (the model's, without the head) plus the head's shift of its state. Returns each part's level
    before and after.

    Margins are linear in the unknowns, so one Newton step lands them exactly. Rates are not:
    Newton steps, each halved until the gaps shrink, until every gap is within ``RATE_TOLERANCE``
    (a target beyond what the rates can reach leaves them at the nearest they got)."""
    import torch

    count = len(targets)
    totals = part_totals(weights, parts, count)
    summed_states = part_sums(states, weights, parts, count)
    held = [part for part in range(count) if totals[part] != 0]  # a part without weight holds nothing
    before = _levels(head, base, states, weights, parts, count, temperature)
    if not held:
        return before, before
    means = [summed_states[part] / totals[part] for part in held]
    directions = [mean - means[0] for mean in means[1:]]  # none with one part: the bias alone
    # Each decision's margin moves by its row of ``features`` times the unknowns.
    features = [
        torch.stack([torch.ones(len(s), dtype=torch.float64), *(s.double().cpu() @ d for d in directions)], 1)
        for s in states
    ]
    start = _margins(head, base, states)

    def moved(change: Any) -> list[Any]:
        return [m + f @ change for m, f in zip(start, features, strict=True)]

    def gaps(change: Any) -> Any:
        now = part_sums([held_values(m, temperature) for m in moved(change)], weights, parts, count)
        return torch.stack([targets[part] - now[part] for part in held])

    change = torch.zeros(1 + len(directions), dtype=torch.float64)
    gap = gaps(change)
    for _ in range(MAX_NEWTON_STEPS):
        slopes = [_slope(m, temperature)[:, None] * f for m, f in zip(moved(change), features, strict=True)]
        rows = part_sums(slopes, weights, parts, count)
        step = torch.linalg.lstsq(torch.stack([rows[p] for p in held]), gap[:, None], driver="gelsd").solution[:, 0]
        if temperature is None:  # linear: exact in one step
            change = change + step
            break
        for _ in range(MAX_HALVINGS):
            trial = gaps(change + step)
            if float(trial.abs().max()) < float(gap.abs().max()):
                break
            step = step / 2
        else:
            break  # no step shrinks the gaps: the nearest reachable
        change, gap = change + step, trial
        if float(gap.abs().max()) < RATE_TOLERANCE:
            break
    head.bias += float(change[0])
    for amount, direction in zip(change[1:], directions, strict=True):
        head.weight += (amount * direction).to(head.weight.dtype)
    return before, _levels(head, base, states, weights, parts, count, temperature)


def _slope(margins: Any, temperature: float | None) -> Any:
    """The derivative of :func:`held_values` at ``margins``."""
    import torch

    if temperature is None:
        return torch.ones_like(margins)
    rate = torch.sigmoid(margins / temperature)
    return rate * (1 - rate) / temperature


def _margins(head: DecisionHead, base: Sequence[Any], states: Sequence[Any]) -> list[Any]:
    """Each decision's margin with ``head`` as it is, in float64."""
    return [b.double().cpu() + head.shift(s.float().cpu()).double() for b, s in zip(base, states, strict=True)]


def _levels(
    head: DecisionHead,
    base: Sequence[Any],
    states: Sequence[Any],
    weights: Sequence[Any],
    parts: Sequence[int],
    count: int,
    temperature: float | None,
) -> list[float]:
    """Each part's level with ``head`` as it is."""
    values = [held_values(m, temperature) for m in _margins(head, base, states)]
    return [float(level) for level in part_sums(values, weights, parts, count)]
