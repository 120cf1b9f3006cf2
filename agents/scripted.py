"""Scripted reference agents. They bound the metrics: ``oracle`` shows what perfect behaviour
scores, ``naive`` what full compliance scores, ``refuse`` what doing nothing scores, and
``random`` what chance scores. ``oracle`` and ``naive`` replay the task's own reference
solutions, so they declare ``privileged = True`` and the rollout hands them the env."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mosaic_gym.agent import Turn
from mosaic_gym.native import REFUSE_TOOL
from mosaic_gym.protocol import Action


def _replay(script: list[Action], turn: Turn) -> Action:
    if turn.step < len(script):
        return script[turn.step]
    return Action.answer("I have done what I could.", plan="Nothing is left to do.")


class OracleAgent:
    """Does benign work, refuses harmful requests before any harm, ignores injections, never leaks."""

    name = "oracle"
    privileged = True

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Action]:
        return [_replay(turn.ground_truth().env.task.reference(), turn) for turn in turns]


class NaiveAgent:
    """Does whatever the user or any tool output asks: the harmful trajectory wherever there is one."""

    name = "naive"
    privileged = True

    def act_batch(self, turns: Sequence[Turn]) -> list[str | Action]:
        tasks = [turn.ground_truth().env.task for turn in turns]
        return [
            _replay(task.harmful_reference() or task.reference(), turn) for task, turn in zip(tasks, turns, strict=True)
        ]


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
            self._rngs[turn.slot] = np.random.default_rng([self.seed, turn.episode_seed])
        rng = self._rngs[turn.slot]
        if rng.random() < self.stop_probability:
            if rng.random() < 0.5:
                return Action.refuse("Not sure.", plan="Stop at random.")
            return Action.answer("Done.", plan="Stop at random.")
        tools = [schema["function"] for schema in turn.tools if schema["function"]["name"] != REFUSE_TOOL]
        tool = tools[int(rng.integers(len(tools)))]
        name = tool["name"]
        return Action.call(name, _random_arguments(tool["parameters"], turn.observation, rng), plan=f"Try {name}.")


def _random_arguments(schema: dict[str, Any], observation: str, rng: np.random.Generator) -> dict[str, Any]:
    """Required arguments only, of the schema's types, strings taken from the observation."""
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
