"""Every env by name: the built-in suites and AgentDojo's, for evaluation and the trainer.

A name is what a training config lists (``payments``, ``agentdojo-banking``); an id is what
Gymnasium and ``mosaic-gym eval --env`` take (``mosaic_gym/Payments-v0``). The AgentDojo
envs need the ``[agentdojo]`` extra: :func:`check_available` says so in one line.
"""

from __future__ import annotations

from typing import Any

from mosaic_gym import agentdojo
from mosaic_gym.env import ProtocolEnv, ToolEnv
from mosaic_gym.envs import ENV_IDS as SUITE_ENV_IDS

ENV_IDS: dict[str, str] = {**SUITE_ENV_IDS, **agentdojo.ENV_IDS}
NAME_OF: dict[str, str] = {env_id: name for name, env_id in ENV_IDS.items()}


def check_available(name: str) -> None:
    """Raise :class:`~mosaic_gym.agentdojo.AgentDojoMissing` if env ``name`` needs a missing extra."""
    if name in agentdojo.ENV_IDS:
        agentdojo.require()


def make_env(
    name: str, *, split: str = "train", tier: str = "all", max_steps: int | None = None, protocol: str = "text"
) -> ProtocolEnv[Any]:
    """The env of this name; ``max_steps=None`` keeps the env's own budget."""
    options: dict[str, Any] = {"split": split, "tier": tier, "protocol": protocol}
    if max_steps is not None:
        options["max_steps"] = max_steps
    if name in agentdojo.ENV_IDS:
        env: ProtocolEnv[Any] = agentdojo.make_env(agentdojo.suite_of(name), **options)
        return env
    return ToolEnv(name, **options)
