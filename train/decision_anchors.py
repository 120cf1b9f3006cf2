"""Fixed first replies of the training tasks, where the decision's level is held after each step.

With ``rl.decision_level_reset`` the level (the mean decision margin) is put back after each
optimizer step at the frozen copy's. Held on the decisions the step itself read, it is held on
the training mix: with ``rl.kinds`` half the groups are harmful, and with a replay the same few
contexts the head has just been fitted to. In session 19 the level held there exactly while
every kind's P(" No") on new tasks sank (benign 0.23 → 0.03 in three steps). With
``rl.decision_level_anchors: N`` it is held instead on the first reply of N instances of every
training template: contexts the ranking never trains on, each kind in its share of the suites,
as a held-out split mixes them. No kind is read: the anchors carry no label, unless
``rl.decision_level_anchor_kinds`` keeps the templates of some kinds only.

A suite's anchors share its system prompt, most of each context (550-800 of 640-900 tokens on
the starter tier), so :func:`anchor_states` runs each shared prefix once and each anchor's rest
on its keys and values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mosaic_gym.agents.decision import decision_tokens
from mosaic_gym.agents.generation import cache_argument
from mosaic_gym.splits import TierChoice
from mosaic_gym.train.decision_points import DecisionReads, decision_reads, dropout_off
from mosaic_gym.train.first_replies import first_replies


@dataclass(frozen=True)
class Anchors:
    """The anchors' decisions, each one's weight in the level, and the index in ``tiers`` of
    the tier each anchor's template is of."""

    reads: DecisionReads
    weights: list[Any]
    tier_of: tuple[int, ...]
    tiers: tuple[TierChoice, ...]


def anchor_reads(
    tokenizer: Any,
    envs: Sequence[str],
    tiers: Sequence[TierChoice],
    instances: int,
    kinds: Sequence[str] = (),
) -> Anchors:
    """The decision of the first reply of ``instances`` instances (seeds 0, 1, ...) of every
    train-split template of ``envs`` at each of ``tiers`` (of ``kinds`` only, when given): its
    prompt as a rollout lays it out, then the demonstrations' question, whose next token
    decides. With each read its weight in the level: each tier weighs alike, however many
    templates it has, and within a tier each anchor alike, so the weighted sum of their margins
    is the mean of the tiers' means."""
    import torch

    if instances < 1:
        raise ValueError(f"anchors need at least one instance per template, not {instances}")
    if not tiers:
        raise ValueError("anchors need at least one tier")
    question, _ = decision_tokens(tokenizer)
    prompts, weights, tier_of = [], [], []
    for index, tier in enumerate(tiers):
        instances_at = first_replies(tokenizer, envs, "train", tier, instances)
        tier_prompts = [instance.prompt for instance in instances_at if not kinds or instance.kind in kinds]
        if not tier_prompts:
            of = f"{list(envs)} of kinds {list(kinds)}" if kinds else f"{list(envs)}"
            raise ValueError(f"no train-split templates of {of} at tier {tier!r} to hold the level on")
        prompts += tier_prompts
        weights += [torch.full((1,), 1.0 / (len(tiers) * len(tier_prompts)))] * len(tier_prompts)
        tier_of += [index] * len(tier_prompts)
    reads = decision_reads(prompts, [question] * len(prompts), [[len(question)]] * len(prompts))
    return Anchors(reads, weights, tuple(tier_of), tuple(tiers))


def anchor_states(model: Any, reads: DecisionReads) -> list[Any]:
    """The final hidden states at each anchor's decisions (``[n, hidden]`` per anchor), without
    grad or dropout, as :func:`~mosaic_gym.train.decision_points.read_states` reads them. The
    anchors run in sorted order, each from the keys and values of what it shares with the one
    before: every distinct prefix runs once."""
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    keyword = cache_argument(model)
    states: list[Any] = [None] * len(reads.sequences)
    cache, held = DynamicCache(), list[int]()
    with torch.no_grad(), dropout_off(model):
        for play in sorted(range(len(reads.sequences)), key=lambda play: reads.sequences[play]):
            ids, rows = reads.sequences[play], reads.rows(play)
            keep = min([_shared_length(held, ids), *rows])  # the rows' tokens run again
            if keep == 0:
                cache = DynamicCache()
            elif keep < len(held):
                cache.crop(keep - len(held))  # drops the previous anchor's own tokens
            rest = torch.tensor([ids[keep:]], device=device)
            out = model(input_ids=rest, output_hidden_states=True, use_cache=True, logits_to_keep=1, **{keyword: cache})
            states[play] = out.hidden_states[-1][0, [row - keep for row in rows]]
            held = ids
    return states


def _shared_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens ``a`` and ``b`` both start with."""
    for position, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return position
    return min(len(a), len(b))
