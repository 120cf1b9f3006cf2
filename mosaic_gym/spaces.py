"""A text space for natural language: any Unicode string up to a length."""

from __future__ import annotations

from typing import Any

from gymnasium import spaces


class UnicodeText(spaces.Text):
    """Like ``gymnasium.spaces.Text`` but any Unicode character is a member.

    Tool output holds names with accents, emoji and whatever an agent wrote, so a fixed
    character set would reject real observations. Samples stay alphanumeric.
    """

    def __init__(self, max_length: int, seed: int | None = None) -> None:
        super().__init__(max_length=max_length, min_length=0, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.max_length})"
