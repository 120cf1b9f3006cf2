from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from mosaic_gym.agents.decision_head import DecisionHead  # noqa: E402
from mosaic_gym.train.head_level import hold_levels, part_sums, part_totals  # noqa: E402


def decisions(parts: list[int], hidden: int = 8, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One decision per play: its model margin without the head, and its state; each part's
    states lie around a mean of their own, as two tiers' contexts do."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(max(parts) + 1, hidden, generator=generator) * 3
    states = [centres[part] + torch.randn(1, hidden, generator=generator) for part in parts]
    base = [torch.randn(1, generator=generator) for _ in parts]
    return base, states


def margins(head: DecisionHead, base: list[torch.Tensor], states: list[torch.Tensor]) -> list[torch.Tensor]:
    return [b + head.shift(s) for b, s in zip(base, states, strict=True)]


def test_one_part_is_held_by_the_bias_alone() -> None:
    parts = [0] * 6
    base, states = decisions(parts)
    weights = [torch.full((1,), 1 / 6)] * 6
    head = DecisionHead([5], (1, 2), torch.randn(8, generator=torch.Generator().manual_seed(1)))
    weight = head.weight.clone()
    before, after = hold_levels(head, base, states, weights, parts, [0.75])
    assert before[0] != pytest.approx(0.75) and after[0] == pytest.approx(0.75, abs=1e-5)
    assert torch.equal(head.weight, weight), "every margin moved alike: their order is the head's"
    now = torch.cat(margins(head, base, states)).mean()
    assert float(now) == pytest.approx(0.75, abs=1e-5)


def test_each_part_lands_on_its_own_target_by_the_bias_and_the_line_between_their_mean_states() -> None:
    parts = [0, 0, 0, 1, 1, 1, 1, 1]
    base, states = decisions(parts)
    # Each part weighs alike however many plays it has, as each tier's anchors do.
    weights = [torch.full((1,), 1 / (2 * parts.count(part))) for part in parts]
    head = DecisionHead([5], (1, 2), torch.zeros(8))
    targets = [-0.4, 0.3]  # each part's sum(weights * margins): mean margins -0.8 and 0.6
    before, after = hold_levels(head, base, states, weights, parts, targets)
    assert after == pytest.approx(targets, abs=1e-5) and before != pytest.approx(targets, abs=1e-2)
    now = margins(head, base, states)
    for part, mean in ((0, -0.8), (1, 0.6)):
        assert float(torch.cat([m for m, p in zip(now, parts, strict=True) if p == part]).mean()) == pytest.approx(
            mean, abs=1e-5
        )
    line = torch.cat(states[3:]).mean(0) - torch.cat(states[:3]).mean(0)
    assert torch.allclose(head.weight, head.weight @ line / (line @ line) * line, atol=1e-6), "along the line only"


def test_a_part_without_weight_holds_nothing_and_the_rest_are_still_held() -> None:
    parts = [0, 0, 1, 1]
    base, states = decisions(parts, seed=2)
    weights = [torch.full((1,), 0.5), torch.full((1,), 0.5), torch.zeros(1), torch.zeros(1)]
    head = DecisionHead([5], (1, 2), torch.zeros(8))
    _, after = hold_levels(head, base, states, weights, parts, [1.0, 5.0])
    assert after[0] == pytest.approx(1.0, abs=1e-5) and after[1] == 0.0
    assert part_totals(weights, parts, 2) == [1.0, 0.0]


def rates(head: DecisionHead, base: list[torch.Tensor], states: list[torch.Tensor], t: float) -> torch.Tensor:
    return torch.sigmoid(torch.cat(margins(head, base, states)) / t)


def test_the_rate_hold_lands_the_mean_rate_of_no_where_a_mean_margin_would_not() -> None:
    parts = [0] * 6
    base, states = decisions(parts, seed=3)
    weights = [torch.full((1,), 1 / 6)] * 6
    head = DecisionHead([5], (1, 2), torch.randn(8, generator=torch.Generator().manual_seed(4)))
    weight = head.weight.clone()
    _, after = hold_levels(head, base, states, weights, parts, [0.3], temperature=0.7)
    assert after[0] == pytest.approx(0.3, abs=1e-6)
    assert float(rates(head, base, states, 0.7).mean()) == pytest.approx(0.3, abs=1e-6)
    assert torch.equal(head.weight, weight), "one part: the bias alone"
    # The same margins held at the mean margin that rate gives them all alike are not at that rate.
    spread = torch.cat(margins(head, base, states))
    assert float(torch.sigmoid(spread.mean() / 0.7)) != pytest.approx(0.3, abs=1e-2)


def test_each_part_lands_on_its_own_rate() -> None:
    parts = [0, 0, 0, 1, 1, 1, 1, 1]
    base, states = decisions(parts, seed=5)
    weights = [torch.full((1,), 1 / (2 * parts.count(part))) for part in parts]
    head = DecisionHead([5], (1, 2), torch.zeros(8))
    targets = [0.05, 0.35]  # each part's sum(weights * rates): mean rates 0.1 and 0.7
    _, after = hold_levels(head, base, states, weights, parts, targets, temperature=0.7)
    assert after == pytest.approx(targets, abs=1e-6)
    now = rates(head, base, states, 0.7)
    assert float(now[:3].mean()) == pytest.approx(0.1, abs=1e-5)
    assert float(now[3:].mean()) == pytest.approx(0.7, abs=1e-5)


def test_a_rate_out_of_reach_stops_at_the_nearest_without_failing() -> None:
    parts = [0] * 4
    base, states = decisions(parts, seed=6)
    weights = [torch.full((1,), 0.25)] * 4
    head = DecisionHead([5], (1, 2), torch.zeros(8))
    _, after = hold_levels(head, base, states, weights, parts, [1.5], temperature=0.7)  # rates are at most 1
    assert 0.99 < after[0] <= 1.0 and math.isfinite(head.bias)


def test_part_sums_add_each_parts_weighted_values() -> None:
    values = [torch.tensor([1.0, 2.0]), torch.tensor([3.0]), torch.tensor([4.0])]
    weights = [torch.tensor([0.5, 0.25]), torch.tensor([2.0]), torch.tensor([1.0])]
    assert [float(s) for s in part_sums(values, weights, [1, 0, 1], 2)] == [6.0, 5.0]
