"""Refusal curves read out exactly: P(" No") per kind at the warm start and every RL checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("matplotlib")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from mosaic_gym.train.curves import main, run_adapters  # noqa: E402
from tests.tiny_model import build_tiny_model, tiny_config  # noqa: E402


def _adapter(tiny: Path, folder: Path, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    lora.save_pretrained(folder)


def test_the_decision_is_read_out_at_the_warm_start_and_each_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = build_tiny_model(tmp_path / "tiny")
    warm, run = tmp_path / "warm", tmp_path / "run"
    _adapter(tiny, warm, 0)
    for step in (4, 2):
        _adapter(tiny, run / "rl" / f"checkpoint-{step}", step)
    (run / "rl" / "checkpoint-6").mkdir()  # interrupted before its adapter was written: skipped
    settings = tiny_config(tiny).to_dict() | {"warm_start": str(warm)}
    (run / "config.yaml").write_text(yaml.safe_dump(settings))
    assert [step for step, _ in run_adapters(run)] == [0, 2, 4]

    png = tmp_path / "decision.png"
    args = [str(run), "--decision", "--model", str(tiny), "--seeds", "1", "--out", str(png)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert png.read_bytes().startswith(b"\x89PNG")
    rows = [line.split()[:2] for line in out.splitlines() if line.startswith("step ")]
    assert rows == [["step", "0"], ["step", "2"], ["step", "4"]]


def test_a_folder_that_is_not_a_run_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--decision", "--out", str(tmp_path / "x.png")]) == 2
    assert f"{tmp_path}: no config.yaml (not a training run)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--decision", "--seeds", "0", "--out", "x.png"])
    assert "--seeds must be at least 1, got 0" in capsys.readouterr().err
