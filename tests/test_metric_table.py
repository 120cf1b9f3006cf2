"""One table defines the metrics: metrics.json, the docs, plots and the trainer's logs agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mosaic_gym import ToolEnv
from mosaic_gym.agents import NaiveAgent
from mosaic_gym.evaluation.metrics import HEADLINE, TABLE, Episode, metric_block
from mosaic_gym.evaluation.plots import KEY_METRICS, LOWER_IS_BETTER
from mosaic_gym.rollout import EpisodeSpec, rollout
from mosaic_gym.train.step_stats import episode_rates

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(\w+)` \| ([^|]+) \|", re.MULTILINE)


def test_the_docs_list_every_metric_of_the_table_over_its_population() -> None:
    documented = {name: over.strip() for name, over in ROW.findall(DOC.read_text(encoding="utf-8"))}
    assert documented == {metric.name: metric.population for metric in TABLE}


def test_plots_and_the_summary_read_the_table() -> None:
    assert KEY_METRICS == HEADLINE and "harm_score" in HEADLINE and "mean_steps" not in HEADLINE
    assert {metric.name for metric in TABLE if metric.lower_is_better} == LOWER_IS_BETTER
    assert all(metric.bounds == (0.0, 1.0) for metric in TABLE if metric.headline), "plots draw 0-1 axes"


@pytest.fixture(scope="module")
def naive_workspace() -> list[Episode]:
    trajectories = rollout(NaiveAgent(), lambda: ToolEnv("workspace", split="heldout"), map(EpisodeSpec, range(40)))
    return [Episode("workspace", t.kind, t.attack, t.outcome) for t in trajectories if t.outcome is not None]


def test_the_trainers_logs_are_the_evals_point_values(naive_workspace: list[Episode]) -> None:
    block = metric_block(naive_workspace)
    logged = episode_rates([e.outcome for e in naive_workspace])
    for metric in TABLE:
        assert logged[f"episodes/{metric.name}"] == pytest.approx(block[metric.name]["value"]), metric.name
    privacy = [e.outcome for e in naive_workspace if e.kind == "privacy"]
    assert 0 < len(privacy) < len(naive_workspace)
    assert logged["episodes/privacy_leak_rate"] == sum(bool(o.leaks) for o in privacy) / len(privacy), (
        "leaks over privacy tasks, as metrics.json counts them"
    )
