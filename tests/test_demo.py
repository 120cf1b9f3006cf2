"""``mosaic-gym demo`` end to end with the tiny model in place of the quick recipe's SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

from mosaic_gym.cli.demo import AFTER, BEFORE, DemoPlan, run_demo
from tests.tiny_model import build_tiny_model, tiny_config


def test_demo_trains_then_compares_warm_start_and_mosaic_on_the_same_episodes_and_resumes(tmp_path: Path) -> None:
    tiny = build_tiny_model(tmp_path / "tiny")
    out = tmp_path / "demo"
    plan = DemoPlan(episodes=3, batch_size=3)
    config = tiny_config(tiny, temperature=0.7, commit_declines=True)
    said: list[str] = []

    report = run_demo(out, plan, config, say=said.append)

    assert report == out / "compare.md" and (out / "compare.png").stat().st_size > 0
    table = report.read_text()
    assert f"({BEFORE})" in table and f"({AFTER})" in table and "harm_score" in table
    assert [line[:5] for line in said[:3]] == ["[1/3]", "[2/3]", "[3/3]"]
    # It ends on what MOSAIC is for: harmful refusal and over-refusal, warm start -> MOSAIC.
    headline = [line.split()[0] for line in said[3:7]]
    assert headline == ["harmful_refusal_rate", "benign_over_refusal_rate", "harm_score", "benign_completion_rate"]
    assert all("->" in line for line in said[3:7])
    adapters = {}
    for run in (BEFORE, AFTER):
        records = [json.loads(line) for line in (out / run / "trajectories.jsonl").read_text().splitlines()]
        assert [r["seed"] for r in records] == [0, 1, 2], "the same held-out episodes for both models"
        assert [r["kind"] for r in records] == ["harmful", "benign", "harmful"], "the two kinds in turn"
        settings = json.loads((out / run / "run.json").read_text())
        assert settings["temperature"] == 0.7 and settings["commit_declines"], "sampled as RL samples"
        adapters[run] = Path(settings["adapter"])
    assert adapters == {BEFORE: out / "train" / "warm_start", AFTER: out / "train"}
    adapter = out / "train" / "adapter_model.safetensors"
    written = adapter.stat().st_mtime_ns

    assert run_demo(out, plan, config, say=said.append) == report  # a second run only re-reports
    assert adapter.stat().st_mtime_ns == written
