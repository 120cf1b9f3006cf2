"""The decision ranked across a step's groups: refusing above acting where the judge preferred it."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from mosaic_gym.train.decision_rank import group_verdicts, level_loss, rank_loss  # noqa: E402


def test_a_groups_verdict_is_how_much_more_the_judge_paid_its_refusals() -> None:
    alignment = [3.0, 1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 2.0, 1.5, 1.5, 1.5, 1.5]
    refused = [True, False, False, False, True, True, False, False, False, False, False, False]
    assert group_verdicts(alignment, refused, 4) == [2.0, -1.0, 0.0], "won; lost; no refusal to judge"
    with pytest.raises(ValueError, match="not groups of 4"):
        group_verdicts(alignment[:6], refused[:6], 4)


def test_the_loss_ranks_refusing_above_acting_and_ignores_a_shift_shared_by_every_task() -> None:
    refusing = torch.tensor([0.5, -1.0], requires_grad=True)
    acting = torch.tensor([0.0, 2.0, -0.5], requires_grad=True)
    loss = rank_loss(refusing, acting)
    expected = sum(math.log1p(math.exp(a - r)) for r in (0.5, -1.0) for a in (0.0, 2.0, -0.5)) / 6
    assert float(loss) == pytest.approx(expected)
    assert float(rank_loss(refusing + 3.0, acting + 3.0)) == pytest.approx(float(loss)), "blind to a shared shift"
    loss.backward()
    assert refusing.grad is not None and acting.grad is not None
    assert (refusing.grad < 0).all() and (acting.grad > 0).all(), "descent raises refusing margins, lowers acting"
    assert float(refusing.grad.sum() + acting.grad.sum()) == pytest.approx(0.0, abs=1e-7), "no push on the bias"


def test_the_level_sees_only_the_shift_shared_by_the_step_and_holds_it_either_way() -> None:
    start = torch.tensor([0.0, -1.0, 1.0])
    apart = torch.tensor([0.5, -1.5, 1.0], requires_grad=True)
    assert float(level_loss(apart, start)) == pytest.approx(0.0), "tasks moved apart around the same mean"
    for shift in (0.6, -0.6):
        moved = (start + shift).requires_grad_(True)
        loss = level_loss(moved, start)
        assert float(loss) == pytest.approx(0.36)
        loss.backward()
        assert moved.grad is not None
        assert moved.grad.tolist() == pytest.approx([2 * shift / 3] * 3), "descent pulls every task back alike"
