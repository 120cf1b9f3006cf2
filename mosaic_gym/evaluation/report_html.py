"""report.html: one self-contained page (inline CSS, a little vanilla JS, PNGs as data URIs).

The page must open from a laptop, a CI artefact or an air-gapped box, so nothing is
fetched: no fonts, scripts or stylesheets from the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from mosaic_gym.evaluation.metrics import METRICS
from mosaic_gym.evaluation.plots import Plot
from mosaic_gym.evaluation.report_episodes import PER_GROUP, VIEWER_JS, viewer

INSTALL_HINT = 'pip install "mosaic-gym[eval]"'


def number(value: float) -> str:
    """Two decimals; an unbounded interval end (a mean over one episode) reads as ∞."""
    return "∞" if math.isinf(value) else f"{value:.2f}"


def metric_cells(block: dict[str, Any]) -> str:
    """``<td>`` cells for value, 95% CI and n; an empty population reads n/a."""
    if block["value"] is None:
        return f'<td class="na">n/a</td><td class="na">&ndash;</td><td class="n">{block["n"]}</td>'
    low, high = block["ci95"]
    return (
        f'<td class="num">{number(block["value"])}</td>'
        f'<td class="ci">[{number(low)}, {number(high)}]</td><td class="n">{block["n"]}</td>'
    )


def overall_table(overall: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{name}</th>{metric_cells(overall[name])}</tr>" for name in METRICS)
    return (
        '<table class="metrics"><thead><tr><th>metric</th><th>value</th><th>95% CI</th><th>n</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def compact(block: dict[str, Any]) -> str:
    """``0.42 [0.31, 0.55] n=40`` in one cell, for the wide per-group tables."""
    if block["value"] is None:
        return f'<td class="na">n/a <span class="n">n={block["n"]}</span></td>'
    low, high = block["ci95"]
    return (
        f'<td><span class="num">{number(block["value"])}</span> '
        f'<span class="ci">[{number(low)}, {number(high)}]</span> <span class="n">n={block["n"]}</span></td>'
    )


def group_table(groups: dict[str, Any]) -> str:
    """One column per group (suite, kind or attack family), one row per metric."""
    head = "".join(f"<th>{escape(name)}</th>" for name in groups)
    rows = "".join(
        f"<tr><th>{name}</th>{''.join(compact(block[name]) for block in groups.values())}</tr>" for name in METRICS
    )
    return (
        f'<div class="scroll"><table class="metrics wide"><thead><tr><th>metric</th>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def group_tables(metrics: dict[str, Any], unfold: bool = False) -> str:
    """The per-suite, per-kind and per-attack tables: folded under the plots, open when there are none."""
    tag = "<details open>" if unfold else "<details>"
    parts = [
        f"{tag}<summary>Table: {title}</summary>{group_table(metrics[key])}</details>"
        for title, key in (("by suite", "by_suite"), ("by kind", "by_kind"), ("by attack family", "by_attack"))
        if metrics.get(key)
    ]
    return "".join(parts)


def header(metrics: dict[str, Any]) -> str:
    """Title and the run's identity: who was evaluated, on what, how many episodes."""
    run = metrics.get("run", {})
    model = f" · <code>{escape(str(run['model']))}</code>" if run.get("model") else ""
    fields = [
        ("agent", run.get("agent")),
        ("model", run.get("model")),
        ("adapter", run.get("adapter")),
        ("protocol", run.get("protocol")),
        ("split", run.get("split")),
        ("episodes", f"{metrics['overall']['episodes']} played of {run.get('episodes')} planned"),
        ("seed", run.get("seed")),
        ("envs", ", ".join(run.get("envs", []))),
    ]
    items = "".join(f"<dt>{key}</dt><dd>{escape(str(value))}</dd>" for key, value in fields if value is not None)
    return (
        f"<header><h1>Evaluation: agent <code>{escape(str(run.get('agent')))}</code>{model}</h1>"
        f'<dl class="run">{items}</dl></header>'
    )


def plots_section(plots: Sequence[Plot] | None) -> str:
    """The embedded figures, or a line saying how to get them."""
    if plots is None:
        return (
            '<p class="note">Plots are left out because matplotlib is not installed; '
            f"<code>{escape(INSTALL_HINT)}</code> adds them.</p>"
        )
    return "".join(
        f"<figure><figcaption>{escape(plot.title)}</figcaption>"
        f'<img src="data:image/png;base64,{plot.png_base64}" alt="{escape(plot.alt)}"></figure>'
        for plot in plots
    )


def page(
    metrics: dict[str, Any], records: Sequence[dict[str, Any]], plots: Sequence[Plot] | None, per_group: int = PER_GROUP
) -> str:
    """The whole report.html."""
    run = metrics.get("run", {})
    title = f"mosaic-gym eval: {run.get('agent')} on {run.get('split')}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
        + header(metrics)
        + '<section id="overall"><h2>Overall</h2><p class="note">Values with 95% confidence intervals '
        "(Wilson for rates, normal for means) and the number of episodes, calls or steps each is over; "
        "n/a where no episode of the population was played. Definitions in docs/metrics.md.</p>"
        + overall_table(metrics["overall"])
        + "</section>"
        + '<section id="plots"><h2>Plots</h2>'
        + plots_section(plots)
        + group_tables(metrics, unfold=plots is None)
        + "</section>"
        + viewer(records, per_group)
        + f"</main><script>{VIEWER_JS}</script></body></html>\n"
    )


CSS = """
:root { --fg: #1d2430; --muted: #6b7380; --line: #dde1e6; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  background: var(--bg); }
main { max-width: 1180px; margin: 0 auto; padding: 20px 24px 60px; }
h1 { font-size: 22px; margin: 0 0 8px; }
h1 code { font-size: inherit; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
code, pre { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.note { color: var(--muted); font-size: 13px; margin: 4px 0 10px; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
dl.run dt { color: var(--muted); } dl.run dd { margin: 0; }
table.metrics { border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
table.metrics th, table.metrics td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left;
  white-space: nowrap; }
table.metrics thead th { background: #eef1f4; font-weight: 600; }
table.metrics tbody th { font-weight: 500; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12.5px; }
td.num, span.num { font-variant-numeric: tabular-nums; font-weight: 600; }
.ci, .n { color: var(--muted); font-variant-numeric: tabular-nums; }
table.wide td { font-size: 12.5px; }
.na { color: #9aa1ab; font-style: italic; }
.scroll { overflow-x: auto; margin: 6px 0 12px; }
details > summary { cursor: pointer; }
#plots > details { margin: 6px 0; }
figure { margin: 10px 0 18px; background: #fff; border: 1px solid var(--line); padding: 8px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
figure img { max-width: 100%; height: auto; display: block; }
.filters { position: sticky; top: 0; z-index: 2; background: var(--bg); padding: 8px 0; display: flex;
  flex-wrap: wrap; gap: 6px 14px; align-items: center; border-bottom: 1px solid var(--line); }
.filters select, .filters input, .filters button { font: inherit; padding: 2px 6px; }
#f-count { color: var(--muted); }
.legend { font-size: 12.5px; color: var(--muted); margin: 6px 0; display: flex; flex-wrap: wrap; gap: 6px;
  align-items: center; }
.block-key { padding: 1px 8px; border-left: 4px solid; border-radius: 3px; color: var(--fg); }
section.group h3 .count { color: var(--muted); font-weight: 400; font-size: 13px; }
details.episode { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 6px 0; }
details.episode > summary { padding: 6px 10px 6px 26px; line-height: 1.9; list-style: none; position: relative; }
details.episode > summary::-webkit-details-marker { display: none; }
details.episode > summary::before { content: "\\25B8"; position: absolute; left: 10px; color: var(--muted); }
details.episode[open] > summary::before { content: "\\25BE"; }
summary .badges { display: inline-flex; flex-wrap: wrap; gap: 3px 4px; vertical-align: middle; }
details.episode[open] > summary { border-bottom: 1px solid var(--line); background: #fafbfc; }
.episode-body { padding: 8px 12px 12px; }
code.task { font-weight: 600; }
.episode-id { color: var(--muted); font-size: 12px; }
.kind { padding: 0 6px; border-radius: 3px; font-size: 12px; color: #fff; }
.k-benign { background: #4c9a5a; } .k-harmful { background: #c0392b; }
.k-injection { background: #8e44ad; } .k-privacy { background: #d68910; }
.attack { font-size: 12px; padding: 0 6px; border: 1px solid #8e44ad; color: #6c3483; border-radius: 3px; }
.badge { display: inline-block; font-size: 11.5px; line-height: 1.5; padding: 0 7px; border-radius: 10px;
  border: 1px solid; white-space: nowrap; }
.badge.good { background: #e7f5ea; color: #1e6b32; border-color: #9fd3ab; }
.badge.bad { background: #fdecea; color: #a4281b; border-color: #f0a59b; }
.badge.info { background: #e8f0fb; color: #1d4f91; border-color: #a9c4ea; }
.badge.muted { background: #f1f2f4; color: #6b7380; border-color: #d5d9de; }
.badge.warn { background: #fff6e0; color: #8a5a00; border-color: #ecc872; }
.badge.adv { background: #fff3a8; color: #6b5800; border-color: #e2c93f; }
.badge.irr { background: #b3261e; color: #fff; border-color: #b3261e; font-weight: 700; letter-spacing: .03em; }
.reward { color: var(--muted); font-size: 12px; }
.step { border-left: 3px solid var(--line); margin: 10px 0 0; padding: 2px 0 2px 10px; }
.step.irreversible { border-left-color: #b3261e; }
.step-head { font-weight: 600; font-size: 13px; margin-bottom: 4px; }
.block { margin: 4px 0; padding: 5px 9px; border-left: 4px solid; border-radius: 3px; }
.block .label { display: block; font-size: 11px; font-weight: 700; text-transform: uppercase;
  letter-spacing: .04em; opacity: .75; }
.block .text { white-space: pre-wrap; overflow-wrap: anywhere; }
.user { background: #f3f4f6; border-color: #6b7380; }
.plan { background: #eaf2fd; border-color: #3b82c4; }
.safety { background: #fff5dc; border-color: #e0a100; }
.call { background: #e9f6ee; border-color: #2e8b57; }
.call code.tool { font-weight: 700; }
.call.skipped { background: #f2f2f2; border-color: #999; opacity: 0.8; }
.refuse { background: #f3eafa; border-color: #8e44ad; }
.answer { background: #e6f6f6; border-color: #17877f; }
.format, .raw { background: #fdecea; border-color: #c0392b; }
.obs { background: #f7f7f5; border-color: #9aa1ab; }
mark.adv { background: #ffe45c; color: inherit; outline: 1px solid #d4a900; border-radius: 2px; padding: 0 1px; }
[hidden] { display: none !important; }
"""
