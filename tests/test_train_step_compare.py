"""The side-by-side of the decision's two steps on a checkpoint's kept decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from mosaic_gym.train import step_compare
from mosaic_gym.train.run import train
from tests.tiny_model import build_tiny_model, tiny_config


def test_both_steps_are_measured_from_the_checkpoints_own_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kinds = {"harmful": 1.0, "benign": 1.0}
    decision = {"decision_rank": 1.0, "decision_weight": 0, "decision_level": 1.0, "decision_replay": 2}
    config = tiny_config(
        build_tiny_model(tmp_path / "tiny"), groups_per_step=2, explore_refusals=1, kinds=kinds, **decision
    )
    config.rl.steps = 1
    config.probe.episodes_per_kind = 0
    train(config, tmp_path / "run")
    checkpoint = tmp_path / "run" / "rl" / "checkpoint-1"
    adapter = (checkpoint / "adapter_model.safetensors").read_bytes()
    assert step_compare.main([str(checkpoint), "--length", "0.01", "--rms", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "2 kept plays, 2 decisions" in out
    gradient, margins = (line.split() for line in out.splitlines()[-2:])
    assert gradient[0] == "gradient," and margins[0] == "margins,"
    assert float(gradient[3]) == pytest.approx(0.01, rel=1e-3), "a normalized step of the asked length"
    assert float(margins[6]) > 0.99, "the margins moved as the loss asked"
    assert (checkpoint / "adapter_model.safetensors").read_bytes() == adapter, "nothing is written"


def test_a_folder_without_kept_decisions_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        step_compare.main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"{tmp_path} is not a checkpoint of a run with rl.decision_replay" in capsys.readouterr().err
