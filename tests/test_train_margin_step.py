"""The decision's step in margin space: the least-norm weight change that moves each margin as asked."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mosaic_gym.train.decision_points import decision_reads, margins_at, read_margins  # noqa: E402
from mosaic_gym.train.margin_step import decision_jacobian, margin_step  # noqa: E402
from tests.tiny_model import tiny_llama  # noqa: E402

ANSWERS = (7, 11)
READS = decision_reads([[3, 4, 5], [6, 7], [5, 3]], [[8, 9, 10, 11, 12], [13, 14, 15], [9, 9]], [[1, 4], [2], [1]])


def changes(model: torch.nn.Module, before: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([a - b for a, b in zip(read_margins(model, READS, ANSWERS), before, strict=True)])


def test_the_jacobian_holds_each_decisions_margin_gradient_in_order() -> None:
    model = tiny_llama(64)
    jacobian = decision_jacobian(model, READS, ANSWERS)
    assert jacobian.shape == (4, sum(p.numel() for p in model.parameters()))
    margins = margins_at(model, READS.sequences[0], READS.rows(0), ANSWERS)
    grads = torch.autograd.grad(margins[1], list(model.parameters()))
    assert torch.allclose(jacobian[1], torch.cat([g.reshape(-1) for g in grads]), atol=1e-6)


def test_the_step_moves_each_margin_as_asked_and_leaves_the_unweighted_ones() -> None:
    model = tiny_llama(64)
    before = read_margins(model, READS, ANSWERS)
    # Up at play 0's second decision, down at play 1's; play 0's first and play 2's are not asked.
    weights = [torch.tensor([0.0, -1.0]), torch.tensor([1.0]), torch.tensor([0.0])]
    stats = margin_step(model, READS, weights, ANSWERS, rms=0.01)
    moved = changes(model, before)
    asked = torch.tensor([0.0, 1.0, -1.0, 0.0]) * 0.01 / 0.5**0.5  # scaled to an RMS of 0.01
    assert moved.tolist() == pytest.approx(asked.tolist(), abs=1e-3), "to first order, exactly the asked change"
    assert stats["decision/step_margin_rms"] == pytest.approx(0.01, rel=1e-2)
    assert stats["decision/step_norm"] > 0


def test_a_gradient_step_of_the_same_length_moves_what_was_not_asked_and_this_one_does_not() -> None:
    weights = [torch.tensor([0.0, -1.0]), torch.tensor([1.0]), torch.tensor([0.0])]
    stepped = tiny_llama(64)
    before = read_margins(stepped, READS, ANSWERS)
    length = margin_step(stepped, READS, weights, ANSWERS, rms=0.01)["decision/step_norm"]
    along = tiny_llama(64)  # the same weights, stepped the same length along the loss's gradient
    parts = [
        (w * margins_at(along, ids, READS.rows(p), ANSWERS)).sum()
        for p, (ids, w) in enumerate(zip(READS.sequences, weights, strict=True))
    ]
    grads = torch.autograd.grad(torch.stack(parts).sum(), list(along.parameters()))
    norm = torch.sqrt(sum(g.square().sum() for g in grads))
    with torch.no_grad():
        for p, g in zip(along.parameters(), grads, strict=True):
            p.sub_(g * (length / norm))
    unasked = [0, 3]
    held, plain = changes(stepped, before)[unasked].abs().max(), changes(along, before)[unasked].abs().max()
    assert float(plain) > 10 * float(held), (plain, held)


def test_nothing_asked_moves_nothing() -> None:
    model = tiny_llama(64)
    weights_before = [p.detach().clone() for p in model.parameters()]
    zeros = [torch.zeros(2), torch.zeros(1), torch.zeros(1)]
    assert margin_step(model, READS, zeros, ANSWERS, rms=0.5) == {
        "decision/step_norm": 0.0,
        "decision/step_margin_rms": 0.0,
    }
    assert all(torch.equal(a, p) for a, p in zip(weights_before, model.parameters(), strict=True))
