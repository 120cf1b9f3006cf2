"""Bar charts of an eval's metrics as base64 PNGs, for embedding in report.html.

matplotlib is an optional dependency (``mosaic-gym[eval]``), so it is imported inside
:func:`render_plots` only; the report degrades to tables when it is missing. Figures are
drawn on the Agg canvas directly, without pyplot, so no global GUI state is touched.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mosaic_gym.evaluation.metrics import HEADLINE, TABLE

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# The headline safety and utility metrics of the metric table; all of them lie in [0, 1].
KEY_METRICS = HEADLINE
# The injection metrics, per attack family.
ATTACK_METRICS = tuple(metric.name for metric in TABLE if metric.headline and metric.population == "injection episodes")
# Lower is better for these; the charts colour them so a reader sees the direction at a glance.
LOWER_IS_BETTER = frozenset(metric.name for metric in TABLE if metric.lower_is_better)
GOOD, BAD, NEUTRAL = "#3b82c4", "#d0573f", "#888888"
KIND_COLOURS = {"benign": "#4c9a5a", "harmful": "#c0392b", "injection": "#8e44ad", "privacy": "#d68910"}
BAR_HEIGHT_IN = 0.28


@dataclass(frozen=True)
class Plot:
    """One embedded figure: a heading, a base64 PNG, and the alt text of the image."""

    title: str
    png_base64: str
    alt: str


@dataclass(frozen=True)
class Bar:
    """One horizontal bar; ``value`` None draws an ``n/a`` label in its place."""

    label: str
    value: float | None
    ci95: tuple[float, float]
    n: int
    colour: str


def render_plots(metrics: dict[str, Any]) -> list[Plot] | None:
    """Every figure of the report, or None when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        return None
    plots = [
        _plot("Key metrics by kind", "key metrics per task kind", _kind_figure(metrics["by_kind"])),
        _plot("Key metrics by suite", "key metrics per suite", _suite_figure(metrics["by_suite"])),
    ]
    if metrics.get("by_attack"):
        plots.append(
            _plot("Injection attacks by family", "attack success and utility per family", _attack_figure(metrics))
        )
    return plots


def bar_of(label: str, block: dict[str, Any], colour: str) -> Bar:
    """A bar from one metric entry of metrics.json (``{value, ci95, n}``)."""
    low, high = block["ci95"]
    return Bar(label=label, value=block["value"], ci95=(float(low), float(high)), n=int(block["n"]), colour=colour)


def metric_colour(name: str) -> str:
    return BAD if name in LOWER_IS_BETTER else GOOD


def _kind_figure(by_kind: dict[str, Any]) -> Figure:
    """One row per (metric, kind) where the metric applies: most metrics are defined for a single kind."""
    bars = [
        bar_of(f"{name} {_arrow(name)}  ·  {kind}", block[name], KIND_COLOURS.get(kind, NEUTRAL))
        for name in KEY_METRICS
        for kind, block in by_kind.items()
        if block[name]["value"] is not None
    ]
    figure = _figure(width=9.5, height=1.2 + BAR_HEIGHT_IN * max(len(bars), 1))
    axes = figure.add_subplot()
    draw_bars(axes, bars, "Key metrics by task kind (↓ lower is better, ↑ higher; empty rows left out)")
    handles = [_patch(colour, kind) for kind, colour in KIND_COLOURS.items() if kind in by_kind]
    if handles:
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return figure


def _suite_figure(by_suite: dict[str, Any]) -> Figure:
    """Small multiples: one panel per key metric, one bar per suite."""
    columns, rows = 2, (len(KEY_METRICS) + 1) // 2
    panel_height = 0.9 + BAR_HEIGHT_IN * max(len(by_suite), 1)
    # The extra vertical pad keeps each panel's title clear of the tick labels of the panel above.
    figure = _figure(width=11.0, height=panel_height * rows + 0.4, h_pad=0.15)
    for position, name in enumerate(KEY_METRICS, 1):
        axes = figure.add_subplot(rows, columns, position)
        bars = [bar_of(suite, block[name], metric_colour(name)) for suite, block in by_suite.items()]
        draw_bars(axes, bars, _titled(name))
    return figure


def _attack_figure(metrics: dict[str, Any]) -> Figure:
    """Attack success beside utility under attack, one bar per attack family."""
    by_attack = metrics["by_attack"]
    figure = _figure(width=11.0, height=1.2 + BAR_HEIGHT_IN * max(len(by_attack), 1))
    for position, name in enumerate(ATTACK_METRICS, 1):
        axes = figure.add_subplot(1, len(ATTACK_METRICS), position)
        bars = [bar_of(family, block[name], metric_colour(name)) for family, block in by_attack.items()]
        draw_bars(axes, bars, _titled(name), show_labels=position == 1)
    return figure


def draw_bars(axes: Axes, bars: Sequence[Bar], title: str, show_labels: bool = True) -> None:
    """Horizontal bars on a 0-1 axis, first bar on top, with 95% CI whiskers and value labels."""
    positions = list(range(len(bars)))[::-1]
    for y, bar in zip(positions, bars, strict=True):
        if bar.value is None:
            axes.text(0.01, y, "n/a (no episodes)", va="center", fontsize=8, color=NEUTRAL, style="italic")
            continue
        low, high = bar.ci95
        error = [[max(bar.value - low, 0.0)], [max(high - bar.value, 0.0)]]
        axes.barh(y, bar.value, height=0.65, color=bar.colour, alpha=0.85, xerr=error, capsize=3, ecolor="#333333")
        axes.text(min(high, 1.0) + 0.02, y, f"{bar.value:.2f} (n={bar.n})", va="center", fontsize=8)
    axes.set_yticks(positions)
    axes.set_yticklabels([bar.label for bar in bars] if show_labels else [""] * len(bars), fontsize=8)
    axes.set_xlim(0.0, 1.25)  # room on the right for the value labels
    axes.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0])
    axes.tick_params(axis="x", labelsize=8)
    axes.set_ylim(-0.6, max(len(bars), 1) - 0.4)
    axes.axvline(1.0, color="#cccccc", linewidth=0.8, zorder=0)
    axes.grid(axis="x", color="#eeeeee", zorder=0)
    axes.set_axisbelow(True)
    axes.set_title(title, fontsize=10, loc="left")
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _arrow(name: str) -> str:
    return "↓" if name in LOWER_IS_BETTER else "↑"


def _titled(name: str) -> str:
    return f"{name} ({'lower' if name in LOWER_IS_BETTER else 'higher'} is better)"


def _patch(colour: str, label: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(color=colour, label=label)


def _figure(width: float, height: float, h_pad: float = 0.04167) -> Figure:
    """A figure on the Agg canvas with constrained layout (``h_pad`` in inches; matplotlib's default)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    figure = Figure(figsize=(width, height), dpi=100, layout=ConstrainedLayoutEngine(h_pad=h_pad))
    FigureCanvasAgg(figure)
    return figure


def _plot(title: str, alt: str, figure: Figure) -> Plot:
    """Encode a figure as PNG; no metadata, so the same metrics give the same bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return Plot(title=title, png_base64=base64.b64encode(buffer.getvalue()).decode("ascii"), alt=alt)
