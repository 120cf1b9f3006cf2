"""Which templates and attack families an episode may draw: splits and tiers, declared once.

Templates and attack families each belong to one split (``train`` or ``heldout``: held-out
ones never appear in training episodes) and templates to one tier (``starter``: 1-3 tool
calls; ``standard``: multi-step). An env, an eval or a trainer picks a split and a tier, or
``all``.
"""

from __future__ import annotations

import typing
from typing import Literal

Split = Literal["train", "heldout"]
SplitChoice = Literal["train", "heldout", "all"]
Tier = Literal["starter", "standard"]
TierChoice = Literal["starter", "standard", "all"]

SPLITS: tuple[Split, ...] = typing.get_args(Split)
SPLIT_CHOICES: tuple[SplitChoice, ...] = typing.get_args(SplitChoice)
TIER_CHOICES: tuple[TierChoice, ...] = typing.get_args(TierChoice)


def check_choices(split: str, tier: str) -> None:
    """Fail fast on a split or tier an env cannot draw from, naming the choices."""
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    if tier not in TIER_CHOICES:
        raise ValueError(f"tier must be one of {', '.join(TIER_CHOICES)}, got {tier!r}")
