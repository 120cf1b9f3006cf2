"""The judge's verdicts kept for later steps: the ranking learns from every recent group, not four.

A step of the ``full`` recipe judges four groups, so the ranking
(:mod:`mosaic_gym.train.decision_rank`) sees about four verdicts a step. On perfect labels it
needed 8-16 steps of sixteen to order the decision (docs/results-log.md, session 6), and with the
level held four a step moved nothing (session 9). A verdict is about a task, and the task's
contexts stay what they were, so with ``rl.decision_replay: N`` the step's ranking and level
read the decisions of the latest N groups, this step's included. Each group keeps one play,
the one that wrote the most decisions, so one pass reads its decision at every reply it reached,
and the frozen copy's margins there are read once, when it joins.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaic_gym.train.decision_points import DecisionReads, read_margins


@dataclass(frozen=True)
class KeptGroup:
    """One judged group: its longest-deciding play's tokens up to its last decision, the
    prompt's length, its decisions' positions in the completion, the group's verdict, and the
    frozen copy's margins at those decisions (None without a level)."""

    sequence: list[int]
    prompt_length: int
    positions: list[int]
    verdict: float
    reference: Any


def deciding_plays(reads: DecisionReads, group_size: int) -> list[int | None]:
    """Per group of ``group_size`` consecutive plays, the one that wrote the most decisions (the
    first of equals), or None when none of its plays wrote one."""
    picks: list[int | None] = []
    for start in range(0, len(reads.positions), group_size):
        plays = range(start, start + group_size)
        best = max(plays, key=lambda play: (len(reads.positions[play]), -play))
        picks.append(best if reads.positions[best] else None)
    return picks


class DecisionReplay:
    """The latest ``capacity`` judged groups that wrote a decision, oldest first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a replay keeps at least one group, not {capacity}")
        self._groups: deque[KeptGroup] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._groups)

    def add(
        self,
        reads: DecisionReads,
        verdicts: Sequence[float],
        group_size: int,
        reference: Any | None,
        answers: tuple[int, int],
    ) -> None:
        """Keep each group's deciding play with its verdict; the frozen copy ``reference`` (None
        without a level) reads its margins now, once."""
        if len(reads.positions) != len(verdicts) * group_size:
            raise ValueError(f"{len(reads.positions)} plays for {len(verdicts)} groups of {group_size}")
        picks = deciding_plays(reads, group_size)
        kept = [(play, verdict) for play, verdict in zip(picks, verdicts, strict=True) if play is not None]
        chosen = DecisionReads(
            [reads.sequences[play] for play, _ in kept],
            [reads.prompt_lengths[play] for play, _ in kept],
            [reads.positions[play] for play, _ in kept],
        )
        margins = read_margins(reference, chosen, answers) if reference is not None else [None] * len(kept)
        for (play, verdict), start in zip(kept, margins, strict=True):
            group = KeptGroup(reads.sequences[play], reads.prompt_lengths[play], reads.positions[play], verdict, start)
            self._groups.append(group)

    def reads(self) -> DecisionReads:
        """The kept plays as reads, one per group."""
        return DecisionReads(
            [g.sequence for g in self._groups],
            [g.prompt_length for g in self._groups],
            [g.positions for g in self._groups],
        )

    @property
    def verdicts(self) -> list[float]:
        return [g.verdict for g in self._groups]

    @property
    def reference(self) -> list[Any] | None:
        """The frozen copy's margins per kept play, or None when the groups were kept without them."""
        margins = [g.reference for g in self._groups]
        return None if any(m is None for m in margins) else margins

    def save(self, path: Path) -> None:
        """Write the kept groups to ``path`` (JSON), beside a checkpoint, so a resumed run keeps them."""
        groups = [
            {
                "sequence": g.sequence,
                "prompt_length": g.prompt_length,
                "positions": g.positions,
                "verdict": g.verdict,
                "reference": None if g.reference is None else g.reference.tolist(),
            }
            for g in self._groups
        ]
        path.write_text(json.dumps({"capacity": self._groups.maxlen, "groups": groups}))

    def load(self, path: Path) -> None:
        """Keep the groups :meth:`save` wrote to ``path``, in place of these."""
        import torch

        groups = json.loads(path.read_text())["groups"]
        self._groups.clear()
        for g in groups:
            reference = None if g["reference"] is None else torch.tensor(g["reference"])
            self._groups.append(KeptGroup(g["sequence"], g["prompt_length"], g["positions"], g["verdict"], reference))

    @property
    def judged(self) -> int:
        """How many kept groups have a verdict either way."""
        return sum(1 for g in self._groups if g.verdict != 0)
