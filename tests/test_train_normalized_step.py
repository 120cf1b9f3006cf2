"""The decision's normalized step: a fixed length along the gradient, whatever the loss's scale."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mosaic_gym.train.normalized_step import NormalizedStep  # noqa: E402


def test_each_step_has_the_learning_rates_length_along_the_gradient() -> None:
    weights = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(1))]
    step = NormalizedStep(weights, lr=0.5)
    for scale in (1e-4, 1e3):  # the step's length does not follow the gradient's
        before = [w.detach().clone() for w in weights]
        weights[0].grad = scale * torch.tensor([3.0, 0.0, 0.0])
        weights[1].grad = scale * torch.tensor([0.0, 4.0])  # the third has no gradient: it stays
        step.step()
        moved = torch.cat([(w.detach() - b) for w, b in zip(weights, before, strict=True)])
        assert moved.norm().item() == pytest.approx(0.5)
        assert moved.tolist() == pytest.approx([-0.3, 0.0, 0.0, 0.0, -0.4, 0.0])
    for w in weights:
        w.grad = torch.zeros_like(w)
    before = [w.detach().clone() for w in weights]
    step.step()
    assert all(torch.equal(w.detach(), b) for w, b in zip(weights, before, strict=True)), "no gradient, no step"
    with pytest.raises(ValueError, match="lr must be positive"):
        NormalizedStep(weights, lr=0)
