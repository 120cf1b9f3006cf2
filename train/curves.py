"""Refusal by task kind over RL steps, for one or more training runs side by side.

    python -m mosaic_gym.train.curves runs/mosaic runs/scalar --out docs/refusal_by_kind.png
    python -m mosaic_gym.train.curves runs/mosaic runs/scalar --decision --out docs/decision_by_kind.png

By default it reads each run's ``rl/steps.jsonl`` (``episodes/refusal_rate/<kind>`` of the
episodes played at each step, sampled at the RL temperature). A step plays few episodes of
each kind, so the lines are a moving average over ``--window`` steps, with the raw rates as
dots.

``--decision`` measures instead of sampling: the warm start (step 0) and every saved RL
checkpoint are read out exactly (:mod:`mosaic_gym.train.refusal_odds`, ``P(" No")`` after the
demonstrations' question, on held-out starter tasks), about a minute per checkpoint on a CPU.
Whether the harmful line leaves the others is what RL is for.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from mosaic_gym.agent import AgentConfigError
from mosaic_gym.evaluation.plots import KIND_COLOURS
from mosaic_gym.scenarios.template import KINDS
from mosaic_gym.train.run import CONFIG, STEP_LOG, WARM_START, read_step_log

Series = dict[str, list[tuple[int, float]]]  # per task kind, (RL step, value)


def read_steps(run: Path) -> list[dict[str, Any]]:
    path = run / "rl" / STEP_LOG
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no rl/{STEP_LOG} (not a training run, or its RL stage has not started)")
    return read_step_log(path)


def moving_average(points: list[tuple[int, float]], window: int) -> list[tuple[int, float]]:
    """Each point's mean with the ``window - 1`` points before it (fewer at the start)."""
    smoothed = []
    for i, (step, _) in enumerate(points):
        values = [value for _, value in points[max(0, i - window + 1) : i + 1]]
        smoothed.append((step, sum(values) / len(values)))
    return smoothed


def sampled_refusal(run: Path) -> Series:
    """``episodes/refusal_rate/<kind>`` per RL step, from the run's step log."""
    steps = read_steps(run)
    series: Series = {}
    for kind in KINDS:
        key = f"episodes/refusal_rate/{kind}"
        series[kind] = [(s["step"], s[key]) for s in steps if key in s]
    return series


def run_adapters(run: Path) -> list[tuple[int, Path]]:
    """(step, adapter): the warm start the RL stage began from as step 0, then each saved RL checkpoint."""
    if not (run / CONFIG).is_file():
        raise FileNotFoundError(f"{run}: no {CONFIG} (not a training run)")
    named = (yaml.safe_load((run / CONFIG).read_text()) or {}).get("warm_start")  # runs of older versions too
    warm = run / WARM_START if named is None else Path(named)
    adapters = [(0, warm)] if (warm / "adapter_config.json").is_file() else []
    for folder in (run / "rl").glob("checkpoint-*"):
        step = folder.name.removeprefix("checkpoint-")
        if step.isdigit() and (folder / "adapter_config.json").is_file():
            adapters.append((int(step), folder))
    if not adapters:
        raise FileNotFoundError(f"{run}: no warm start and no RL checkpoint to read out")
    return sorted(adapters)


def decision_by_step(run: Path, model: str | None, seeds: int) -> dict[int, dict[str, list[float]]]:
    """Per step, the log-probability of " No" after the question, per kind, on held-out starter instances."""
    from mosaic_gym.agents.hf import load_decision_head, load_model
    from mosaic_gym.train.refusal_odds import READ_OUT_SUITES, refusal_logprobs

    steps = {}
    for step, adapter in run_adapters(run):
        policy, tokenizer = load_model(model, adapter, None, None)
        head = load_decision_head(adapter)
        odds = refusal_logprobs(policy, tokenizer, READ_OUT_SUITES, "heldout", "starter", seeds, head)
        steps[step] = {kind: [value.decision for value in values] for kind, values in odds.items()}
    return steps


def plot_by_kind(panels: dict[str, Series], out: Path, ylabel: str, window: int | None = None) -> None:
    """One panel per run, one line per task kind; ``window`` smooths the line and shows raw values as dots."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.0 * len(panels), 4.0), layout="constrained")
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (title, series) in zip(axes, panels.items(), strict=True):
        for kind in KINDS:
            points = series.get(kind, [])
            if not points:
                continue
            colour = KIND_COLOURS[kind]
            if window is None:
                ax.plot(*zip(*points, strict=True), color=colour, marker="o", label=kind)
                continue
            ax.scatter(*zip(*points, strict=True), s=10, alpha=0.35, color=colour)
            ax.plot(*zip(*moving_average(points, window), strict=True), color=colour, label=kind)
        ax.set_title(title)
        ax.set_xlabel("RL step")
        ax.set_ylim(-0.02, 1.02 if window is not None else None)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(loc="upper left")
    figure.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mosaic_gym.train.curves", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="training run folders (--out of train)")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--window", type=int, default=3, help="steps in the moving average (default 3)")
    parser.add_argument("--decision", action="store_true", help='read P(" No") out at every checkpoint instead')
    parser.add_argument("--model", help="the base model of --decision (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--seeds", type=int, default=3, help="--decision: instances per held-out template (default 3)")
    args = parser.parse_args(argv)
    if args.window < 1:
        parser.error(f"--window must be at least 1, got {args.window}")
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    try:
        if args.decision:
            _plot_decisions(args.runs, args.out, args.model, args.seeds)
        else:
            panels = {run.name: sampled_refusal(run) for run in args.runs}
            plot_by_kind(panels, args.out, f"refusal rate (mean of {args.window} steps)", args.window)
    except ModuleNotFoundError as error:
        print(f"error: the plot needs {error.name}: pip install 'mosaic-gym[eval]'", file=sys.stderr)
        return 2
    except (FileNotFoundError, json.JSONDecodeError, KeyError, ValueError, AgentConfigError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def _plot_decisions(runs: list[Path], out: Path, model: str | None, seeds: int) -> None:
    from mosaic_gym.train.refusal_odds import format_odds, mean_probability

    panels: dict[str, Series] = {}
    for run in runs:
        steps = decision_by_step(run, model, seeds)
        print(f"{run}: P(' No' | the question), held-out starter tier, {seeds} seeds")
        print(format_odds({f"step {step}": logprobs for step, logprobs in steps.items()}))
        panels[run.name] = {
            kind: [(step, mean_probability(logprobs[kind])) for step, logprobs in steps.items()] for kind in KINDS
        }
    plot_by_kind(panels, out, 'P(" No" | "Is it safe to go on?")')


if __name__ == "__main__":
    sys.exit(main())
