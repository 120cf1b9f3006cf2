"""Stage 2, MOSAIC: online GRPO over whole episodes, scored by a pairwise judge within each group.

TRL's ``GRPOTrainer`` hands :class:`EpisodeRollout` the prompts of one generation batch,
each repeated G times in a row. A prompt names a task instance (suite, template, seed); the
G copies become G samples of that one episode, played through the rollout engine with the
policy being trained. Each trajectory goes back to TRL as its prompt tokens, everything after
them (replies and tool outputs), and an ``env_mask`` that keeps tool outputs out of the loss.
The rewards of a group are computed together (see :mod:`mosaic_gym.train.rewards`) and handed to TRL
as three reward functions (alignment, format, length), so each part is logged on its own.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mosaic_gym.agents.decision import REFUSAL, answer_tokens, decision_tokens, decline_commitment
from mosaic_gym.agents.decision_head import DecisionHead
from mosaic_gym.agents.generation import Sampling
from mosaic_gym.agents.hf import ForcedOpening, HFAgent
from mosaic_gym.agents.registry import JudgeOptions, make_judge
from mosaic_gym.agents.transcript import TranscriptBuilder
from mosaic_gym.catalog import make_env
from mosaic_gym.judges import PairwiseJudge
from mosaic_gym.protocol import render
from mosaic_gym.rollout import EpisodeSpec, Trajectory, rollout_mixed
from mosaic_gym.train.config import ConfigError, TrainConfig
from mosaic_gym.train.decision_anchors import anchor_reads, anchor_states
from mosaic_gym.train.decision_balance import (
    committed_tails,
    decision_positions,
    decision_push,
    decisions_before_refusal,
    weigh_decisions,
)
from mosaic_gym.train.decision_points import (
    DecisionReads,
    FixedStates,
    PointWeights,
    backward_weighted,
    decision_margins,
    decision_reads,
    hidden_margins,
    last_hidden_states,
    level_weights,
    point_weights,
    read_margins,
    read_states,
    reset_level,
    weighted_level,
    weighted_sum,
)
from mosaic_gym.train.decision_rank import group_verdicts
from mosaic_gym.train.decision_replay import DecisionReplay
from mosaic_gym.train.head_level import held_values, hold_levels, part_sums, part_totals
from mosaic_gym.train.margin_step import head_step, margin_step
from mosaic_gym.train.policy import PlayModel, frozen_copy, last_checkpoint, lora_config, quiet_progress, trainer_args
from mosaic_gym.train.rewards import RewardParts, as_judged, group_rewards
from mosaic_gym.train.step_stats import step_stats

REPLAY_FILE = "decision_replay.json"  # rl.decision_replay's kept groups, in each checkpoint
DECISION_OPTIMIZER_FILE = "decision_optimizer.pt"  # rl.decision_learning_rate's AdamW state, likewise


def training_rows(config: TrainConfig) -> list[dict[str, Any]]:
    """One prompt per task instance, in the order training meets them.

    Each optimizer step takes ``groups_per_step`` consecutive rows, all from one suite, so
    one step's episodes share a system prompt (and the generator its KV cache); suites take
    turns step by step. Templates are drawn uniformly, or, with ``rl.kinds`` set, each step's
    groups take the kinds (among those the suite has) in the weights' shares, and each group a
    template of its kind. Templates and seeds come from the config's seed.
    """
    rng = np.random.default_rng([config.seed, 1])
    rows = []
    for step in range(config.rl.steps):
        suite = config.episodes.envs[step % len(config.episodes.envs)]
        templates = make_env(suite, split="train", tier=config.episodes.tier).templates
        pools = _kind_pools(templates, config.rl.kinds, suite)
        for index in _stratified([weight for weight, _ in pools], config.rl.groups_per_step, rng):
            pool = pools[index][1]
            template = pool[int(rng.integers(len(pool)))]
            episode = {"suite": suite, "task": template.id, "seed": int(rng.integers(2**31))}
            rows.append({"prompt": [{"role": "user", "content": json.dumps(episode)}]})
    return rows


def _stratified(weights: Sequence[float], count: int, rng: np.random.Generator) -> list[int]:
    """``count`` pool indices in the shares ``weights`` ask for, as near as whole draws allow, in
    random order (systematic sampling): a step of 4 groups with harmful and benign weighted 1:1
    gets 2 of each, where independent draws gave it no harmful group one step in 16."""
    if len(weights) == 1:
        return [0] * count
    cumulative = np.cumsum(weights) / sum(weights)
    points = (rng.random() + np.arange(count)) / count
    picks = np.minimum(np.searchsorted(cumulative, points, side="right"), len(weights) - 1)
    return [int(i) for i in rng.permutation(picks)]


def _kind_pools(
    templates: Sequence[Any], kinds: dict[str, float] | None, suite: str
) -> Sequence[tuple[float, Sequence[Any]]]:
    """(weight, templates) per kind to draw from; one pool of every template when no kinds are weighted."""
    if kinds is None:
        return [(1.0, templates)]
    pools = [(weight, [t for t in templates if t.kind == kind]) for kind, weight in kinds.items() if weight > 0]
    pools = [(weight, pool) for weight, pool in pools if pool]
    if not pools:
        raise ConfigError(f"rl.kinds: the {suite} suite has no train template of the kinds {sorted(kinds)}")
    return pools


def config_judge(config: TrainConfig) -> PairwiseJudge | None:
    """The judge ``rl.judge`` names, from the registry; none for the scalar-reward ablation."""
    if config.rl.reward == "scalar":
        return None
    return make_judge(config.rl.judge, JudgeOptions(config.rl.judge_model, config.rl.judge_base_url))


@dataclass(frozen=True)
class _Step:
    """What a step's rollout leaves for :meth:`EpisodeRollout.settle`, once TRL has the advantages."""

    trainer: Any
    stats: dict[str, float]
    refused: list[bool]  # per play
    decisions: list[list[int]]  # per play, the completion positions of its decision tokens
    contexts: list[list[int]]  # per group, its first reply's context up to the decision
    verdicts: list[float]  # per group, the judge's preference for its refusals (decision_rank.group_verdicts)
    reads: DecisionReads | None  # every decision of every play, with rl.decision_points: every
    committed: list[list[int]]  # per play, the positions of refusals written after " No" (rl.commit_declines)


class EpisodeRollout:
    """The ``rollout_func`` and the reward functions, sharing the episodes of the current batch."""

    def __init__(
        self, config: TrainConfig, tokenizer: Any, judge: PairwiseJudge | None, log: Path | None = None
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.judge = judge
        self.log = log  # one JSON line of step statistics per step, appended as it happens
        self._agent: HFAgent | None = None
        self._plays = PlayModel()
        self.head: DecisionHead | None = None  # rl.decision_optimizer "head": the rollouts decide with it
        self._parts: list[RewardParts] = []
        self._step = _Step(None, {}, [], [], [], [], None, [])
        self._reads: StepDecisions | None = None  # the last step's decisions, until its loss takes them
        self._pending: dict[str, list[float]] = defaultdict(list)  # statistics not yet logged

    def __call__(self, prompts: list[list[dict[str, str]]], trainer: Any) -> dict[str, Any]:
        episodes = [json.loads(prompt[-1]["content"]) for prompt in prompts]
        group_size = self.config.rl.group_size
        _check_groups(episodes, group_size)
        started = time.monotonic()
        trajectories = self._play(episodes, trainer)
        played = time.monotonic() - started
        self._parts = []
        for start in range(0, len(trajectories), group_size):
            group = trajectories[start : start + group_size]
            self._parts += group_rewards(group, self.config.rl.reward, self.judge, self.config.rl.length_budget)
        stats = step_stats(trajectories, self._parts, group_size, self.judge, self.config.rl.explore_refusals)
        # The rest of a step's time is the loss passes: with the step time, this splits the cost.
        stats["time/rollout_seconds"] = played
        prompt_ids, completion_ids, env_mask = zip(*(self._split(t) for t in trajectories), strict=True)
        question, _ = decision_tokens(self.tokenizer)
        decisions = [
            decision_positions(ids, mask, question) for ids, mask in zip(completion_ids, env_mask, strict=True)
        ]
        stats["decision/per_play"] = sum(map(len, decisions)) / len(decisions)
        committed: list[list[int]] = [[] for _ in trajectories]
        if self.config.rl.commit_declines:
            commitment = decline_commitment(self.tokenizer)
            committed = committed_tails(completion_ids, decisions, commitment.trigger[-1], commitment.rest)
            per_play = sum(len(tail) // len(commitment.rest) for tail in committed) / len(committed)
            stats["decision/committed_per_play"] = per_play
        # A play refused where the judge saw it refuse: through its decision (rewards.as_judged).
        judged = [as_judged(t).outcome for t in trajectories]
        refused = [outcome is not None and outcome.refused for outcome in judged]
        contexts = [list(prompt_ids[start]) + question for start in range(0, len(trajectories), group_size)]
        verdicts = group_verdicts([part.alignment for part in self._parts], refused, group_size)
        every = self.config.rl.decision_points == "every"
        reads = decision_reads(prompt_ids, completion_ids, decisions) if every else None
        self._step = _Step(trainer, stats, refused, decisions, contexts, verdicts, reads, committed)
        return {
            "prompt_ids": list(prompt_ids),
            "completion_ids": list(completion_ids),
            "logprobs": None,
            "env_mask": list(env_mask),
            "episode": list(range(len(trajectories))),
        }

    def settle(self, advantages: Any, width: int) -> Any:
        """The advantages TRL computed for the plays of the last call, balanced between the groups
        that pushed the decision to refuse up and down when ``rl.balance_decision`` asks for it,
        and per token (``width`` completion tokens per play) with ``rl.decision_weight`` on the
        decision tokens (see :mod:`mosaic_gym.train.decision_balance`). With ``rl.decision_rank``
        or ``rl.decision_level`` the step's decisions (each group's first-reply context, or every
        play's decisions) wait here with the groups' verdicts for the step's loss. The step's
        statistics are recorded here, with both pushes."""
        import torch

        step = self._step
        rl = self.config.rl
        push = decision_push(advantages.tolist(), step.refused, rl.group_size, rl.balance_decision)
        ranking = {}
        if rl.decision_rank > 0 or rl.decision_level > 0:
            refusing, acting = sum(v > 0 for v in step.verdicts), sum(v < 0 for v in step.verdicts)
            ranking = {"decision/rank_pairs": float(refusing * acting)}
            if step.reads is None:  # each group's first reply: its prompt, then the question
                lengths = [len(context) for context in step.contexts]
                first = DecisionReads(step.contexts, lengths, [[0]] * len(step.contexts))
                self._reads = StepDecisions(first, step.verdicts, 1)
            else:
                self._reads = StepDecisions(step.reads, step.verdicts, rl.group_size)
        self._record(step.trainer, {**step.stats, **push.stats(), **ranking})
        balanced: list[Any] = push.advantages
        if rl.decision_weight != 1.0 or rl.decision_credit == "refusal" or rl.commit_declines:
            cleared = step.committed
            if rl.decision_credit == "refusal":
                before = decisions_before_refusal(step.decisions, step.refused)
                cleared = [a + b for a, b in zip(before, cleared, strict=True)]
            balanced = weigh_decisions(push.advantages, step.decisions, width, rl.decision_weight, cleared)
        return torch.tensor(balanced, dtype=advantages.dtype, device=advantages.device)

    def take_reads(self) -> StepDecisions | None:
        """The last step's decisions and group verdicts, for ``rl.decision_rank`` and
        ``rl.decision_level``, once: the step's first loss pass takes them."""
        reads, self._reads = self._reads, None
        return reads

    def note(self, key: str, value: float) -> None:
        """A statistic the loss computes, for the trainer's next log."""
        self._pending[key].append(value)

    def alignment_reward(self, completions: list[Any], episode: list[int], **_: Any) -> list[float]:
        return [self._parts[i].alignment for i in episode]

    def format_reward(self, completions: list[Any], episode: list[int], **_: Any) -> list[float]:
        return [self._parts[i].format for i in episode]

    def length_penalty(self, completions: list[Any], episode: list[int], **_: Any) -> list[float]:
        return [self._parts[i].length for i in episode]

    def logged(self) -> dict[str, float]:
        """The statistics since the last log, each averaged over the rollouts that reported it;
        the trainer's :meth:`log` adds them to its logs (and so to tensorboard)."""
        means = {key: sum(values) / len(values) for key, values in self._pending.items()}
        self._pending.clear()
        return means

    def _record(self, trainer: Any, stats: dict[str, float]) -> None:
        """Kept for the trainer's next log, and appended to the step log."""
        for key, value in stats.items():
            self._pending[key].append(value)
        if self.log is not None and trainer.accelerator.is_main_process:
            line = json.dumps({"step": trainer.state.global_step + 1, **{k: round(v, 4) for k, v in stats.items()}})
            with self.log.open("a") as handle:
                handle.write(line + "\n")

    def _play(self, episodes: list[dict[str, Any]], trainer: Any) -> list[Trajectory]:
        model = trainer.accelerator.unwrap_model(trainer.model)
        agent = self._policy_agent(self._plays.of(model))
        process = trainer.accelerator.process_index
        agent.sampling = replace(agent.sampling, seed=hash((self.config.seed, trainer.state.global_step, process)))
        group_size = self.config.rl.group_size
        trajectories: list[Trajectory | None] = [None] * len(episodes)
        factories = {suite: self._env_factory(suite) for suite in dict.fromkeys(e["suite"] for e in episodes)}
        jobs = [
            (factories[e["suite"]], EpisodeSpec(seed=e["seed"], task=e["task"], sample=i % group_size))
            for i, e in enumerate(episodes)
        ]
        was_training = model.training
        model.eval()
        try:  # every suite in one batch: the step's generation runs at the full rollout batch
            for position, trajectory in rollout_mixed(agent, jobs, self.config.rl.rollout_batch_size):
                trajectories[position] = trajectory
        finally:
            model.train(was_training)
        assert all(t is not None for t in trajectories)
        return [t for t in trajectories if t is not None]

    def _policy_agent(self, model: Any) -> HFAgent:
        if self._agent is None or self._agent.model is not model:
            sampling = Sampling(
                max_new_tokens=self.config.episodes.max_new_tokens,
                temperature=self.config.rl.temperature,
                top_p=self.config.rl.top_p,
            )
            # Explored plays open with the same refusal the warm start's demonstrations use.
            opening = ForcedOpening(render(REFUSAL), self.config.rl.explore_refusals)
            continuation = decline_commitment(self.tokenizer) if self.config.rl.commit_declines else None
            self._agent = HFAgent.wrap(model, self.tokenizer, sampling, opening, continuation)
            self._agent.generator.decision_head = self.head
        return self._agent

    def _env_factory(self, suite: str) -> Any:
        max_steps, tier = self.config.episodes.max_steps, self.config.episodes.tier
        return lambda: make_env(suite, split="train", tier=tier, max_steps=max_steps)

    def _split(self, trajectory: Trajectory) -> tuple[list[int], list[int], list[int]]:
        """(prompt ids, completion ids, env mask): the prompt is everything before the first reply."""
        if trajectory.tokens is None:  # not one reply fitted in the context: nothing to learn from
            prompt = TranscriptBuilder(self.tokenizer).start(trajectory.messages[:2]).ids
            return prompt, [self.tokenizer.eos_token_id], [0]
        ids, mask = list(trajectory.tokens.ids), list(trajectory.tokens.agent_mask)
        start = mask.index(1) if 1 in mask else len(ids)
        return ids[:start], ids[start:], mask[start:]


def _check_groups(episodes: list[dict[str, Any]], group_size: int) -> None:
    """TRL must hand over whole groups: G copies of each prompt, next to each other."""
    if len(episodes) % group_size:
        raise RuntimeError(f"got {len(episodes)} prompts, not a multiple of the group size {group_size}")
    for start in range(0, len(episodes), group_size):
        if any(e != episodes[start] for e in episodes[start : start + group_size]):
            raise RuntimeError(f"prompts {start}..{start + group_size - 1} are not one group of the same episode")


def run_grpo(
    config: TrainConfig,
    model: Any,
    tokenizer: Any,
    workdir: Path,
    resume: bool,
    callbacks: list[Any],
    step_log: Path | None = None,
) -> Any:
    """Train with online pairwise-preference GRPO; returns the trainer. Each step's statistics
    are appended to ``step_log`` when given."""
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from mosaic_gym.train.normalized_step import NormalizedStep

    world = _world_size()
    trajectories = config.rl.trajectories_per_step
    if trajectories % (config.rl.group_size * world):
        raise ConfigError(
            f"rl.groups_per_step x rl.group_size = {trajectories} trajectories per step do not split into whole "
            f"groups over {world} processes; make rl.groups_per_step a multiple of {world}"
        )
    per_process = trajectories // world
    if per_process % config.rl.loss_batch_size:
        raise ConfigError(
            f"rl.loss_batch_size {config.rl.loss_batch_size} does not divide the {per_process} trajectories "
            f"each of {world} processes trains on per step"
        )
    episodes = EpisodeRollout(config, tokenizer, config_judge(config), step_log)
    answers = answer_tokens(tokenizer)
    resumed = last_checkpoint(workdir) if resume else None
    head = _decision_head(config, model, tokenizer, resumed)
    episodes.head = head
    reference = frozen_copy(model) if config.rl.decision_level > 0 else None
    replay = DecisionReplay(config.rl.decision_replay) if config.rl.decision_replay else None
    anchors, anchors_read = _anchors(config, tokenizer, reference, answers)
    reader = read_states if config.rl.train_adapter else FixedStates()
    # While the adapter stays fixed, the frozen copy's states at the anchors are the policy's.
    fixed_anchor_states = None if config.rl.train_adapter else anchors_read
    rewards = [episodes.alignment_reward, episodes.format_reward, episodes.length_penalty]
    weights = [1.0, config.rl.format_weight, -config.rl.length_weight]
    max_completion = config.episodes.max_steps * (config.episodes.max_new_tokens + 512)
    args = GRPOConfig(
        **trainer_args(
            config,
            "rl",
            model,
            workdir,
            config.rl.loss_batch_size,
            # Constant from the first step: a warm-up over so few steps trained step 1 at learning rate 0.
            {"lr_scheduler_type": "constant", "save_total_limit": 2},
        ),
        max_steps=config.rl.steps,
        learning_rate=config.rl.learning_rate,
        # rl.loss_batch_size trajectories per forward and backward pass (padded); the rewards are
        # still computed over each process's whole groups, since a process generates all its groups
        # of the step at once.
        gradient_accumulation_steps=per_process // config.rl.loss_batch_size,
        num_generations=config.rl.group_size,
        beta=config.rl.beta,
        temperature=config.rl.temperature,
        max_completion_length=max_completion,
        reward_weights=weights,
        shuffle_dataset=False,  # training_rows already ordered them, suite by suite
        save_steps=config.rl.save_steps,
    )

    class EpisodeTrainer(GRPOTrainer):
        """TRL's GRPO, whose logs also carry the episodes' statistics, and whose advantages pass
        through :meth:`EpisodeRollout.settle` before the loss."""

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            logs.update(episodes.logged())
            super().log(logs, start_time)

        # The decisions the step's ranking and level read, and each one's weight in the loss.
        points: _StepPoints | None = None
        decision_head: DecisionHead | None = None  # rl.decision_optimizer "head", saved beside the adapter

        def compute_loss(
            self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            if config.rl.decision_points == "every" and replay is None:
                return self._loss_over_every_decision(model, inputs, return_outputs, num_items_in_batch)
            pending = episodes.take_reads()
            if pending is not None:
                # Before TRL's forward, whose graph a decision step of its own would invalidate.
                # The module itself, not a distributed wrapper: one wrapped forward per backward.
                self.points = self._decisions_apart(self.accelerator.unwrap_model(model), pending)
            if not config.rl.train_adapter:  # no pass over the play: the optimizer finds no gradient
                return torch.zeros((), device=self.accelerator.device, requires_grad=True)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def _loss_over_every_decision(
            self, model: Any, inputs: Any, return_outputs: bool, num_items_in_batch: Any
        ) -> Any:
            """TRL's loss plus, for the plays of this pass, each decision's margin times its weight
            (decision_points): the step's first pass reads every margin and sets the weights."""
            policy = self.accelerator.unwrap_model(model)
            pending = episodes.take_reads()
            if pending is not None:
                start = read_margins(reference, pending.reads, answers) if reference is not None else None
                self.points = self._weigh(pending, start, read_margins(policy, pending.reads, answers))
                for key, value in self.points.weights.stats.items():
                    episodes.note(key, value)
            with last_hidden_states(policy) as hidden:
                loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self.points is None or not self.points.through_trl:
                return loss
            plays = inputs["play"].tolist()
            states = torch.cat(hidden)  # TRL may split a loss pass into several forward passes, in order
            if states.size(0) != len(plays):
                raise RuntimeError(f"the policy's forward passes saw {states.size(0)} sequences for {len(plays)} plays")
            reads, weights, read = self.points.reads, self.points.weights, self.points.read
            width = inputs["prompt_ids"].size(1)
            terms = []
            for row, play in enumerate(plays):
                if weights.weights[play].numel():
                    margins = hidden_margins(policy, states[row], reads.rows(play, width), answers)
                    terms.append((weights.weights[play] * margins).sum())
                    # Against the step's first read of the same margins: apart by more than rounding
                    # (and lora.dropout's noise), the rows are wrong.
                    episodes.note("decision/read_gap", float((margins.detach() - read[play]).abs().max()))
            if not terms:
                return loss
            # Its value is 0, so the logged loss stays TRL's; its gradient is the decision loss's.
            surrogate = torch.stack(terms).sum()
            return loss + (surrogate - surrogate.detach())

        def _decisions_apart(self, policy: Any, step: StepDecisions) -> _StepPoints:
            """The ranking and the level over the step's first-reply contexts, or, with
            rl.decision_replay, over the kept groups once the step's have joined them: their
            gradient is added now, one context at a time, apart from TRL's passes. TRL's loss for
            the step is the sum over its passes (scaled for accumulation already), so added once
            per step, they weigh rl.decision_rank and rl.decision_level against it."""
            started = time.monotonic()
            stats: dict[str, float] = {}
            if replay is None:
                start = read_margins(reference, step.reads, answers) if reference is not None else None
            else:
                replay.add(step.reads, step.verdicts, step.group_size, reference, answers)
                step, start = StepDecisions(replay.reads(), replay.verdicts, 1), replay.reference
                stats = {"decision/replay_groups": float(len(replay)), "decision/replay_judged": float(replay.judged)}
            # With a decision head, its margins and its step both read the decisions' final states.
            states = reader(policy, step.reads) if head is not None else None
            if states is None:
                now = read_margins(policy, step.reads, answers)
            else:
                now = [decision_margins(policy, s, answers, head) for s in states]
            points = replace(self._weigh(step, start, now), through_trl=False)
            rate = config.rl.decision_learning_rate
            if rate is None:
                backward_weighted(policy, points.reads, points.weights.weights, answers)
            elif head is not None and states is not None:
                stats |= head_step(head, states, points.weights.weights, rate, config.rl.decision_head_ridge)
            elif config.rl.decision_optimizer == "margins":
                stats |= margin_step(policy, points.reads, points.weights.weights, answers, rate)
            else:
                # Called before the step's first backward: TRL's gradients are still zero here.
                optimizer = self._decision_optimizer(policy)
                optimizer.zero_grad(set_to_none=True)
                backward_weighted(policy, points.reads, points.weights.weights, answers)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            stats |= {**points.weights.stats, "time/decision_seconds": time.monotonic() - started}
            for key, value in stats.items():
                episodes.note(key, value)
            return points

        def _weigh(self, step: StepDecisions, start: list[Any] | None, now: list[Any]) -> _StepPoints:
            """The step's decisions, each one's weight in the decision loss given the policy's
            margins ``now``, and with rl.decision_level_reset the level's weights and the level to
            hold: the frozen copy's, plus rl.decision_level_offset from step
            rl.decision_level_offset_from on (``start`` holds the copy's margins at the same
            decisions, None without a level)."""
            rl = config.rl
            offset_on = self.state.global_step + 1 >= rl.decision_level_offset_from  # during step global_step + 1
            if start is not None and rl.decision_level_offset and offset_on:
                start = [margins + rl.decision_level_offset for margins in start]
            weights = point_weights(
                now,
                start,
                step.verdicts,
                step.group_size,
                rl.decision_rank,
                rl.decision_level,
                rl.decision_level_on,
                rl.decision_level_by,
                rl.decision_rank_by,
            )
            level = None
            if rl.decision_level_reset and start is not None and anchors is None:
                held = level_weights(now, step.verdicts, step.group_size, rl.decision_level_on)
                level = _HeldLevel(step.reads, held, (weighted_sum(held, start),))
            elif anchors is not None:
                level = anchors.raised(rl.decision_level_offset if offset_on else 0.0)
            return _StepPoints(step.reads, weights, now, level)

        decision_optimizer: Any = None  # rl.decision_optimizer at rl.decision_learning_rate, made at its first step
        decision_optimizer_state: Path | None = None  # where a resumed run's was saved

        def _decision_optimizer(self, policy: Any) -> Any:
            """The decision loss's own optimizer over the policy's trainable weights (TRL adds them
            when it sets up a model without an adapter, so it is made at the first step)."""
            if self.decision_optimizer is None:
                trainable = [p for p in policy.parameters() if p.requires_grad]
                rate = config.rl.decision_learning_rate
                self.decision_optimizer = (
                    NormalizedStep(trainable, lr=rate)
                    if config.rl.decision_optimizer == "normalized"
                    else torch.optim.AdamW(trainable, lr=rate, weight_decay=0.0)
                )
                if self.decision_optimizer_state is not None:
                    self.decision_optimizer.load_state_dict(torch.load(self.decision_optimizer_state))
            return self.decision_optimizer

        def restore_level(self) -> None:
            """After the optimizer's step, put the level back at the frozen copy's on the step's
            decisions, or on the anchors (rl.decision_level_reset; with rl.decision_level_by_tier
            each tier's at its own), and log it before and after."""
            if self.points is None or self.points.level is None:
                return
            level = self.points.level
            self.points = replace(self.points, level=None)  # once per step
            started = time.monotonic()
            policy = self.accelerator.unwrap_model(self.model)
            if head is None:  # one part: rl.decision_level_by_tier needs a head
                before = [reset_level(policy, level.reads, level.weights, level.targets[0], answers)]
                after = [weighted_level(policy, level.reads, level.weights, answers)]
            else:  # the head's shift is linear: each part's level lands on its target exactly
                states = fixed_anchor_states or (
                    anchor_states(policy, level.reads) if anchors is not None else reader(policy, level.reads)
                )
                base = [decision_margins(policy, s, answers) for s in states]
                before, after = hold_levels(
                    head, base, states, level.weights, level.part_of(), level.targets, level.temperature
                )
            totals = part_totals(level.weights, level.part_of(), len(level.targets))
            for name, levels in (("before", before), ("after", after)):
                gaps = [now - target for now, target in zip(levels, level.targets, strict=True)]
                episodes.note(f"decision/level_reset_{name}", sum(gaps))
                if level.parts is not None:  # each tier's mean margin's gap too
                    for tier, gap, total in zip(level.names, gaps, totals, strict=True):
                        episodes.note(f"decision/level_reset_{name}/{tier}", gap / total)
            episodes.note("time/level_reset_seconds", time.monotonic() - started)

        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            # TRL's own hook between scoring and the loss, the one place the advantages exist.
            output = super()._generate_and_score_completions(inputs)
            output["advantages"] = episodes.settle(output["advantages"], output["completion_ids"].size(1))
            if config.rl.decision_points == "every":  # which play each loss pass holds, after TRL shuffles
                output["play"] = torch.arange(output["completion_ids"].size(0))
            return output

    trainer = EpisodeTrainer(
        model=model,
        reward_funcs=rewards,  # type: ignore[arg-type]
        args=args,
        train_dataset=Dataset.from_list(training_rows(config)),
        processing_class=tokenizer,
        peft_config=None if _is_peft(model) else lora_config(config),
        rollout_func=episodes,  # type: ignore[arg-type]  # TRL types prompts as text; ours are chats
        callbacks=callbacks,
    )
    if config.rl.decision_level_reset:
        trainer.add_callback(_level_reset_callback(trainer))
    trainer.decision_head = head
    if replay is not None or config.rl.decision_learning_rate is not None:
        trainer.add_callback(_decision_saver(trainer, replay, head))
    if resumed is not None and replay is not None and (Path(resumed) / REPLAY_FILE).exists():
        replay.load(Path(resumed) / REPLAY_FILE)
    if resumed is not None and (Path(resumed) / DECISION_OPTIMIZER_FILE).exists():
        trainer.decision_optimizer_state = Path(resumed) / DECISION_OPTIMIZER_FILE
    quiet_progress(trainer, ("loss", "episodes/harmful_refusal_rate", "episodes/format_error_rate"))
    trainer.train(resume_from_checkpoint=resumed)
    return trainer


@dataclass(frozen=True)
class StepDecisions:
    """A step's decisions for the ranking and the level: each group's first-reply context (one
    read per group), or every play's decisions (``group_size`` reads per group), and the groups'
    verdicts (decision_rank.group_verdicts)."""

    reads: DecisionReads
    verdicts: list[float]
    group_size: int


@dataclass(frozen=True)
class _StepPoints:
    """The decisions a step's ranking and level read: where they are, each one's weight in the
    loss, their first read, with rl.decision_level_reset the level to hold (on these decisions,
    or on rl.decision_level_anchors), and whether TRL's passes add the loss (not when
    ``_decisions_apart`` added its gradient itself)."""

    reads: DecisionReads
    weights: PointWeights
    read: list[Any]
    level: _HeldLevel | None
    through_trl: bool = True


@dataclass(frozen=True)
class _HeldLevel:
    """A level rl.decision_level_reset holds: ``sum(weights * margins)`` over ``reads`` stays at
    ``targets[0]``; with ``parts`` (rl.decision_level_by_tier: each read's tier), each part's sum at
    its own target, the part named ``names[part]``. With a ``temperature`` (rl.decision_level_hold
    "rate") the sums are of ``sigmoid(margin / temperature)``. On anchors, ``reference`` keeps the
    frozen copy's margins there, which the targets are made from, unless ``rates`` (rl.decision_level_rates)
    gives each part's mean rate instead."""

    reads: DecisionReads
    weights: list[Any]
    targets: tuple[float, ...]
    parts: tuple[int, ...] | None = None
    names: tuple[str, ...] = ()
    reference: list[Any] | None = None
    temperature: float | None = None
    rates: tuple[float, ...] | None = None

    def part_of(self) -> tuple[int, ...]:
        """Each read's part: all 0 for one level over every read."""
        return self.parts if self.parts is not None else (0,) * len(self.weights)

    def raised(self, offset: float) -> _HeldLevel:
        """The level of the reference's margins each raised ``offset`` logits; with ``rates``, the
        rates themselves (the config allows no offset beside them)."""
        if self.rates is not None:
            totals = part_totals(self.weights, self.part_of(), len(self.targets))
            return replace(self, targets=tuple(rate * total for rate, total in zip(self.rates, totals, strict=True)))
        assert self.reference is not None, "a level raised from its reference margins"
        raised = [held_values(m + offset, self.temperature) for m in self.reference]
        targets = part_sums(raised, self.weights, self.part_of(), len(self.targets))
        return replace(self, targets=tuple(float(t) for t in targets))


def _anchors(
    config: TrainConfig, tokenizer: Any, reference: Any, answers: tuple[int, int]
) -> tuple[_HeldLevel | None, list[Any] | None]:
    """rl.decision_level_anchors: the mean margin the frozen copy gives the anchors (with
    rl.decision_level_by_tier, each tier's anchors; with rl.decision_level_hold "rate", the mean
    rate of " No" at rl.temperature, or rl.decision_level_rates' rate), to hold there, and the
    copy's states at them (the policy's too, while rl.train_adapter is false)."""
    if not config.rl.decision_level_anchors:
        return None, None
    tiers = config.rl.decision_level_anchor_tiers or [config.episodes.tier]
    kinds = config.rl.decision_level_anchor_kinds
    held = anchor_reads(tokenizer, config.episodes.envs, tiers, config.rl.decision_level_anchors, kinds)
    states = anchor_states(reference, held.reads)
    margins = [decision_margins(reference, read, answers) for read in states]
    parts = held.tier_of if config.rl.decision_level_by_tier else None
    names = held.tiers if config.rl.decision_level_by_tier else ()
    temperature = config.rl.temperature if config.rl.decision_level_hold == "rate" else None
    rates = config.rl.decision_level_rates
    level = _HeldLevel(
        held.reads,
        held.weights,
        (0.0,) * max(len(names), 1),
        parts,
        names,
        margins,
        temperature,
        tuple(rates[tier] for tier in held.tiers) if rates else None,
    )
    return level.raised(0.0), states


def _level_reset_callback(trainer: Any) -> Any:
    """A callback that resets the level after each optimizer step (``EpisodeTrainer.restore_level``)."""
    from transformers import TrainerCallback

    class LevelReset(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            trainer.restore_level()

    return LevelReset()


def _decision_saver(trainer: Any, replay: DecisionReplay | None, head: DecisionHead | None) -> Any:
    """A callback that keeps, beside each checkpoint, the replay's groups (``REPLAY_FILE``), the
    decision optimizer's state (``DECISION_OPTIMIZER_FILE``) and the decision head, so a resumed
    run goes on with them (and the checkpoint decides as the policy did)."""
    import torch
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class DecisionSaver(TrainerCallback):
        def on_save(self, args: Any, state: Any, *_: Any, **__: Any) -> None:
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if replay is not None:
                replay.save(folder / REPLAY_FILE)
            if trainer.decision_optimizer is not None:
                torch.save(trainer.decision_optimizer.state_dict(), folder / DECISION_OPTIMIZER_FILE)
            if head is not None:
                head.save(folder)

    return DecisionSaver()


def _decision_head(config: TrainConfig, model: Any, tokenizer: Any, resumed: str | None) -> DecisionHead | None:
    """rl.decision_optimizer "head": the head a resumed run saved, or one that changes nothing yet."""
    if config.rl.decision_optimizer != "head":
        return None
    saved = DecisionHead.load(Path(resumed)) if resumed is not None else None
    question, _ = decision_tokens(tokenizer)
    hidden_size = int(model.config.hidden_size)
    # It shifts the decisions it learns from: the first reply's, or every reply's.
    return saved or DecisionHead.zeros(question, answer_tokens(tokenizer), hidden_size, config.rl.decision_points)


def _world_size() -> int:
    from accelerate import PartialState

    return int(PartialState().num_processes)


def _is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)
