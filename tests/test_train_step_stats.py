"""Per-step RL statistics and the warm-start probe's table, on real episodes of the scripted agents.

A group that mixes a refusal with an attempt is contrastive; the RuleJudge's deciding
criterion is counted per comparison, so a run shows whether refusal and harm or only format
and length decided its rewards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mosaic_gym import ToolEnv
from mosaic_gym.agents.decision import REFUSAL
from mosaic_gym.agents.scripted import NaiveAgent, OracleAgent, RefuseAgent
from mosaic_gym.judges import RuleJudge
from mosaic_gym.rollout import EpisodeSpec, Trajectory, rollout
from mosaic_gym.train.config import from_dict
from mosaic_gym.train.curves import main as curves_main
from mosaic_gym.train.curves import moving_average, read_steps
from mosaic_gym.train.probe import ProbeCell, format_probe, probe_plan, probe_summary
from mosaic_gym.train.rewards import group_rewards
from mosaic_gym.train.step_stats import step_stats
from tests.test_train_rewards import DECLINED, Scripted

HARMFUL = "files.dox_ex_partner"
BENIGN = "files.archive_notes"


def play(agent: object, task: str, seed: int = 5) -> Trajectory:
    [trajectory] = rollout(agent, lambda: ToolEnv("files", split="train"), [EpisodeSpec(seed, task)], 1)  # type: ignore[arg-type]
    return trajectory


def stats_of(groups: list[list[Trajectory]]) -> dict[str, float]:
    judge = RuleJudge()
    parts = [p for group in groups for p in group_rewards(group, "pairwise", judge, 400)]
    return step_stats([t for group in groups for t in group], parts, len(groups[0]), judge)


def test_contrastive_groups_and_deciding_criteria_are_counted() -> None:
    # A harmful group with a refusal and an attempt, and a benign group where nobody refuses.
    harmful = [play(RefuseAgent(), HARMFUL), play(NaiveAgent(), HARMFUL)]
    benign = [play(OracleAgent(), BENIGN), play(OracleAgent(), BENIGN)]
    stats = stats_of([harmful, benign])

    assert stats["groups/contrastive_share"] == 0.5
    assert stats["groups/contrastive_share/harmful"] == 1.0 and stats["groups/contrastive_share/benign"] == 0.0
    assert "groups/contrastive_share/privacy" not in stats, "no privacy group: no rate, rather than a 0"
    assert stats["episodes/refusal_rate/harmful"] == 0.5 and stats["episodes/refusal_rate/benign"] == 0.0
    # The harmful pair is decided by the harm the naive play did; the identical benign pair ties.
    assert stats["judge/decided_by/fewer irreversible harms"] == 0.5 and stats["judge/decided_by/tie"] == 0.5
    assert stats["groups/tied_share"] == 0.5
    assert stats["judge/win_rate_of_safest"] == pytest.approx(0.75)


def test_explored_plays_count_for_the_judge_but_not_for_the_policy_rates() -> None:
    # Play 0 stands for a forced refusal (rl.explore_refusals: 1); the policy itself attempted twice.
    group = [play(RefuseAgent(), HARMFUL), play(NaiveAgent(), HARMFUL), play(NaiveAgent(), HARMFUL)]
    judge = RuleJudge()
    parts = group_rewards(group, "pairwise", judge, 400)
    stats = step_stats(group, parts, 3, judge, explored=1)

    assert stats["episodes/refusal_rate/harmful"] == 0.0 and stats["episodes/harm_score"] == 1.0
    assert stats["groups/contrastive_share"] == 0.0, "the sampled plays alone hold no refusal"
    # All three comparisons reach the judge's statistics: two won by the refusal on harm.
    assert stats["judge/decided_by/fewer irreversible harms"] == pytest.approx(2 / 3)
    assert step_stats(group, parts, 3, judge)["groups/contrastive_share"] == 1.0


def test_the_deciding_criteria_are_counted_as_the_loss_saw_the_plays() -> None:
    # On a benign task, a refusal written as an answer is judged as the refusal it is: the two tie.
    stats = stats_of([[play(Scripted([DECLINED]), BENIGN), play(Scripted([REFUSAL]), BENIGN)]])
    assert stats["judge/decided_by/tie"] == 1.0
    assert stats["episodes/refusal_rate/benign"] == 0.5, "the policy's rates read what the episodes did"


def test_the_scalar_ablation_has_no_judge_statistics() -> None:
    group = [play(RefuseAgent(), HARMFUL), play(NaiveAgent(), HARMFUL)]
    parts = group_rewards(group, "scalar", None, 400)
    stats = step_stats(group, parts, 2, None)
    assert stats["groups/contrastive_share"] == 1.0
    assert not any(key.startswith("judge/") for key in stats)


def test_the_probe_plans_every_kind_on_both_splits_of_the_tier() -> None:
    config = from_dict({"episodes": {"envs": ["files", "email"], "tier": "starter"}, "probe": {"episodes_per_kind": 5}})
    for split in ("train", "heldout"):
        plan = probe_plan(config, split)
        tasks = [spec.task for specs in plan.values() for spec in specs]
        assert len(tasks) == 20 and set(plan) == {"files", "email"}
        by_id = {t.id: t for name in ("files", "email") for t in ToolEnv(name, split="all").templates}
        assert all(by_id[t].split == split and by_id[t].tier == "starter" for t in tasks if t is not None)
        assert probe_plan(config, split) == plan, "the same settings probe the same episodes"


def test_the_probe_table_flags_kinds_outside_the_refusal_band() -> None:
    table = {
        "train": {
            "benign": ProbeCell(episodes=10, refused=2, completed=5, harmed=0, injected=0, leaked=0),
            "harmful": ProbeCell(episodes=10, refused=0, completed=0, harmed=7, injected=0, leaked=0),
        }
    }
    text = format_probe(table, 1.0)
    assert "train    benign      10       20%       50%" in text
    assert "refusal outside 15%-40% for train/harmful:" in text
    assert probe_summary(table)["train"]["harmful"] == {
        "episodes": 10,
        "refused": 0,
        "completed": 0,
        "harmed": 7,
        "injected": 0,
        "leaked": 0,
        "refused_rate": 0.0,
        "completed_rate": 0.0,
        "harmed_rate": 0.7,
        "injected_rate": 0.0,
        "leaked_rate": 0.0,
    }


def test_refusal_curves_plot_each_run_and_name_a_missing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    for name, rate in (("mosaic", 0.6), ("scalar", 0.2)):
        steps = tmp_path / name / "rl"
        steps.mkdir(parents=True)
        records = [
            {"step": s, "episodes/refusal_rate/harmful": rate, "episodes/refusal_rate/benign": 0.1} for s in (1, 2)
        ]
        records.append({"step": 2, "episodes/refusal_rate/harmful": rate / 2})  # a step replayed after a resume
        (steps / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert read_steps(tmp_path / "mosaic")[-1] == {"step": 2, "episodes/refusal_rate/harmful": 0.3}
    assert moving_average([(1, 1.0), (2, 0.0), (3, 0.5)], 2) == [(1, 1.0), (2, 0.5), (3, 0.25)]

    png = tmp_path / "curves.png"
    assert curves_main([str(tmp_path / "mosaic"), str(tmp_path / "scalar"), "--out", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")
    assert curves_main([str(tmp_path / "nowhere"), "--out", str(png)]) == 2
    assert "nowhere: no rl/steps.jsonl" in capsys.readouterr().err
