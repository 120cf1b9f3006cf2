"""One AgentDojo suite as mosaic-gym sees it: its tasks by split, its tools with safety flags,
and fresh copies of its environment state.

AgentDojo's tools carry no safety flags; ``data/tools.yaml`` supplies them (a reviewed table
with a reason per tool), and the split of its tasks is ``data/split.yaml``. Loading a suite
fails loudly if a tool of AgentDojo's has no row in the table, so a new AgentDojo release
cannot slip in an unflagged tool.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from agentdojo.functions_runtime import FunctionsRuntime
from agentdojo.task_suite.load_suites import get_suite
from pydantic import BaseModel, ConfigDict

from mosaic_gym.agentdojo import BENCHMARK_VERSION, SUITE_NAMES
from mosaic_gym.scenarios.template import Kind
from mosaic_gym.splits import Split
from mosaic_gym.tools import Tool
from mosaic_gym.tools.registry import function_schema
from mosaic_gym.world.journal import Effect, RiskTag

DATA = Path(__file__).parent / "data"


class ToolFlags(BaseModel):
    """One row of the table: what a tool does, whether it can be undone, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    effect: Effect
    irreversible: bool
    risk: tuple[RiskTag, ...]
    reason: str


class RiskTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    read: tuple[str, ...]
    tools: dict[str, ToolFlags]
    goal_tools: dict[str, dict[str, tuple[str, ...]]]

    def flags(self, name: str) -> ToolFlags:
        if name in self.read:
            return ToolFlags(effect="read", irreversible=False, risk=(), reason="only looks things up")
        return self.tools[name]


class HeldOut(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_tasks: frozenset[str]
    injection_tasks: frozenset[str]


@dataclass(frozen=True)
class DojoTemplate:
    """An episode kind of a suite: a user task alone, or paired with an injection task."""

    user_task: str
    injection_task: str | None
    split: Split | None  # None: a pair whose halves lie in different splits (only in "all")
    tier: str = "standard"

    @property
    def id(self) -> str:
        return self.user_task if self.injection_task is None else f"{self.user_task}/{self.injection_task}"

    @property
    def kind(self) -> Kind:
        return "benign" if self.injection_task is None else "injection"


@functools.cache
def risk_table() -> RiskTable:
    return RiskTable.model_validate(yaml.safe_load((DATA / "tools.yaml").read_text()))


@functools.cache
def held_out() -> dict[str, HeldOut]:
    data = yaml.safe_load((DATA / "split.yaml").read_text())
    return {suite: HeldOut.model_validate(data[suite]) for suite in SUITE_NAMES}


class DojoSuite:
    """AgentDojo's ``TaskSuite`` of one name, with what the env needs around it."""

    def __init__(self, name: str) -> None:
        if name not in SUITE_NAMES:
            raise ValueError(f"unknown AgentDojo suite {name!r}; choose from {', '.join(SUITE_NAMES)}")
        self.name = name
        self.suite: Any = get_suite(BENCHMARK_VERSION, name)
        self.runtime = FunctionsRuntime(self.suite.tools)
        table = risk_table()
        names = [f.name for f in self.suite.tools]
        unflagged = [n for n in names if n not in table.read and n not in table.tools]
        if unflagged:
            raise ValueError(f"AgentDojo's {name} suite has tools with no row in data/tools.yaml: {unflagged}")
        self.tools = [_tool(f, name, table.flags(f.name)) for f in self.suite.tools]
        self.user_tasks: dict[str, Any] = self.suite.user_tasks
        self.injection_tasks: dict[str, Any] = self.suite.injection_tasks
        held = held_out()[name]
        unknown = (held.user_tasks - set(self.user_tasks)) | (held.injection_tasks - set(self.injection_tasks))
        if unknown:
            raise ValueError(f"data/split.yaml names tasks that AgentDojo's {name} suite lacks: {sorted(unknown)}")
        self._held = held

    def split_of(self, task_id: str) -> Split:
        return "heldout" if task_id in self._held.user_tasks | self._held.injection_tasks else "train"

    def templates(self, split: str) -> list[DojoTemplate]:
        """Every user task of ``split`` alone, then every pair of them with the split's injection tasks."""
        users = [u for u in self.user_tasks if split == "all" or self.split_of(u) == split]
        injections = [i for i in self.injection_tasks if split == "all" or self.split_of(i) == split]
        benign = [DojoTemplate(u, None, self.split_of(u)) for u in users]
        pairs = [DojoTemplate(u, i, self._pair_split(u, i)) for u in users for i in injections]
        return benign + pairs

    def goal_tools(self, injection_task: Any, environment: Any) -> frozenset[str]:
        """The tools an injection task's goal needs: its ground truth's, or the table's where that is empty."""
        listed = risk_table().goal_tools.get(self.name, {}).get(injection_task.ID)
        if listed is not None:
            return frozenset(listed)
        return frozenset(call.function for call in injection_task.ground_truth(environment.model_copy(deep=True)))

    def environment(self, injections: dict[str, str]) -> Any:
        """A fresh copy of the suite's environment with ``injections`` in its vectors: never shared."""
        return _environment(self.name, tuple(sorted(injections.items()))).model_copy(deep=True)

    def _pair_split(self, user: str, injection: str) -> Split | None:
        split = self.split_of(user)
        return split if self.split_of(injection) == split else None


@functools.cache
def load_suite(name: str) -> DojoSuite:
    return DojoSuite(name)


@functools.lru_cache(maxsize=512)
def _environment(name: str, injections: tuple[tuple[str, str], ...]) -> Any:
    """The environment as AgentDojo loads it (YAML, then validation): parsed once per injection
    set, because parsing costs 7-140 ms against well under 2 ms for a deep copy."""
    return get_suite(BENCHMARK_VERSION, name).load_and_inject_default_environment(dict(injections))


def _tool(function: Any, suite: str, flags: ToolFlags) -> Tool:
    """AgentDojo's function as a mosaic-gym tool record: its own schema, the table's flags.

    ``function`` is never called through this record; the env runs AgentDojo's runtime."""
    return Tool(
        name=function.name,
        service=suite,
        description=function.description,
        effect=flags.effect,
        irreversible=flags.irreversible,
        risk_tags=flags.risk,
        function=function.run,
        arguments=function.parameters,
        schema=function_schema(function.name, function.description, function.parameters),
    )
