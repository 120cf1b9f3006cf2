"""Demonstrations for the warm start: every action of the protocol, but not when to refuse.

Each demonstration plays a train-split task the helpful-only way (the ``naive`` script: what
the user, or the text in front of the agent, asks for) through the real env, so tool outputs
are the env's own. Two things are then decided by coin flips that never look at the task:

* a ``<safety_thoughts>`` block on a reply, saying only what the tool's flags say
  (reversible or not), never whether the task is harmful;
* a refusal, at a random step, with a generic reason.

So refusals and checks are equally likely on benign, harmful, attacked and privacy tasks:
the warm-started model knows how to refuse but not when, and what the RL stage adds on top
is the measured effect. Tokens are laid out exactly as the HF agent will see them.

Every plan opens by asking the decision's question (:mod:`mosaic_gym.agents.decision`) and
answering it, " Yes." before an action or an answer and " No," before a refusal. That puts
the decision to refuse on one token the model already gives a fair chance to (about 1e-2
each under the base model), in the context of the task, where RL can move it. Without it
the decision was the plan's first word ("Call" or "Stop"), which the base model gives about
1e-5: SFT learned the frequent "Call" and not the rare "Stop", and neither stage could then
move it (see docs/results.md).

The two verdicts end differently ("." and ",") so that the refusal is tied to its decision:
every token after " No" is one that only a refusal writes. When both ended in ".", the
warm start wrote " Call" after "No." twice as often as the refusal's plan, so a reply that
decided "no" still acted, and RL credited the decision with the attempt's outcome.

``sft.refusals: harmful`` is the exception, kept for one diagnostic: demonstrations that refuse
exactly the harmful tasks, at the first reply, show how well this model can learn *when* to
refuse from the instructions when it is told outright (the supervised ceiling).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mosaic_gym.agents.decision import STOP, with_decision
from mosaic_gym.agents.transcript import TranscriptBuilder
from mosaic_gym.catalog import make_env
from mosaic_gym.env import ProtocolEnv
from mosaic_gym.protocol import Action, render
from mosaic_gym.tools import Tool
from mosaic_gym.train.config import EpisodeSettings, SFTSettings


@dataclass
class DemoSet:
    examples: list[dict[str, list[int]]]  # input_ids and assistant_masks, ready for SFTTrainer
    refusals: Counter[str] = field(default_factory=Counter)  # per task kind
    totals: Counter[str] = field(default_factory=Counter)
    too_long: int = 0

    def summary(self) -> str:
        rates = ", ".join(f"{kind} {self.refusals[kind]}/{self.totals[kind]}" for kind in sorted(self.totals))
        return f"{len(self.examples)} demonstrations (refusals by kind: {rates}; {self.too_long} too long, left out)"


def build_demos(tokenizer: Any, episodes: EpisodeSettings, sft: SFTSettings, seed: int) -> DemoSet:
    transcripts = TranscriptBuilder(tokenizer)
    demos = DemoSet(examples=[])
    for suite_index, suite in enumerate(episodes.envs):
        env = make_env(suite, split="train", tier=episodes.tier, max_steps=episodes.max_steps)
        for template_index, template in enumerate(env.templates):
            for instance in range(sft.instances_per_template):
                rng = np.random.default_rng([seed, suite_index, template_index, instance])
                _, info = env.reset(seed=int(rng.integers(2**31)), options={"task": template.id})
                script = _demo_script(env, rng, sft)
                example = _play(env, info["messages"], script, transcripts)
                demos.totals[template.kind] += 1
                demos.refusals[template.kind] += script[-1].kind == "refuse"
                if len(example["input_ids"]) > sft.max_length:
                    demos.too_long += 1
                    continue
                demos.examples.append(example)
    return demos


def _demo_script(env: ProtocolEnv[Any], rng: np.random.Generator, sft: SFTSettings) -> list[Action]:
    task = env.task
    script = (task.harmful_reference() or task.reference())[: env.max_steps]
    refuses = rng.random() < sft.refusal_rate  # drawn in both modes, so the rest of the draws match
    if sft.refusals == "harmful":
        script = [STOP] if task.kind == "harmful" else script
    elif refuses:
        script = [*script[: int(rng.integers(len(script)))], STOP]
    checks = [_neutral_check(action, env.tools) if rng.random() < sft.check_rate else None for action in script]
    # The script's own checks may know the task is harmful; the neutral ones (or none) replace them.
    return [
        with_decision(action.model_copy(update={"safety_thoughts": check}))
        for action, check in zip(script, checks, strict=True)
    ]


def _neutral_check(action: Action, tools: dict[str, Tool]) -> str:
    if action.kind == "refuse":
        return "Stopping is always reversible; nothing has been done that I cannot explain to the user."
    if action.kind == "answer":
        return "Answering only reports back to the user; it changes nothing."
    tool = tools.get(action.tool or "")
    if tool is None or not tool.irreversible:
        return f"{action.tool} can be undone or only reads; it matches the step I planned."
    return f"{action.tool} cannot be undone once it runs; the arguments must match what the user asked for."


def _play(
    env: ProtocolEnv[Any], messages: list[dict[str, str]], script: list[Action], transcripts: TranscriptBuilder
) -> dict[str, list[int]]:
    """Step the env through the script and lay the episode out as the model would see it."""
    transcript = transcripts.start(messages)
    for action in script:
        transcript.add(transcripts.tokens(render(action)), agent=True)
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
        transcripts.add_observation(transcript, info["messages"])
    return {"input_ids": transcript.ids, "assistant_masks": transcript.mask}
