"""Fixed first replies of the training tasks, where the decision's level is held after each step.

With ``rl.decision_level_reset`` the level (the mean decision margin) is put back after each
optimizer step at the frozen copy's. Held on the decisions the step itself read, it is held on
the training mix: with ``rl.kinds`` half the groups are harmful, and with a replay the same few
contexts the head has just been fitted to. In session 19 the level held there exactly while
every kind's P(" No") on new tasks sank (benign 0.23 → 0.03 in three steps). With
``rl.decision_level_anchors: N`` it is held instead on the first reply of N instances of every
training template: contexts the ranking never trains on, each kind in its share of the suites,
as a held-out split mixes them. No kind is read: the anchors carry no label.

A suite's anchors share its system prompt, most of each context (550-800 of 640-900 tokens on
the starter tier), so :func:`anchor_states` runs it once and each anchor's rest on its keys and
values: about a sixth of reading each one whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mosaic_gym.agents.decision import decision_tokens
from mosaic_gym.agents.generation import cache_argument
from mosaic_gym.agents.transcript import TranscriptBuilder
from mosaic_gym.catalog import make_env
from mosaic_gym.train.decision_points import DecisionReads, decision_reads, dropout_off

SHARED_AT_LEAST = 64  # tokens two anchors must share for the second to start from the first's keys and values


def anchor_reads(tokenizer: Any, envs: Sequence[str], tier: str, max_steps: int, instances: int) -> DecisionReads:
    """The decision of the first reply of ``instances`` instances (seeds 0, 1, ...) of every
    train-split template of ``envs`` at ``tier``: its prompt as a rollout lays it out, then the
    demonstrations' question, whose next token decides."""
    if instances < 1:
        raise ValueError(f"anchors need at least one instance per template, not {instances}")
    question, _ = decision_tokens(tokenizer)
    transcripts = TranscriptBuilder(tokenizer)
    prompts = []
    for suite in envs:
        env = make_env(suite, split="train", tier=tier, max_steps=max_steps)
        for template in env.templates:
            for seed in range(instances):
                _, info = env.reset(seed=seed, options={"task": template.id})
                prompts.append(transcripts.start(info["messages"]).ids)
    return decision_reads(prompts, [question] * len(prompts), [[len(question)]] * len(prompts))


def uniform_weights(reads: DecisionReads) -> list[Any]:
    """Each anchor's weight in the level: their mean margin is then ``weighted_sum(weights, margins)``."""
    import torch

    count = len(reads.sequences)
    return [torch.full((len(positions),), 1.0 / count) for positions in reads.positions]


def anchor_states(model: Any, reads: DecisionReads) -> list[Any]:
    """The final hidden states at each anchor's decisions (``[n, hidden]`` per anchor), without
    grad or dropout, as :func:`~mosaic_gym.train.decision_points.read_states` reads them: each
    run of consecutive anchors that share a prefix runs it once, then each anchor's rest."""
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    keyword = cache_argument(model)
    states: list[Any] = []
    with torch.no_grad(), dropout_off(model):
        for run in _sharing_runs(reads):
            shared = _shared_length([reads.sequences[play] for play in run])
            shared = min([shared, *(row for play in run for row in reads.rows(play))])  # rows stay in the rest
            prefix = DynamicCache()
            start = torch.tensor([reads.sequences[run[0]][:shared]], device=device)
            model(input_ids=start, use_cache=True, logits_to_keep=1, **{keyword: prefix})
            for play in run:
                rest = torch.tensor([reads.sequences[play][shared:]], device=device)
                out = model(
                    input_ids=rest, output_hidden_states=True, use_cache=True, logits_to_keep=1, **{keyword: prefix}
                )
                states.append(out.hidden_states[-1][0, [row - shared for row in reads.rows(play)]])
                prefix.crop(-rest.size(1))  # back to the prefix alone
    return states


def _sharing_runs(reads: DecisionReads) -> list[list[int]]:
    """The anchors in runs of consecutive ones that share at least SHARED_AT_LEAST tokens."""
    runs: list[list[int]] = []
    for play, ids in enumerate(reads.sequences):
        if runs and _shared_length([reads.sequences[runs[-1][0]], ids]) >= SHARED_AT_LEAST:
            runs[-1].append(play)
        else:
            runs.append([play])
    return runs


def _shared_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many tokens every one of ``sequences`` starts with."""
    length = min(map(len, sequences))
    for position in range(length):
        if len({ids[position] for ids in sequences}) > 1:
            return position
    return length
