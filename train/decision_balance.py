"""How hard a step's groups push the refuse-or-act decision each way, and balancing the two.

In a group where the judge preferred refusing, the refusals' advantages are positive and raise
``P(" No")`` at the decision; where it preferred acting, they are negative and lower it. The
decision token is one logit shared by every task, so whatever the groups push on balance moves
it for every kind at once: four RL runs moved ``P(" No")`` 0.1-0.2 to 0.9 or to 0.005 on all
kinds alike, as the step's mix of kinds paid on balance (docs/results-log.md, session 4). With the
two pushes equal, the mix of groups no longer pays for refusing more or less everywhere. (It is
not all the decision receives: every reply writes a decision, and a play that refuses at reply
2 carries its advantage on its reply-1 " Yes" too; in session 5 the decision still drifted
with the pushes balanced.)

A group's *push* is the sum of its refusals' advantages (its advantages sum to zero, so this is
also minus the sum of its actions'). Balancing scales down the advantages of the groups on the
side that pushes harder, all by one factor, until that side's total equals the other's; the
groups keep their own ranking of their plays. It never scales up: a side that pushes almost
nothing would need an enormous factor, one near-tied group would then dominate the step, and
Adam's second moment would carry that size into the steps after it. So a step whose groups all
push one way keeps none of those groups' advantages: on its own it can only teach a bias.

The decision is one token in a reply of a few hundred, so in a play's loss it weighs little
beside what the play wrote after it. ``weigh_decisions`` gives it more (``rl.decision_weight``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DecisionPush:
    """A step's advantages, balanced or not, and what its groups pushed before balancing."""

    advantages: list[float]
    up: float  # total push of the groups where refusing won (>= 0)
    down: float  # total push of the groups where acting won (>= 0)

    def stats(self) -> dict[str, float]:
        """For the step log: ``decision/net_push`` > 0 means the step raises P(refuse) for every task."""
        return {
            "decision/push_up": self.up,
            "decision/push_down": self.down,
            "decision/net_push": self.up - self.down,
        }


def decision_push(advantages: Sequence[float], refused: Sequence[bool], group_size: int, balance: bool) -> DecisionPush:
    """The push of each group of ``group_size`` consecutive plays, and, with ``balance``, the
    advantages with the groups of the stronger side scaled down so that both sides push alike.

    Groups that push neither way (no refusal, or tied plays) keep their advantages.
    """
    if len(advantages) != len(refused):
        raise ValueError(f"{len(advantages)} advantages for {len(refused)} plays")
    if group_size < 1 or len(advantages) % group_size:
        raise ValueError(f"{len(advantages)} plays do not split into groups of {group_size}")
    starts = range(0, len(advantages), group_size)
    pushes = [
        sum(a for a, r in zip(advantages[s : s + group_size], refused[s : s + group_size], strict=True) if r)
        for s in starts
    ]
    up = sum(p for p in pushes if p > 0)
    down = -sum(p for p in pushes if p < 0)
    if not balance or up == down:
        return DecisionPush(list(advantages), up, down)
    weaker = min(up, down)
    scales = [weaker / up if p > 0 else weaker / down if p < 0 else 1.0 for p in pushes]
    scaled = [a * scales[i // group_size] for i, a in enumerate(advantages)]
    return DecisionPush(scaled, up, down)


def decision_positions(ids: Sequence[int], mask: Sequence[int], question: Sequence[int]) -> list[int]:
    """Where the decision is written in one play's tokens: the token right after each occurrence of
    ``question`` (the tokens of the reply's opening ``<think>`` and the decision question), when the
    play wrote that token itself (``mask`` 1); tool outputs that quote the question do not count."""
    width = len(question)
    if not width:
        raise ValueError("the decision question has no tokens")
    target = list(question)
    return [
        start + width
        for start in range(len(ids) - width)
        if mask[start + width] and list(ids[start : start + width]) == target
    ]


def weigh_decisions(
    advantages: Sequence[float],
    positions: Sequence[Sequence[int]],
    width: int,
    weight: float,
    cleared: Sequence[Sequence[int]] | None = None,
) -> list[list[float]]:
    """Per-token advantages, ``width`` tokens per play: each play's advantage on every token, times
    ``weight`` on its decision tokens, and none on the positions in ``cleared`` (per play). A
    reply of a few hundred tokens holds one decision, so the decision otherwise gets a few
    hundredths of what a play's advantage teaches."""
    if len(advantages) != len(positions):
        raise ValueError(f"{len(advantages)} advantages for the decisions of {len(positions)} plays")
    rows = []
    for i, (advantage, decisions) in enumerate(zip(advantages, positions, strict=True)):
        row = [advantage] * width
        for position in decisions:
            if position < width:
                row[position] = advantage * weight
        for position in cleared[i] if cleared else ():
            if position < width:
                row[position] = 0.0
        rows.append(row)
    return rows


def committed_tails(
    completions: Sequence[Sequence[int]], positions: Sequence[Sequence[int]], no: int, rest: Sequence[int]
) -> list[list[int]]:
    """Per play, the positions of the refusal each " No" decision committed to (``rl.commit_declines``):
    the ``rest`` tokens right after a decision token ``no``. They were written, not sampled, so
    they stay out of the loss (``weigh_decisions``' ``cleared``)."""
    width = len(rest)
    tails: list[list[int]] = []
    for completion, decisions in zip(completions, positions, strict=True):
        committed = [
            p for p in decisions if completion[p] == no and list(completion[p + 1 : p + 1 + width]) == list(rest)
        ]
        tails.append([after for p in committed for after in range(p + 1, p + 1 + width)])
    return tails


def decisions_before_refusal(positions: Sequence[Sequence[int]], refused: Sequence[bool]) -> list[list[int]]:
    """Per play, its decisions before the last one when it refused: the replies where it went on.

    A play that acts at reply 1 and refuses at reply 2 is judged as a refusal; on a benign task
    it loses, and its loss would also land on its reply-1 " Yes", which pushes the reply-1
    decision toward refusing on every kind. Those decisions are the ones to keep the play's
    advantage off (``rl.decision_credit: refusal``); in docs/results-log.md, session 5, that alone
    did not stop the drift."""
    return [list(p[:-1]) if r else [] for p, r in zip(positions, refused, strict=True)]
