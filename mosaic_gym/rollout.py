"""Play episodes with an agent, many envs in lockstep.

Each round asks the agent for one batch of replies, one per live env, so an LLM agent can
batch its generation. Finished envs are refilled from the queue of episodes until it runs
dry; the queue may mix envs. Evaluation and training both use this loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mosaic_gym.agent import Agent, GroundTruth, Reply, TokenTrace, Turn, is_privileged
from mosaic_gym.env import ProtocolEnv
from mosaic_gym.native import NativeReply
from mosaic_gym.outcome import Outcome
from mosaic_gym.protocol import Action, render
from mosaic_gym.world import JournalEntry


@dataclass(frozen=True)
class EpisodeSpec:
    """Which episode to play: the seed, and optionally a fixed template and attack family.

    ``sample`` tells apart several plays of the same episode (same world, same task): it
    changes a sampling agent's random draws, not the episode. A trainer's group of G
    trajectories is G samples of one spec.
    """

    seed: int
    task: str | None = None
    attack: str | None = None
    sample: int = 0

    def options(self) -> dict[str, str]:
        return {k: v for k, v in (("task", self.task), ("attack", self.attack)) if v is not None}


@dataclass
class StepRecord:
    text: str
    action: Action | None
    format_error: str | None
    observation: str
    reward: float
    journal: list[JournalEntry]
    adversarial_spans: list[tuple[int, int]]
    reply: dict[str, Any] | None = None  # native protocol: the reply as received, every call in it


@dataclass
class Trajectory:
    spec: EpisodeSpec
    task: str
    kind: str
    attack: str | None
    messages: list[dict[str, Any]]
    steps: list[StepRecord] = field(default_factory=list)
    outcome: Outcome | None = None
    tokens: TokenTrace | None = None  # from LLM agents: the exact ids, and which are the agent's
    protocol: str = "text"
    generated_tokens: int | None = None  # native replies' token counts, where no trace has them

    @property
    def total_reward(self) -> float:
        return sum(s.reward for s in self.steps)


EnvFactory = Callable[[], ProtocolEnv[Any]]


@dataclass
class _Slot:
    privileged: bool
    env: ProtocolEnv[Any] | None = None
    make_env: EnvFactory | None = None  # the factory ``env`` came from: a slot keeps its env while it matches
    position: int = -1  # of the episode it plays, in the order given
    turn: Turn | None = None
    trajectory: Trajectory | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)  # the schemas the reset offered


def make_turn(
    env: ProtocolEnv[Any],
    observation: str,
    info: dict[str, Any],
    tools: list[dict[str, Any]],
    spec: EpisodeSpec,
    *,
    privileged: bool = False,
    slot: int = 0,
) -> Turn:
    """The turn an agent gets after ``env`` returned ``observation`` and ``info``: the env itself
    only when the agent is ``privileged``."""
    return Turn(
        observation=observation,
        messages=info["messages"],
        tools=tools,
        step=int(info["step"]),
        max_steps=env.step_budget,
        episode_seed=spec.seed,
        sample=spec.sample,
        slot=slot,
        truth=GroundTruth(env, info) if privileged else None,
    )


def rollout(
    agent: Agent, make_env: EnvFactory, episodes: Iterable[EpisodeSpec], batch_size: int = 16
) -> Iterator[Trajectory]:
    """Yield one finished trajectory per episode spec, in the order episodes finish."""
    for _, trajectory in rollout_mixed(agent, ((make_env, spec) for spec in episodes), batch_size):
        yield trajectory


def rollout_mixed(
    agent: Agent, episodes: Iterable[tuple[EnvFactory, EpisodeSpec]], batch_size: int = 16
) -> Iterator[tuple[int, Trajectory]]:
    """Episodes of several envs in one batch, each spec with its env's factory, so a batching
    agent fills its batch across envs instead of playing them one env at a time. Yields each
    episode's position in ``episodes`` with its trajectory, in the order episodes finish."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    queue = enumerate(episodes)
    slots = [_Slot(is_privileged(agent)) for _ in range(batch_size)]
    for slot in slots:
        _start(slot, queue)
    while any(slot.turn is not None for slot in slots):
        live = [slot for slot in slots if slot.turn is not None]
        replies = agent.act_batch([slot.turn for slot in live if slot.turn is not None])
        if len(replies) != len(live):
            raise RuntimeError(f"agent {agent.name!r} returned {len(replies)} replies for {len(live)} turns")
        for slot, reply in zip(live, replies, strict=True):
            finished = _advance(slot, reply)
            if finished is not None:
                yield slot.position, finished
                _start(slot, queue)


def _start(slot: _Slot, queue: Iterator[tuple[int, tuple[EnvFactory, EpisodeSpec]]]) -> None:
    job = next(queue, None)
    if job is None:
        slot.turn = slot.trajectory = None
        return
    position, (make_env, spec) = job
    if slot.env is None or slot.make_env is not make_env:
        slot.env, slot.make_env = make_env(), make_env
    slot.position = position
    observation, info = slot.env.reset(seed=spec.seed, options=spec.options())
    slot.tools = info["tools"]
    slot.turn = _turn(slot, observation, info, spec)
    slot.trajectory = Trajectory(
        spec=spec,
        task=info["task"],
        kind=info["kind"],
        attack=info["attack"],
        messages=info["messages"],
        protocol=info["protocol"],
    )


def _turn(slot: _Slot, observation: str, info: dict[str, Any], spec: EpisodeSpec) -> Turn:
    assert slot.env is not None
    return make_turn(slot.env, observation, info, slot.tools, spec, privileged=slot.privileged, slot=id(slot))


def _advance(slot: _Slot, reply: str | Action | Reply | NativeReply) -> Trajectory | None:
    assert slot.trajectory is not None and slot.env is not None
    if isinstance(reply, Reply):
        slot.trajectory.tokens = reply.trace or slot.trajectory.tokens
        reply = reply.text
    if isinstance(reply, NativeReply) and reply.tokens is not None:
        slot.trajectory.generated_tokens = (slot.trajectory.generated_tokens or 0) + reply.tokens
    observation, reward, terminated, truncated, info = slot.env.step(reply)
    if info["reply"] is not None:
        text = info["reply"]["content"]
    else:
        text = render(reply) if isinstance(reply, Action) else str(reply)
    slot.trajectory.steps.append(
        StepRecord(
            text=text,
            action=info["action"],
            format_error=info["format_error"],
            observation=observation,
            reward=reward,
            journal=info["journal"],
            adversarial_spans=info["adversarial_spans"],
            reply=info["reply"],
        )
    )
    slot.trajectory.messages = info["messages"]
    slot.turn = _turn(slot, observation, info, slot.trajectory.spec)
    if not (terminated or truncated):
        return None
    outcome: Outcome = info["outcome"]
    if slot.trajectory.tokens is not None:
        outcome = outcome.model_copy(update={"agent_tokens": slot.trajectory.tokens.agent_tokens})
    elif slot.trajectory.generated_tokens is not None:
        outcome = outcome.model_copy(update={"agent_tokens": slot.trajectory.generated_tokens})
    slot.trajectory.outcome = outcome
    return slot.trajectory
