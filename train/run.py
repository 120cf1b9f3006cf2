"""One training run, stage by stage, into one output folder that survives interruptions.

::

    OUT/config.yaml           the resolved settings (a resumed run must match them)
    OUT/warm_start/           the SFT adapter (evaluate it with --adapter OUT/warm_start), unless
                              the config names an existing one as ``warm_start``
    OUT/sft/, OUT/rl/         each stage's checkpoints, to resume from
    OUT/tensorboard/          logs of both stages
    OUT/adapter_model.*       the final adapter: ``mosaic-gym eval --agent hf --adapter OUT``
    OUT/decision_head.pt      with rl.decision_optimizer "head", the decision's read-out, which
                              an agent loaded from OUT decides with
    OUT/summary.json          timings, seconds per step, peak memory, the warm-start probe and the
                              RL stage's per-step statistics (also in OUT/rl/steps.jsonl)

A finished stage is never redone; an interrupted one continues from its last checkpoint
with ``--resume``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from mosaic_gym.train.config import ConfigError, TrainConfig, from_dict

STEP_LOG = "steps.jsonl"  # per-step RL statistics, appended as each step's episodes are scored

CONFIG = "config.yaml"
WARM_START = "warm_start"
SUMMARY = "summary.json"
ADAPTER_FILE = "adapter_model.safetensors"


def train(config: TrainConfig, out: Path, resume: bool = False) -> dict[str, Any]:
    """Run the warm start and the RL stage as configured; returns the summary written to OUT.

    Under ``accelerate launch`` every process runs this; only the main one writes files.
    """
    from accelerate import PartialState

    # transformers 5 warns that TRL still passes `gradient_checkpointing` and `past_key_values`,
    # and TRL that `rollout_func` is experimental: noise to a user, about code that is not theirs.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*past_key_values.* is deprecated", category=FutureWarning)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    state = PartialState()
    _check_out(config, out, resume)
    state.wait_for_everyone()  # every process has checked OUT before the main one writes to it
    if state.is_main_process and not (out / CONFIG).exists():
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    if config.threads is not None:
        import torch

        torch.set_num_threads(config.threads)
    summary: dict[str, Any] = _read_summary(out)
    warm_start = out / WARM_START if config.warm_start is None else Path(config.warm_start)
    if config.trains_warm_start and not (warm_start / ADAPTER_FILE).exists():
        report, probe = _warm_start_stage(config, out, warm_start, resume)
        if state.is_main_process:
            summary["sft"] = report
            if probe is not None:
                summary["warm_start_probe"] = probe
            _write_summary(out, summary)
        state.wait_for_everyone()  # the RL stage of every process loads the saved warm start
    if config.rl.steps > 0:
        summary["rl"] = _rl_stage(config, out, warm_start if config.has_warm_start else None, resume)
    elif state.is_main_process:  # warm start only: it is the final adapter
        for item in warm_start.iterdir():
            if item.is_file():
                shutil.copy2(item, out / item.name)
    summary["peak_memory_gb"] = round(_peak_memory_gb(), 2)
    summary["adapter"] = str(out)
    if state.is_main_process:
        _write_summary(out, summary)
    state.wait_for_everyone()
    return summary


def _warm_start_stage(
    config: TrainConfig, out: Path, warm_start: Path, resume: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Train and save the warm start; returns its timings and, on the main process, its probe."""
    from mosaic_gym.train.policy import load_base
    from mosaic_gym.train.probe import format_probe, probe_summary, run_probe
    from mosaic_gym.train.sft import run_sft

    model, tokenizer = load_base(config)
    timer = StepTimer()
    _tensorboard(out, "sft")
    trainer = run_sft(config, model, tokenizer, out / "sft", resume, [timer.callback()])
    if not trainer.accelerator.is_main_process:
        return timer.report(), None
    trainer.model.save_pretrained(str(warm_start))
    tokenizer.save_pretrained(str(warm_start))
    report = timer.report()
    if config.probe.episodes_per_kind == 0:
        return report, None
    print("probing the warm start: how often it refuses, completes and harms, per task kind", flush=True)
    table = run_probe(config, trainer.model, tokenizer)
    print(format_probe(table, config.rl.temperature), flush=True)
    return report, probe_summary(table)


def _rl_stage(config: TrainConfig, out: Path, warm_start: Path | None, resume: bool) -> dict[str, Any]:
    from mosaic_gym.train.grpo import run_grpo
    from mosaic_gym.train.policy import from_warm_start, load_base

    model, tokenizer = load_base(config)
    if warm_start is not None:
        model = from_warm_start(model, warm_start)
    timer = StepTimer()
    _tensorboard(out, "rl")
    (out / "rl").mkdir(parents=True, exist_ok=True)
    trainer = run_grpo(config, model, tokenizer, out / "rl", resume, [timer.callback()], out / "rl" / STEP_LOG)
    if trainer.accelerator.is_main_process:
        trainer.model.save_pretrained(str(out), selected_adapters=["default"])
        tokenizer.save_pretrained(str(out))
        if trainer.decision_head is not None:  # the decision's own read-out decides with the adapter
            trainer.decision_head.save(out)
    return {**timer.report(), "steps": read_step_log(out / "rl" / STEP_LOG)}


def _check_out(config: TrainConfig, out: Path, resume: bool) -> None:
    """Refuse to mix runs: a used folder needs --resume, and a resumed run its own settings."""
    saved = out / CONFIG
    if saved.exists():
        if not resume:
            raise ConfigError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
        before = from_dict(yaml.safe_load(saved.read_text()) or {}, str(saved)).to_dict()
        changed = sorted(_diff(before, config.to_dict()))
        if changed:
            raise ConfigError(f"--resume with settings that differ from {saved}: {', '.join(changed)}")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty and holds no run; choose another --out")


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in a.keys() | b.keys():
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            keys += _diff(left, right, f"{prefix}{key}.")
        elif left != right:
            keys.append(f"{prefix}{key}")
    return keys


def read_step_log(path: Path) -> list[dict[str, Any]]:
    """The RL stage's per-step statistics in step order; a step replayed after a resume keeps
    its last record."""
    if not path.exists():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]


def _tensorboard(out: Path, stage: str) -> None:
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "tensorboard" / stage)


def _read_summary(out: Path) -> dict[str, Any]:
    path = out / SUMMARY
    return dict(json.loads(path.read_text())) if path.exists() else {}


def _write_summary(out: Path, summary: dict[str, Any]) -> None:
    staging = out / f".{SUMMARY}.tmp"
    staging.write_text(json.dumps(summary, indent=2))
    os.replace(staging, out / SUMMARY)


def _peak_memory_gb() -> float:
    """Peak resident memory of this process (Linux reports kilobytes, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


class StepTimer:
    """Seconds per optimizer step of a stage, from one step's start to the next's (the last to the
    end of training): what callbacks do between steps (the level reset, checkpoints, logs) is
    the step's cost too."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._began: float | None = None
        self._started = time.monotonic()

    def _close_step(self, now: float) -> None:
        if self._began is not None:
            self.durations.append(now - self._began)
            self._began = None

    def callback(self) -> Any:
        from transformers import TrainerCallback

        timer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                now = time.monotonic()
                timer._close_step(now)
                timer._began = now

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                timer._close_step(time.monotonic())

        return _Callback()

    def report(self) -> dict[str, Any]:
        steps = len(self.durations)
        return {
            "steps_this_session": steps,
            "seconds": round(time.monotonic() - self._started, 1),
            "seconds_per_step": round(sum(self.durations) / steps, 2) if steps else None,
        }
