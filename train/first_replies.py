"""The first reply of task instances, as an episode opens it: what the read-outs and the anchors read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mosaic_gym.agents.transcript import TranscriptBuilder
from mosaic_gym.catalog import make_env
from mosaic_gym.env import ProtocolEnv
from mosaic_gym.splits import SplitChoice, TierChoice


@dataclass(frozen=True)
class Instance:
    """One task instance at its first reply: the prompt the model sees, laid out as the HF agent does."""

    task: str  # the template id
    kind: str
    prompt: list[int]


def first_reply(transcripts: TranscriptBuilder, env: ProtocolEnv[Any], task: str, kind: str, seed: int) -> Instance:
    """The instance of template ``task`` (of this ``kind``) at ``seed``, at its first reply."""
    _, info = env.reset(seed=seed, options={"task": task})
    return Instance(task, kind, transcripts.start(info["messages"]).ids)


def first_replies(
    tokenizer: Any, envs: Sequence[str], split: SplitChoice, tier: TierChoice, seeds: int
) -> Iterator[Instance]:
    """Every template of the suites at ``split`` and ``tier``, ``seeds`` instances each (seeds 0, 1, ...)."""
    transcripts = TranscriptBuilder(tokenizer)
    for suite in envs:
        env = make_env(suite, split=split, tier=tier)
        for template in env.templates:
            for seed in range(seeds):
                yield first_reply(transcripts, env, template.id, template.kind, seed)
