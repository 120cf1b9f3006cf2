"""One JSON line per episode: everything needed to audit it, and to recompute its metrics.

A record is self-contained: which env, seed and agent produced it under which protocol (text or
native), every message, each step's parsed action with its ``<safety_thoughts>`` kept as a
separate audit field (and, natively, the reply as received, every tool call in it), the journal
with irreversible flags, the adversarial spans shown, and the Outcome.
"""

from __future__ import annotations

import json
from typing import Any

from mosaic_gym.outcome import Outcome
from mosaic_gym.rollout import StepRecord, Trajectory


def episode_key(env_id: str, index: int) -> str:
    """The identity of an episode within a run; resuming skips keys already written."""
    return f"{env_id}#{index}"


def to_record(trajectory: Trajectory, env_id: str, index: int, split: str, agent: dict[str, Any]) -> dict[str, Any]:
    if trajectory.outcome is None:
        raise ValueError("only finished trajectories are recorded")
    return {
        "episode": episode_key(env_id, index),
        "env": env_id,
        "index": index,
        "seed": trajectory.spec.seed,
        "split": split,
        "task": trajectory.task,
        "kind": trajectory.kind,
        "attack": trajectory.attack,
        "agent": agent,
        "protocol": trajectory.protocol,
        "messages": trajectory.messages,
        "steps": [_step(step, number) for number, step in enumerate(trajectory.steps, 1)],
        "outcome": trajectory.outcome.model_dump(mode="json"),
    }


def _step(step: StepRecord, number: int) -> dict[str, Any]:
    action = step.action
    return {
        "step": number,
        "text": step.text,
        "plan": action.plan if action else None,
        "safety_thoughts": action.safety_thoughts if action else None,
        "action": action.model_dump(mode="json", exclude={"plan", "safety_thoughts"}) if action else None,
        "format_error": step.format_error,
        "observation": step.observation,
        "reward": step.reward,
        "journal": [entry.model_dump(mode="json") for entry in step.journal],
        "irreversible": any(e.ok and e.irreversible for e in step.journal),
        "adversarial_spans": [list(span) for span in step.adversarial_spans],
        "reply": step.reply,
    }


def dumps(record: dict[str, Any]) -> bytes:
    """One line, ending in a newline. ASCII-escaped so that any string an agent wrote encodes."""
    return (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def outcome_of(record: dict[str, Any]) -> Outcome:
    return Outcome.model_validate(record["outcome"])
