"""What one RL step's episodes did, and whether its groups held anything to learn from.

Pairwise RL can only prefer what it samples: a group of G plays of one harmful task teaches
when to refuse only if it holds a refusal and a non-refusal (a *contrastive* group), and a
comparison teaches safety only if harm, refusal or the task decided it rather than format or
length. These statistics are logged per step to tensorboard and kept for ``summary.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from mosaic_gym.evaluation.metrics import TABLE, point
from mosaic_gym.judges import PairwiseJudge
from mosaic_gym.outcome import Outcome
from mosaic_gym.rollout import Trajectory
from mosaic_gym.scenarios.template import KINDS
from mosaic_gym.train.rewards import RewardParts, as_judged


def step_stats(
    trajectories: Sequence[Trajectory],
    parts: Sequence[RewardParts],
    group_size: int,
    judge: PairwiseJudge | None,
    explored: int = 0,
) -> dict[str, float]:
    """Named values for one step; a rate over an empty population is left out, not reported as 0.

    The first ``explored`` plays of each group had their first reply forced (``rl.explore_refusals``):
    the episode rates and contrastive shares count only the sampled plays, so they show what the
    policy itself does; the judge's statistics count every comparison the loss saw.
    """
    groups = [list(trajectories[s : s + group_size]) for s in range(0, len(trajectories), group_size)]
    sampled = [group[explored:] for group in groups]
    outcomes = [t.outcome for group in sampled for t in group if t.outcome is not None]
    values: dict[str, float | None] = {
        **episode_rates(outcomes),
        "groups/contrastive_share": _mean([_contrastive(g) for g in sampled]),
        "groups/tied_share": _mean([_tied(parts[s : s + group_size]) for s in range(0, len(parts), group_size)]),
    }
    for kind in KINDS:
        of_kind = [g for g in sampled if g[0].kind == kind]
        values[f"groups/contrastive_share/{kind}"] = _mean([_contrastive(g) for g in of_kind]) if of_kind else None
    if judge is not None:
        values["judge/win_rate_of_safest"] = _win_rate_of_safest(parts, group_size)
        criteria = deciding_criteria(judge, [[as_judged(t) for t in group] for group in groups])  # as the loss saw them
        total = sum(criteria.values())
        for label, count in sorted(criteria.items()):
            values[f"judge/decided_by/{label}"] = count / total
    return {key: value for key, value in values.items() if value is not None}


def episode_rates(outcomes: Sequence[Outcome]) -> dict[str, float | None]:
    """Every metric of the eval's table (``episodes/<metric>``, over its own population, so
    ``episodes/privacy_leak_rate`` counts privacy tasks as ``metrics.json`` does), and how often
    each kind of task was refused (``episodes/refusal_rate/<kind>``)."""
    rates: dict[str, float | None] = {f"episodes/{metric.name}": point(metric, outcomes) for metric in TABLE}
    for kind in KINDS:
        of_kind = [o for o in outcomes if o.kind == kind]
        rates[f"episodes/refusal_rate/{kind}"] = _mean([o.refused for o in of_kind]) if of_kind else None
    return rates


def deciding_criteria(judge: PairwiseJudge, groups: Sequence[Sequence[Trajectory]]) -> Counter[str]:
    """How many comparisons each criterion decided; a judge that cannot say (an LLM) counts as ``verdict``."""
    criterion = getattr(judge, "criterion", None)
    counts: Counter[str] = Counter()
    for group in groups:
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                counts[criterion(group[i], group[j]) if criterion is not None else "verdict"] += 1
    return counts


def _contrastive(group: Sequence[Trajectory]) -> bool:
    refused = {t.outcome is not None and t.outcome.refused for t in group}
    return len(refused) == 2


def _tied(parts: Sequence[RewardParts]) -> bool:
    """All alignment rewards equal: GRPO's group-normalised advantage has nothing from the judge."""
    return len({p.alignment for p in parts}) == 1


def _win_rate_of_safest(parts: Sequence[RewardParts], group_size: int) -> float:
    """Share of its comparisons that each group's top trajectory won: 0.5 when the judge sees no
    difference in a group (no learning signal), up to 1 when one trajectory beats all others."""
    tops = [max(p.alignment for p in parts[s : s + group_size]) for s in range(0, len(parts), group_size)]
    return float(np.mean([top / (group_size - 1) for top in tops]))


def _mean(values: Sequence[Any]) -> float:
    return float(np.mean(values)) if len(values) else 0.0
