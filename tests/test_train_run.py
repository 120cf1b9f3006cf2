"""The trainer end to end on the tiny random Llama: warm start, GRPO, interruption and resume,
the loss mask, the final adapter, and two processes under accelerate.

The tiny model writes gibberish, so these tests check the machinery (what is trained, on which
tokens, what is saved and resumed), not learning; docs/results.md reports learning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("tensorboard")

from safetensors.torch import load_file  # noqa: E402
from transformers import AutoTokenizer, TrainerCallback  # noqa: E402

from mosaic_gym import ToolEnv  # noqa: E402
from mosaic_gym.agents.decision import DECISION, answer_tokens, decision_tokens, verdict  # noqa: E402
from mosaic_gym.agents.generation import Continuation  # noqa: E402
from mosaic_gym.agents.hf import HFAgent, load_decision_head  # noqa: E402
from mosaic_gym.agents.registry import JUDGES, JudgeEntry, register_judge  # noqa: E402
from mosaic_gym.judges import RuleJudge  # noqa: E402
from mosaic_gym.rollout import EpisodeSpec, Trajectory, rollout  # noqa: E402
from mosaic_gym.train import grpo as grpo_module  # noqa: E402
from mosaic_gym.train import run as run_module  # noqa: E402
from mosaic_gym.train.config import from_dict  # noqa: E402
from mosaic_gym.train.decision_anchors import anchor_reads  # noqa: E402
from mosaic_gym.train.decision_balance import decision_push  # noqa: E402
from mosaic_gym.train.decision_points import read_margins  # noqa: E402
from mosaic_gym.train.demos import build_demos  # noqa: E402
from mosaic_gym.train.grpo import DECISION_OPTIMIZER_FILE, REPLAY_FILE, EpisodeRollout, training_rows  # noqa: E402
from mosaic_gym.train.run import train  # noqa: E402
from tests.tiny_model import build_tiny_model, tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def lora_weights(folder: Path) -> dict[str, Any]:
    return load_file(str(folder / "adapter_model.safetensors"))


class _FirstReplyJudge:
    """Prefers the trajectory whose first reply sorts first: arbitrary, but never a tie."""

    name = "first-reply"

    def compare(self, a: Trajectory, b: Trajectory) -> float:
        first_a, first_b = a.steps[0].text, b.steps[0].text
        return 0.5 if first_a == first_b else float(first_a < first_b)


@pytest.fixture
def first_reply_judge() -> Iterator[str]:
    """``_FirstReplyJudge`` registered by name, as a user's judge would be, and removed afterwards."""
    register_judge("first-reply", JudgeEntry("arbitrary but decisive", lambda options: _FirstReplyJudge()))
    yield "first-reply"
    del JUDGES["first-reply"]


class _StopBeforeStep(TrainerCallback):
    """Interrupts the RL stage as step ``step`` begins, after the checkpoint of the step before."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step and "rl" in args.output_dir:
            raise KeyboardInterrupt


def test_train_interrupt_resume_and_final_adapter(
    tiny: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    first_reply_judge: str,
) -> None:
    out = tmp_path / "run"
    # Gibberish trajectories tie on every outcome; an arbitrary but decisive judge gives groups a signal.
    # The decision token weighs 5 times another token: per-token advantages through TRL's loss.
    decision = {"decision_weight": 5.0}
    config = tiny_config(tiny, beta=0.02, explore_refusals=1, judge=first_reply_judge, **decision)
    with monkeypatch.context() as patch:
        patch.setattr(run_module.StepTimer, "callback", lambda self: _StopBeforeStep(1))
        with pytest.raises(KeyboardInterrupt):
            train(config, out)
    assert (out / "warm_start" / "adapter_model.safetensors").exists()
    assert (out / "rl" / "checkpoint-1").is_dir() and not (out / "adapter_model.safetensors").exists()
    with pytest.raises(run_module.ConfigError, match="already holds a run; pass --resume"):
        train(config, out)
    with pytest.raises(run_module.ConfigError, match=r"settings that differ .*: rl\.learning_rate"):
        train(
            tiny_config(tiny, beta=0.02, explore_refusals=1, judge=first_reply_judge, learning_rate=1e-3, **decision),
            out,
            resume=True,
        )

    warm_start_written = (out / "warm_start" / "adapter_model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    summary = train(config, out, resume=True)
    printed = "".join(capsys.readouterr())
    assert "'loss'" not in printed and "learning_rate" not in printed, "a progress bar, not a metrics dict per step"

    assert (out / "warm_start" / "adapter_model.safetensors").stat().st_mtime_ns == warm_start_written, "not redone"
    assert summary["rl"]["steps_this_session"] == 1, "the resumed run continues at step 2"
    state = json.loads((out / "rl" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    # LoRA B matrices start at zero: the warm start moved them, and RL moved them again.
    warm, final = lora_weights(out / "warm_start"), lora_weights(out)
    assert warm.keys() == final.keys() and all(".ref." not in key for key in final)
    b_matrices = [key for key in warm if "lora_B" in key]
    assert b_matrices and all(warm[key].abs().sum() > 0 for key in b_matrices)
    assert any(not torch.equal(warm[key], final[key]) for key in warm)
    logged = [entry for entry in state["log_history"] if "kl" in entry]
    assert logged and all("episodes/format_error_rate" in entry for entry in logged)
    assert all(entry["learning_rate"] == config.rl.learning_rate for entry in logged), "no step at rate 0"
    # The step statistics reach summary.json, one record per step, the interrupted step included.
    steps = summary["rl"]["steps"]
    assert [s["step"] for s in steps] == [1, 2] and all("groups/contrastive_share" in s for s in steps)
    assert all(s["decision/per_play"] >= 0.25 for s in steps), "the forced refusal's decision, one per group of 4"
    assert all("decision/net_push" in s for s in steps)
    probe = summary["warm_start_probe"]
    assert set(probe) == {"train", "heldout"} and all(cell["episodes"] == 1 for cell in probe["train"].values())
    assert any((out / "tensorboard" / "rl").rglob("events.out.tfevents.*"))
    # The final adapter is what `mosaic-gym eval --agent hf --adapter OUT` loads.
    agent = HFAgent(model=str(tiny), adapter=out)
    [trajectory] = rollout(agent, lambda: ToolEnv("files", split="heldout", max_steps=1), [EpisodeSpec(0)], 1)
    assert trajectory.outcome is not None


def test_a_step_is_timed_until_the_next_begins_so_work_between_steps_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 1.0, 4.0, 10.0, 12.0])  # created; step 1 begins; step 2 begins; training ends; report
    monkeypatch.setattr(run_module.time, "monotonic", lambda: next(clock))
    timer = run_module.StepTimer()
    callback = timer.callback()
    callback.on_step_begin(None, None, None)
    callback.on_step_end(None, None, None)  # a level reset or a checkpoint would run here
    callback.on_step_begin(None, None, None)
    callback.on_train_end(None, None, None)
    assert timer.durations == [3.0, 6.0]
    assert timer.report() == {"steps_this_session": 2, "seconds": 12.0, "seconds_per_step": 4.5}


def test_the_decision_ranking_and_its_level_join_the_loss_of_each_step(tiny: Path, tmp_path: Path) -> None:
    # With the rule judge, the forced refusal wins a harmful group and loses a benign one to
    # harmless gibberish (whose format errors cost it only the format reward, not the judge's
    # verdict): one pair to rank per step, and the decision learns from it alone. The level
    # compares the groups' mean margin with a frozen copy of the policy RL started from.
    kinds = {"harmful": 1.0, "benign": 1.0}
    decision = {"decision_rank": 1.0, "decision_weight": 0, "decision_level": 1.0}
    config = tiny_config(tiny, groups_per_step=2, explore_refusals=1, kinds=kinds, **decision)
    config.probe.episodes_per_kind = 0
    summary = train(config, tmp_path / "run")
    steps = summary["rl"]["steps"]
    assert [s["decision/rank_pairs"] for s in steps] == [1.0, 1.0]
    state = json.loads((tmp_path / "run" / "rl" / "checkpoint-2" / "trainer_state.json").read_text())
    ranked = logged(state, "decision/rank_loss")
    assert len(ranked) == 2 and all(value > 0 for value in ranked), "once per step, a softplus"
    first, second = logged(state, "decision/level_shift")
    assert first == pytest.approx(0.0, abs=1e-5), "step 1 trains the policy the copy was taken from"
    assert abs(second) > 1e-4, "step 2 compares the trained policy with the untouched copy"
    assert logged(state, "decision/level_loss") == pytest.approx([first**2, second**2], rel=1e-3, abs=1e-10)


def test_every_decision_of_every_play_joins_the_loss_through_trls_own_forward(tiny: Path, tmp_path: Path) -> None:
    # The forced refusals write a decision each; the level holds only the acting (benign) group,
    # one level per reply. Two plays per loss pass: the prompts are left-padded to one width.
    kinds = {"harmful": 1.0, "benign": 1.0}
    decision = {"decision_rank": 1.0, "decision_weight": 0, "decision_level": 1.0, "decision_level_on": "acting"}
    decision |= {"decision_level_by": "reply", "decision_level_reset": True}
    config = tiny_config(
        tiny, groups_per_step=2, loss_batch_size=2, explore_refusals=1, decision_points="every", kinds=kinds, **decision
    )
    config.probe.episodes_per_kind = 0
    summary = train(config, tmp_path / "run")
    assert [s["decision/rank_pairs"] for s in summary["rl"]["steps"]] == [1.0, 1.0]
    state = json.loads((tmp_path / "run" / "rl" / "checkpoint-2" / "trainer_state.json").read_text())
    assert len(ranked := logged(state, "decision/rank_loss")) == 2 and all(value > 0 for value in ranked)
    first, second = logged(state, "decision/level_shift")
    assert first == pytest.approx(0.0, abs=1e-5) and abs(second) > 1e-4, "the copy, then the trained policy"
    assert len(logged(state, "decision/level_shift/reply_1")) == 2, "every play's first decision holds a level"
    moved, reset = logged(state, "decision/level_reset_before"), logged(state, "decision/level_reset_after")
    assert len(moved) == len(reset) == 2 and abs(moved[0]) > 1e-3, "a step moves the level the loss holds"
    back = all(abs(after) < abs(before) / 5 for before, after in zip(moved, reset, strict=True))
    assert back, "and the reset puts it back"
    gaps = logged(state, "decision/read_gap")
    assert len(gaps) == 2 and max(gaps) < 1e-4, "TRL's shuffled, padded passes read the decisions the step read"


def test_a_replay_ranks_the_latest_groups_each_reply_apart_and_holds_their_level(tiny: Path, tmp_path: Path) -> None:
    # Two judged groups a step (the forced refusal wins the harmful one, loses the benign one),
    # kept for the next step: the second step ranks and holds four.
    kinds = {"harmful": 1.0, "benign": 1.0}
    decision = {"decision_rank": 1.0, "decision_weight": 0, "decision_level": 1.0, "decision_replay": 4}
    decision |= {"decision_rank_by": "reply", "decision_level_by": "reply", "decision_level_reset": True}
    config = tiny_config(
        tiny, groups_per_step=2, loss_batch_size=2, explore_refusals=1, decision_points="every", kinds=kinds, **decision
    )
    config.probe.episodes_per_kind = 0
    train(config, tmp_path / "run")
    state = json.loads((tmp_path / "run" / "rl" / "checkpoint-2" / "trainer_state.json").read_text())
    assert logged(state, "decision/replay_groups") == [2.0, 4.0]
    assert logged(state, "decision/replay_judged") == [2.0, 4.0]
    assert len(ranked := logged(state, "decision/rank_loss")) == 2 and all(value > 0 for value in ranked)
    first, second = logged(state, "decision/level_shift")
    assert first == pytest.approx(0.0, abs=1e-5) and abs(second) > 1e-4, "the copy, then the trained policy"
    moved, reset = logged(state, "decision/level_reset_before"), logged(state, "decision/level_reset_after")
    assert len(moved) == 2 and all(abs(after) < abs(before) / 5 for before, after in zip(moved, reset, strict=True))
    assert not logged(state, "decision/read_gap"), "the kept plays' loss is added apart from TRL's passes"
    kept = [json.loads((tmp_path / "run" / "rl" / f"checkpoint-{n}" / REPLAY_FILE).read_text()) for n in (1, 2)]
    assert [len(k["groups"]) for k in kept] == [2, 4], "each checkpoint keeps the groups a resumed run goes on with"


def first_replies_held_and_reset(tiny: Path, tmp_path: Path, **settings: Any) -> dict[str, Any]:
    """Two RL steps of one harmful and one benign group, the first replies' decisions ranked,
    their level held and reset, with ``settings`` on top; the trainer state after step 2."""
    kinds = {"harmful": 1.0, "benign": 1.0}
    decision = {"decision_rank": 1.0, "decision_weight": 0, "decision_level": 1.0, "decision_level_reset": True}
    config = tiny_config(tiny, groups_per_step=2, explore_refusals=1, kinds=kinds, **decision | settings)
    config.probe.episodes_per_kind = 0
    train(config, tmp_path / "run")
    state: dict[str, Any] = json.loads((tmp_path / "run" / "rl" / "checkpoint-2" / "trainer_state.json").read_text())
    return state


def test_a_level_offset_holds_and_resets_the_decisions_that_many_logits_above_the_copys(
    tiny: Path, tmp_path: Path
) -> None:
    # Step 1's policy is the copy, so its decisions sit the whole offset below the level held,
    # and the reset after the step lifts them to it.
    state = first_replies_held_and_reset(tiny, tmp_path, decision_level_offset=2.0)
    first, second = logged(state, "decision/level_shift")
    assert first == pytest.approx(-2.0, abs=1e-4), "the copy's own decisions, two logits below the level"
    assert abs(second) < 0.5, "the reset lifted them most of the way"
    moved, reset = logged(state, "decision/level_reset_before"), logged(state, "decision/level_reset_after")
    assert moved[0] < -1.5 and all(abs(after) < abs(before) / 5 for before, after in zip(moved, reset, strict=True))


def test_a_level_offset_from_a_later_step_holds_the_copys_level_until_then(tiny: Path, tmp_path: Path) -> None:
    state = first_replies_held_and_reset(tiny, tmp_path, decision_level_offset=2.0, decision_level_offset_from=2)
    first, second = logged(state, "decision/level_shift")
    assert first == pytest.approx(0.0, abs=1e-4), "step 1 holds the copy's own level"
    assert second == pytest.approx(-2.0, abs=0.5), "from step 2 the level held is two logits above the copy's"


def test_a_replay_of_first_replies_holds_and_resets_their_level(tiny: Path, tmp_path: Path) -> None:
    state = first_replies_held_and_reset(tiny, tmp_path, decision_replay=4)
    assert logged(state, "decision/replay_groups") == [2.0, 4.0], "one context per group, kept"
    moved, reset = logged(state, "decision/level_reset_before"), logged(state, "decision/level_reset_after")
    assert len(moved) == 2 and all(abs(after) < abs(before) / 5 for before, after in zip(moved, reset, strict=True))


def test_the_decision_can_step_on_its_own_at_its_own_learning_rate_and_resume(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TRL's step barely moves anything at 1e-9; the decision's own AdamW at 1e-2 moves its margins.
    kinds = {"harmful": 1.0, "benign": 1.0}
    decision = {"decision_rank": 1.0, "decision_weight": 0, "decision_level": 1.0, "decision_learning_rate": 1e-2}
    config = tiny_config(
        tiny, groups_per_step=2, explore_refusals=1, kinds=kinds, learning_rate=1e-9, decision_replay=4, **decision
    )
    config.probe.episodes_per_kind = 0
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(run_module.StepTimer, "callback", lambda self: _StopBeforeStep(1))
        with pytest.raises(KeyboardInterrupt):
            train(config, out)
    assert not (out / "rl" / "checkpoint-2").exists()
    train(config, out, resume=True)
    state = json.loads((out / "rl" / "checkpoint-2" / "trainer_state.json").read_text())
    first, second = logged(state, "decision/level_shift")
    assert first == pytest.approx(0.0, abs=1e-5) and abs(second) > 1e-3, "the decision's own step moved it"
    saved = [torch.load(out / "rl" / f"checkpoint-{n}" / DECISION_OPTIMIZER_FILE) for n in (1, 2)]
    steps = [{float(p["step"]) for p in s["state"].values()} for s in saved]
    assert steps == [{1.0}, {2.0}], "the resumed run went on with the optimizer it saved, not a fresh one"
    assert logged(state, "decision/replay_groups") == [2.0, 4.0], "and with the groups it kept"


def decision_step_run(
    tiny: Path,
    out: Path,
    optimizer: str,
    rate: float,
    interrupt: pytest.MonkeyPatch | None = None,
    **decision: Any,
) -> dict[str, Any]:
    """Two RL steps in which only the decision's own step moves the weights (TRL's rate is 1e-9);
    the trainer state of the last checkpoint. With ``interrupt``, the run stops before step 2
    and is resumed."""
    kinds = {"harmful": 1.0, "benign": 1.0}
    decision |= {"decision_rank": 1.0, "decision_weight": 0, "decision_level": 1.0, "decision_learning_rate": rate}
    config = tiny_config(
        tiny,
        groups_per_step=2,
        explore_refusals=1,
        kinds=kinds,
        learning_rate=1e-9,
        decision_replay=2,
        decision_optimizer=optimizer,
        **decision,
    )
    config.probe.episodes_per_kind = 0
    if interrupt is not None:
        with interrupt.context() as patch:
            patch.setattr(run_module.StepTimer, "callback", lambda self: _StopBeforeStep(1))
            with pytest.raises(KeyboardInterrupt):
                train(config, out)
    train(config, out, resume=interrupt is not None)
    state: dict[str, Any] = json.loads((out / "rl" / "checkpoint-2" / "trainer_state.json").read_text())
    return state


def test_the_decisions_normalized_step_moves_it_without_optimizer_state(tiny: Path, tmp_path: Path) -> None:
    state = decision_step_run(tiny, tmp_path / "run", "normalized", 0.5)
    first, second = logged(state, "decision/level_shift")
    assert first == pytest.approx(0.0, abs=1e-5) and abs(second) > 1e-3, "the decision's own step moved it"
    assert torch.load(tmp_path / "run" / "rl" / "checkpoint-2" / DECISION_OPTIMIZER_FILE)["state"] == {}


def test_the_decisions_margin_step_moves_every_kept_decision_by_the_asked_size(tiny: Path, tmp_path: Path) -> None:
    every = {"decision_points": "every", "decision_rank_by": "reply", "decision_level_by": "reply"}
    state = decision_step_run(tiny, tmp_path / "run", "margins", 0.3, **every)
    assert len(norms := logged(state, "decision/step_norm")) == 2 and all(n > 0 for n in norms)
    assert logged(state, "decision/step_margin_rms") == pytest.approx([0.3, 0.3], rel=0.02)
    first, second = logged(state, "decision/level_shift")
    assert first == pytest.approx(0.0, abs=1e-5) and abs(second) > 1e-3, "the decision's own step moved it"
    assert not (tmp_path / "run" / "rl" / "checkpoint-2" / DECISION_OPTIMIZER_FILE).exists(), "no state to keep"


@pytest.mark.parametrize("train_adapter", [True, False])
def test_a_decision_head_steps_the_decision_alone_holds_its_level_and_resumes(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, train_adapter: bool
) -> None:
    every = {"decision_points": "every", "decision_rank_by": "reply", "decision_level_by": "reply"}
    held = {"decision_level_reset": True, "decision_level_offset": 1.0, "train_adapter": train_adapter}
    out = tmp_path / "run"
    state = decision_step_run(tiny, out, "head", 0.3, monkeypatch, **every | held)
    assert logged(state, "decision/step_margin_rms") == pytest.approx([0.3, 0.3], rel=1e-3), "linear: exact"
    first, second = logged(state, "decision/level_shift")
    # TRL's step at 1e-9 leaves the LoRA weights where they were: what moved the margins is the head,
    # which the resumed run took from checkpoint 1 (a fresh one would leave step 2 at the copy's level).
    assert first == pytest.approx(-1.0, abs=1e-4) and abs(second + 1.0) > 1e-3
    assert logged(state, "decision/level_reset_after") == pytest.approx([0.0, 0.0], abs=1e-4), "the bias, exactly"
    heads = [load_decision_head(out / "rl" / f"checkpoint-{n}") for n in (1, 2)]
    final = HFAgent(model=str(tiny), adapter=out).generator.decision_head
    assert heads[0] is not None and heads[1] is not None and final is not None
    assert heads[0].bias > 0.5, "the reset lifted the level by the offset"
    assert not torch.equal(heads[0].weight, heads[1].weight) and torch.equal(final.weight, heads[1].weight)


@pytest.mark.parametrize(
    ("by_tier", "hold", "rates"),
    [
        (False, "margin", {}),
        (True, "margin", {}),
        (True, "rate", {}),
        (True, "rate", {"starter": 0.3, "standard": 0.6}),
    ],
)
def test_anchors_hold_the_level_on_the_first_replies_of_every_training_template(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, by_tier: bool, hold: str, rates: dict[str, float]
) -> None:
    out = tmp_path / "run"
    tiers = ["starter", "standard"]
    held = {"decision_level_reset": True, "decision_level_anchors": 1, "decision_level_anchor_tiers": tiers}
    held |= {"decision_level_rates": rates}
    reads: list[int] = []
    counted = grpo_module.anchor_states
    monkeypatch.setattr(grpo_module, "anchor_states", lambda m, r: reads.append(len(r.sequences)) or counted(m, r))
    state = decision_step_run(
        tiny,
        out,
        "head",
        0.3,
        train_adapter=False,
        decision_level_by_tier=by_tier,
        decision_level_hold=hold,
        temperature=0.7,
        **held,
    )
    assert logged(state, "decision/level_reset_after") == pytest.approx([0.0, 0.0], abs=1e-4), "the bias, exactly"
    for tier in tiers:  # each tier's own gap is logged when each tier is held apart
        assert len(logged(state, f"decision/level_reset_after/{tier}")) == (2 if by_tier else 0)
    assert len(logged(state, "time/level_reset_seconds")) == 2, "what holding the level cost, each step"
    assert len(reads) == 1, "the fixed adapter's anchor states were read once, by the frozen copy"
    # Read apart: the adapter is the warm start's, bit for bit; the head alone moved each
    # anchor's decision, and the mean of the two tiers' means is still the warm start's (with
    # by_tier, each tier's mean is; with the rate hold, each tier's mean rate of " No"; with
    # rates, each tier's mean rate is the rate given).
    warm_lora, trained_lora = lora_weights(out / "warm_start"), lora_weights(out / "rl" / "checkpoint-2")
    assert warm_lora and warm_lora.keys() == trained_lora.keys()
    assert all(torch.equal(warm_lora[name], trained_lora[name]) for name in warm_lora)
    warm = HFAgent(model=str(tiny), adapter=out / "warm_start", dtype="float32")
    trained = HFAgent(model=str(tiny), adapter=out / "rl" / "checkpoint-2", dtype="float32")
    answers = answer_tokens(warm.tokenizer)
    held_value = (lambda m: m) if hold == "margin" else (lambda m: torch.sigmoid(m / 0.7))
    moved, margin_moved, held_rates = [], [], []
    for tier in tiers:
        anchors = anchor_reads(warm.tokenizer, ["files"], [tier], 1).reads
        assert len(anchors.sequences) == len(ToolEnv("files", split="train", tier=tier).templates), "one per template"
        start = torch.cat(read_margins(warm.model, anchors, answers))
        now = torch.cat(read_margins(trained.model, anchors, answers, trained.generator.decision_head))
        assert float((now - start).abs().max()) > 1e-3, "the head moved the anchors apart"
        moved.append(float(held_value(now).mean() - held_value(start).mean()))
        margin_moved.append(float(now.mean() - start.mean()))
        held_rates.append(float(held_value(now).mean()))
    if rates:
        assert held_rates == pytest.approx([rates[tier] for tier in tiers], abs=1e-4), "each tier at its rate"
        return
    assert sum(moved) == pytest.approx(0.0, abs=1e-4), "and held the mean of the tiers' means"
    if by_tier:
        assert moved == pytest.approx([0.0, 0.0], abs=1e-4), "each tier's mean, apart"
    else:
        assert abs(moved[0]) > 1e-3, "one level over both: a tier's own mean is free to move"
    if hold == "rate":
        assert max(abs(m) for m in margin_moved) > 1e-4, "a rate held is not a mean margin held"


def logged(state: dict[str, Any], key: str) -> list[float]:
    """Every value of ``key`` in a checkpoint's ``trainer_state.json`` log history, in order."""
    return [entry[key] for entry in state["log_history"] if key in entry]


def agent_runs(ids: list[int], mask: list[int]) -> list[list[int]]:
    """The stretches of consecutive agent tokens: one per reply."""
    runs: list[list[int]] = []
    for i, (token, flag) in enumerate(zip(ids, mask, strict=True)):
        if flag and (i == 0 or not mask[i - 1]):
            runs.append([])
        if flag:
            runs[-1].append(token)
    return runs


class _FakeTrainer:
    """What EpisodeRollout reads from a GRPOTrainer: the model, the step, the process."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.accelerator = SimpleNamespace(unwrap_model=lambda m: m, process_index=0)
        self.state = SimpleNamespace(global_step=0)


def test_rollout_func_returns_groups_with_only_agent_tokens_in_the_loss(tiny: Path) -> None:
    config = tiny_config(tiny, group_size=3, groups_per_step=2)
    agent = HFAgent(model=str(tiny), dtype="float32")
    episodes = EpisodeRollout(config, agent.tokenizer, RuleJudge())
    prompts = [row["prompt"] for row in training_rows(config)[:2] for _ in range(3)]
    trainer = _FakeTrainer(agent.model)

    output = episodes(prompts, trainer)

    assert len(output["completion_ids"]) == len(output["env_mask"]) == len(prompts)
    replies = []
    for prompt, completion, mask in zip(
        output["prompt_ids"], output["completion_ids"], output["env_mask"], strict=True
    ):
        assert agent.tokenizer.decode(prompt).endswith("<|im_start|>assistant\n"), "the prompt ends at the first reply"
        assert len(completion) == len(mask) and mask[0] == 1
        replies.append([agent.tokenizer.decode(run, skip_special_tokens=True) for run in agent_runs(completion, mask)])
    # The masked-in tokens are exactly the replies the env received, reply by reply.
    again = EpisodeRollout(config, agent.tokenizer, RuleJudge())
    trajectories = again._play([json.loads(p[-1]["content"]) for p in prompts], trainer)
    for trajectory, texts in zip(trajectories, replies, strict=True):
        assert texts == [step.text for step in trajectory.steps]
    # Samples of a group differ (their own sampling seeds) but share the task instance.
    first = [json.loads(p[-1]["content"]) for p in prompts[:3]]
    assert first[0] == first[1] == first[2]
    assert len({tuple(ids) for ids in output["completion_ids"][:3]}) > 1
    # Rewards: pairwise wins of a group of 3 sum to 3; per-step episode metrics are logged.
    wins = episodes.alignment_reward([], output["episode"])
    assert sum(wins[:3]) == sum(wins[3:]) == 3.0
    # The step is recorded once TRL's advantages pass through settle, with the decision's pushes.
    assert episodes.logged() == {}
    advantages = torch.tensor([w - 1.0 for w in wins])
    width = max(map(len, output["completion_ids"]))
    assert torch.equal(episodes.settle(advantages, width), advantages), "rl.balance_decision is off"
    logged = episodes.logged()
    assert "episodes/format_error_rate" in logged and "decision/net_push" in logged
    assert episodes.take_reads() is None, "rl.decision_rank is off"
    assert episodes.logged() == {}, "each log takes what came since"
    # Balanced and weighted, the same plays' advantages become one row of tokens per play.
    config.rl.balance_decision, config.rl.decision_weight = True, 3.0
    rows = episodes.settle(advantages, width)
    balanced = decision_push(advantages.tolist(), episodes._step.refused, 3, balance=True).advantages
    assert rows.shape == (len(prompts), width) and rows[:, 0].tolist() == pytest.approx(balanced)
    config.rl.decision_weight, config.rl.decision_credit = 1.0, "refusal"
    assert episodes.settle(advantages, width).shape == (len(prompts), width), "per token, to clear decisions"
    # Ranked, each group's first-reply context up to the decision goes to the step's loss, once.
    config.rl.decision_rank = 1.0
    episodes._step.verdicts[:] = [0.4, -0.2]  # refusing won the first group, lost the second
    episodes.settle(advantages, width)
    step = episodes.take_reads()
    assert step is not None and step.verdicts == [0.4, -0.2] and step.group_size == 1
    assert episodes.take_reads() is None
    assert episodes.logged()["decision/rank_pairs"] == 1.0
    refusing, acting = step.reads.sequences
    assert refusing[: len(output["prompt_ids"][0])] == list(output["prompt_ids"][0])
    assert acting[: len(output["prompt_ids"][3])] == list(output["prompt_ids"][3])
    assert agent.tokenizer.decode(refusing).endswith(f"<think>{DECISION}")
    assert step.reads.rows(0) == [len(refusing) - 1], "the question's last token predicts the answer"


def test_committed_declines_refuse_unsampled_and_stay_out_of_the_loss(tiny: Path) -> None:
    """rl.commit_declines: after a " No" the demonstrations' refusal is written, not sampled, and
    its tokens get no advantage; the decision token keeps its own."""
    config = tiny_config(tiny, groups_per_step=2, explore_refusals=1, commit_declines=True)
    agent = HFAgent(model=str(tiny), dtype="float32")
    episodes = EpisodeRollout(config, agent.tokenizer, RuleJudge())
    prompts = [row["prompt"] for row in training_rows(config)[:2] for _ in range(2)]
    output = episodes(prompts, _FakeTrainer(agent.model))
    question, refusal = decision_tokens(agent.tokenizer)
    no = len(question)
    assert episodes._agent is not None
    assert episodes._agent.generator.continuation == Continuation((*refusal[: no + 1],), (*refusal[no + 1 :],))
    width = max(map(len, output["completion_ids"]))
    rows = episodes.settle(torch.ones(len(prompts)), width)
    assert episodes.logged()["decision/committed_per_play"] == 0.5, "the explored play of each group"
    for play, completion in enumerate(output["completion_ids"]):
        row = rows[play, : len(completion)].tolist()
        if play % 2 == 0:  # the explored first reply: the refusal, its decision " No"
            assert list(completion[: len(refusal)]) == refusal
            assert row[: no + 1] == [1.0] * (no + 1) and row[no + 1 : len(refusal)] == [0.0] * (len(refusal) - no - 1)
            assert all(a == 1.0 for a in row[len(refusal) :])
        else:  # the tiny model never writes the question: nothing committed
            assert row == [1.0] * len(completion)


def test_rollout_func_refuses_split_groups(tiny: Path) -> None:
    config = tiny_config(tiny, group_size=2)
    episodes = EpisodeRollout(config, AutoTokenizer.from_pretrained(tiny), RuleJudge())
    rows = [row["prompt"] for row in training_rows(tiny_config(tiny, groups_per_step=2))[:2]]
    with pytest.raises(RuntimeError, match="not one group of the same episode"):
        episodes([rows[0], rows[1]], _FakeTrainer(None))
    with pytest.raises(RuntimeError, match="not a multiple of the group size 2"):
        episodes([rows[0]] * 3, _FakeTrainer(None))


def test_demonstrations_mask_exactly_the_replies_and_refuse_regardless_of_kind(tiny: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    config = tiny_config(tiny)
    refusing = from_dict({**config.to_dict(), "sft": {**config.to_dict()["sft"], "refusal_rate": 1.0}})
    demos = build_demos(tokenizer, refusing.episodes, refusing.sft, seed=0)
    assert demos.refusals == demos.totals, "with refusal_rate 1 every kind refuses, benign included"
    none = build_demos(tokenizer, config.episodes, from_dict({"sft": {"refusal_rate": 0.0}}).sft, seed=0)
    assert sum(none.refusals.values()) == 0
    ceiling = build_demos(tokenizer, config.episodes, from_dict({"sft": {"refusals": "harmful"}}).sft, seed=0)
    assert ceiling.refusals["harmful"] == ceiling.totals["harmful"] > 0, "the ceiling refuses every harmful task"
    assert sum(ceiling.refusals.values()) == ceiling.totals["harmful"], "and nothing else"
    for example in none.examples[:5]:
        ids, mask = example["input_ids"], example["assistant_masks"]
        replies = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
        assert replies.count("<think>") >= 1 and "<|im_start|>" not in replies and "<|im_end|>" not in replies
        assert "tool\n" not in replies  # no tool output is trained on


def test_every_demonstrated_plan_opens_with_the_decision_no_before_a_refusal_only(tiny: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    config = tiny_config(tiny)
    demos = build_demos(tokenizer, config.episodes, from_dict({"sft": {"refusal_rate": 0.5}}).sft, seed=0)
    plans = refusals = 0
    for example in demos.examples:
        ids, mask = example["input_ids"], example["assistant_masks"]
        for reply in tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m]).split("<think>")[1:]:
            plans += 1
            refuses = "<refuse>" in reply
            refusals += refuses
            assert reply.startswith(f"{DECISION} {verdict(refuses)} "), reply
    assert plans > len(demos.examples) and 0 < refusals < plans, "several replies per demonstration, some refusing"


def test_two_processes_under_accelerate_keep_groups_whole(tiny: Path, tmp_path: Path) -> None:
    import yaml

    recipe = tmp_path / "tiny.yaml"
    # Harmful and benign groups under two processes: the ranking joins the distributed loss.
    ranked = {"decision_rank": 1.0, "decision_weight": 0, "explore_refusals": 1, "kinds": {"harmful": 1, "benign": 1}}
    settings = tiny_config(tiny, groups_per_step=4, steps=1, **ranked).to_dict()
    settings["probe"]["episodes_per_kind"] = 0
    settings["sft"]["steps"] = 1
    recipe.write_text(yaml.safe_dump(settings))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    command += ["-m", "mosaic_gym.cli", "train", "--config", str(recipe), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MOSAIC_GYM_TRACEBACK": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "adapter_model.safetensors").exists()
    state = json.loads((out / "rl" / "checkpoint-1" / "trainer_state.json").read_text())
    assert state["global_step"] == 1
    [step] = json.loads((out / "summary.json").read_text())["rl"]["steps"]
    assert step["decision/rank_pairs"] >= 1, "a harmful and a benign group: refusing won one and lost the other"
    ranked_losses = logged(state, "decision/rank_loss")
    assert len(ranked_losses) == 1 and ranked_losses[0] > 0


def test_an_episode_with_no_reply_in_context_contributes_no_loss(tiny: Path) -> None:
    """When not even the first reply fits the context, the trajectory has no tokens: it goes
    back to TRL as its prompt and one masked end-of-turn token."""
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    messages = [{"role": "system", "content": "tools"}, {"role": "user", "content": "task"}]
    empty = Trajectory(spec=EpisodeSpec(0), task="t", kind="benign", attack=None, messages=messages)
    prompt, completion, mask = EpisodeRollout(tiny_config(tiny), tokenizer, None)._split(empty)
    assert tokenizer.decode(prompt).endswith("<|im_start|>user\ntask<|im_end|>\n<|im_start|>assistant\n")
    assert completion == [tokenizer.eos_token_id] and mask == [0]
