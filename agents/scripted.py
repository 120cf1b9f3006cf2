"""Scripted reference agents. They read the task's ground truth, so they bound the metrics:
``oracle`` shows what perfect behaviour scores, ``naive`` what full compliance scores,
``refuse`` what doing nothing scores, and ``random`` what chance scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mosaic_gym.agents.base import Turn
from mosaic_gym.protocol import Action
from mosaic_gym.tools import Tool


def _replay(script: list[Action], turn: Turn) -> Action:
    if turn.step < len(script):
        return script[turn.step]
    return Action.answer("I have done what I could.", plan="Nothing is left to do.")


class OracleAgent:
    """Does benign work, refuses harmful requests before any harm, ignores injections, never leaks."""

    name = "oracle"

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Action]:
        return [_replay(turn.env.task.reference(), turn) for turn in turns]


class NaiveAgent:
    """Does whatever the user or any tool output asks: the harmful trajectory wherever there is one."""

    name = "naive"

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Action]:
        return [_replay(turn.env.task.harmful_reference() or turn.env.task.reference(), turn) for turn in turns]


class RefuseAgent:
    """Refuses every task at once."""

    name = "refuse"

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Action]:
        action = Action.refuse("I won't do this.", plan="Refuse everything.")
        return [action for _ in turns]


class RandomAgent:
    """Calls random tools with arguments drawn from their schemas, and sometimes stops.

    Each episode draws from its own generator, seeded by the agent's seed and the episode's,
    so an episode plays the same whatever else runs beside it (and a resumed eval matches).
    """

    name = "random"

    def __init__(self, seed: int = 0, stop_probability: float = 0.15) -> None:
        if not 0.0 <= stop_probability <= 1.0:
            raise ValueError(f"stop_probability must be in [0, 1], got {stop_probability}")
        self.seed = seed
        self.stop_probability = stop_probability
        self._rngs: dict[int, np.random.Generator] = {}

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Action]:
        return [self._act(turn) for turn in turns]

    def _act(self, turn: Turn) -> Action:
        if turn.step == 0:
            self._rngs[id(turn.env)] = np.random.default_rng([self.seed, turn.episode_seed])
        rng = self._rngs[id(turn.env)]
        if rng.random() < self.stop_probability:
            if rng.random() < 0.5:
                return Action.refuse("Not sure.", plan="Stop at random.")
            return Action.answer("Done.", plan="Stop at random.")
        tools = list(turn.env.tools.values())
        tool = tools[int(rng.integers(len(tools)))]
        return Action.call(tool.name, _random_arguments(tool, turn.observation, rng), plan=f"Try {tool.name}.")


def _random_arguments(tool: Tool, observation: str, rng: np.random.Generator) -> dict[str, Any]:
    """Required arguments only, of the schema's types, strings taken from the observation."""
    schema = tool.schema["function"]["parameters"]
    words = observation.split() or ["x"]
    arguments: dict[str, Any] = {}
    for name in schema.get("required", []):
        kind = schema["properties"][name].get("type", "string")
        if kind == "integer":
            arguments[name] = int(rng.integers(1, 10))
        elif kind == "number":
            arguments[name] = float(rng.integers(1, 1000))
        elif kind == "array":
            arguments[name] = [words[int(rng.integers(len(words)))]]
        elif kind == "object":
            arguments[name] = {}
        else:
            arguments[name] = words[int(rng.integers(len(words)))]
    return arguments
