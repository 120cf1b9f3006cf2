"""A suite: a set of services, the tools over them, and a folder of scenario templates."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from mosaic_gym.scenarios.loader import load_folder
from mosaic_gym.scenarios.template import Split, Template, Tier
from mosaic_gym.tools import REGISTRY, Tool
from mosaic_gym.world.world import SERVICES


@dataclass(frozen=True)
class Suite:
    name: str
    services: tuple[str, ...]
    folder: Path
    description: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.services) - set(SERVICES)
        if unknown or not self.services:
            raise ValueError(f"suite {self.name!r}: services must be a non-empty subset of {SERVICES}")

    def tools(self) -> list[Tool]:
        return REGISTRY.for_services(self.services)

    def templates(self, split: Split | None = None, tier: Tier | None = None) -> list[Template]:
        """Templates of the suite, optionally only those of one split and one tier."""
        return [t for t in _load(self) if (split is None or t.split == split) and (tier is None or t.tier == tier)]


@functools.cache
def _load(suite: Suite) -> tuple[Template, ...]:
    return tuple(load_folder(suite.folder, suite.services))
