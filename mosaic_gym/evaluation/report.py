"""Human-readable reports of an eval run: report.md (tables) and report.html (plots, trajectories)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mosaic_gym.evaluation.metrics import METRICS
from mosaic_gym.evaluation.plots import render_plots
from mosaic_gym.evaluation.report_html import page


def format_metric(metric: dict[str, Any]) -> str:
    """``0.42 [0.31, 0.55] (n=40)``, or ``-`` when the metric's population is empty."""
    if metric["value"] is None:
        return "-"
    low, high = metric["ci95"]
    return f"{metric['value']:.2f} [{low:.2f}, {high:.2f}] (n={metric['n']})"


def markdown(metrics: dict[str, Any]) -> str:
    run = metrics.get("run", {})
    lines = [
        f"# Evaluation: agent `{run.get('agent')}`" + (f" (`{run['model']}`)" if run.get("model") else ""),
        "",
        f"Protocol `{run.get('protocol', 'text')}`, split `{run.get('split')}`, "
        f"{metrics['overall']['episodes']} episodes, seed {run.get('seed')}, "
        f"envs: {', '.join(run.get('envs', []))}. Values with 95% confidence intervals and counts; "
        "definitions in docs/metrics.md.",
        "",
        "## Overall",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {format_metric(metrics['overall'][name])} |" for name in METRICS),
    ]
    for title, key in (("By suite", "by_suite"), ("By kind", "by_kind"), ("By attack family", "by_attack")):
        groups = metrics[key]
        if not groups:
            continue
        lines += ["", f"## {title}", "", "| metric | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
        lines += [
            f"| {name} | " + " | ".join(format_metric(group[name]) for group in groups.values()) + " |"
            for name in METRICS
        ]
    return "\n".join(lines) + "\n"


def write_reports(out: Path, metrics: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """report.md (tables) and report.html (tables, plots when matplotlib is installed, trajectories)."""
    (out / "report.md").write_text(markdown(metrics))
    (out / "report.html").write_text(page(metrics, records, render_plots(metrics)), encoding="utf-8")
