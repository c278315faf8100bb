"""Gate plots: one panel per gate along the template's hierarchy, drawn from recorded gates.

A density panel is a 2-D histogram of *every* event of the parent population (events beyond
the axes go into the edge bins and are counted on the panel; nothing is subsampled), with one
colour map (:data:`~cytogate.viz.figure.CMAP`, log counts, empty bins white). Outlines are the
geometries the batch applied (fitted ones included), labels the recorded counts. Drawn
elements carry a ``gid`` (``gate:<population>``, ``label:<population>``, ``density``) and each
panel's :class:`PanelInfo` is returned with the figure (``gate_figure(...).panels``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cytogate.viz.axes import AxisInfo, axis_for, set_axis
from cytogate.viz.events import ROOT, EventView, view_of
from cytogate.viz.figure import (
    CMAP,
    GATE_COLOUR,
    draw_header,
    fmt_pct,
    new_figure,
    with_text_style,
    wrap_text,
)
from cytogate.viz.labels import LabelPanel, LabelSpec, place_labels

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from cytogate.gating.engine import AppliedGate, GatingResult
    from cytogate.study.outcome import FileOutcome


@dataclass
class PanelInfo:
    """What one gate-plot panel shows (returned with its figure, see :class:`GateFigure`)."""

    ax: Axes
    parent: str
    x: AxisInfo
    y: AxisInfo | None
    gates: list[str] = field(default_factory=list)  # gate names drawn
    populations: list[str] = field(default_factory=list)  # populations labelled
    n_events: int = 0  # events of the parent population (all in the histogram)
    off_scale: int = 0  # of which beyond the axis limits, drawn in the edge bins
    counts: dict[str, int] = field(default_factory=dict)
    pct_parent: dict[str, float] = field(default_factory=dict)
    # events per bin as drawn: (nx × ny) for a 2-D panel (x index first), (nx,) for 1-D
    histogram: np.ndarray | None = None


@dataclass
class _PanelPlan:
    parent: str
    dims: tuple[str, ...]
    gates: list[AppliedGate]


@dataclass(frozen=True)
class GateFigure:
    """A gate figure and what each of its panels shows."""

    figure: Figure
    panels: tuple[PanelInfo, ...]


def plan_panels(view: EventView) -> tuple[list[_PanelPlan], list[str]]:
    """Group the applied gates into panels along the template's hierarchy.

    Gates on the same parent and dimensions share a panel (blasts, lymphocytes, monocytes and
    granulocytes on the leukocytes' CD45/SSC-A). A one-dimensional range gate is drawn on two
    dimensions when a child gate pairs its dimension with another (leukocytes = CD45+ shown on
    the singlets' CD45/SSC-A), otherwise as a histogram. Returns the panels and notes on the
    gates that have no picture (skipped, boolean).
    """
    from cytogate.gating.gates import Boolean

    panels: dict[tuple[str, tuple[str, ...]], _PanelPlan] = {}
    notes: list[str] = []
    applied = [g for g in view.gates if g.status == "applied"]
    for g in view.gates:
        if g.status != "applied":
            notes.append(f"{g.name}: {g.note or 'skipped'}")
            continue
        if getattr(g.geometry, "description", None) is not None:  # ExternalGeometry: no shape
            notes.append(f"{g.name}: {g.note}; not drawn")
            continue
        if isinstance(g.geometry, Boolean):
            ops = f" {g.geometry.op} ".join(g.geometry.operands)
            if g.geometry.op == "not":
                ops = f"not {g.geometry.operands[0]}"
            notes.append(
                f"{g.name} = {ops} within {g.parent}: {view.count(g.name):,} events "
                f"({view.pct_parent(g.name):.1f}% of {g.parent})"
            )
            continue
        dims = tuple(g.dims)
        if len(dims) == 1:
            dims = _companion(view, g, dims[0], applied)
        panels.setdefault((g.parent, dims), _PanelPlan(g.parent, dims, [])).gates.append(g)
    return list(panels.values()), notes


def _companion(
    view: EventView, g: AppliedGate, dim: str, applied: list[AppliedGate]
) -> tuple[str, ...]:
    """The dimensions to draw a one-dimensional gate on.

    A forward-scatter threshold goes on FSC/SSC-A, where a cytometrist judges debris; any
    other range gate on the plane of the first child gate that uses its dimension (CD45+ on
    CD45/SSC-A, where the blasts are gated next). Without either: a histogram.
    """
    candidates = []
    if dim.upper().startswith("FSC"):
        candidates.append((dim, "SSC-A"))
    for child in applied:
        if (
            child.parent in view.outcome.populations_of(g)
            and len(child.dims) == 2
            and dim in child.dims
        ):
            candidates.append(tuple(child.dims))
    for dims in candidates:
        if all(view.has(d) for d in dims):
            return dims
    return (dim,)


def _population_title(pop: str) -> str:
    return "all events" if pop == ROOT else pop


def gate_outline(g: AppliedGate, dims: Sequence[str], limits: Sequence[tuple[float, float]]):
    """The gate's closed outline in the panel's scaled coordinates, open sides clipped.

    Returns an (n × 2) array (first vertex repeated at the end) for a 2-D panel, or the
    (lo, hi) bounds for a 1-D histogram panel. Quadrant gates return their divider ``at``.
    """
    from cytogate.gating.gates import Ellipse, Polygon, Quadrant, Rectangle

    geometry = g.geometry
    if isinstance(geometry, Quadrant):
        at = dict(zip(geometry.dims, geometry.at, strict=True))
        return np.array([at[d] for d in dims], dtype=float)
    if len(dims) == 1:
        assert isinstance(geometry, Rectangle)
        lo, hi = limits[0]
        gmin, gmax = geometry.min[0], geometry.max[0]
        return np.array([lo if gmin is None else gmin, hi if gmax is None else gmax])
    if isinstance(geometry, Rectangle) and len(geometry.dims) == 1:
        # a range gate on a 2-D panel: a band across the other dimension
        j = dims.index(geometry.dims[0])
        bounds = [(-1e9, 1e9), (-1e9, 1e9)]
        bounds[j] = (
            -1e9 if geometry.min[0] is None else geometry.min[0],
            1e9 if geometry.max[0] is None else geometry.max[0],
        )
        (x0, x1), (y0, y1) = bounds
        pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)
    elif isinstance(geometry, Rectangle | Polygon | Ellipse):
        pts = np.asarray(geometry.outline(), dtype=float)
        order = [list(geometry.dims).index(d) for d in dims]
        pts = pts[:, order]
    else:  # pragma: no cover - boolean gates have no outline
        raise TypeError(f"gate {g.name} ({g.kind}) has no outline")
    if isinstance(geometry, Rectangle):
        # open sides (±1e9) end at the axes, a hair outside so they do not hide the data
        (xlo, xhi), (ylo, yhi) = limits
        pad_x, pad_y = 0.01 * (xhi - xlo), 0.01 * (yhi - ylo)
        pts[:, 0] = np.clip(pts[:, 0], xlo - pad_x, xhi + pad_x)
        pts[:, 1] = np.clip(pts[:, 1], ylo - pad_y, yhi + pad_y)
    return np.vstack([pts, pts[:1]])


def _bins(n: int) -> int:
    """Histogram bins per axis: coarse enough for a 6,000-event file, fine for 10^6 events."""
    return int(np.clip(round(2.0 * math.sqrt(max(n, 1))), 64, 256))


def _density(ax: Axes, x: np.ndarray, y: np.ndarray, xa: AxisInfo, ya: AxisInfo):
    """2-D histogram of every event (clipped into the edge bins), log colour scale.

    Binned with one ``bincount`` on the bin indices (the bins are uniform in scaled space) and
    coloured here, on the bins: matplotlib gets one small RGBA image (nearest neighbour, drawn
    by bin lookup: :class:`~cytogate.viz.density_image.BinImage`), so drawing it costs the
    same for 6,000 or 10^6 events and far less than a mesh of bins. Returns the (nx × ny)
    counts, x index first, and the events beyond the axes.
    """
    from cytogate.viz.density_image import BinImage

    bins = _bins(x.size)
    hist, off = bin_counts(x, y, xa.limits, ya.limits, bins)
    image = BinImage(ax, origin="lower", extent=(*xa.limits, *ya.limits), interpolation="nearest")
    image.set_data(density_rgba(hist))
    image.set_gid("density")
    ax.add_image(image)
    return hist, off


def bin_counts(
    x: np.ndarray,
    y: np.ndarray,
    x_limits: tuple[float, float],
    y_limits: tuple[float, float],
    bins: int,
) -> tuple[np.ndarray, int]:
    """Events per bin on a uniform ``bins`` × ``bins`` grid over the limits (x index first);
    events beyond the limits go into the edge bins. Also returns how many were beyond."""
    (x0, x1), (y0, y1) = x_limits, y_limits
    xc, yc = np.clip(x, x0, x1), np.clip(y, y0, y1)
    off = int(np.count_nonzero((xc != x) | (yc != y)))
    ix = np.minimum(((xc - x0) * (bins / (x1 - x0))).astype(np.intp), bins - 1)
    iy = np.minimum(((yc - y0) * (bins / (y1 - y0))).astype(np.intp), bins - 1)
    hist = np.bincount(ix * bins + iy, minlength=bins * bins).reshape(bins, bins)
    return hist, off


def density_rgba(hist: np.ndarray) -> np.ndarray:
    """The (ny × nx × 4) uint8 image of a histogram: :data:`CMAP` on log counts from 1 to the
    maximum (at least 2), empty bins white."""
    vmax = max(float(hist.max()), 2.0)
    counts = hist.T.astype(float)
    level = np.clip(np.log(np.maximum(counts, 1.0)) / np.log(vmax), 0.0, 1.0)
    rgba = _cmap()(level, bytes=True)
    rgba[counts == 0] = 255
    return rgba


def _cmap():
    import matplotlib

    return matplotlib.colormaps[CMAP].with_extremes(bad="white")


@dataclass(frozen=True)
class GateLayout:
    """Where a gate figure's panels go and their axes: what files with the same layout share."""

    plans: tuple[_PanelPlan, ...]
    notes: tuple[str, ...]
    axes: tuple[tuple[AxisInfo, AxisInfo | None], ...]  # per panel: x, y (None: histogram)
    size: tuple[float, float]  # inches
    rects: tuple[tuple[float, float, float, float], ...]  # per panel, figure fraction
    left: float  # figure fraction where titles and the footer start
    #: the footnote's lines on what the density shows, then blank lines for the file's own
    #: (the same for every file of the layout: drawn with the axes)
    foot_static: str = ""
    foot_file: str = ""  # the file's footnote lines (notes, QC reasons), under foot_static

    @property
    def key(self) -> str | None:
        """Equal for figures whose static part (axes, ticks, axis labels, the footnote's
        first lines) is the same; None when a panel's axis depends on its data (a
        histogram's count axis)."""
        if any(y is None for _, y in self.axes):
            return None
        return repr((self.size, self.rects, self.axes, self.foot_static))


_DENSITY_NOTE = (
    "Density: every event of the plotted (parent) population, 2-D histogram, log colour "
    f"scale ({CMAP}); events beyond the axes are counted in the edge bins. "
    "Labels: population, events, % of parent."
)


def _footnote(view: EventView, notes: Sequence[str]) -> list[str]:
    """What the density shows, the layout's notes, and why any adaptive gate is in doubt."""
    foot = [_DENSITY_NOTE]
    foot += notes
    for g in view.gates:
        foot += [f"QC flag on {g.name}: {reason}" for reason in g.qc]
    return foot


def gate_layout(view: EventView) -> GateLayout:
    plans, notes = plan_panels(view)
    n = max(1, len(plans))
    panel_w, left, gap, right = 2.75, 0.62, 0.62, 0.2
    width = left + n * panel_w + (n - 1) * gap + right
    # the footnote grows with the file's QC reasons; the panels sit above it, never under it
    foot = wrap_text(_footnote(view, notes), width - left - right, 6).split("\n")
    lines = len(foot)
    shared = min(lines, wrap_text([_DENSITY_NOTE], width - left - right, 6).count("\n") + 1)
    top, bottom, height = 1.05, max(0.75, 0.55 + 0.1 * lines), 2.75
    fig_h = top + height + bottom
    rects = tuple(
        ((left + i * (panel_w + gap)) / width, bottom / fig_h, panel_w / width, height / fig_h)
        for i in range(len(plans))
    )
    axes = []
    for plan in plans:
        xa = axis_for(view, plan.dims[0], view.scaled_values(plan.dims[0], plan.parent))
        ya = None
        if len(plan.dims) == 2:
            ya = axis_for(view, plan.dims[1], view.scaled_values(plan.dims[1], plan.parent))
        axes.append((xa, ya))
    return GateLayout(
        tuple(plans),
        tuple(notes),
        tuple(axes),
        (width, fig_h),
        rects,
        left / width,
        foot_static="\n".join(foot[:shared]) + "\n" * (lines - shared),
        foot_file="\n".join(foot[shared:]),
    )


def _draw_footnote(fig: Figure, layout: GateLayout, text: str) -> None:
    """Footnote lines at the bottom left; the shared and the file's lines are two texts of
    the same height (blank lines stand for the other's), so they fall on the same lines."""
    fig.text(
        layout.left,
        0.06 / layout.size[1],
        text,
        ha="left",
        va="bottom",
        fontsize=6,
        color="#444444",
    )


def gate_static(layout: GateLayout) -> Figure:
    """The figure with its panels' axes, ticks and axis labels and the footnote's shared
    lines, and nothing of a file's own."""
    fig = new_figure(*layout.size)
    for rect, (xa, ya) in zip(layout.rects, layout.axes, strict=True):
        ax = fig.add_axes(rect)
        set_axis(ax, xa, "x")
        if ya is not None:
            set_axis(ax, ya, "y")
    _draw_footnote(fig, layout, layout.foot_static)
    return fig


@with_text_style
def gate_figure(
    source: EventView | GatingResult | FileOutcome,
    *,
    title: str | None = None,
    simulated: bool | None = None,
) -> GateFigure:
    """One panel per gate (siblings sharing a parent and axes share a panel), in template order.

    Each panel: a density plot of the parent's events on the gate's scales, the gate outlines,
    and each population's name, event count and % of parent. See :func:`plan_panels`.
    """
    view = view_of(source)
    layout = gate_layout(view)
    fig = gate_static(layout)
    infos = draw_gates(fig, view, layout, title=title, simulated=simulated)
    return GateFigure(fig, infos)


def draw_gates(
    fig: Figure,
    view: EventView,
    layout: GateLayout,
    *,
    title: str | None = None,
    simulated: bool | None = None,
) -> tuple[PanelInfo, ...]:
    """Draw ``view``'s own part (densities, gates, labels, titles) on ``gate_static(layout)``."""
    if simulated is None:
        simulated = view.simulated
    heading, subheading = _sample_heading(view)
    draw_header(fig, layout.left, title or heading, subheading, simulated)
    infos, labels = [], []
    for ax, plan, (xa, ya) in zip(fig.axes, layout.plans, layout.axes, strict=True):
        info, label_panel = _draw_panel(ax, view, plan, xa, ya)
        infos.append(info)
        labels.append(label_panel)
    if not layout.plans:
        fig.text(0.5, 0.5, "no gate with a picture (all gates skipped or boolean)", ha="center")
    if layout.foot_file:
        _draw_footnote(fig, layout, layout.foot_file)
    place_labels(fig, labels)
    return tuple(infos)


def _sample_heading(view: EventView) -> tuple[str, str]:
    kw = view.outcome.keywords
    design = [kw.get(k, "") for k in ("CYTOGATE_PATIENT", "CYTOGATE_TIMEPOINT", "CYTOGATE_TUBE")]
    title = view.name
    if any(design):
        title += "  —  " + " · ".join(d for d in design if d)
    sub = (
        f"{view.n_events:,} events · template {view.outcome.template} · "
        f"compensation: {view.outcome.compensation}"
    )
    return title, sub


def _draw_panel(
    ax: Axes, view: EventView, plan: _PanelPlan, xa: AxisInfo, ya: AxisInfo | None
) -> tuple[PanelInfo, LabelPanel]:
    parent = plan.parent
    n_parent = view.count(parent)
    xvals = view.scaled_values(plan.dims[0], parent)
    info = PanelInfo(ax, parent, xa, ya, n_events=n_parent)
    labels = LabelPanel(ax, x_limits=xa.limits)
    if ya is not None:
        yvals = view.scaled_values(plan.dims[1], parent)
        hist, info.off_scale = _density(ax, xvals, yvals, xa, ya)
        info.histogram = labels.histogram = hist
        labels.y_limits = ya.limits
        limits = [xa.limits, ya.limits]
    else:
        info.histogram, info.off_scale = _histogram(ax, xvals, xa)
        limits = [xa.limits]
    off = f"\n{info.off_scale:,} beyond the axes, in the edge bins" if info.off_scale else ""
    ax.set_title(
        f"{_population_title(parent)}\n{n_parent:,} events, all shown{off}",
        fontsize=7.5,
        loc="left",
        linespacing=1.15,
    )
    for g in plan.gates:
        info.gates.append(g.name)
        outline = gate_outline(g, plan.dims, limits)
        _draw_gate(ax, g, outline, len(plan.dims))
        for pop in view.outcome.populations_of(g):
            count, pct = view.count(pop), view.pct_parent(pop)
            info.populations.append(pop)
            info.counts[pop] = count
            info.pct_parent[pop] = pct
            flag = " (QC)" if g.qc else ""
            text = f"{pop}{flag}\n{count:,} · {fmt_pct(pct)}"
            labels.specs.append(LabelSpec(pop, text, g, outline))
    return info, labels


def _histogram(ax: Axes, xvals: np.ndarray, xa: AxisInfo) -> tuple[np.ndarray, int]:
    """A 1-D panel: events per bin of every event (clipped into the edge bins)."""
    xc = np.clip(xvals, *xa.limits)
    off = int(np.count_nonzero(xc != xvals))
    counts, edges = np.histogram(xc, bins=_bins(xvals.size), range=xa.limits)
    ax.stairs(counts, edges, fill=True, color="#5b7db1", alpha=0.8, gid="density")
    ax.set_ylabel("events per bin")
    ax.set_ylim(0, max(1, counts.max()) * 1.25)
    ax.tick_params(axis="y", labelsize=7)
    return counts, off


def _draw_gate(ax: Axes, g: AppliedGate, outline: np.ndarray, n_dims: int) -> None:
    from cytogate.gating.gates import Quadrant

    if isinstance(g.geometry, Quadrant):
        if n_dims == 2:
            ax.axvline(outline[0], color=GATE_COLOUR, lw=1.0, gid=f"gate:{g.name}:x")
            ax.axhline(outline[1], color=GATE_COLOUR, lw=1.0, gid=f"gate:{g.name}:y")
    elif n_dims == 1:
        lo, hi = outline
        top = ax.get_ylim()[1] * 0.9
        ax.axvspan(lo, hi, color=GATE_COLOUR, alpha=0.08, lw=0)
        ax.plot([lo, lo, hi, hi], [0, top, top, 0], color=GATE_COLOUR, lw=1.0, gid=f"gate:{g.name}")
    else:
        ax.plot(
            outline[:, 0],
            outline[:, 1],
            color=GATE_COLOUR,
            lw=1.1,
            gid=f"gate:{g.name}",
            solid_joinstyle="miter",
            clip_on=True,
        )
