"""Keys and values of token sequences the generator has already run, to start prompts from.

An episode's next prompt is its last prompt, the reply, then the observation; the G samples
of a task start with the same system prompt and instruction. Kept here, the cache of what a
prompt starts with is read back instead of computed again, so each turn runs only the tokens
it adds. The entries hold the weights they were computed under: when the model's weights
change in place (an optimizer step), every entry is dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

LayerKV = tuple[torch.Tensor, torch.Tensor]  # keys and values of one layer: [1, heads, tokens, dim]

DEFAULT_BUDGET_BYTES = 2 * 2**30


class PrefixCache:
    """Least-recently-used entries, token sequence -> per-layer keys and values, within a byte budget."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be at least 0, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[tuple[int, ...], list[LayerKV]] = OrderedDict()
        self._bytes = 0
        self._weights: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def follow(self, model: Any) -> None:
        """Drop every entry if ``model``'s weights were written since the entries were made
        (:func:`weight_versions`, which reads no weight)."""
        weights = weight_versions(model)
        if weights != self._weights:
            self._entries.clear()
            self._bytes = 0
            self._weights = weights

    def longest(self, tokens: Sequence[int]) -> tuple[int, list[LayerKV]]:
        """The longest entry that ``tokens`` starts with and goes beyond by at least one token
        (the one whose logits are wanted): its length and tensors, or ``(0, [])``."""
        best: tuple[int, ...] = ()
        for key in self._entries:
            if len(best) < len(key) < len(tokens) and tuple(tokens[: len(key)]) == key:
                best = key
        if not best:
            return 0, []
        self._entries.move_to_end(best)
        return len(best), self._entries[best]

    def add(self, tokens: Sequence[int], layers: list[LayerKV]) -> None:
        """Keep ``layers`` as the cache of ``tokens``, dropping the least recently used entries
        to stay within the budget (an entry larger than the whole budget is not kept)."""
        key = tuple(tokens)
        size = _size(layers)
        if not key or key in self._entries or size > self.budget_bytes:
            return
        self._entries[key] = layers
        self._bytes += size
        while self._bytes > self.budget_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= _size(dropped)


def weight_versions(model: Any) -> tuple[int, ...]:
    """The version counter of every weight of ``model``: each in-place write to a weight (an
    optimizer step, a loaded state dict) bumps its own, so two readings differ exactly when a
    weight was written between them."""
    return tuple(parameter._version for parameter in model.parameters())


def _size(layers: list[LayerKV]) -> int:
    return sum(keys.nbytes + values.nbytes for keys, values in layers)


def shared_lengths(prompts: Sequence[Sequence[int]]) -> list[int]:
    """For each prompt, how long a start it shares with another prompt of the batch, leaving
    both at least one token: such a start (a task's system prompt and instruction) is worth
    running once for several rows."""
    # In sorted order, the prompt sharing the longest start with a prompt is next to it.
    order = sorted(range(len(prompts)), key=lambda i: tuple(prompts[i]))
    lengths = [0] * len(prompts)
    for k, i in enumerate(order):
        for j in (k - 1, k + 1):
            if 0 <= j < len(order):
                lengths[i] = max(lengths[i], _shared(prompts[i], prompts[order[j]]))
    return lengths


def _shared(a: Sequence[int], b: Sequence[int]) -> int:
    limit = min(len(a), len(b)) - 1
    return min(next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), limit), limit)
