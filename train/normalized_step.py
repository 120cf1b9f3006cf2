"""A step of fixed length along the gradient: the decision's own optimizer, as an alternative to AdamW.

AdamW's first steps move every weight by about the learning rate in the sign of its gradient,
however small that gradient is: at 1e-3 over SmolLM2's 4.9M LoRA weights, a step of norm 2.2
in every direction at once, and the policy's replies lost their format within three RL steps
(docs/results-log.md, session 12). A step along the gradient itself moves the weights the
decision depends on, in proportion to how much it depends on them; a fixed length (the
learning rate) keeps its size independent of the loss's scale.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class NormalizedStep(torch.optim.Optimizer):
    """``w -= lr * g / ||g||``, the norm over every parameter's gradient together; no state."""

    def __init__(self, params: Iterable[Any], lr: float) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            grads = [p.grad for p in group["params"] if p.grad is not None]
            norm = float(torch.sqrt(sum((g.float().square().sum() for g in grads), torch.tensor(0.0))))
            if norm == 0:
                continue
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.to(p.dtype), alpha=-group["lr"] / norm)
