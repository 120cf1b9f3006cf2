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

from mosaic_gym.env import ProtocolEnv
from mosaic_gym.native import NativeReply
from mosaic_gym.protocol import Action


@dataclass(frozen=True)
class Turn:
    env: ProtocolEnv[Any]
    observation: str
    info: dict[str, Any]
    episode_seed: int = 0
    sample: int = 0  # which play of the same episode (see EpisodeSpec.sample)

    @property
    def step(self) -> int:
        """How many replies this episode has had so far (0 right after reset)."""
        return int(self.info["step"])


@dataclass(frozen=True)
class TokenTrace:
    """An episode as the model saw it: every token so far, and which ones the agent generated.

    The generated ids are kept exactly as sampled (never decoded and re-tokenized), so a
    trainer can compute log-probabilities of what the policy really produced, with the env's
    tokens masked out of the loss.
    """

    ids: tuple[int, ...]
    agent_mask: tuple[int, ...]

    @property
    def agent_tokens(self) -> int:
        return sum(self.agent_mask)


@dataclass(frozen=True)
class Reply:
    """An LLM agent's reply: its text and the episode's token trace up to and including it."""

    text: str
    trace: TokenTrace | None = None


class AgentRuntimeError(Exception):
    """An agent that cannot produce replies (endpoint unreachable, model unknown, timeout).

    The message is one line for the user: the command line prints it and exits with status 2,
    rather than a traceback from deep inside an HTTP client.
    """


class Agent(Protocol):
    name: str

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Action | Reply | NativeReply]:
        """One reply (protocol text, an Action, a Reply with tokens, or, in an env of the native
        protocol, a NativeReply) per turn, in order."""
        ...
