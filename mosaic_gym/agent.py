"""The agent contract: what the rollout engine asks of an agent, and what an agent may see.

The rollout engine steps many envs in lockstep and calls :meth:`Agent.act_batch` once per
round, which is what lets an LLM agent batch its generation. A :class:`Turn` carries what a
deployed model would get: the chat so far, the tool schemas and the step budget. The task's
ground truth (the live env, with its world, checks and reference solutions) goes only to an
agent that declares ``privileged = True``: the scripted reference agents replay the task's
own solutions, and the human player is shown which text an attacker planted. No other agent
can read the answer by accident.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mosaic_gym.native import NativeReply
from mosaic_gym.protocol import Action

if TYPE_CHECKING:
    from mosaic_gym.env import ProtocolEnv


@dataclass(frozen=True)
class GroundTruth:
    """The privileged view: the live env (``env.task`` is the instance with its world and checks)
    and the env's whole ``info`` for this step (task id, kind, attack, journal, adversarial spans)."""

    env: ProtocolEnv[Any]  # a ToolEnv, or another world's env (AgentDojo's) under the same protocol
    info: dict[str, Any]


@dataclass(frozen=True)
class Turn:
    """One reply to give: what a model would see, and the ground truth for privileged agents only."""

    observation: str
    messages: list[dict[str, Any]]  # the chat so far, system prompt and user task first
    tools: list[dict[str, Any]]  # JSON schemas of the tools on offer, as a chat template takes them
    step: int  # how many replies this episode has had so far (0 right after reset)
    max_steps: int  # the episode's reply budget: it ends (truncated) after this many replies
    episode_seed: int = 0
    sample: int = 0  # which play of the same episode (see EpisodeSpec.sample)
    # Identifies the lockstep slot: stable from reset to the episode's end, then reused by the
    # slot's next episode (whose step 0 starts afresh). Agents key per-episode state by it.
    slot: int = 0
    truth: GroundTruth | None = None  # only for agents with ``privileged = True``

    def ground_truth(self) -> GroundTruth:
        """The privileged view, or a clear error for an agent that did not declare it needs one."""
        if self.truth is None:
            raise PrivilegeError(
                "this agent reads the task's ground truth but does not declare privileged = True; "
                "the rollout gives the env only to agents that do"
            )
        return self.truth


def is_privileged(agent: object) -> bool:
    """Whether ``agent`` declared that it reads the ground truth (``privileged = True``)."""
    return getattr(agent, "privileged", False) is True


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


class PrivilegeError(RuntimeError):
    """An agent asked for the ground truth without declaring ``privileged = True``."""


class AgentRuntimeError(Exception):
    """An agent that cannot produce replies (endpoint unreachable, model unknown, timeout).

    The message is one line for the user: the command line prints it and exits with status 2,
    rather than a traceback from deep inside an HTTP client.
    """


class AgentConfigError(ValueError):
    """An unknown agent, or options the agent cannot use; the message is one line for the user."""


class Agent(Protocol):
    """Any object with a ``name`` and ``act_batch`` is an agent; set ``privileged = True`` on it
    to receive :attr:`Turn.truth`."""

    name: str

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Action | Reply | NativeReply]:
        """One reply (protocol text, an Action, a Reply with tokens, or, in an env of the native
        protocol, a NativeReply) per turn, in order."""
        ...
