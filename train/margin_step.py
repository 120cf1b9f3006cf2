"""The decision's step taken in margin space: the smallest weight change that moves each kept
decision's margin as the decision loss asks, to first order.

Every decision shares the context up to the question, so every margin's gradient shares one
large direction: on a session 13 replay (12 plays, 41 decisions) the top eigenvalue of their
Gram matrix was 2.6e4, the next 3.7e3, the rest 9-650. A step along the loss's gradient
(AdamW, :mod:`~mosaic_gym.train.normalized_step`) mostly moves along that shared direction, so it
shifts every margin of a reply together: a step of length 0.2 moved the level 1.7 logits and
cut the ranking's loss 3.41 -> 3.14. The ranking's weights sum to 0 per reply, so what it asks
of the margins has no shared part; solving for the weight change that gives exactly that change
(0.5 logits RMS, a length of 0.18) cut it 3.41 -> 2.52, the margins moved as asked (correlation
0.98) and their mean by 0.002 (docs/results-log.md, session 14).

With ``J`` the margins' Jacobian (one row per decision) and ``t`` the asked change, the step is
``J^T (J J^T + damping I)^{-1} t``, with ``t`` the negative of the loss's gradient in margin space
scaled to ``rms`` logits: decisions the loss gives no weight are asked to stay where they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mosaic_gym.train.decision_points import DecisionReads, dropout_off, margins_at

if TYPE_CHECKING:
    from mosaic_gym.agents.decision_head import DecisionHead

DAMPING = 1e-4  # times the Gram matrix's mean diagonal: keeps near-duplicate decisions solvable


def decision_jacobian(model: Any, reads: DecisionReads, answers: tuple[int, int]) -> Any:
    """Each decision's margin gradient with respect to ``model``'s trainable weights, flattened
    (float32, one row per decision, in play then position order): one forward pass per play with
    grad and one backward pass per decision, without dropout."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    rows = sum(len(positions) for positions in reads.positions)
    jacobian = torch.zeros(rows, sum(p.numel() for p in params))
    row = 0
    with dropout_off(model):
        for play, ids in enumerate(reads.sequences):
            if not ids:
                continue
            margins = margins_at(model, ids, reads.rows(play), answers)
            for k in range(len(margins)):
                grads = torch.autograd.grad(margins[k], params, retain_graph=k < len(margins) - 1, allow_unused=True)
                jacobian[row] = torch.cat(
                    [
                        torch.zeros(p.numel()) if g is None else g.reshape(-1).float()
                        for p, g in zip(params, grads, strict=True)
                    ]
                )
                row += 1
    return jacobian


def asked_change(weights: list[Any], rms: float) -> Any | None:
    """The margins' asked change: ``-weights`` (per play, the decision loss's gradient at each
    margin, concatenated) scaled to ``rms`` logits RMS; None when the loss asks for nothing."""
    import torch

    asked = torch.cat([-w.float() for w in weights]) if weights else torch.zeros(0)
    size = float(asked.square().mean().sqrt()) if asked.numel() else 0.0
    return asked * (rms / size) if size else None


def least_norm_change(jacobian: Any, target: Any, damping: float = DAMPING) -> tuple[Any, dict[str, float]]:
    """The least-norm parameter change ``J^T (J J^T + damping I)^{-1} t`` that moves the margins
    whose Jacobian is ``jacobian`` (one row per decision) by ``target``, and the step's
    statistics: its length and the margins' predicted RMS change. ``damping`` is in units of
    the Gram matrix's mean diagonal."""
    import torch

    if jacobian.size(0) != target.numel():
        raise ValueError(f"{target.numel()} weights for {jacobian.size(0)} decisions")
    gram = (jacobian @ jacobian.T).double()
    damped = gram + damping * float(gram.diagonal().mean()) * torch.eye(len(gram), dtype=torch.double)
    solution = torch.linalg.solve(damped, target.double())
    step = jacobian.T @ solution.to(jacobian.dtype)
    predicted = gram @ solution
    stats = {
        "decision/step_norm": float(step.norm()),
        "decision/step_margin_rms": float(predicted.square().mean().sqrt()),
    }
    return step, stats


NO_STEP = {"decision/step_norm": 0.0, "decision/step_margin_rms": 0.0}  # the statistics when nothing is asked


def margin_step(
    model: Any, reads: DecisionReads, weights: list[Any], answers: tuple[int, int], rms: float
) -> dict[str, float]:
    """Move ``model``'s trainable weights by the least-norm change that moves the margins at
    ``reads`` as :func:`asked_change` asks. Returns the step's statistics for the logs."""
    import torch

    target = asked_change(weights, rms)
    if target is None:  # no Jacobian to build
        return dict(NO_STEP)
    step, stats = least_norm_change(decision_jacobian(model, reads, answers), target)
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        offset = 0
        for p in params:
            p.add_(step[offset : offset + p.numel()].view_as(p).to(p.dtype))
            offset += p.numel()
    return stats


def head_step(
    head: DecisionHead, states: list[Any], weights: list[Any], rms: float, ridge: float | None = None
) -> dict[str, float]:
    """The same step for a decision head (``rl.decision_optimizer: head``): its margin is linear in
    its weight, with the decisions' final hidden states ``states`` (per play, ``[n, hidden]``) as
    the Jacobian, so the margins move exactly as asked. The bias is left to the level's reset.

    With ``ridge`` (``rl.decision_head_ridge``, in units of the Gram matrix's mean diagonal) the
    step is ridge regression of the asked change on the states instead, lengthened until the
    margins' predicted change is ``rms`` logits RMS again: the directions few decisions span (what
    tells one template from another) are damped, the ones many share are kept. In RL (λ = 1,
    docs/results-log.md, session 31) the head followed the ranking less closely, and the adapter's
    GRPO learned to refuse past the decision, whatever the kind: the recipes take the exact step."""
    import torch

    target = asked_change(weights, rms)
    if target is None:
        return dict(NO_STEP)
    jacobian = torch.cat([s.float().cpu() for s in states])
    step, stats = least_norm_change(jacobian, target, DAMPING if ridge is None else ridge)
    if ridge is not None and stats["decision/step_margin_rms"] > 0:
        step = step * (rms / stats["decision/step_margin_rms"])
        stats = {"decision/step_norm": float(step.norm()), "decision/step_margin_rms": rms}
    head.weight += step
    return stats
