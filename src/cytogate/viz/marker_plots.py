"""Marker plots: per marker, the stained tube's histogram over its control tube's.

Both tubes are normalised to their mode (the usual overlay), on the marker's recorded scale
with data-unit ticks. The numbers written on a panel (MFI, RMFI, threshold, % positive) are
the ``markers.csv`` row of that marker, never recomputed here.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cytogate.errors import PanelError
from cytogate.viz.axes import AxisInfo, axis_for, set_axis
from cytogate.viz.events import EventView, view_of
from cytogate.viz.figure import (
    CONTROL_COLOUR,
    STAINED_COLOUR,
    draw_header,
    fmt_num,
    fmt_pct,
    new_figure,
    with_text_style,
    wrap_text,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from cytogate.analysis.quantify import MarkerPlan
    from cytogate.gating.engine import GatingResult
    from cytogate.study.outcome import FileOutcome


@dataclass(frozen=True)
class MarkerLayout:
    """Panels of a marker figure: one per marker, with its x axis (None: not in the file)."""

    population: str
    statistic: str  # the run's MFI statistic and positivity percentile (in the footer)
    percentile: float
    markers: tuple[str, ...]
    axes: tuple[AxisInfo | None, ...]
    problems: tuple[str, ...]  # why a panel has no axis
    size: tuple[float, float]
    rects: tuple[tuple[float, float, float, float], ...]
    left: float

    @property
    def key(self) -> str | None:
        """Equal for figures with the same static part. A panel without an axis (the marker
        is not in the file) is blank there; its reason, which names the file, is drawn per
        file, so a partial panel's figures share a layout too."""
        return repr(
            (self.population, self.statistic, self.percentile, self.size, self.rects, self.axes)
        )


def marker_layout(
    stained: EventView, plan: MarkerPlan, rows: Iterable[Mapping[str, Any]], population: str
) -> tuple[MarkerLayout, dict[str, dict[str, Any]]]:
    """The layout, and the stained tube's markers.csv row of each plotted marker."""
    by_marker = {r["marker"]: dict(r) for r in rows if r["population"] == population}
    markers = [m for m in plan.markers if m in by_marker]
    n = max(1, len(markers))
    panel_w, left, gap, right, top, bottom, height = 2.6, 0.55, 0.55, 0.2, 0.75, 0.75, 2.3
    # at least wide enough for the header and footnote (a Ki67 tube has one marker)
    width = max(6.4, left + n * panel_w + (n - 1) * gap + right)
    fig_h = top + height + bottom
    axes: list[AxisInfo | None] = []
    problems = []
    for marker in markers:
        try:
            axes.append(axis_for(stained, marker, stained.scaled_values(marker, population)))
            problems.append("")
        except (PanelError, KeyError) as exc:
            axes.append(None)
            problems.append(f"{marker}: {exc}")
    rects = tuple(
        ((left + i * (panel_w + gap)) / width, bottom / fig_h, panel_w / width, height / fig_h)
        for i in range(len(markers))
    )
    layout = MarkerLayout(
        population,
        plan.statistic,
        plan.percentile,
        tuple(markers),
        tuple(axes),
        tuple(problems),
        (width, fig_h),
        rects,
        left / width,
    )
    return layout, by_marker


def marker_static(layout: MarkerLayout) -> Figure:
    """The figure with the panels' axes, ticks and axis labels."""
    fig = new_figure(*layout.size)
    for rect, axis in zip(layout.rects, layout.axes, strict=True):
        ax = fig.add_axes(rect)
        if axis is None:  # the reason is drawn per file (draw_markers)
            ax.set_axis_off()
            continue
        set_axis(ax, axis, "x")
        ax.set_ylim(0, 175)
        ax.set_yticks([0, 50, 100])
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylabel("% of mode", fontsize=7)
        ax.set_title(f"{axis.dim} on {layout.population}", fontsize=8, loc="left")
    foot = (
        f"Histograms normalised to their mode; MFI = {layout.statistic} of compensated linear "
        f"intensities; RMFI = MFI(stained) / MFI({'control'}); threshold = "
        f"p{layout.percentile:g} of the control tube."
    )
    width = layout.size[0]
    fig.text(
        layout.left,
        0.06 / layout.size[1],
        wrap_text([foot], width - layout.left * width - 0.2, 6, 2),
        ha="left",
        va="bottom",
        fontsize=6,
        color="#444444",
    )
    return fig


@with_text_style
def marker_figure(
    stained: EventView | GatingResult | FileOutcome,
    control: EventView | GatingResult | FileOutcome | None,
    plan: MarkerPlan,
    rows: Iterable[Mapping[str, Any]],
    *,
    population: str | None = None,
    simulated: bool | None = None,
    title: str | None = None,
) -> Figure:
    """Per marker on ``population`` (default: the plan's first), stained vs control histograms.

    Both tubes are normalised to their mode (the usual overlay), on the marker's template
    scale with data-unit ticks. The panel states the stained and control MFI (the run's
    statistic) and RMFI for RMFI markers, and draws the positivity threshold with % positive for
    positivity markers. ``rows`` are the stained tube's ``markers.csv`` rows (those of
    :func:`cytogate.analysis.quantify.marker_rows`); the numbers drawn are theirs.
    """
    s_view = view_of(stained)
    c_view = view_of(control) if control is not None else None
    layout, by_marker = marker_layout(s_view, plan, rows, population or plan.populations[0])
    fig = marker_static(layout)
    draw_markers(fig, s_view, c_view, plan, by_marker, layout, simulated=simulated, title=title)
    return fig


def draw_markers(
    fig: Figure,
    stained: EventView,
    control: EventView | None,
    plan: MarkerPlan,
    by_marker: Mapping[str, dict[str, Any]],
    layout: MarkerLayout,
    *,
    simulated: bool | None = None,
    title: str | None = None,
) -> None:
    """Draw the files' own part (histograms, MFI lines, numbers) on ``marker_static(layout)``."""
    if simulated is None:
        simulated = stained.simulated
    population = layout.population
    c_name = control.name if control is not None else "(no control tube)"
    draw_header(
        fig,
        layout.left,
        title or f"{stained.name}  —  markers on {population}",
        f"stained tube {stained.name} vs control tube {c_name}",
        simulated,
    )
    for ax, marker, axis, problem in zip(
        fig.axes, layout.markers, layout.axes, layout.problems, strict=True
    ):
        if axis is None:
            ax.text(0.5, 0.5, wrap_text([problem], 2.4, 6), ha="center", va="center", fontsize=6)
        else:
            _marker_panel(ax, stained, control, marker, axis, population, by_marker[marker], plan)
    if not layout.markers:
        fig.text(0.5, 0.5, "no markers to plot", ha="center")


def _marker_panel(
    ax: Axes,
    stained: EventView,
    control: EventView | None,
    marker: str,
    axis: AxisInfo,
    population: str,
    row: dict[str, Any],
    plan: MarkerPlan,
) -> None:
    s_vals = stained.scaled_values(marker, population)
    c_vals = None
    if control is not None:
        try:
            c_vals = control.scaled_values(marker, population)
        except (PanelError, KeyError):
            c_vals = None
    bins = 96
    peak = 0.0
    curves = []
    for vals, colour, label, fill in (
        (c_vals, CONTROL_COLOUR, "control", True),
        (s_vals, STAINED_COLOUR, "stained", False),
    ):
        if vals is None or vals.size == 0:
            continue
        counts, edges = np.histogram(np.clip(vals, *axis.limits), bins=bins, range=axis.limits)
        norm = 100.0 * counts / counts.max()
        curves.append((norm, edges, colour, label, fill, vals.size))
        peak = max(peak, float(norm.max()))
    for norm, edges, colour, label, fill, size in curves:
        tube = label if label == "stained" else _tube_name(control)
        ax.stairs(
            norm,
            edges,
            fill=fill,
            color=colour,
            alpha=0.45 if fill else 1.0,
            lw=1.2,
            label=f"{tube} (n={size:,})",
            gid=f"hist:{label}",
        )
    stat = plan.statistic
    c_tube = _tube_name(control)
    s_mfi = row.get(f"mfi_{stat}", float("nan"))
    c_mfi = row.get("control_mfi", float("nan"))
    for value, colour in ((s_mfi, STAINED_COLOUR), (c_mfi, CONTROL_COLOUR)):
        if value is not None and math.isfinite(value):
            pos = float(axis.to_scaled([value])[0])
            ax.plot([pos, pos], [0, 108], color=colour, lw=0.8, ls=":", gid=f"mfi:{marker}")
    lines = [f"{stat} stained {fmt_num(s_mfi)}", f"{stat} {c_tube} {fmt_num(c_mfi)}"]
    if marker in plan.rmfi:
        lines.append(f"RMFI {fmt_num(row.get('rmfi'), 3)}")
    if marker in plan.positivity:
        threshold = row.get("threshold", float("nan"))
        if threshold is not None and math.isfinite(threshold):
            pos = float(axis.to_scaled([threshold])[0])
            ax.axvline(
                pos,
                color="black",
                lw=1.0,
                ls="--",
                gid=f"threshold:{marker}",
                label=f"p{plan.percentile:g} {c_tube}",
            )
        lines.append(f"threshold {fmt_num(threshold)}")
        lines.append(f"positive {fmt_pct(row.get('pct_positive', float('nan')))}")
    if row.get("reason"):
        lines += textwrap.wrap(str(row["reason"]), 34)[:3]
    ax.text(
        0.02,
        0.98,
        "\n".join(lines),
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=6.5,
        linespacing=1.15,
        gid=f"stats:{marker}",
        zorder=5,
        bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#999999", "lw": 0.5},
    )
    ax.legend(loc="upper right", fontsize=6, frameon=False, handlelength=1.2, borderaxespad=0.3)


def _tube_name(view: EventView | None) -> str:
    if view is None:
        return "control"
    return view.outcome.keywords.get("CYTOGATE_TUBE", "") or "control"
