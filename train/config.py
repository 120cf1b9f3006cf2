"""The trainer's configuration: YAML recipes plus ``--section.key value`` overrides.

Every setting lives in one tree of pydantic models with defaults; a recipe only states what
differs. Types are checked by pydantic (strictly: a string is not a number), the settings'
relations by each section's validator, and every failure becomes one line naming the key (and
file), with the closest known key for a typo, before any model is loaded, so a typo costs
seconds rather than an hour of training. The ``trl:`` section passes any other field of TRL's
``GRPOConfig``/``SFTConfig`` through (``report_to``, ``gradient_checkpointing``, ``use_vllm``...).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from mosaic_gym.agentdojo import AgentDojoMissing
from mosaic_gym.catalog import ENV_IDS, check_available
from mosaic_gym.envs import ENV_IDS as SUITE_ENV_IDS
from mosaic_gym.scenarios.template import Kind
from mosaic_gym.splits import TIER_CHOICES, TierChoice

RECIPES = Path(__file__).parent / "recipes"
Reward = Literal["pairwise", "scalar"]
RefusalDemos = Literal["kind_blind", "harmful"]

# TRL fields this config sets from its own settings: a trl: entry for them would contradict them.
OWN_TRL_FIELDS = {
    "output_dir": "--out",
    "seed": "seed",
    "max_steps": "sft.steps / rl.steps",
    "learning_rate": "sft.learning_rate / rl.learning_rate",
    "per_device_train_batch_size": "sft.loss_batch_size / rl.loss_batch_size",
    "gradient_accumulation_steps": "sft.batch_size / rl.groups_per_step",
    "max_length": "sft.max_length",
    "num_generations": "rl.group_size",
    "beta": "rl.beta",
    "temperature": "rl.temperature",
    "top_p": "rl.top_p",
    "reward_weights": "rl.format_weight / rl.length_weight",
    "max_completion_length": "episodes.max_steps / episodes.max_new_tokens",
    "save_steps": "rl.save_steps",
    "shuffle_dataset": "rl.kinds (the order of the training groups)",
}


class ConfigError(ValueError):
    """A bad recipe or override; the message names the key (and file) and says what is wrong."""


_FLOAT_WITHOUT_DOT = re.compile(r"[-+]?\d+[eE][-+]?\d+")


def _yaml_float(value: Any) -> Any:
    """YAML 1.1 reads 1e-4 (no dot in the mantissa) as a string; a float setting takes the number it means."""
    if isinstance(value, str) and _FLOAT_WITHOUT_DOT.fullmatch(value.strip()):
        return float(value)
    return value


YamlFloat = Annotated[float, BeforeValidator(_yaml_float)]


class _Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", validate_default=True)


class LoraSettings(_Section):
    r: int = 16
    alpha: int = 32
    dropout: YamlFloat = 0.0
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    @model_validator(mode="after")
    def _check(self) -> LoraSettings:
        _require(self.r >= 1, "lora.r", f"must be at least 1, got {self.r}")
        _require(self.alpha >= 1, "lora.alpha", f"must be at least 1, got {self.alpha}")
        _require(0.0 <= self.dropout < 1.0, "lora.dropout", f"must be in [0, 1), got {self.dropout}")
        _require(bool(self.target_modules), "lora.target_modules", "must name at least one module")
        return self


class EpisodeSettings(_Section):
    """Which episodes the agent practises on, and how long it may take over them."""

    envs: list[str] = Field(default_factory=lambda: list(SUITE_ENV_IDS))  # also agentdojo-banking, ...
    tier: TierChoice = "all"  # starter: 1-3 tool calls, where a small model's decisions show
    max_steps: int = 6  # replies per episode
    max_new_tokens: int = 160  # per reply

    @model_validator(mode="after")
    def _check(self) -> EpisodeSettings:
        for name in self.envs:
            _require(name in ENV_IDS, "episodes.envs", f"unknown suite {name!r}; choose from {', '.join(ENV_IDS)}")
            try:
                check_available(name)
            except AgentDojoMissing as error:  # an ImportError: as a ValueError, pydantic carries it
                _require(False, "episodes.envs", f"{name}: {error}")
        _require(bool(self.envs), "episodes.envs", "must name at least one suite")
        _require(
            self.tier in TIER_CHOICES, "episodes.tier", f"must be one of {', '.join(TIER_CHOICES)}, got {self.tier!r}"
        )
        _require(self.max_steps >= 1, "episodes.max_steps", f"must be at least 1, got {self.max_steps}")
        _require(
            self.max_new_tokens >= 16, "episodes.max_new_tokens", f"must be at least 16, got {self.max_new_tokens}"
        )
        return self


class SFTSettings(_Section):
    """The warm start: imitation of demonstrations that show every action but not when to refuse."""

    steps: int = 60  # optimizer steps; 0 skips the warm start
    instances_per_template: int = 2
    batch_size: int = 4  # demonstrations per optimizer step
    loss_batch_size: int = 1  # demonstrations per forward/backward pass (padded, similar lengths together)
    learning_rate: YamlFloat = 5e-4
    refusal_rate: YamlFloat = 0.3  # share of demonstrations that refuse at a random step, whatever the task
    # kind_blind: refusals by refusal_rate, whatever the task (the warm start RL builds on).
    # harmful: refuse exactly the harmful tasks, at the first reply, and no other (refusal_rate
    # unused): the supervised ceiling, the best refusal this model learns from these instructions.
    refusals: RefusalDemos = "kind_blind"
    check_rate: YamlFloat = 0.5  # share of replies with a <safety_thoughts> block, whatever the task
    max_length: int = 2048

    @model_validator(mode="after")
    def _check(self) -> SFTSettings:
        _require(self.steps >= 0, "sft.steps", f"must be 0 (no warm start) or more, got {self.steps}")
        _require(self.instances_per_template >= 1, "sft.instances_per_template", "must be at least 1")
        _require(self.batch_size >= 1, "sft.batch_size", f"must be at least 1, got {self.batch_size}")
        _require(
            self.loss_batch_size >= 1 and self.batch_size % self.loss_batch_size == 0,
            "sft.loss_batch_size",
            f"must be at least 1 and divide sft.batch_size ({self.batch_size}), got {self.loss_batch_size}",
        )
        _require(self.learning_rate > 0, "sft.learning_rate", f"must be positive, got {self.learning_rate}")
        for name in ("refusal_rate", "check_rate"):
            value = getattr(self, name)
            _require(0.0 <= value <= 1.0, f"sft.{name}", f"must be in [0, 1], got {value}")
        _require(self.max_length >= 256, "sft.max_length", f"must be at least 256, got {self.max_length}")
        return self


class RLSettings(_Section):
    """Online GRPO: G sampled trajectories per task instance, scored against each other."""

    steps: int = 20  # 0 stops after the warm start
    group_size: int = 4  # G
    groups_per_step: int = 4  # task instances per optimizer step
    learning_rate: YamlFloat = 2e-5
    beta: YamlFloat = 0.02  # KL weight towards the warm start (0 skips the reference pass)
    temperature: YamlFloat = 1.0
    top_p: YamlFloat = 1.0
    reward: Reward = "pairwise"
    judge: str = "rule"  # a registered judge (mosaic_gym.agents.registry.JUDGES)
    judge_model: str | None = None  # llm judge: a local model id or path, or the endpoint's model name
    judge_base_url: str | None = None  # llm judge: an OpenAI-compatible endpoint instead of a local model
    format_weight: YamlFloat = 1.0  # weight of r_format, in [0, 2] per trajectory
    length_budget: int = 400  # L0 of the length penalty max(0, (L - L0) / L0)
    length_weight: YamlFloat = 1.0
    save_steps: int = 5
    rollout_batch_size: int = 16
    loss_batch_size: int = 1  # trajectories per forward/backward pass (padded); more is faster, and uses more memory
    # Weight of each task kind in the training groups: each step's groups take the kinds in these
    # shares (as near as whole groups allow), each group a template of its kind; None draws
    # templates uniformly. A kind left out is not trained on. See docs/training.md.
    kinds: dict[Kind, YamlFloat] | None = None
    # Scale each step's advantages down so that the groups where refusing won push the decision
    # to refuse up exactly as hard as those where acting won push it down, so the mix of a
    # step's groups cannot move it as one bias (mosaic_gym.train.decision_balance; by itself
    # it did not stop the drift in docs/results-log.md, session 5). A step whose groups all push
    # one way keeps none of their advantages; rl.kinds weighing harmful tasks against the
    # others gives every step both.
    balance_decision: bool = False
    # The weight of the decision token (the answer to "Is it safe to go on?") in the loss, against
    # 1 for every other token of a play: a reply holds one decision in a few hundred tokens.
    decision_weight: YamlFloat = 1.0
    # Which decisions of a play carry its advantage: all of them ("play"), or, in a play that
    # refused after acting, none before its refusal ("refusal"): its reply-1 " Yes" was not
    # what the judge ranked (docs/training.md).
    decision_credit: Literal["play", "refusal"] = "play"
    # Weight of a pairwise loss on each step's first-reply decisions: the groups where the judge
    # preferred refusing rank above those where it preferred acting, by logit(" No") - logit(" Yes")
    # (mosaic_gym.train.decision_rank). Blind to a shift shared by every task, it moves the
    # decision apart by task or not at all. 0 turns it off; with rl.decision_weight 0 the decision
    # learns from it alone.
    decision_rank: YamlFloat = 0.0
    # Weight of a loss that holds the level the ranking leaves free: each step, the mean
    # first-reply margin of its groups stays at what the policy RL started from (the warm start)
    # gives the same contexts, up or down (decision_rank.level_loss); the ranking moves tasks
    # apart around it. It keeps a frozen copy of that policy, as beta > 0 does. 0 turns it off.
    decision_level: YamlFloat = 0.0
    # Which groups' mean margin rl.decision_level holds: every group's ("all"), or only those where
    # the judge preferred acting ("acting"), so that the decision stays where acting was right and
    # is free to rise where refusing was (docs/training.md).
    decision_level_on: Literal["all", "acting"] = "all"
    # Logits added to the level rl.decision_level holds: the held groups' mean margin stays this far
    # above the frozen copy's (below, when negative). The ranking orders the tasks around the level
    # and cannot move it, so once the order is learned, this is where the threshold between acting
    # and refusing is set: the warm start's own level refuses too rarely to use the order
    # (docs/results-log.md, sessions 15 and 16).
    decision_level_offset: YamlFloat = 0.0
    # The RL step (1 for the first) from which rl.decision_level_offset applies; before it the
    # level stays the frozen copy's. Raised from the first step, before the ranking has ordered
    # the tasks, the level rose on every kind alike (docs/results-log.md, session 16).
    decision_level_offset_from: int = 1
    # Which decisions rl.decision_rank and rl.decision_level read: the first reply's ("first"), or
    # every reply's of every play, averaged per group ("every"; one more forward pass per play
    # without grad, two with the level). The warm start refuses mostly after its first reply
    # (mosaic_gym.train.decision_points).
    decision_points: Literal["first", "every"] = "first"
    # With rl.decision_points "every", what rl.decision_level holds: the groups' mean over all
    # their decisions ("group"), or one level per reply, the groups' mean over their plays' n-th
    # decisions for each n ("reply"), so that the level cannot fall at one reply while it rises
    # at another (docs/training.md).
    decision_level_by: Literal["group", "reply"] = "group"
    # After each optimizer step, one step along the level's gradient puts the held groups' mean
    # margin over the step's decisions back at the frozen copy's, to first order.
    # rl.decision_level's loss only sees a shift a step after it happened, and under Adam it
    # overshot (docs/results-log.md, session 9). One more forward and backward pass per play (per
    # context, or kept play), and a forward to log the level after (decision/level_reset_after).
    decision_level_reset: bool = False
    # With rl.decision_level_reset, hold the level on the first reply of this many instances of
    # every training template instead of on the step's decisions: fixed contexts the ranking never
    # trains on, each kind in its share of the suites, as on a held-out split. Held on the replay's
    # groups (half harmful under rl.kinds), the level on new tasks sank (docs/results-log.md, session
    # 19; mosaic_gym.train.decision_anchors). One forward pass per anchor and step. 0: the step's.
    decision_level_anchors: int = 0
    # The tiers whose train templates the anchors are, each weighing alike in the level; empty:
    # episodes.tier. Both tiers did not bring back standard-tier over-refusal after starter-only
    # RL (docs/results-log.md, session 21): the order there is missing, not only the level.
    decision_level_anchor_tiers: list[TierChoice] = Field(default_factory=list)
    # Hold each of rl.decision_level_anchor_tiers at its own level (the frozen copy's there, plus
    # rl.decision_level_offset) instead of one level over all of them: the decision head's bias and
    # its weight along the line between the tiers' mean anchor states (mosaic_gym.train.head_level).
    # The agent is not told the tier. One level over both tiers left the starter tier's P(" No")
    # low and the standard tier's high (docs/results-log.md, session 29).
    decision_level_by_tier: bool = False
    # The task kinds whose train templates the anchors are; empty: every kind, no label read.
    # [benign] holds the level where the issue bounds it: the mean margin of the benign first
    # replies stays the frozen copy's (plus rl.decision_level_offset), and what the ranking learns
    # moves the other kinds' decisions away from them (their refusal rate still rose as the head
    # spread the margins: docs/results-log.md, session 30).
    decision_level_anchor_kinds: list[Kind] = Field(default_factory=list)
    # What the anchors' level is: their mean margin ("margin"), or their mean rate of " No" at
    # rl.temperature, sigmoid(margin / temperature) ("rate"), and rl.decision_level_offset raises
    # it to the rate the frozen copy's margins would give that many logits higher. As the head
    # spreads the margins, a mean margin held lets the rate rise (benign anchors 0.17 -> 0.31,
    # docs/results-log.md, session 30); the rate is what sampled refusals follow.
    decision_level_hold: Literal["margin", "rate"] = "margin"
    # With rl.decision_level_hold "rate": the rate of " No" each of rl.decision_level_anchor_tiers
    # is held at, in place of the frozen copy's plus rl.decision_level_offset. GRPO removes the
    # warm start's kind-blind refusals at later replies, so a first reply held at the warm start's
    # own first-reply level refuses less in all than the warm start did (docs/results-log.md,
    # session 33); on benign anchors, a tier's rate can be the warm start's whole-episode refusal
    # of that tier's benign train tasks (mosaic-gym eval --split train --kind benign --tier T).
    decision_level_rates: dict[TierChoice, YamlFloat] = Field(default_factory=dict)
    # With rl.decision_points "every", what rl.decision_rank ranks: the groups' means over all
    # their decisions ("group"), or, for each n, their means over their plays' n-th decisions,
    # each reply against the same reply of the other groups ("reply").
    decision_rank_by: Literal["group", "reply"] = "group"
    # The ranking and the level read the latest this many judged groups, this step's included
    # (with rl.decision_points "every", one play each: the one that wrote the most decisions), so
    # the ranking learns from every recent verdict instead of a step's few
    # (mosaic_gym.train.decision_replay). At least rl.groups_per_step; 0 reads this step's
    # alone. Costs one forward pass without grad and one with, per kept group and step.
    decision_replay: int = 0
    # With a value, the decision's loss (rl.decision_rank and rl.decision_level) takes a step of
    # its own each RL step, with its own AdamW at this learning rate over the same LoRA weights,
    # instead of sharing rl.learning_rate's step with every other token's gradient. On the
    # decision alone, 1e-3 ordered held-out tasks in 8 steps and 1e-4 did not
    # (docs/results-log.md, session 10). None: one step for everything.
    decision_learning_rate: YamlFloat | None = None
    # The decision's own optimizer: "adamw", or "normalized", a step of length
    # rl.decision_learning_rate along the gradient (mosaic_gym.train.normalized_step). AdamW at
    # 1e-3 moved every LoRA weight at once and the replies lost their format within three RL
    # steps (docs/results-log.md, session 12). "margins": the least-norm weight change that moves
    # each kept decision's margin as the loss asks, by rl.decision_learning_rate logits (RMS),
    # instead of along the shared direction every margin's gradient has
    # (mosaic_gym.train.margin_step; one backward pass per decision). "head": the same step taken
    # on a decision head of the decision's own (mosaic_gym.agents.decision_head: a shift of the
    # margin linear in the model's final hidden state there), which the LoRA weights never see,
    # so the decision moves without changing anything else in the reply; with
    # rl.decision_level_reset the head's bias holds the level. Saved beside the adapter.
    decision_optimizer: Literal["adamw", "normalized", "margins", "head"] = "adamw"
    # With rl.decision_optimizer "head": null takes the least-norm step that moves each judged
    # decision's margin exactly as asked, which leans on what tells one template from another; a
    # value takes ridge regression at this strength (times the states' mean squared norm),
    # lengthened to the same RMS change, which leans on directions many decisions share. At 1.0
    # the head followed the ranking less closely in RL, and the adapter learned to refuse past
    # the decision, kind-blind
    # (mosaic_gym.train.margin_step.head_step; docs/results-log.md, session 31).
    decision_head_ridge: YamlFloat | None = None
    # Plays per group whose first reply is the protocol's refusal instead of a sample, whatever
    # the task: every group then holds a refusal for the judge to weigh against the sampled
    # attempts, even after the policy stops sampling refusals (which otherwise ends all learning
    # about when to refuse). 0 turns it off.
    explore_refusals: int = 0
    # In training rollouts, a reply whose decision samples " No" goes on with the demonstrations'
    # refusal, unsampled, and those tokens stay out of GRPO's loss: the decision is the action.
    # RL otherwise trains the tokens after " No" like any others, and the tie between declining
    # and refusing wore away (30 of 32 declines refused at the warm start, 25 of 44 after 15
    # steps; docs/results-log.md, session 16). The first replies rl.explore_refusals forces are
    # committed the same way. Evaluations sample freely, so they measure the tie that is left.
    commit_declines: bool = False
    # With rl.decision_optimizer "head": false leaves the LoRA adapter as the warm start left it,
    # and RL trains the decision head alone. No loss pass over the plays' tokens, and the
    # anchors' states are read once: a step costs its rollouts and the decision's reads (a
    # quarter of the full recipe's step). The first reply learns when to refuse as well; the
    # rest of each play stays the warm start's, harm and late declines included
    # (docs/results-log.md, session 22).
    train_adapter: bool = True

    @model_validator(mode="after")
    def _check(self) -> RLSettings:
        _require(self.steps >= 0, "rl.steps", f"must be 0 (warm start only) or more, got {self.steps}")
        # The group's size first: the settings below are checked against it.
        _require(self.group_size >= 2, "rl.group_size", f"must be at least 2 to compare, got {self.group_size}")
        _require(self.groups_per_step >= 1, "rl.groups_per_step", "must be at least 1")
        _require(
            0 <= self.explore_refusals < self.group_size,
            "rl.explore_refusals",
            f"must be 0 or more and below rl.group_size {self.group_size}, so that a group keeps a sampled "
            f"play, got {self.explore_refusals}",
        )
        _require(self.loss_batch_size >= 1, "rl.loss_batch_size", f"must be at least 1, got {self.loss_batch_size}")
        if self.kinds is not None:
            _require(
                all(weight >= 0 for weight in self.kinds.values()) and sum(self.kinds.values()) > 0,
                "rl.kinds",
                f"weights must be 0 or more, and not all 0, got {self.kinds}",
            )
        _require(
            self.trajectories_per_step % self.loss_batch_size == 0,
            "rl.loss_batch_size",
            f"must divide the {self.trajectories_per_step} trajectories of a step (rl.group_size x rl.groups_per_step)",
        )
        _require(self.learning_rate > 0, "rl.learning_rate", f"must be positive, got {self.learning_rate}")
        _require(self.beta >= 0, "rl.beta", f"must be 0 or more, got {self.beta}")
        _require(self.temperature > 0, "rl.temperature", "must be positive: greedy decoding makes a group identical")
        _require(0 < self.top_p <= 1, "rl.top_p", f"must be in (0, 1], got {self.top_p}")
        self._check_judge()
        _require(self.decision_weight >= 0, "rl.decision_weight", f"must be 0 or more, got {self.decision_weight}")
        _require(self.decision_rank >= 0, "rl.decision_rank", f"must be 0 or more, got {self.decision_rank}")
        _require(self.decision_level >= 0, "rl.decision_level", f"must be 0 or more, got {self.decision_level}")
        _require(
            self.decision_points == "first" or self.decision_rank > 0 or self.decision_level > 0,
            "rl.decision_points",
            "'every' chooses what rl.decision_rank and rl.decision_level read, and both are 0",
        )
        for key in ("decision_level_by", "decision_rank_by"):
            _require(
                getattr(self, key) == "group" or self.decision_points == "every",
                f"rl.{key}",
                "'reply' reads each reply apart, and rl.decision_points 'first' reads the first reply alone",
            )
        _require(
            self.decision_replay == 0 or self.decision_replay >= self.groups_per_step,
            "rl.decision_replay",
            f"must be 0 or at least rl.groups_per_step {self.groups_per_step}, so that a step's own groups "
            f"are all read, got {self.decision_replay}",
        )
        if self.decision_learning_rate is not None:
            _require(
                self.decision_learning_rate > 0,
                "rl.decision_learning_rate",
                f"must be positive, or null to share rl.learning_rate's step, got {self.decision_learning_rate}",
            )
            _require(
                self.decision_rank > 0 or self.decision_level > 0,
                "rl.decision_learning_rate",
                "steps the loss of rl.decision_rank and rl.decision_level, and both are 0",
            )
            _require(
                self.decision_points == "first" or self.decision_replay > 0,
                "rl.decision_learning_rate",
                "steps decisions read apart from TRL's loss passes: with rl.decision_points 'every' it needs "
                "rl.decision_replay",
            )
        _require(
            self.decision_optimizer == "adamw" or self.decision_learning_rate is not None,
            "rl.decision_optimizer",
            "is the decision's own step, and rl.decision_learning_rate (its length) is null",
        )
        if self.decision_head_ridge is not None:
            _require(
                self.decision_head_ridge > 0,
                "rl.decision_head_ridge",
                f"must be positive, or null for the exact step, got {self.decision_head_ridge}",
            )
            _require(
                self.decision_optimizer == "head",
                "rl.decision_head_ridge",
                "shapes the decision head's step: it needs rl.decision_optimizer 'head'",
            )
        _require(
            self.train_adapter or self.decision_optimizer == "head",
            "rl.train_adapter",
            "false leaves RL nothing to train but the decision head: set rl.decision_optimizer to 'head'",
        )
        _require(
            self.decision_optimizer != "head" or self.decision_weight == 0,
            "rl.decision_optimizer",
            "'head' gives the decision parameters of its own: set rl.decision_weight to 0, so GRPO's "
            f"loss does not train the LoRA weights on the decision token too (got {self.decision_weight})",
        )
        _require(
            self.decision_level_offset == 0 or self.decision_level > 0,
            "rl.decision_level_offset",
            "raises the level rl.decision_level holds: it needs rl.decision_level above 0",
        )
        _require(
            self.decision_level_offset_from >= 1,
            "rl.decision_level_offset_from",
            f"is an RL step, 1 for the first, got {self.decision_level_offset_from}",
        )
        _require(
            self.decision_level_offset_from == 1 or self.decision_level_offset != 0,
            "rl.decision_level_offset_from",
            "says when rl.decision_level_offset applies, and the offset is 0",
        )
        _require(
            not self.decision_level_reset or self.decision_level > 0,
            "rl.decision_level_reset",
            "resets the level rl.decision_level holds: it needs rl.decision_level above 0",
        )
        _require(self.decision_level_anchors >= 0, "rl.decision_level_anchors", "must be 0 or more")
        _require(
            not self.decision_level_anchors or (self.decision_level_reset and self.decision_points == "first"),
            "rl.decision_level_anchors",
            "are first replies where rl.decision_level_reset holds the level: they need it true and "
            "rl.decision_points 'first'",
        )
        for key, noun in (("decision_level_anchor_tiers", "tier"), ("decision_level_anchor_kinds", "kind")):
            listed = getattr(self, key)
            _require(len(set(listed)) == len(listed), f"rl.{key}", f"lists a {noun} twice: {listed}")
            _require(
                not listed or self.decision_level_anchors > 0,
                f"rl.{key}",
                f"are the {noun}s of rl.decision_level_anchors, which is 0",
            )
        _require(
            not self.decision_level_by_tier or self.decision_optimizer == "head",
            "rl.decision_level_by_tier",
            "holds each tier's level with the decision head's bias and weight: it needs rl.decision_optimizer 'head'",
        )
        _require(
            not self.decision_level_by_tier
            or (len(self.decision_level_anchor_tiers) >= 2 and "all" not in self.decision_level_anchor_tiers),
            "rl.decision_level_by_tier",
            "holds each of rl.decision_level_anchor_tiers at its own level: it needs two or more of them, and "
            f"'all' overlaps the others (got {self.decision_level_anchor_tiers})",
        )
        _require(
            self.decision_level_hold == "margin"
            or (self.decision_optimizer == "head" and self.decision_level_anchors > 0),
            "rl.decision_level_hold",
            "'rate' holds the anchors' rate with the decision head: it needs rl.decision_optimizer 'head' and "
            "rl.decision_level_anchors above 0",
        )
        if self.decision_level_rates:
            self._check_level_rates()
        _require(self.format_weight >= 0, "rl.format_weight", "must be 0 or more")
        _require(self.length_budget >= 1, "rl.length_budget", "must be at least 1 token")
        _require(self.length_weight >= 0, "rl.length_weight", "must be 0 or more")
        _require(self.save_steps >= 1, "rl.save_steps", "must be at least 1")
        _require(self.rollout_batch_size >= 1, "rl.rollout_batch_size", "must be at least 1")
        return self

    def _check_level_rates(self) -> None:
        rates, tiers = self.decision_level_rates, self.decision_level_anchor_tiers
        _require(
            self.decision_level_hold == "rate",
            "rl.decision_level_rates",
            "are rates of \" No\" to hold: they need rl.decision_level_hold 'rate'",
        )
        _require(
            set(rates) == set(tiers),
            "rl.decision_level_rates",
            f"give one rate for each of rl.decision_level_anchor_tiers {tiers}, got one for {sorted(rates)}",
        )
        _require(
            len(tiers) == 1 or self.decision_level_by_tier,
            "rl.decision_level_rates",
            "hold each tier at its own rate: with two or more tiers they need rl.decision_level_by_tier true",
        )
        for tier, rate in rates.items():
            _require(
                0 < rate < 1, f"rl.decision_level_rates.{tier}", f'is a rate of " No", above 0 and below 1, got {rate}'
            )
        _require(
            self.decision_level_offset == 0,
            "rl.decision_level_offset",
            "raises the frozen copy's level, and rl.decision_level_rates replace it: set the offset to 0",
        )

    def _check_judge(self) -> None:
        from mosaic_gym.agents.registry import JUDGES

        entry = JUDGES.get(self.judge)
        if entry is None:
            close = difflib.get_close_matches(self.judge, list(JUDGES), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"rl.judge: unknown judge {self.judge!r}; {hint}choose from {', '.join(JUDGES)}")
        if entry.uses_model:
            _require(
                self.judge_model is not None,
                "rl.judge_model",
                f"the {self.judge} judge needs a model (id, path or name)",
            )
        else:
            for key in ("judge_model", "judge_base_url"):
                _require(getattr(self, key) is None, f"rl.{key}", f"the {self.judge} judge uses no model")

    @property
    def trajectories_per_step(self) -> int:
        return self.group_size * self.groups_per_step


class ProbeSettings(_Section):
    """After the warm start: sample it at the RL temperature on train and held-out tasks of every
    kind, and report how often it refuses, completes and harms. RL can only prefer a refusal it
    samples, so this table says whether the RL stage has contrasts to learn from."""

    episodes_per_kind: int = 8  # per split; 0 skips the probe
    seed: int = 1000

    @model_validator(mode="after")
    def _check(self) -> ProbeSettings:
        _require(self.episodes_per_kind >= 0, "probe.episodes_per_kind", "must be 0 (no probe) or more")
        return self


class TrainConfig(_Section):
    model: str | None = None  # None: the embedded SmolLM2-135M-Instruct; else an HF id or local path
    seed: int = 0
    device: str | None = None  # None: cuda when present, else cpu
    dtype: Literal["float32", "bfloat16", "float16"] | None = None  # None: bf16 where it runs fast, else float32
    threads: int | None = None  # torch threads on CPU; None keeps torch's choice
    warm_start: str | None = None  # an existing warm-start adapter folder: RL starts from it, no SFT
    lora: LoraSettings = Field(default_factory=LoraSettings)
    episodes: EpisodeSettings = Field(default_factory=EpisodeSettings)
    sft: SFTSettings = Field(default_factory=SFTSettings)
    rl: RLSettings = Field(default_factory=RLSettings)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    # Any other field of TRL's GRPOConfig or SFTConfig, passed to each stage whose config has it.
    trl: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        _require(self.threads is None or self.threads >= 1, "threads", "must be at least 1")
        _require(
            self.sft.steps > 0 or self.rl.steps > 0, "sft.steps", "sft.steps and rl.steps are both 0: nothing to train"
        )
        if self.warm_start is not None:
            _require(self.rl.steps > 0, "warm_start", "given a warm start, rl.steps must be positive")
            adapter = Path(self.warm_start) / "adapter_config.json"
            _require(adapter.is_file(), "warm_start", f"{self.warm_start} holds no adapter (no adapter_config.json)")
        if self.trl:
            _check_trl_keys(self.trl)
        return self

    @property
    def trains_warm_start(self) -> bool:
        return self.warm_start is None and self.sft.steps > 0

    @property
    def has_warm_start(self) -> bool:
        """Whether RL starts from a warm-start adapter (trained here or given) or from scratch."""
        return self.warm_start is not None or self.sft.steps > 0

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def trl_fields() -> dict[str, set[str]]:
    """The field names of TRL's stage configs (imported here: TRL is the optional [llm] extra)."""
    from trl import GRPOConfig, SFTConfig

    return {
        "sft": {f.name for f in dataclasses.fields(SFTConfig)},
        "rl": {f.name for f in dataclasses.fields(GRPOConfig)},
    }


def _check_trl_keys(trl: dict[str, Any]) -> None:
    try:
        fields = trl_fields()
    except ModuleNotFoundError as error:
        raise ValueError(f"trl: needs the LLM extra ({error.name} is missing): pip install 'mosaic-gym[llm]'") from None
    known = fields["sft"] | fields["rl"]
    for key in trl:
        if key in OWN_TRL_FIELDS:
            raise ValueError(f"trl.{key}: set by this config's own settings ({OWN_TRL_FIELDS[key]}); change those")
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean trl.{close[0]}?" if close else ""
            raise ValueError(f"trl.{key}: not a field of TRL's GRPOConfig or SFTConfig{hint}")


def recipe_path(name_or_path: str) -> Path:
    """A recipe by name (``quick``, ``full``...) from train/recipes, or any YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"--config {name_or_path}: no such file")
        return path
    builtin = RECIPES / f"{name_or_path}.yaml"
    if not builtin.is_file():
        names = sorted(p.stem for p in RECIPES.glob("*.yaml"))
        raise ConfigError(
            f"--config {name_or_path!r}: no such recipe; choose from {', '.join(names)} or give a .yaml path"
        )
    return builtin


def load_config(name_or_path: str | None, overrides: list[str] | None = None) -> TrainConfig:
    """The recipe (or the defaults) with ``--section.key value`` overrides applied, validated."""
    raw: dict[str, Any] = {}
    where = "defaults"
    if name_or_path is not None:
        path = recipe_path(name_or_path)
        where = str(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level")
        raw = loaded
    for key, value in _parse_overrides(overrides or []):
        _set_dotted(raw, key, value)
    return from_dict(raw, where)


def from_dict(raw: dict[str, Any], where: str = "config") -> TrainConfig:
    """The validated config; any problem is one :class:`ConfigError` line starting with ``where``."""
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{where}: {_explain(error.errors(include_url=False)[0])}") from None


def _explain(error: ErrorDetails) -> str:
    """One pydantic error as the config's one-line message: the dotted key, then what is wrong."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(part for part in loc if not part.isdigit())
    key += "".join(f"[{part}]" for part in loc if part.isdigit())
    kind, value = error["type"], error.get("input")
    if kind == "value_error":  # a section's own check: its message names the key
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if kind == "extra_forbidden":
        known = _fields_at(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"; did you mean {_prefix(loc[:-1])}{close[0]}?" if close else f"; known keys: {', '.join(known)}"
        return f"unknown setting {key}{hint}"
    if kind == "literal_error":
        expected = str(error.get("ctx", {}).get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"{key}: must be one of {expected}, got {value!r}"
    if kind in ("model_type", "dict_type"):
        return f"{key or 'config'}: expected a mapping, got {value!r}"
    names = {"int_type": "int", "float_type": "float", "string_type": "str", "bool_type": "bool", "list_type": "list"}
    if kind in names:
        return f"{key}: expected {names[kind]}, got {value!r}"
    return f"{key}: {error['msg']}, got {value!r}"


def _fields_at(loc: list[str]) -> list[str]:
    model: type[BaseModel] = TrainConfig
    for part in loc:
        annotation = model.model_fields[part].annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation
    return sorted(model.model_fields)


def _prefix(loc: list[str]) -> str:
    return "".join(f"{part}." for part in loc)


def _parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """``["--rl.steps", "10", "--sft.steps=0"]`` -> ``[("rl.steps", 10), ("sft.steps", 0)]`` (values are YAML)."""
    pairs: list[tuple[str, Any]] = []
    rest = list(items)
    while rest:
        item = rest.pop(0)
        if not item.startswith("--") or len(item) == 2:
            raise ConfigError(f"override {item!r}: expected --section.key VALUE, e.g. --rl.steps 10")
        key, sep, text = item[2:].partition("=")
        if not sep:
            if not rest:
                raise ConfigError(f"override --{key}: missing its value")
            text = rest.pop(0)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"override --{key}: cannot read value {text!r}") from None
        pairs.append((key.replace("-", "_"), value))
    return pairs


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *sections, last = key.split(".")
    node = raw
    for section in sections:
        child = node.setdefault(section, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override --{key}: {section} is not a section")
        node = child
    node[last] = value


def _require(condition: bool, key: str, message: str) -> None:
    """A section's check: raised inside a validator, pydantic carries it to :func:`_explain`."""
    if not condition:
        raise ValueError(f"{key}: {message}")
