"""Refusal rate by task kind over RL steps, for one or more training runs side by side.

    python -m mosaic_gym.train.curves runs/mosaic runs/scalar --out docs/refusal_by_kind.png

Reads each run's ``rl/steps.jsonl`` (``episodes/refusal_rate/<kind>`` of the episodes played
at each step, sampled at the RL temperature). A step plays few episodes of each kind, so
the lines are a moving average over ``--window`` steps, with the raw rates as dots.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mosaic_gym.evaluation.plots import KIND_COLOURS
from mosaic_gym.train.run import STEP_LOG, read_step_log
from mosaic_gym.train.step_stats import KINDS


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


def plot_refusal_by_kind(runs: list[Path], out: Path, window: int = 3) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.0 * len(runs), 4.0), layout="constrained")
    axes = figure.subplots(1, len(runs), sharey=True, squeeze=False)[0]
    for ax, run in zip(axes, runs, strict=True):
        steps = read_steps(run)
        for kind in KINDS:
            key = f"episodes/refusal_rate/{kind}"
            points = [(s["step"], s[key]) for s in steps if key in s]
            if not points:
                continue
            colour = KIND_COLOURS[kind]
            ax.scatter(*zip(*points, strict=True), s=10, alpha=0.35, color=colour)
            ax.plot(*zip(*moving_average(points, window), strict=True), color=colour, label=kind)
        ax.set_title(run.name)
        ax.set_xlabel("RL step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"refusal rate (mean of {window} steps)")
    axes[0].legend(loc="upper left")
    figure.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mosaic_gym.train.curves", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="training run folders (--out of train)")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--window", type=int, default=3, help="steps in the moving average (default 3)")
    args = parser.parse_args(argv)
    if args.window < 1:
        parser.error(f"--window must be at least 1, got {args.window}")
    try:
        plot_refusal_by_kind(args.runs, args.out, args.window)
    except ModuleNotFoundError as error:
        print(f"error: the plot needs {error.name}: pip install 'mosaic-gym[eval]'", file=sys.stderr)
        return 2
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
