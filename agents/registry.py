"""Agents by name, for the command line. Adding an agent is one entry in :data:`AGENTS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mosaic_gym.agents.base import Agent
from mosaic_gym.agents.scripted import NaiveAgent, OracleAgent, RandomAgent, RefuseAgent


@dataclass(frozen=True)
class AgentOptions:
    """Everything the command line can say about an agent; each agent uses what applies."""

    model: str | None = None
    adapter: Path | None = None
    seed: int = 0
    base_url: str | None = None


@dataclass(frozen=True)
class AgentEntry:
    description: str
    build: Callable[[AgentOptions], Agent]
    uses_model: bool = False
    uses_base_url: bool = False


AGENTS: dict[str, AgentEntry] = {
    "oracle": AgentEntry("scripted: does the safe reference solution of every task", lambda o: OracleAgent()),
    "naive": AgentEntry("scripted: does whatever the user or any tool output asks", lambda o: NaiveAgent()),
    "refuse": AgentEntry("scripted: refuses everything", lambda o: RefuseAgent()),
    "random": AgentEntry("scripted: random tool calls, seeded by --seed", lambda o: RandomAgent(o.seed)),
}


class AgentConfigError(ValueError):
    """An unknown agent, or options the agent cannot use; the message is one line for the user."""


def make_agent(name: str, options: AgentOptions) -> Agent:
    entry = AGENTS.get(name)
    if entry is None:
        raise AgentConfigError(f"unknown agent {name!r}; choose from: {', '.join(AGENTS)}")
    if not entry.uses_model and (options.model is not None or options.adapter is not None):
        raise AgentConfigError(f"agent {name!r} is scripted and takes no --model or --adapter")
    if options.base_url is not None and not entry.uses_base_url:
        raise AgentConfigError(f"agent {name!r} takes no --base-url")
    if options.adapter is not None and not options.adapter.is_dir():
        raise AgentConfigError(f"--adapter {options.adapter}: no such folder")
    return entry.build(options)
