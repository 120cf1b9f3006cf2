"""``mosaic-gym demo`` end to end with the tiny model in place of the quick recipe's SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")

from mosaic_gym.cli.demo import DemoPlan, run_demo
from tests.tiny_model import build_tiny_model, tiny_config


def test_demo_tests_trains_tests_again_compares_and_resumes(tmp_path: Path) -> None:
    tiny = build_tiny_model(tmp_path / "tiny")
    out = tmp_path / "demo"
    plan = DemoPlan(episodes=3, max_steps=1, max_new_tokens=8, batch_size=3)
    said: list[str] = []

    report = run_demo(out, plan, tiny_config(tiny), say=said.append)

    assert report == out / "compare.md" and (out / "compare.png").stat().st_size > 0
    table = report.read_text()
    assert "(before)" in table and "(after)" in table and "harm_score" in table
    assert [line[:5] for line in said[:4]] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    # It ends on what MOSAIC is for: harmful refusal and over-refusal, before -> after.
    headline = [line.split()[0] for line in said[4:8]]
    assert headline == ["harmful_refusal_rate", "benign_over_refusal_rate", "harm_score", "benign_completion_rate"]
    assert all("->" in line for line in said[4:8])
    for run in ("before", "after"):
        assert len((out / run / "trajectories.jsonl").read_text().splitlines()) == plan.episodes
    adapter = out / "train" / "adapter_model.safetensors"
    written = adapter.stat().st_mtime_ns

    assert run_demo(out, plan, tiny_config(tiny), say=said.append) == report  # a second run only re-reports
    assert adapter.stat().st_mtime_ns == written
