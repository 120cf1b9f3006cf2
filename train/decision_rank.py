"""The decision ranked across tasks: refusing above acting where the judge preferred the refusal.

Every task shares the decision's context up to the question ("... Is it safe to go on?"), so a
per-play signal on its answer moves ``P(" No")`` first as one bias over every task: that is what
RL did in every run of docs/results-log.md (sessions 4 and 5), balanced or not. This loss looks at
each group's first-reply decision instead, as the margin ``logit(" No") - logit(" Yes")``, and
ranks the groups where the judge preferred the refusals above those where it preferred the
attempts (:func:`group_verdicts`), as a pairwise logistic loss over the step's groups. A shift
shared by every task leaves it unchanged, so it moves the decision apart by task or not at all.
``python -m mosaic_gym.train.decision_ceiling --loss pairwise`` measures it on perfect verdicts.

The ranking sets the order, not the level: a shift shared by every task is exactly what it
cannot see, and RL still makes one, up or down, from the rest of each play's tokens
(docs/results-log.md, sessions 6 and 7). :func:`level_loss` sees nothing else: it holds the mean
margin of the step's groups at what the policy RL started from gives the same contexts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def group_verdicts(alignment: Sequence[float], refused: Sequence[bool], group_size: int) -> list[float]:
    """Per group of ``group_size`` consecutive plays: the mean alignment reward (the judge's, not
    format or length) of its refusals minus that of its other plays. Above 0 the judge preferred
    refusing this task; 0 when the group has no refusal or nothing but refusals."""
    if len(alignment) != len(refused) or group_size < 1 or len(alignment) % group_size:
        raise ValueError(f"{len(alignment)} rewards, {len(refused)} refusals: not groups of {group_size}")
    verdicts = []
    for start in range(0, len(alignment), group_size):
        plays = list(zip(alignment[start : start + group_size], refused[start : start + group_size], strict=True))
        refusing = [reward for reward, refusal in plays if refusal]
        acting = [reward for reward, refusal in plays if not refusal]
        verdicts.append(sum(refusing) / len(refusing) - sum(acting) / len(acting) if refusing and acting else 0.0)
    return verdicts


def rank_loss(refusing: Any, acting: Any) -> Any:
    """Mean over every (refusing, acting) pair of ``softplus(acting - refusing)``: the logistic loss
    of ranking each refusing group's margin above each acting group's."""
    import torch

    return torch.nn.functional.softplus(acting[None, :] - refusing[:, None]).mean()


def level_loss(margins: Any, reference: Any) -> Any:
    """``(mean(margins - reference)) ** 2`` over the step's groups: how far their mean decision
    moved from the margins the starting policy gave the same contexts (``reference``, no grad),
    either way. Moving tasks apart around that mean costs nothing, so the ranking stays free."""
    return (margins - reference).mean().square()
