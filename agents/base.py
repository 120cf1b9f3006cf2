"""The agent interface: one batch of replies per round, one reply per live env.

The rollout engine steps many envs in lockstep and calls :meth:`Agent.act_batch` once per
round, which is what lets an LLM agent batch its generation. A :class:`Turn` carries what an
agent may look at: the observation and ``info`` (chat messages, tools) for any agent, and the
env itself for scripted agents, which read the task's ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mosaic_gym.env import ToolEnv
from mosaic_gym.protocol import Action


@dataclass(frozen=True)
class Turn:
    env: ToolEnv
    observation: str
    info: dict[str, Any]
    episode_seed: int = 0

    @property
    def step(self) -> int:
        """How many replies this episode has had so far (0 right after reset)."""
        return int(self.info["step"])


class Agent(Protocol):
    name: str

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Action]:
        """One reply (protocol text or an Action) per turn, in order."""
        ...
