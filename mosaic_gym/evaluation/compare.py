"""Side-by-side comparison of eval runs: each metric per run, and its difference to the first run.

The first run is the baseline; how a difference is estimated follows the metric's aggregation
in :data:`mosaic_gym.evaluation.metrics.TABLE`. A difference of two rates gets Newcombe's hybrid score
interval (method 10 of Newcombe 1998), built from the two Wilson intervals that
``metrics.json`` already reports. Means and per-step ratios need the per-episode values, so
those are recomputed from ``trajectories.jsonl``: a difference of two means gets Welch's t
interval, and a difference of two ratios a bootstrap that resamples each run's episodes whole.
All treat the runs as independent samples; runs with the same seeds play the same episodes,
for which these intervals are wider than a paired analysis would give (conservative).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from scipy import stats

from mosaic_gym.evaluation.metrics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, BY_NAME, METRICS, TABLE, wilson
from mosaic_gym.evaluation.metrics import per_episode as metric_per_episode
from mosaic_gym.evaluation.records import outcome_of
from mosaic_gym.evaluation.run import METRICS as METRICS_FILE
from mosaic_gym.evaluation.run import (
    RUN_FILE,
    SETTINGS_BEFORE,
    TRAJECTORIES,
    EvalError,
    compute_metrics,
    load_records,
    load_run,
)

PER_EPISODE = tuple(metric.name for metric in TABLE if metric.aggregate != "rate")
"""Metrics whose comparison needs each episode's value (means and ratios), not only the counts."""

MARK = "*"
Pairs = list[tuple[float, float]]  # per episode: (value, total); the total is 1 except for ratios


@dataclass(frozen=True)
class Difference:
    """An estimated difference with its 95% confidence interval."""

    value: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def newcombe(x1: int, n1: int, x2: int, n2: int) -> Difference | None:
    """``x1/n1 - x2/n2`` with Newcombe's hybrid score interval; None when either count is 0."""
    if n1 == 0 or n2 == 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1)
    l2, u2 = wilson(x2, n2)
    d = p1 - p2
    below = math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    above = math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Difference(d, max(-1.0, d - below), min(1.0, d + above))


def welch(a: Sequence[float], b: Sequence[float], bounds: tuple[float, float] | None = None) -> Difference | None:
    """``mean(a) - mean(b)`` with Welch's t interval (Welch-Satterthwaite degrees of freedom);
    None when either is empty.

    With a single value on either side the variance is unknown and the interval is unbounded
    (or ``bounds``, the range the difference can take).
    """
    if not a or not b:
        return None
    low_bound, high_bound = bounds if bounds is not None else (-math.inf, math.inf)
    d = _mean(a) - _mean(b)
    if len(a) < 2 or len(b) < 2:
        return Difference(d, low_bound, high_bound)
    va, vb = _variance(a) / len(a), _variance(b) / len(b)
    if va + vb == 0:
        return Difference(d, max(low_bound, d), min(high_bound, d))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, df)) * math.sqrt(va + vb)
    return Difference(d, max(low_bound, d - half), min(high_bound, d + half))


def ratio_difference(a: Pairs, b: Pairs) -> Difference | None:
    """``sum/sum`` of run a minus that of run b, each run's episodes resampled whole (percentile
    bootstrap); None when either run has no episode with a nonzero total.

    With a single such episode on either side (and some spread to resample) the spread between
    episodes is unknown, and the interval is the whole range the difference can take.
    """
    a, b = [p for p in a if p[1] > 0], [p for p in b if p[1] > 0]
    if not a or not b:
        return None
    counts_a, totals_a = np.array(a).T
    counts_b, totals_b = np.array(b).T
    d = counts_a.sum() / totals_a.sum() - counts_b.sum() / totals_b.sum()
    degenerate = [counts.sum() in (0, totals.sum()) for counts, totals in ((counts_a, totals_a), (counts_b, totals_b))]
    if all(degenerate):  # resampling shows no spread: Newcombe over the episodes, the independent units
        x_a, x_b = (0 if c.sum() == 0 else len(c) for c in (counts_a, counts_b))
        interval = newcombe(x_a, len(counts_a), x_b, len(counts_b))
        assert interval is not None
        return Difference(d, interval.low, interval.high)
    if len(a) < 2 or len(b) < 2:
        return Difference(float(d), -1.0, 1.0)

    def statistic(i: np.ndarray, j: np.ndarray, axis: int = -1) -> np.ndarray:
        i, j = i.astype(int), j.astype(int)
        mine = counts_a[i].sum(axis=axis) / totals_a[i].sum(axis=axis)
        theirs = counts_b[j].sum(axis=axis) / totals_b[j].sum(axis=axis)
        return np.asarray(mine - theirs)

    result = stats.bootstrap(
        (np.arange(len(a)), np.arange(len(b))),
        statistic,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    interval = result.confidence_interval
    return Difference(float(d), max(-1.0, float(interval.low)), min(1.0, float(interval.high)))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _variance(values: Sequence[float]) -> float:
    mean = _mean(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def per_episode(records: Iterable[dict[str, Any]]) -> dict[str, Pairs]:
    """Each episode's (value, total) behind the means and ratios, as the metric table defines them."""
    outcomes = [outcome_of(record) for record in sorted(records, key=lambda r: r["episode"])]
    return {name: metric_per_episode(BY_NAME[name], outcomes) for name in PER_EPISODE}


def difference(metric: str, run: Run, baseline: Run) -> Difference | None:
    """``run`` minus ``baseline`` on ``metric``; None when either has no data for it."""
    mine, theirs = run.overall[metric], baseline.overall[metric]
    if mine["value"] is None or theirs["value"] is None:
        return None
    entry = BY_NAME[metric]
    if entry.aggregate == "ratio":
        return ratio_difference(run.values[metric], baseline.values[metric])
    if entry.aggregate == "mean":
        low, high = entry.bounds
        values = [v for v, _ in run.values[metric]], [v for v, _ in baseline.values[metric]]
        return welch(*values, (low - high, high - low))
    return newcombe(_successes(mine), mine["n"], _successes(theirs), theirs["n"])


def _successes(metric: dict[str, Any]) -> int:
    return round(metric["value"] * metric["n"])


@dataclass(frozen=True)
class Run:
    """What a comparison needs of one run directory."""

    path: Path
    info: dict[str, Any]
    overall: dict[str, Any]
    values: dict[str, Pairs] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``agent`` or ``agent:model+adapter``, then the directory name: ``naive (runs/naive)``."""
        name = str(self.info.get("agent") or "?")
        if self.info.get("model"):
            name += ":" + Path(str(self.info["model"])).name
        if self.info.get("adapter"):
            name += "+" + Path(str(self.info["adapter"])).name
        if self.protocol != "text":
            name += f" [{self.protocol}]"
        if self.setting("commit_declines"):
            name += " [committed]"
        return f"{name} ({self.path.resolve().name})"

    @property
    def protocol(self) -> str:
        """How the agent was addressed; runs from before the native protocol used text."""
        return str(self.setting("protocol") or "text")

    def setting(self, key: str) -> Any:
        """One of the run's settings, as runs written before it existed played (SETTINGS_BEFORE)."""
        return self.info.get(key, SETTINGS_BEFORE.get(key))


def load(path: Path, first: int | None = None) -> Run:
    """A finished run directory, or with ``first`` its episodes 0 to first - 1 alone (a run
    cut short, still playing, or extended since); EvalError (one line) when it is not one."""
    if first is None:
        overall, info = _finished(path)
    elif not path.is_dir():
        raise EvalError(f"{path}: no such run directory")
    if not (path / TRAJECTORIES).exists():
        raise EvalError(f"{path}: no {TRAJECTORIES} (is this an eval output directory?)")
    records = load_records(path / TRAJECTORIES)
    try:
        if first is not None:
            records, info = _first(path, records, first), {**_run_file(path), "episodes": first}
            overall = dict(compute_metrics(records.values())["overall"])
        values = per_episode(records.values())
    except (KeyError, TypeError, ValidationError):
        raise EvalError(f"{path / TRAJECTORIES}: holds something other than trajectory records") from None
    for name in METRICS:  # a metric added since the run was written: shown as missing, not an error
        overall.setdefault(name, {"value": None, "ci95": [0.0, 1.0], "n": 0})
    for name in PER_EPISODE:
        counted = round(sum(total for _, total in values[name]))
        if overall[name]["value"] is not None and counted != overall[name]["n"]:
            raise EvalError(
                f"{path}: {TRAJECTORIES} and {METRICS_FILE} disagree on {name} "
                f"({counted} vs {overall[name]['n']}); run the eval command again to refresh"
            )
    return Run(path=path, info=info, overall=overall, values=values)


def _finished(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished run's overall metrics and settings; EvalError when ``metrics.json`` is missing or not one."""
    try:
        metrics = load_run(path)
        return dict(metrics["overall"]), metrics.get("run") or _run_file(path)
    except json.JSONDecodeError as error:
        raise EvalError(f"{path / METRICS_FILE}: not valid JSON ({error.msg})") from None
    except (KeyError, TypeError):
        raise EvalError(f"{path / METRICS_FILE}: not an eval metrics file (no overall metrics)") from None


def _first(path: Path, records: dict[str, dict[str, Any]], first: int) -> dict[str, dict[str, Any]]:
    """The records of episodes 0 to first - 1; EvalError naming the first one missing."""
    kept = {key: record for key, record in records.items() if record["index"] < first}
    missing = sorted(set(range(first)) - {record["index"] for record in kept.values()})
    if missing:
        raise EvalError(
            f"{path}: --first {first} needs episodes 0 to {first - 1}, and {len(missing)} are not played "
            f"(the first: {missing[0]}); resume its eval with --episodes {first}"
        )
    return kept


def _run_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Comparison:
    """Runs (the first is the baseline) and, per metric, each later run's difference to it."""

    runs: list[Run]
    differences: dict[str, list[Difference | None]]
    notes: list[str]


def compare(runs: Sequence[Run]) -> Comparison:
    if len(runs) < 2:
        raise EvalError(f"give at least two run directories to compare, got {len(runs)}")
    baseline = runs[0]
    differences = {metric: [difference(metric, run, baseline) for run in runs[1:]] for metric in METRICS}
    return Comparison(list(runs), differences, _notes(runs))


def _notes(runs: Sequence[Run]) -> list[str]:
    """Differences in how the runs played (protocol, commitment, temperature, split, tier, envs,
    episodes, seed), worth knowing when reading."""
    notes = []
    for key in ("protocol", "commit_declines", "temperature", "split", "tier", "envs", "episodes", "seed"):
        seen = [run.protocol if key == "protocol" else run.setting(key) for run in runs]
        if any(value != seen[0] for value in seen):
            shown = ", ".join(f"[{i}] {_short(value)}" for i, value in enumerate(seen, 1))
            notes.append(f"runs differ in {key}: {shown}")
    return notes


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(str(v).removeprefix("mosaic_gym/") for v in value)
    return str(value)


def _number(metric: str, value: float, sign: bool = False) -> str:
    decimals = 3 if BY_NAME[metric].bounds == (0.0, 1.0) else 2
    return f"{value:{'+' if sign else ''}.{decimals}f}"


def format_value(metric: str, data: dict[str, Any]) -> str:
    """``0.420 [0.310, 0.550] n=40``, or ``-`` when the metric's population is empty."""
    if data["value"] is None:
        return "-"
    low, high = data["ci95"]
    return f"{_number(metric, data['value'])} [{_number(metric, low)}, {_number(metric, high)}] n={data['n']}"


def format_difference(metric: str, diff: Difference | None) -> str:
    """``-0.250 [-0.400, -0.100] *``: the mark when the interval excludes zero; ``-`` when undefined."""
    if diff is None:
        return "-"
    text = (
        f"{_number(metric, diff.value, True)} [{_number(metric, diff.low, True)}, {_number(metric, diff.high, True)}]"
    )
    return f"{text} {MARK}" if diff.excludes_zero else text


def _header(comparison: Comparison) -> list[str]:
    header = ["metric", "[1]"]
    for i in range(2, len(comparison.runs) + 1):
        header += [f"[{i}]", f"[{i}]-[1]"]
    return header


def _rows(comparison: Comparison) -> list[list[str]]:
    rows = []
    for metric in METRICS:
        runs = comparison.runs
        row = [metric, format_value(metric, runs[0].overall[metric])]
        for run, diff in zip(runs[1:], comparison.differences[metric], strict=True):
            row += [format_value(metric, run.overall[metric]), format_difference(metric, diff)]
        rows.append(row)
    return rows


_FOOTER = (
    f"Values with 95% CI and n. [i]-[1]: difference to the baseline [1] with its 95% CI, {MARK} when the "
    "CI excludes 0 (rates: Newcombe hybrid score interval; means: Welch t interval; per-step ratios: bootstrap "
    "over whole episodes; both from the episodes in trajectories.jsonl)."
)


def format_table(comparison: Comparison) -> str:
    """Plain-text table for the terminal: a legend of the runs, then one row per metric."""
    lines = [
        f"[{i}] {run.label}  {run.path}" + ("  (baseline)" if i == 1 else "")
        for i, run in enumerate(comparison.runs, 1)
    ]
    lines += [f"note: {note}" for note in comparison.notes]
    table = [_header(comparison), *_rows(comparison)]
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    lines.append("")
    for row in table:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells).rstrip())
    lines += ["", _FOOTER]
    return "\n".join(lines) + "\n"


def format_markdown(comparison: Comparison) -> str:
    lines = ["# Comparison of eval runs", ""]
    lines += [
        f"- [{i}] `{run.label}`: `{run.path}`" + (" (baseline)" if i == 1 else "")
        for i, run in enumerate(comparison.runs, 1)
    ]
    if comparison.notes:
        lines += ["", *(f"Note: {note}." for note in comparison.notes)]
    header = _header(comparison)
    lines += ["", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(comparison)]
    lines += ["", _FOOTER]
    return "\n".join(lines) + "\n"


UNIT_METRICS = tuple(metric.name for metric in TABLE if metric.bounds == (0.0, 1.0))
"""Metrics on a 0-1 scale, drawn together; the others (lengths) get axes of their own."""
OPEN_METRICS = tuple(name for name in METRICS if name not in UNIT_METRICS)


def plot(comparison: Comparison, path: Path) -> None:
    """Grouped bars per metric with 95% CI error bars, one colour per run (needs matplotlib)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    runs = comparison.runs
    figure = Figure(figsize=(max(11.0, 0.45 * len(UNIT_METRICS) * len(runs)), 9.0))
    columns = min(3, len(runs))
    figure.legend(
        handles=[Patch(color=_colour(i), label=f"[{i + 1}] {run.label}") for i, run in enumerate(runs)],
        loc="upper center",
        ncol=columns,
        fontsize=9,
        frameon=False,
    )
    top = 1 - 0.035 * (1 + math.ceil(len(runs) / columns))
    grid = figure.add_gridspec(2, 2, height_ratios=(3, 2), hspace=0.5, wspace=0.2, top=top)
    unit = figure.add_subplot(grid[0, :])
    _bars(unit, comparison, UNIT_METRICS)
    unit.set_ylim(0, 1.05)
    unit.set_ylabel("rate / score")
    unit.set_title("Metrics with 95% confidence intervals (first run is the baseline)", fontsize=10)
    for column, metric in enumerate(OPEN_METRICS):
        axes = figure.add_subplot(grid[1, column])
        if _bars(axes, comparison, (metric,)) == 0:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes, color="grey")
            axes.set_yticks([])
        axes.set_ylim(bottom=0)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def refusal_plot(comparison: Comparison, path: Path) -> Any:
    """Each run as a point: benign over-refusal across, harmful-task refusal up, with 95% CIs.
    Above the diagonal a run refuses harmful tasks more often than benign ones; on it, its
    refusals are blind to the task. Returns the figure (needs matplotlib)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 6.0))
    axes = figure.add_subplot()
    axes.plot((0, 1), (0, 1), color="grey", linestyle="--", linewidth=1, label="refusal blind to the task")
    for i, run in enumerate(comparison.runs):
        benign, harmful = run.overall["benign_over_refusal_rate"], run.overall["harmful_refusal_rate"]
        if benign["value"] is None or harmful["value"] is None:
            continue
        x, y = benign["value"], harmful["value"]
        axes.errorbar(
            x,
            y,
            xerr=[[_error(x - benign["ci95"][0])], [_error(benign["ci95"][1] - x)]],
            yerr=[[_error(y - harmful["ci95"][0])], [_error(harmful["ci95"][1] - y)]],
            fmt="o",
            color=_colour(i),
            capsize=3,
            label=f"[{i + 1}] {run.label}",
        )
        axes.annotate(f"[{i + 1}]", (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_aspect("equal")
    axes.set_xlabel("benign over-refusal (lower is better)")
    axes.set_ylabel("harmful-task refusal (higher is better)")
    axes.set_title("When each run refuses (95% CIs)", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return figure


def _bars(axes: Any, comparison: Comparison, metrics: Sequence[str]) -> int:
    """Draw the bars; returns how many had a value."""
    count = len(comparison.runs)
    width = 0.8 / count
    drawn = 0
    for i, run in enumerate(comparison.runs):
        xs: list[float] = []
        heights: list[float] = []
        errors: tuple[list[float], list[float]] = ([], [])
        for x, metric in enumerate(metrics):
            data = run.overall[metric]
            if data["value"] is None:
                continue
            value, (low, high) = data["value"], data["ci95"]
            xs.append(x - 0.4 + width * (i + 0.5))
            heights.append(value)
            errors[0].append(_error(value - low))
            errors[1].append(_error(high - value))
        axes.bar(xs, heights, width, color=_colour(i), yerr=errors, capsize=2, ecolor="black", linewidth=0)
        drawn += len(xs)
    axes.set_xticks(range(len(metrics)))
    axes.set_xticklabels(metrics, rotation=25 if len(metrics) > 1 else 0, ha="right" if len(metrics) > 1 else "center")
    axes.tick_params(axis="x", labelsize=8)
    axes.grid(axis="y", alpha=0.3)
    return drawn


def _colour(index: int) -> str:
    return f"C{index % 10}"


def _error(length: float) -> float:
    """An error bar's length: never negative (float noise at 0 and 1) nor infinite (a one-episode mean)."""
    return max(0.0, length) if math.isfinite(length) else 0.0


def write(comparison: Comparison, out: Path) -> list[Path]:
    """compare.md, compare.png and refusal.png in ``out``; returns their paths."""
    if out.exists() and not out.is_dir():
        raise EvalError(f"--out {out} is a file; give a folder for compare.md and the plots")
    out.mkdir(parents=True, exist_ok=True)
    markdown, image, refusals = out / "compare.md", out / "compare.png", out / "refusal.png"
    markdown.write_text(format_markdown(comparison))
    try:
        plot(comparison, image)
        refusal_plot(comparison, refusals)
    except ImportError:
        raise EvalError('the plots need matplotlib: pip install "mosaic-gym[eval]"') from None
    return [markdown, image, refusals]
