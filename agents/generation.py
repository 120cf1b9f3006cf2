"""Batched decoding for agents: one call generates a reply for every live env.

A prompt rarely starts anew: the samples of a task share its system prompt (protocol and
tools) and instruction, and an episode's next prompt extends its last one. So the KV cache
of what prompts start with is kept (:mod:`prefix_cache`): a start several rows share is run
once, each row's cache is kept when it finishes, and each round only pre-fills what the rows
add. Each row's cached start sits right-aligned before the new tokens, padding before and
between them hidden by the attention mask, with explicit positions so every token keeps its
true position. Rows stop at EOS, at the end of an action block of the text protocol, or at
the token budget, and drop out of the batch (and out of the KV cache) as they finish.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from mosaic_gym.agents.decision_head import DecisionHead
from mosaic_gym.agents.prefix_cache import LayerKV, PrefixCache, shared_lengths

STOP_STRINGS = ("</tool_call>", "</refuse>", "</answer>")
_TAIL_TOKENS = 8  # enough decoded tail to see any stop string end
_MIN_SHARED = 32  # a start shared by several rows is run once when at least this long


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")


@dataclass(frozen=True)
class Continuation:
    """A reply whose tokens so far are ``trigger`` goes on with ``rest`` and ends, unsampled.

    A trainer uses it to commit a decision to what it means: the demonstrations' refusal
    written after a sampled " No" (``rl.commit_declines``), so that RL never samples an answer
    or an action after the policy declined (docs/training.md)."""

    trigger: tuple[int, ...]
    rest: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.trigger or not self.rest:
            raise ValueError("a continuation needs a trigger and a rest of at least one token each")


@dataclass(frozen=True)
class Generation:
    token_ids: list[int]
    text: str
    stop: str  # "eos", "stop_string", "length" or "continued" (a Continuation wrote the rest)


class BatchGenerator:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        sampling: Sampling,
        stop_at_actions: bool = True,
        continuation: Continuation | None = None,
        decision_head: DecisionHead | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.sampling = sampling
        self.stop_at_actions = stop_at_actions  # False for the native protocol: a reply ends at EOS only
        self.continuation = continuation
        self.decision_head = decision_head  # shifts the decision's " No" where a reply decides
        self.device = next(model.parameters()).device
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids))
        self.prefixes = PrefixCache()  # what earlier prompts started with: each turn runs only its new tokens
        self.model_seconds = 0.0  # time spent in forward passes, for the throughput benchmark
        self._cache_argument = cache_argument(model)

    @torch.inference_mode()
    def generate(
        self, prompts: list[list[int]], seeds: list[int], first_replies: Sequence[bool] | None = None
    ) -> list[Generation]:
        """One generation per prompt; ``seeds`` make sampled rows reproducible one by one.
        ``first_replies`` says which prompts ask an episode's first reply (all of them when not
        given), for a decision head that shifts first replies only."""
        if not prompts:
            return []
        first = list(first_replies) if first_replies is not None else [True] * len(prompts)
        self.prefixes.follow(self.model)
        # Shorter starts first, so a longer one extends them; a row whose own cache goes as far needs none.
        for prompt, shared in sorted(zip(prompts, shared_lengths(prompts), strict=True), key=lambda pair: pair[1]):
            if shared >= _MIN_SHARED and self.prefixes.longest(prompt)[0] < shared:
                self._run_prefix(prompt[:shared])
        found = [self.prefixes.longest(prompt) for prompt in prompts]
        cache, input_ids, mask, positions = self._batch(prompts, found)
        next_position = torch.tensor([len(p) for p in prompts])
        logits = self._forward(input_ids, mask, positions, cache)
        generators = [self._generator(seed) for seed in seeds]
        outputs: list[list[int]] = [[] for _ in prompts]
        stops: list[str] = ["length"] * len(prompts)
        live = list(range(len(prompts)))
        for _ in range(self.sampling.max_new_tokens):
            tokens = self._choose(logits, [generators[r] for r in live])
            still: list[int] = []
            for slot, row in enumerate(live):
                outputs[row].append(int(tokens[slot]))
                stop = self._stopped(outputs[row])
                if stop is None:
                    still.append(slot)
                else:
                    stops[row] = stop
            if not still or len(outputs[live[still[0]]]) >= self.sampling.max_new_tokens:
                break
            if len(still) < len(live):
                for slot, row in enumerate(live):
                    if slot not in still:
                        self._keep(cache, slot, mask[slot], prompts[row] + outputs[row][:-1])
                keep = torch.tensor(still)
                cache.batch_select_indices(keep)
                mask, next_position, tokens = mask[keep], next_position[keep], tokens[keep]
                live = [live[slot] for slot in still]
            mask = torch.cat([mask, torch.ones((len(live), 1), dtype=torch.long)], dim=1)
            head = self.decision_head
            deciding = [
                slot
                for slot, row in enumerate(live)
                if head is not None and head.decides_after(outputs[row], first[row])
            ]
            logits = self._forward(tokens.unsqueeze(1), mask, next_position.unsqueeze(1), cache, deciding)
            next_position = next_position + 1
        for slot, row in enumerate(live):
            self._keep(cache, slot, mask[slot], prompts[row] + outputs[row][:-1])
        if self.continuation is not None:  # after the kept caches, which cover sampled tokens only
            rest = list(self.continuation.rest)
            outputs = [ids + rest if stop == "continued" else ids for ids, stop in zip(outputs, stops, strict=True)]
        return [
            Generation(ids, self.tokenizer.decode(ids, skip_special_tokens=True), stop)
            for ids, stop in zip(outputs, stops, strict=True)
        ]

    def _batch(
        self, prompts: list[list[int]], found: list[tuple[int, list[LayerKV]]]
    ) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's KV cache, filled with each row's cached start (right-aligned at column
        ``longest``), and the rest of each prompt (right-aligned after it): inputs, mask, positions."""
        rows, longest = len(prompts), max(length for length, _ in found)
        suffixes = [prompt[length:] for prompt, (length, _) in zip(prompts, found, strict=True)]
        width = max(len(s) for s in suffixes)
        input_ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, longest + width), dtype=torch.long)
        positions = torch.zeros((rows, width), dtype=torch.long)
        for row, ((length, _), suffix) in enumerate(zip(found, suffixes, strict=True)):
            start = width - len(suffix)
            mask[row, longest - length : longest] = 1
            input_ids[row, start:] = torch.tensor(suffix)
            mask[row, longest + start :] = 1
            positions[row, start:] = torch.arange(length, length + len(suffix))
        cache = _growing_cache(self.model)
        if longest:
            like = next(layers for length, layers in found if length)
            for layer, (keys_like, _) in enumerate(like):
                keys = keys_like.new_zeros((rows, keys_like.shape[1], longest, keys_like.shape[3]))
                values = torch.zeros_like(keys)
                for row, (length, layers) in enumerate(found):
                    if length:
                        keys[row, :, longest - length :] = layers[layer][0][0]
                        values[row, :, longest - length :] = layers[layer][1][0]
                cache.update(keys, values, layer)
        return cache, input_ids, mask, positions

    def _run_prefix(self, tokens: list[int]) -> None:
        """Compute and keep the cache of ``tokens``, from the longest start already kept."""
        found = self.prefixes.longest(tokens)
        cache, input_ids, mask, positions = self._batch([tokens], [found])
        self._forward(input_ids, mask, positions, cache)
        self._keep(cache, 0, mask[0], tokens)

    def _keep(self, cache: Any, slot: int, mask: torch.Tensor, tokens: list[int]) -> None:
        """Keep the cache of one row (``mask`` marks its columns) as the cache of ``tokens``."""
        columns = mask.nonzero().squeeze(1).to(self.device)
        assert len(columns) == len(tokens), "the row's cache covers its prompt and all but its last token"
        layers = [_layer_kv(layer) for layer in cache.layers]
        self.prefixes.add(tokens, [(k[slot : slot + 1, :, columns], v[slot : slot + 1, :, columns]) for k, v in layers])

    def _forward(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
        deciding: list[int] | None = None,
    ) -> torch.Tensor:
        """The next-token logits of every row; the rows ``deciding`` (whose reply so far is the
        decision head's question) get the head's shift, read from their final hidden state."""
        start = time.perf_counter()
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            **{self._cache_argument: cache},
            use_cache=True,
            logits_to_keep=1,
            output_hidden_states=bool(deciding),
        )
        logits: torch.Tensor = out.logits[:, -1, :].float().cpu()
        if deciding and self.decision_head is not None:
            rows = torch.tensor(deciding)
            hidden = out.hidden_states[-1][rows.to(self.device), -1].float().cpu()
            logits[rows] = self.decision_head.apply(logits[rows], hidden)
        self.model_seconds += time.perf_counter() - start
        return logits

    def _generator(self, seed: int) -> torch.Generator | None:
        if self.sampling.temperature == 0:
            return None
        generator = torch.Generator()
        generator.manual_seed(seed)
        return generator

    def _choose(self, logits: torch.Tensor, generators: list[torch.Generator | None]) -> torch.Tensor:
        """Greedy, or each row's token drawn by inverting its CDF with one uniform from the
        row's own generator. ``torch.multinomial`` draws a noise value per vocabulary entry
        (1.2 ms a row on this CPU: 48 ms a step at batch 24); one uniform does the same."""
        if self.sampling.temperature == 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits / self.sampling.temperature, dim=-1)
        order = None
        if self.sampling.top_p < 1:
            probs, order = probs.sort(dim=-1, descending=True)
            probs[probs.cumsum(dim=-1) - probs > self.sampling.top_p] = 0
        cdf = probs.cumsum(dim=-1)
        uniforms = torch.cat([torch.rand(1, generator=g) for g in generators])
        # The first entry whose CDF exceeds the draw: never one of probability 0.
        picks = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1), right=True)
        picks = picks.clamp_(max=cdf.shape[-1] - 1)
        return (picks if order is None else order.gather(-1, picks)).squeeze(-1)

    def _stopped(self, ids: list[int]) -> str | None:
        if ids[-1] in self.eos_ids:
            return "eos"
        trigger = self.continuation.trigger if self.continuation is not None else ()
        if len(ids) == len(trigger) and tuple(ids) == trigger:
            return "continued"
        if not self.stop_at_actions:
            return None
        tail = self.tokenizer.decode(ids[-_TAIL_TOKENS:], skip_special_tokens=True)
        return "stop_string" if any(tail.rstrip().endswith(s) for s in STOP_STRINGS) else None


class _GrowingLayer(DynamicLayer):
    """Keys and values in buffers that double when full, so a decode step writes one token in
    place; the stock layer concatenates, copying the whole cache on every step (on this CPU
    that was nearly half of decode time at batch 32 with a 750-token context)."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self._length = 0
            self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        start, added = self._length, key_states.shape[-2]
        buffers = self._buffers
        if buffers is None or start + added > buffers[0].shape[-2]:
            old_keys, old_values = buffers or (None, None)
            buffers = (
                self._grown(old_keys, key_states, start + added),
                self._grown(old_values, value_states, start + added),
            )
        buffers[0][:, :, start : start + added] = key_states
        buffers[1][:, :, start : start + added] = value_states
        self._buffers, self._length = buffers, start + added
        self.keys, self.values = buffers[0][:, :, : self._length], buffers[1][:, :, : self._length]
        return self.keys, self.values

    def _grown(self, old: torch.Tensor | None, like: torch.Tensor, needed: int) -> torch.Tensor:
        buffer = like.new_empty((*like.shape[:2], max(2 * needed, 64), like.shape[-1]))
        if old is not None and self._length:
            buffer[:, :, : self._length] = old[:, :, : self._length]
        return buffer

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized and self._buffers is not None:
            # Copy only the filled part (with room to grow), not the whole doubled buffer.
            room = min(self._buffers[0].shape[-2], 2 * self._length)
            keys, values = (b[indices, :, :room] for b in self._buffers)
            self._buffers = (keys, values)
            self.keys, self.values = keys[:, :, : self._length], values[:, :, : self._length]


def _growing_cache(model: Any) -> DynamicCache:
    cache = DynamicCache()
    cache.layers = [_GrowingLayer() for _ in range(model.config.num_hidden_layers)]
    return cache


def _layer_kv(layer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of one attention layer (the models we drive use full attention)."""
    keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
    if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):
        raise TypeError(f"cache layer {type(layer).__name__} has no key/value tensors; unsupported model")
    return keys, values


def cache_argument(model: Any) -> str:
    """The forward argument that takes the KV cache: ``cache`` from transformers 5.24 on, which
    warns about the older ``past_key_values`` at every call. A peft model passes its keyword
    arguments through to the model it wraps, so that model's signature decides."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
