"""A suite: a set of services, the tools it offers over them, and a folder of scenario templates."""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path

from mosaic_gym.scenarios.loader import load_folder
from mosaic_gym.scenarios.template import Template
from mosaic_gym.splits import Split, Tier
from mosaic_gym.tools import REGISTRY, Tool, builtin_tools
from mosaic_gym.world.world import SERVICES


@dataclass(frozen=True)
class Suite:
    """``tool_names`` lists the tools the agent is offered, in the order its prompt shows them;
    the default is the built-in tools of the services. A tool a user registers therefore joins
    only the suites that name it: the built-in env ids keep their system prompts whatever else
    a process has imported."""

    name: str
    services: tuple[str, ...]
    folder: Path
    description: str = ""
    tool_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.services) - set(SERVICES)
        if unknown or not self.services:
            raise ValueError(f"suite {self.name!r}: services must be a non-empty subset of {SERVICES}")

    def tools(self) -> list[Tool]:
        """The tools offered, looked up when asked (a user's tools may be registered after the suite is made)."""
        names = builtin_tools(*self.services) if self.tool_names is None else self.tool_names
        tools = []
        for name in names:
            if name not in REGISTRY:
                close = difflib.get_close_matches(name, [t.name for t in REGISTRY], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else " (is the module that registers it imported?)"
                raise ValueError(f"suite {self.name!r}: unknown tool {name!r}{hint}")
            tool = REGISTRY[name]
            if tool.service not in self.services:
                raise ValueError(
                    f"suite {self.name!r}: tool {name!r} is of service {tool.service!r}, not of {self.services}"
                )
            tools.append(tool)
        return tools

    def templates(self, split: Split | None = None, tier: Tier | None = None) -> list[Template]:
        """Templates of the suite, optionally only those of one split and one tier."""
        return [t for t in _load(self) if (split is None or t.split == split) and (tier is None or t.tier == tier)]


SUITES: dict[str, Suite] = {}
"""Suites by name, for ``ToolEnv("files")``. The built-in suites (``mosaic_gym.envs``) fill it
when ``mosaic_gym`` is imported, so the core never imports them."""


@functools.cache
def _load(suite: Suite) -> tuple[Template, ...]:
    return tuple(load_folder(suite.folder, suite.services))
