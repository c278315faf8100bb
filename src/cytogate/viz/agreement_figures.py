"""Figures of ``cytogate compare``: Bland–Altman of % of parent, and both gates in one panel.

Bland–Altman rather than a scatter of one method against the other: agreement is about the
difference and whether it depends on the population's size; a correlation looks good for any
two methods that both follow the biology. Points: one per file × population; lines: the mean
difference (bias) and bias ± 1.96 SD (95 % limits of agreement), the numbers from
:func:`~cytogate.interop.agreement_plots.limits_of_agreement`.

The both-gates panel shows one compared population on cytogate's axes: a density of every
event of cytogate's parent population, cytogate's gate outline (the recorded geometry) and
the reference's gate as the outline of where its events lie. The reference may be per-event
labels (no geometry at all) or gates on other axes, transforms or compensation, so its outline
is drawn from its recorded membership: the boundary of the histogram bins in which at least
half of the events are the reference's (bin counts lightly smoothed). Events the two disagree
on are marked. Nothing is gated here: both memberships come from the comparison.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cytogate.interop.agreement_plots import limits_of_agreement
from cytogate.viz.axes import AxisInfo, axis_for, set_axis
from cytogate.viz.events import ROOT, EventView
from cytogate.viz.figure import add_footnote, draw_header, fmt_pct, new_figure
from cytogate.viz.gate_plots import gate_outline, plan_panels

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from cytogate.interop.agreement import FileAgreement

OURS_COLOUR = "black"
REFERENCE_COLOUR = "#d4007f"  # magenta: apart from every colour of the density map
OURS_ONLY_COLOUR = "#e67e22"
REFERENCE_ONLY_COLOUR = "#00a6d6"
#: the reference's outline: bins where at least this share of the events are the reference's
REFERENCE_LEVEL = 0.5


@dataclass(frozen=True)
class BlandAltman:
    """The numbers a Bland–Altman plot states (``basis``: % of parent or % of all events)."""

    n: int
    bias: float
    lower: float
    upper: float
    basis: str


def bland_altman_numbers(table: pd.DataFrame) -> BlandAltman:
    """Bias and 95 % limits of agreement of cytogate − reference % of parent, over the rows."""
    ours = table["pct_parent_cytogate"].to_numpy(dtype=float)
    theirs = table["pct_parent_reference"].to_numpy(dtype=float)
    diff = ours - theirs
    bias, low, high = limits_of_agreement(diff)
    basis = "% of all events" if set(table["pct_basis"]) == {"total"} else "% of parent"
    return BlandAltman(int(np.isfinite(diff).sum()), bias, low, high, basis)


def bland_altman_figure(table: pd.DataFrame, *, simulated: bool = False) -> Figure:
    """Difference (cytogate − reference) against the mean of % of parent, one point per row."""
    numbers = bland_altman_numbers(table)
    fig = new_figure(6.6, 4.8)
    left = 0.85 / 6.6
    draw_header(
        fig,
        left,
        "Agreement with the reference: Bland–Altman of "
        + numbers.basis
        + (" (simulated data)" if simulated else ""),
        f"{numbers.n} file × population pairs; bias = mean difference, limits = bias ± 1.96 SD",
        simulated,
    )
    ax = fig.add_axes((left, 0.27, 0.66, 0.58))
    ours = table["pct_parent_cytogate"].to_numpy(dtype=float)
    theirs = table["pct_parent_reference"].to_numpy(dtype=float)
    mean, diff = (ours + theirs) / 2, ours - theirs
    for pop, rows in table.groupby("population", sort=True):
        idx = rows.index.to_numpy()
        ax.scatter(mean[idx], diff[idx], s=16, alpha=0.85, label=str(pop), gid=f"points:{pop}")
    lines = [
        (numbers.bias, "-", "bias"),
        (numbers.lower, "--", "lower limit"),
        (numbers.upper, "--", "upper limit"),
    ]
    if numbers.lower == numbers.upper:  # every difference equal: one line, one label
        lines = [(numbers.bias, "-", "bias = both limits")]
    for value, style, text in lines:
        if np.isfinite(value):
            ax.axhline(value, color="0.3", linestyle=style, linewidth=1, gid=f"line:{text}")
            ax.annotate(
                f"{text} {value:+.2f}".replace("-", "\N{MINUS SIGN}"),
                (1.0, value),
                xycoords=("axes fraction", "data"),
                xytext=(4, 0),
                textcoords="offset points",
                ha="left",
                va="center",
                fontsize=7,
                annotation_clip=False,
                gid=f"value:{text}",
            )
    ax.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
    ax.set_xlabel(f"mean of cytogate and reference ({numbers.basis})", fontsize=8)
    ax.set_ylabel(f"cytogate − reference ({numbers.basis})", fontsize=8)
    ax.tick_params(labelsize=7.5)
    ax.spines[["top", "right"]].set_visible(False)
    if 0 < table["population"].nunique() <= 12:
        ax.legend(
            fontsize=7,
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(0.0, -0.14),
            ncol=4,
            title="cytogate population",
            title_fontsize=7,
            alignment="left",
        )
    return fig


# --------------------------------------------------------------------------- both gates


def _panel_of(view: EventView, population: str) -> tuple[Any, tuple[str, ...], str] | None:
    """(applied gate, panel dimensions, parent) of the gate that makes ``population``."""
    plans, _ = plan_panels(view)
    for plan in plans:
        for g in plan.gates:
            if population in view.outcome.populations_of(g):
                return g, tuple(plan.dims), plan.parent
    return None


def _smooth(hist: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(hist.astype(float), sigma=1.0, mode="constant")


def both_gates_panel(
    ax: Axes,
    view: EventView,
    our_pop: str,
    ref_pop: str,
    reference_mask: np.ndarray,
) -> dict[str, int]:
    """Draw one population's two gates on cytogate's axes; returns the panel's counts.

    Counts: ``parent`` (events drawn), ``both``, ``ours_only``, ``reference_only`` (within the
    parent), ``reference_outside`` (reference events outside cytogate's parent, not drawn).
    """
    from matplotlib.colors import LogNorm

    found = _panel_of(view, our_pop)
    ours = view.mask(our_pop)
    if found is None:
        ax.text(0.5, 0.5, f"{our_pop}: no gate outline to draw", ha="center", va="center")
        ax.set_axis_off()
        return {}
    g, dims, parent = found
    inside = view.mask(parent) if parent != ROOT else np.ones(view.n_events, dtype=bool)
    xa = axis_for(view, dims[0], view.scaled_values(dims[0], parent))
    x = view.scaled_values(dims[0], parent)
    ref_in = reference_mask[inside]
    ours_in = ours[inside]
    counts = {
        "parent": int(inside.sum()),
        "both": int(np.count_nonzero(ours_in & ref_in)),
        "ours_only": int(np.count_nonzero(ours_in & ~ref_in)),
        "reference_only": int(np.count_nonzero(~ours_in & ref_in)),
        "reference_outside": int(np.count_nonzero(reference_mask & ~inside)),
    }
    set_axis(ax, xa, "x")
    if len(dims) == 1:
        _one_dimension(ax, g, x, ours_in, ref_in, xa)
        return counts
    ya = axis_for(view, dims[1], view.scaled_values(dims[1], parent))
    set_axis(ax, ya, "y")
    y = view.scaled_values(dims[1], parent)
    xc, yc = np.clip(x, *xa.limits), np.clip(y, *ya.limits)
    bins = int(np.clip(round(1.5 * np.sqrt(max(x.size, 1))), 48, 200))
    rng = [xa.limits, ya.limits]
    hist, xe, ye = np.histogram2d(xc, yc, bins=bins, range=rng)
    ax.pcolormesh(
        xe,
        ye,
        np.ma.masked_equal(hist.T, 0),
        cmap=_cmap(),
        norm=LogNorm(vmin=1, vmax=max(float(hist.max()), 2.0)),
        shading="flat",
        rasterized=True,
        alpha=0.7,
        gid="density",
    )
    for mask, colour, gid in (
        (ours_in & ~ref_in, OURS_ONLY_COLOUR, "cytogate only"),
        (~ours_in & ref_in, REFERENCE_ONLY_COLOUR, "reference only"),
    ):
        ax.scatter(xc[mask], yc[mask], s=1.5, c=colour, lw=0, rasterized=True, gid=f"events:{gid}")
    ref_hist, _, _ = np.histogram2d(xc[ref_in], yc[ref_in], bins=bins, range=rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(_smooth(hist) > 0, _smooth(ref_hist) / _smooth(hist), 0.0)
    if np.count_nonzero(ref_in):
        centres_x, centres_y = (xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2
        ax.contour(
            centres_x,
            centres_y,
            share.T,
            levels=[REFERENCE_LEVEL],
            colors=[REFERENCE_COLOUR],
            linewidths=1.5,
            linestyles="--",
        ).set_gid(f"gate:reference:{ref_pop}")
    outline = gate_outline(g, dims, rng)
    ax.plot(outline[:, 0], outline[:, 1], color=OURS_COLOUR, lw=1.3, gid=f"gate:cytogate:{our_pop}")
    return counts


def _one_dimension(
    ax: Axes, g: Any, x: np.ndarray, ours: np.ndarray, ref: np.ndarray, xa: AxisInfo
) -> None:
    """A range gate without a plane: histograms of both populations, cytogate's bounds."""
    edges = np.linspace(*xa.limits, 129)
    xc = np.clip(x, *xa.limits)
    all_counts, _ = np.histogram(xc, bins=edges)
    ax.stairs(all_counts, edges, fill=True, color="#cccccc", gid="density")
    ref_counts, _ = np.histogram(xc[ref], bins=edges)
    ax.stairs(ref_counts, edges, color=REFERENCE_COLOUR, ls="--", lw=1.5, gid="gate:reference")
    lo, hi = gate_outline(g, (g.dims[0],), [xa.limits])
    top = max(1, all_counts.max()) * 1.1
    ax.plot([lo, lo, hi, hi], [0, top, top, 0], color=OURS_COLOUR, lw=1.3, gid="gate:cytogate")
    ax.set_ylim(0, top * 1.1)
    ax.set_ylabel("events per bin", fontsize=7)


def _cmap():
    """Grey densities here (not the gate plots' :data:`~cytogate.viz.figure.CMAP`): the two
    outlines and the disagreeing events must be the only colours in the panel."""
    import matplotlib

    return matplotlib.colormaps["Greys"].with_extremes(bad="white")


def both_gates_figure(
    item: FileAgreement,
    rows: Sequence[Mapping[str, Any]],
    *,
    simulated: bool | None = None,
) -> Figure:
    """One panel per compared population ``rows`` of a file: both gates, legend, numbers."""
    from matplotlib.lines import Line2D

    view = EventView.from_result(item.ours)
    simulated = view.simulated if simulated is None else simulated
    n = max(1, len(rows))
    panel_w, left, gap, right, top, bottom, height = 3.2, 0.7, 0.75, 0.25, 0.95, 1.55, 3.0
    width = left + n * panel_w + (n - 1) * gap + right
    fig_h = top + height + bottom
    fig = new_figure(width, fig_h)
    draw_header(
        fig,
        left / width,
        f"{view.name}: cytogate's gates and the reference's"
        + (" (simulated data)" if simulated else ""),
        f"{view.n_events:,} events · grey density: every event of cytogate's parent population"
        " (log scale)",
        simulated,
    )
    for k, row in enumerate(rows):
        ax = fig.add_axes(
            ((left + k * (panel_w + gap)) / width, bottom / fig_h, panel_w / width, height / fig_h)
        )
        our_pop, ref_pop = str(row["population"]), str(row["reference_population"])
        mask = item.reference_masks[(our_pop, ref_pop)]
        counts = both_gates_panel(ax, view, our_pop, ref_pop, mask)
        ax.set_title(
            f"{our_pop} vs {ref_pop}: F1 {row['f1']:.3f}\n"
            f"cytogate {fmt_pct(row['pct_parent_cytogate'])}, "
            f"reference {fmt_pct(row['pct_parent_reference'])} ({row['pct_basis']})",
            fontsize=7.5,
            loc="left",
        )
        if not counts:
            continue
        handles = [
            Line2D([], [], color=OURS_COLOUR, lw=1.3),
            Line2D([], [], color=REFERENCE_COLOUR, lw=1.5, ls="--"),
            Line2D([], [], color=OURS_ONLY_COLOUR, marker="o", ls="", ms=3),
            Line2D([], [], color=REFERENCE_ONLY_COLOUR, marker="o", ls="", ms=3),
        ]
        labels = [
            f"cytogate: {our_pop}, {int(row['count_cytogate']):,} events",
            f"reference: {ref_pop}, {int(row['count_reference']):,} events",
            f"cytogate only: {counts['ours_only']:,}",
            f"reference only: {counts['reference_only']:,}"
            + (
                f" (+{counts['reference_outside']:,} outside cytogate's parent, not drawn)"
                if counts["reference_outside"]
                else ""
            ),
        ]
        ax.legend(
            handles,
            labels,
            fontsize=6.5,
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(-0.02, -0.16),
            borderaxespad=0.0,
        )
    foot = (
        "Solid black: cytogate's gate (the recorded geometry). Dashed magenta: the "
        "reference's population, outlined where its events lie on cytogate's axes (bins, "
        f"smoothed, in which ≥ {REFERENCE_LEVEL:.0%} of the events are the reference's), "
        "since a reference may be labels or gates on other axes; both memberships are the "
        "comparison's, nothing is gated again."
    )
    add_footnote(
        fig, foot, left=left, right=right, width=width, height=fig_h, fontsize=6, max_lines=3
    )
    return fig
