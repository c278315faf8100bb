"""Figures a cytometrist expects: gate plots, marker histograms and time-course figures.

Everything here is headless: figures are built on :class:`matplotlib.figure.Figure` with the
Agg canvas (pyplot and the global backend are never touched), and matplotlib is imported inside
the functions, so ``import cytogate`` does not load it.

Conventions, shared by every figure:

* **Scaled space, data-unit axes.** Events and gate outlines are drawn in each dimension's
  scaled space (the space the template's coordinates live in), so a polygon edge is straight
  exactly where the gate's edge is. The tick marks sit at *data* values mapped through
  :meth:`Scale.apply`: 0, ±10², 10³, … on logicle/arcsinh/log axes, 0, 50K, 100K, … on linear
  scatter axes. Tick labels are always data values, never 0–1 transform coordinates.
* **All events.** A density panel is a 2-D histogram of *every* event of the parent population;
  events beyond the axis limits are drawn in the edge bins, and their number is written on the
  panel. Nothing is subsampled or silently dropped.
* **One colour map** (:data:`CMAP`, log-scaled counts; empty bins white) for every density plot.
* Figures from simulated files (keyword ``CYTOGATE_SIMULATED=TRUE``) carry a red
  "SIMULATED DATA" banner.

Each drawn element carries a ``gid`` (``gate:<population>``, ``label:<population>``,
``density``, ``threshold:<marker>``, ``stats:<marker>``) and each panel's Axes an attribute
``cytogate`` (:class:`PanelInfo`), so tests and tools can check what a figure shows.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cytogate.atomic import atomic_write
from cytogate.errors import CytogateError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from cytogate.analysis.quantify import MarkerPlan
    from cytogate.gating.engine import AppliedGate, GatingResult
    from cytogate.model.transforms import Scale

FORMATS = ("png", "svg", "pdf")
DPI = 300  # PNG resolution of single figures and of the time-course figures
SAMPLE_DPI = 150  # per-sample gate and marker plots of a batch (2,000 px wide; see docs)
THUMB_WIDTH = 660  # pixels: gallery thumbnails in the report
CMAP = "turbo"  # the one colour map of every density plot
GATE_COLOUR = "black"
STAINED_COLOUR = "#c0392b"
CONTROL_COLOUR = "#7f8c8d"
SIMULATED_TEXT = "SIMULATED DATA \N{EM DASH} not patient samples"
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_MINUS = "\N{MINUS SIGN}"


def is_simulated(keywords: Mapping[str, str]) -> bool:
    """True when an FCS file's keywords say it was written by the simulator."""
    return str(keywords.get("CYTOGATE_SIMULATED", "")).strip().upper() == "TRUE"


# --------------------------------------------------------------------------- figure plumbing


def new_figure(width: float, height: float) -> Figure:
    """A Figure on the Agg canvas (no pyplot, no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save_figure(
    fig: Figure,
    path: str | os.PathLike[str],
    dpi: int = DPI,
    thumbnail: str | os.PathLike[str] | None = None,
    thumbnail_width: int = 520,
) -> list[Path]:
    """Save ``fig`` atomically (format from the suffix: png, svg or pdf), optionally a thumbnail.

    A PNG is rendered once: the thumbnail (a PNG ``thumbnail_width`` pixels wide) is a
    downsampled copy of the same pixels. Returns the files written.
    """
    final = Path(path)
    fmt = final.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"{final}: plot format must be one of {', '.join(FORMATS)}")
    written = []
    if fmt == "png":
        image = _render(fig, dpi)
        written.append(_atomic(final, lambda p: image.save(p, format="PNG", dpi=(dpi, dpi))))
    else:
        image = None
        metadata = {"Date": None} if fmt == "svg" else {"CreationDate": None}
        written.append(
            _atomic(final, lambda p: fig.savefig(p, format=fmt, dpi=dpi, metadata=metadata))
        )
    if thumbnail is not None:
        if image is None:
            image = _render(fig, max(40, int(thumbnail_width / fig.get_figwidth()) + 1))
        thumb = _thumbnail(image, thumbnail_width)
        written.append(_atomic(Path(thumbnail), lambda p: thumb.save(p, format="PNG")))
    return written


def _render(fig: Figure, dpi: int):
    """The figure's pixels at ``dpi`` as an RGB PIL image (white background)."""
    from PIL import Image

    fig.set_dpi(dpi)
    fig.canvas.draw()
    width, height = fig.canvas.get_width_height(physical=True)
    rgba = Image.frombuffer("RGBA", (width, height), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    return rgba.convert("RGB")


def _thumbnail(image, width: int):
    from PIL import Image

    if image.width <= width:
        return image
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=2.0)


def _atomic(final: Path, write: Callable[[str], object]) -> Path:
    return atomic_write(final, write, make_parents=True)


def _header(
    fig: Figure, left: float, title: str, subtitle: str = "", simulated: bool = False
) -> None:
    """Bold title and a smaller subtitle at the top left; the SIMULATED banner at the top right.

    ``left`` is in figure fraction. When the banner would overlap the title (a narrow figure),
    the banner goes to the top left and the title and subtitle move down a line.
    """
    h = fig.get_figheight()
    title_artist = fig.text(
        left, 1 - 0.08 / h, title, ha="left", va="top", fontsize=9, fontweight="bold", gid="title"
    )
    sub_artist = fig.text(
        left,
        1 - 0.28 / h,
        subtitle,
        ha="left",
        va="top",
        fontsize=7,
        color="#333333",
        gid="subtitle",
    )
    if not simulated:
        return
    banner = fig.text(
        0.995,
        1 - 0.06 / h,
        SIMULATED_TEXT,
        ha="right",
        va="top",
        fontsize=8,
        color="white",
        fontweight="bold",
        bbox={"boxstyle": "square,pad=0.3", "fc": "#c0392b", "ec": "none"},
        gid="simulated-banner",
    )
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    if banner.get_window_extent(renderer).overlaps(title_artist.get_window_extent(renderer)):
        banner.set_position((left, 1 - 0.06 / h))
        banner.set_ha("left")
        title_artist.set_y(1 - 0.30 / h)
        sub_artist.set_y(1 - 0.48 / h)


# --------------------------------------------------------------------------- axes in data units


@dataclass(frozen=True)
class AxisInfo:
    """One plotted dimension: its template scale, the channel's $PnR and the axis limits."""

    dim: str
    channel: str
    scale: Scale
    channel_range: float
    limits: tuple[float, float]  # in scaled space

    @property
    def label(self) -> str:
        return self.dim if self.channel in ("", self.dim) else f"{self.dim} ({self.channel})"

    def to_data(self, scaled: Any) -> np.ndarray:
        return self.scale.inverse(
            np.atleast_1d(np.asarray(scaled, dtype=float)), self.channel_range
        )

    def to_scaled(self, data: Any) -> np.ndarray:
        return self.scale.apply(np.atleast_1d(np.asarray(data, dtype=float)), self.channel_range)


def axis_for(result: GatingResult, dim: str, values: np.ndarray | None = None) -> AxisInfo:
    """Axis of ``dim`` in ``result``'s file: scale, $PnR and display limits in scaled space."""
    resolved = result.resolve(dim)
    pnr = float(result.sample.channels["pnr"].iloc[resolved.index])
    return AxisInfo(
        dim, resolved.pnn, scale_of(result, dim), pnr, _limits(scale_of(result, dim), pnr, values)
    )


def scale_of(result: GatingResult, dim: str) -> Scale:
    """The scale ``result`` used for ``dim`` (per-file alternatives resolved, if any)."""
    per_file = getattr(result, "scale_for", None)
    return per_file(dim) if per_file is not None else result.template.scale_for(dim)


def _limits(scale: Scale, pnr: float, values: np.ndarray | None) -> tuple[float, float]:
    """Display range in scaled space: the whole detector range, as cytometry software shows it."""
    if scale.kind in ("linear", "log", "logicle"):
        # linear: 0..$PnR; log: M decades below T; logicle: 0..1 spans its negative "zero
        # region" up to T (about −110 .. 262,144 for the usual W 0.5, M 4.5).
        return (0.0, 1.0)
    top = float(scale.apply(np.array([pnr]), pnr)[0])
    bottom = float(scale.apply(np.array([-10 * float(scale.params["cofactor"])]), pnr)[0])
    if values is not None and values.size:
        bottom = min(bottom, float(np.percentile(values, 0.5)))
    return (bottom, top)


def _si(value: float) -> str:
    """50000 -> "50K", 1.5e6 -> "1.5M", 200 -> "200"."""
    if value == 0:
        return "0"
    sign = _MINUS if value < 0 else ""
    v = abs(value)
    for div, suffix in ((1e6, "M"), (1e3, "K")):
        if v >= div:
            return f"{sign}{v / div:g}{suffix}"
    return f"{sign}{v:g}"


def _decade_label(value: float) -> str:
    if value == 0:
        return "0"
    exponent = round(math.log10(abs(value)))
    text = "10" + str(exponent).translate(_SUPERSCRIPT)
    return (_MINUS + text) if value < 0 else text


def data_ticks(
    axis: AxisInfo, min_gap: float = 0.075
) -> tuple[list[float], list[str], list[float]]:
    """Major tick positions (scaled), their labels in data units, and minor tick positions.

    Linear axes get round data values (0, 50K, 100K…); logicle/arcsinh/log axes get 0 and
    ±10^k. A decade closer than ``min_gap`` (axis fraction) to a kept label is demoted to a
    minor tick, so labels never overlap (e.g. 10¹ next to 0 on a logicle axis).
    """
    lo, hi = axis.limits
    dlo, dhi = (float(v) for v in axis.to_data([lo, hi]))
    span = hi - lo
    if axis.scale.kind == "linear":
        from matplotlib.ticker import MaxNLocator

        values = [
            float(v)
            for v in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(dlo, dhi)
            if dlo - 1e-9 * abs(dhi - dlo) <= v <= dhi + 1e-9 * abs(dhi - dlo)
        ]
        positions = [float(p) for p in axis.to_scaled(values)]
        return positions, [_si(v) for v in values], []
    decades = [10.0**k for k in range(1, 10)]
    candidates: list[float] = [] if axis.scale.kind == "log" else [0.0]
    candidates += sorted(decades, reverse=True) + [-d for d in decades]
    candidates = [v for v in candidates if dlo <= v <= dhi]
    kept: list[tuple[float, float]] = []  # (position, value)
    demoted: list[float] = []
    for value in candidates:  # priority: 0, then positive decades high to low, then negatives
        pos = float(axis.to_scaled([value])[0])
        if all(abs(pos - p) >= min_gap * span for p, _ in kept):
            kept.append((pos, value))
        else:
            demoted.append(pos)
    # minor ticks at 2..9 × 10^k, thinned where the scale is nearly linear (around 0) so they
    # do not merge into a black bar
    raw = sorted(
        float(axis.to_scaled([v])[0])
        for d in decades
        for m in range(2, 10)
        for v in (m * d, -m * d)
        if dlo <= v <= dhi
    )
    minor: list[float] = []
    taken = [p for p, _ in kept]
    for pos in sorted(raw + demoted):
        if all(abs(pos - q) >= 0.012 * span for q in taken + minor[-1:]):
            minor.append(pos)
    return [p for p, _ in kept], [_decade_label(v) for _, v in kept], minor


def _set_axis(ax: Axes, axis: AxisInfo, which: str) -> None:
    """Limits, data-unit tick labels and minor ticks of one axis.

    Minor ticks are drawn as one line collection rather than as matplotlib Tick objects (which
    carry a label each and made up half the drawing time of a gate figure).
    """
    positions, labels, minor = data_ticks(axis)
    if which == "x":
        ax.set_xlim(*axis.limits)
        ax.set_xticks(positions, labels)
        ax.set_xlabel(axis.label, fontsize=8)
        if minor:
            ax.vlines(
                minor,
                -0.018,
                0,
                transform=ax.get_xaxis_transform(),
                colors="black",
                lw=0.5,
                clip_on=False,
                gid="minor-ticks",
            )
    else:
        ax.set_ylim(*axis.limits)
        ax.set_yticks(positions, labels)
        ax.set_ylabel(axis.label, fontsize=8)
        if minor:
            ax.hlines(
                minor,
                -0.018,
                0,
                transform=ax.get_yaxis_transform(),
                colors="black",
                lw=0.5,
                clip_on=False,
                gid="minor-ticks",
            )
    ax.tick_params(axis=which, which="major", labelsize=7, direction="out", length=3.5)


# --------------------------------------------------------------------------- gate plots


@dataclass
class PanelInfo:
    """What one gate-plot panel shows (attached to its Axes as ``ax.cytogate``)."""

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


def plan_panels(result: GatingResult) -> tuple[list[_PanelPlan], list[str]]:
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
    applied = [g for g in result.gates if g.status == "applied"]
    for g in result.gates:
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
                f"{g.name} = {ops} within {g.parent}: {result.count(g.name):,} events "
                f"({result.pct_parent(g.name):.1f}% of {g.parent})"
            )
            continue
        dims = tuple(g.dims)
        if len(dims) == 1:
            dims = _companion(result, g, dims[0], applied)
        panels.setdefault((g.parent, dims), _PanelPlan(g.parent, dims, [])).gates.append(g)
    return list(panels.values()), notes


def _companion(
    result: GatingResult, g: AppliedGate, dim: str, applied: list[AppliedGate]
) -> tuple[str, ...]:
    """The dimensions to draw a one-dimensional gate on.

    A forward-scatter threshold goes on FSC/SSC-A, where a cytometrist judges debris; any
    other range gate on the plane of the first child gate that uses its dimension (CD45+ on
    CD45/SSC-A, where the blasts are gated next). Without either: a histogram.
    """
    from cytogate.errors import CytogateError

    candidates = []
    if dim.upper().startswith("FSC") and "SSC-A" in result.template.panel:
        candidates.append((dim, "SSC-A"))
    for child in applied:
        if child.parent in _gate_populations(g) and len(child.dims) == 2 and dim in child.dims:
            candidates.append(tuple(child.dims))
    for dims in candidates:
        try:
            for d in dims:
                result.resolve(d)
        except CytogateError:
            continue
        return dims
    return (dim,)


def _population_title(pop: str) -> str:
    return "all events" if pop == "root" else pop


def _gate_populations(g: AppliedGate) -> list[str]:
    from cytogate.gating.gates import Quadrant

    if isinstance(g.geometry, Quadrant):
        return list(g.geometry.populations)
    return [g.name]


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

    The colours are computed on the histogram's bins here and handed to matplotlib as an RGBA
    image: matplotlib would otherwise normalise and colour-map the image at output resolution,
    which at 300 dpi costs more than the rest of the figure.
    """
    from matplotlib.colors import LogNorm

    xc = np.clip(x, *xa.limits)
    yc = np.clip(y, *ya.limits)
    off = int(np.count_nonzero((xc != x) | (yc != y)))
    bins = _bins(x.size)
    hist, _, _ = np.histogram2d(xc, yc, bins=bins, range=[xa.limits, ya.limits])
    vmax = max(float(hist.max()), 2.0)
    xe = np.linspace(*xa.limits, bins + 1)
    ye = np.linspace(*ya.limits, bins + 1)
    ax.pcolormesh(
        xe,
        ye,
        np.ma.masked_equal(hist.T, 0),
        cmap=_cmap(),
        norm=LogNorm(vmin=1, vmax=vmax),
        shading="flat",
        antialiased=False,
        linewidth=0,
        gid="density",
        rasterized=True,
    )
    return hist, off


def _cmap():
    import matplotlib

    return matplotlib.colormaps[CMAP].with_extremes(bad="white")


def gate_figure(
    result: GatingResult,
    *,
    title: str | None = None,
    simulated: bool | None = None,
) -> Figure:
    """One panel per gate (siblings sharing a parent and axes share a panel), in template order.

    Each panel: a density plot of the parent's events on the gate's scales, the gate outlines,
    and each population's name, event count and % of parent. See :func:`plan_panels`.
    """
    sample = result.sample
    if simulated is None:
        simulated = is_simulated(sample.keywords)
    plans, notes = plan_panels(result)
    n = max(1, len(plans))
    panel_w, left, gap, right = 2.75, 0.62, 0.62, 0.2
    top, bottom, height = 1.05, 0.75, 2.75
    width = left + n * panel_w + (n - 1) * gap + right
    fig_h = top + height + bottom
    fig = new_figure(width, fig_h)
    heading, subheading = _sample_heading(result)
    _header(fig, left / width, title or heading, subheading, simulated)
    axes_list = []
    for i, plan in enumerate(plans):
        ax = fig.add_axes(
            (
                (left + i * (panel_w + gap)) / width,
                bottom / fig_h,
                panel_w / width,
                height / fig_h,
            )
        )
        _draw_panel(ax, result, plan)
        axes_list.append(ax)
    if not plans:
        fig.text(0.5, 0.5, "no gate with a picture (all gates skipped or boolean)", ha="center")
    foot = [
        "Density: every event of the plotted (parent) population, 2-D histogram, log colour "
        f"scale ({CMAP}); events beyond the axes are counted in the edge bins. "
        "Labels: population, events, % of parent."
    ]
    foot += notes
    for g in result.gates:  # adaptive gates whose fit is in doubt say why
        foot += [f"QC flag on {g.name}: {reason}" for reason in getattr(g, "qc", ())]
    fig.text(
        left / width,
        0.06 / fig_h,
        _wrap(foot, width - left - right, 6),
        ha="left",
        va="bottom",
        fontsize=6,
        color="#444444",
    )
    _place_labels(fig, axes_list)
    return fig


def _wrap(paragraphs: Iterable[str], width_in: float, fontsize: float, max_lines: int = 8) -> str:
    """Wrap text to about ``width_in`` inches (matplotlib's own wrap measures every word)."""
    import textwrap

    chars = max(20, int(width_in * 72 / (fontsize * 0.55)))
    lines = [line for p in paragraphs for line in textwrap.wrap(p, chars)]
    return "\n".join(lines[:max_lines])


def _sample_heading(result: GatingResult) -> tuple[str, str]:
    kw = result.sample.keywords
    design = [kw.get(k, "") for k in ("CYTOGATE_PATIENT", "CYTOGATE_TIMEPOINT", "CYTOGATE_TUBE")]
    title = result.sample.path.name
    if any(design):
        title += "  —  " + " · ".join(d for d in design if d)
    sub = (
        f"{result.n_events:,} events · template {result.template.name} · "
        f"compensation: {result.compensation}"
    )
    return title, sub


def _draw_panel(ax: Axes, result: GatingResult, plan: _PanelPlan) -> None:
    parent = plan.parent
    mask = result.mask(parent)
    n_parent = int(np.count_nonzero(mask))
    xvals = result.scaled_values(plan.dims[0], parent)
    xa = axis_for(result, plan.dims[0], xvals)
    info = PanelInfo(parent, xa, None, n_events=n_parent)
    ax.cytogate = info  # type: ignore[attr-defined]
    ax._cytogate_label_specs = []  # type: ignore[attr-defined]
    if len(plan.dims) == 2:
        yvals = result.scaled_values(plan.dims[1], parent)
        ya = axis_for(result, plan.dims[1], yvals)
        info.y = ya
        hist, info.off_scale = _density(ax, xvals, yvals, xa, ya)
        info.histogram = hist
        _set_axis(ax, xa, "x")
        _set_axis(ax, ya, "y")
        limits = [xa.limits, ya.limits]
    else:
        xc = np.clip(xvals, *xa.limits)
        info.off_scale = int(np.count_nonzero(xc != xvals))
        bins = _bins(xvals.size)
        counts, edges = np.histogram(xc, bins=bins, range=xa.limits)
        info.histogram = counts
        ax.stairs(counts, edges, fill=True, color="#5b7db1", alpha=0.8, gid="density")
        _set_axis(ax, xa, "x")
        ax.set_ylabel("events per bin")
        ax.set_ylim(0, max(1, counts.max()) * 1.25)
        ax.tick_params(axis="y", labelsize=7)
        hist = None
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
        from cytogate.gating.gates import Quadrant

        if isinstance(g.geometry, Quadrant):
            if len(plan.dims) == 2:
                ax.axvline(outline[0], color=GATE_COLOUR, lw=1.0, gid=f"gate:{g.name}:x")
                ax.axhline(outline[1], color=GATE_COLOUR, lw=1.0, gid=f"gate:{g.name}:y")
        elif len(plan.dims) == 1:
            lo, hi = outline
            ax.axvspan(lo, hi, color=GATE_COLOUR, alpha=0.08, lw=0)
            ax.plot(
                [lo, lo, hi, hi],
                [0, ax.get_ylim()[1] * 0.9, ax.get_ylim()[1] * 0.9, 0],
                color=GATE_COLOUR,
                lw=1.0,
                gid=f"gate:{g.name}",
            )
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
        for pop in _gate_populations(g):
            count, pct = result.count(pop), result.pct_parent(pop)
            info.populations.append(pop)
            info.counts[pop] = count
            info.pct_parent[pop] = pct
            flag = " (QC)" if getattr(g, "qc", ()) else ""
            ax._cytogate_label_specs.append(  # type: ignore[attr-defined]
                (pop, f"{pop}{flag}\n{count:,} · {_pct(pct)}", g, outline, hist)
            )


def _pct(value: float) -> str:
    if not math.isfinite(value):
        return "n/a %"
    return f"{value:.1f}%" if value >= 0.1 or value == 0 else f"{value:.2f}%"


_LABEL_BOX = {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#555555", "lw": 0.5, "alpha": 0.7}


def _place_labels(fig: Figure, axes_list: list[Axes]) -> None:
    """Put each population's label near its gate, inside the axes, without overlaps.

    Candidates around the gate (inside at the top, above, below, right, left, centre, then the
    corners) are tried; one is rejected if its box leaves the axes or overlaps a label already
    placed. The cheapest remaining one wins. Costs: 2.5 × the share of the panel's events the
    box would hide, 1.5 × its gap from the gate (fraction of the axes), 0.5 if it sits inside
    another population's gate (it would seem to label that one), 0.15 per other gate outline
    it crosses, 0.05 for crossing its own, and 0.02 per step down the candidate list.
    """
    from matplotlib.path import Path as MplPath
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for ax in axes_list:
        specs = getattr(ax, "_cytogate_label_specs", [])
        info: PanelInfo = ax.cytogate  # type: ignore[attr-defined]
        ax_box = ax.get_window_extent(renderer)
        shapes: dict[str, tuple[np.ndarray, MplPath]] = {}  # gate -> (edge points, path)
        for _pop, _text, g, outline, _hist in specs:
            if outline.ndim == 2 and g.name not in shapes:
                display = ax.transData.transform(outline)
                shapes[g.name] = (ax.transData.transform(_densify(outline)), MplPath(display))
        placed = []
        for pop, text, g, outline, hist in specs:
            artist = ax.text(
                0,
                0,
                text,
                transform=ax.transAxes,
                ha="left",
                va="bottom",
                fontsize=7,
                linespacing=1.1,
                gid=f"label:{pop}",
                bbox=_LABEL_BOX
                if not getattr(g, "qc", ())
                else {**_LABEL_BOX, "ec": "#c0392b", "lw": 1.2},
                zorder=5,
            )
            # the box's size does not depend on where it goes: measure once, shift per candidate
            base = artist.get_window_extent(renderer)
            anchor = ax.transAxes.transform((0, 0))
            w, h = base.width * 1.08, base.height * 1.15
            dx0, dy0 = base.x0 - anchor[0], base.y0 - anchor[1]  # bbox padding offset
            gate_box = _gate_box(ax, outline)
            best = None
            for rank, (x, y, ha, va) in enumerate(_label_candidates(ax, g, pop, outline)):
                px, py = ax.transAxes.transform((x, y))
                x0 = px + dx0 - {"left": 0.0, "center": base.width / 2, "right": base.width}[ha]
                y0 = py + dy0 - {"bottom": 0.0, "center": base.height / 2, "top": base.height}[va]
                box = Bbox.from_bounds(x0 - (w - base.width) / 2, y0 - (h - base.height) / 2, w, h)
                inside = (
                    box.x0 >= ax_box.x0 - 1
                    and box.x1 <= ax_box.x1 + 1
                    and box.y0 >= ax_box.y0 - 1
                    and box.y1 <= ax_box.y1 + 1
                )
                if not inside or any(box.overlaps(b) for b in placed):
                    continue
                rect = MplPath.unit_rectangle().transformed(
                    _box_transform(box.x0, box.y0, box.width, box.height)
                )
                centre = [((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)]
                cost = (
                    0.02 * rank
                    + 2.5 * _covered_share(ax, box, hist, info)
                    + 1.5 * _distance(box, gate_box, ax_box)
                )
                for name, (edge, path) in shapes.items():
                    crosses = bool(rect.contains_points(edge).any())
                    if name == g.name:
                        cost += 0.05 * crosses
                    else:
                        cost += 0.15 * crosses + 0.5 * bool(path.contains_points(centre)[0])
                if best is None or cost < best[0]:
                    best = (cost, x, y, ha, va, box)
            if best is None:  # no free spot: stack down the top-left corner
                best = (0.0, 0.02, 0.98 - 0.1 * len(placed), "left", "top", None)
            _, x, y, ha, va, box = best
            artist.set_position((x, y))
            artist.set_ha(ha)
            artist.set_va(va)
            if box is not None:
                placed.append(box)
                if g.name in shapes and _distance(box, gate_box, ax_box) > _LEADER_ABOVE:
                    _leader_line(ax, pop, box, shapes[g.name][0])
        del ax._cytogate_label_specs  # type: ignore[attr-defined]


#: A label further than this (fraction of the axes) from its gate gets a leader line.
_LEADER_ABOVE = 0.05


def _leader_line(ax: Axes, pop: str, box: Any, edge: np.ndarray) -> None:
    """A thin line from a displaced label to the nearest point of its gate's outline.

    In a crowded panel the only free spot for a label may be far from its gate; without a line
    a reader could take it for another population's label.
    """
    centre = np.array([(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2])
    target = edge[np.argmin(np.hypot(*(edge - centre).T))]
    start = np.array([np.clip(target[0], box.x0, box.x1), np.clip(target[1], box.y0, box.y1)])
    to_axes = ax.transAxes.inverted()
    (x0, y0), (x1, y1) = to_axes.transform(start), to_axes.transform(target)
    ax.plot(
        [x0, x1],
        [y0, y1],
        transform=ax.transAxes,
        color=GATE_COLOUR,
        lw=0.6,
        gid=f"leader:{pop}",
        zorder=4,
        clip_on=True,
    )


def _gate_box(ax: Axes, outline: np.ndarray):
    """The gate's extent in display coordinates, clipped to the axes (None for 1-D panels)."""
    from matplotlib.transforms import Bbox

    if outline.ndim != 2:
        return None
    pts = ax.transData.transform(outline)
    box = ax.get_window_extent()
    pts[:, 0] = np.clip(pts[:, 0], box.x0, box.x1)
    pts[:, 1] = np.clip(pts[:, 1], box.y0, box.y1)
    return Bbox.from_extents(*pts.min(axis=0), *pts.max(axis=0))


def _distance(box: Any, gate_box: Any, ax_box: Any) -> float:
    """Gap between a label box and its gate's extent, as a fraction of the axes' size."""
    if gate_box is None:
        return 0.0
    dx = max(gate_box.x0 - box.x1, box.x0 - gate_box.x1, 0.0) / ax_box.width
    dy = max(gate_box.y0 - box.y1, box.y0 - gate_box.y1, 0.0) / ax_box.height
    return math.hypot(dx, dy)


def _densify(outline: np.ndarray, per_edge: int = 24) -> np.ndarray:
    """Points along a closed outline's edges (to test whether a label box crosses it)."""
    t = np.linspace(0.0, 1.0, per_edge, endpoint=False)[:, None]
    edges = [a + t * (b - a) for a, b in itertools.pairwise(outline)]
    return np.vstack(edges) if edges else outline


def _box_transform(x0: float, y0: float, w: float, h: float):
    from matplotlib.transforms import Affine2D

    return Affine2D().scale(w, h).translate(x0, y0)


def _label_candidates(ax: Axes, g: AppliedGate, pop: str, outline: np.ndarray):
    """(x, y, ha, va) in axes fraction, most natural first."""
    from cytogate.gating.gates import Quadrant

    if isinstance(g.geometry, Quadrant):
        sign = g.geometry.populations[pop]
        x = 0.97 if sign[0] == "+" else 0.03
        y = 0.97 if sign[1] == "+" else 0.03
        return [(x, y, "right" if x > 0.5 else "left", "top" if y > 0.5 else "bottom")]
    if outline.ndim == 1:  # 1-D histogram panel: above the gate's band
        to_ax = ax.transData + ax.transAxes.inverted()
        (x0, _), (x1, _) = to_ax.transform([(outline[0], 0), (outline[1], 0)])
        cx = float(np.clip((x0 + x1) / 2, 0.1, 0.9))
        return [
            (cx, 0.97, "center", "top"),
            (0.03, 0.97, "left", "top"),
            (0.97, 0.97, "right", "top"),
        ]
    to_ax = ax.transData + ax.transAxes.inverted()
    pts = np.clip(to_ax.transform(outline), 0.0, 1.0)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    pad = 0.015
    return [
        (cx, y1 - pad, "center", "top"),  # inside, at the top
        (cx, y1 + pad, "center", "bottom"),  # above
        (cx, y0 - pad, "center", "top"),  # below
        (x1 + pad, cy, "left", "center"),  # right
        (x0 - pad, cy, "right", "center"),  # left
        (cx, cy, "center", "center"),  # centre
        (x1 - pad, y1 - pad, "right", "top"),
        (x0 + pad, y1 - pad, "left", "top"),
        (x1 - pad, y0 + pad, "right", "bottom"),
        (x0 + pad, y0 + pad, "left", "bottom"),
        # outside, flush with one of the gate's corners (room beside a small gate)
        (x1, y1 + pad, "right", "bottom"),
        (x0, y1 + pad, "left", "bottom"),
        (x1, y0 - pad, "right", "top"),
        (x0, y0 - pad, "left", "top"),
        (x1 + pad, y1, "left", "top"),
        (x1 + pad, y0, "left", "bottom"),
        (x0 - pad, y1, "right", "top"),
        (x0 - pad, y0, "right", "bottom"),
        (0.98, 0.98, "right", "top"),
        (0.02, 0.98, "left", "top"),
        (0.98, 0.02, "right", "bottom"),
        (0.02, 0.02, "left", "bottom"),
    ]


def _covered_share(ax: Axes, box: Any, hist: np.ndarray | None, info: PanelInfo) -> float:
    """Share of the panel's events under a label box (0 for histogram panels)."""
    if hist is None or info.y is None or hist.sum() == 0:
        return 0.0
    inv = ax.transData.inverted()
    (dx0, dy0), (dx1, dy1) = inv.transform([(box.x0, box.y0), (box.x1, box.y1)])
    (xlo, xhi), (ylo, yhi) = info.x.limits, info.y.limits
    nx, ny = hist.shape
    i0 = int(np.clip(math.floor((dx0 - xlo) / (xhi - xlo) * nx), 0, nx))
    i1 = int(np.clip(math.ceil((dx1 - xlo) / (xhi - xlo) * nx), 0, nx))
    j0 = int(np.clip(math.floor((dy0 - ylo) / (yhi - ylo) * ny), 0, ny))
    j1 = int(np.clip(math.ceil((dy1 - ylo) / (yhi - ylo) * ny), 0, ny))
    return float(hist[i0:i1, j0:j1].sum() / hist.sum())


# --------------------------------------------------------------------------- marker plots


def marker_figure(
    stained: GatingResult,
    control: GatingResult | None,
    plan: MarkerPlan,
    *,
    population: str | None = None,
    simulated: bool | None = None,
    title: str | None = None,
) -> Figure:
    """Per marker on ``population`` (default: the plan's first), stained vs control histograms.

    Both tubes are normalised to their mode (the usual overlay), on the marker's template
    scale with data-unit ticks. The panel states the stained and control MFI (the run's
    statistic) and RMFI for RMFI markers, and draws the positivity threshold with % positive for
    positivity markers. The numbers are those of
    :func:`cytogate.analysis.quantify.marker_rows`, i.e. the ones in ``markers.csv``.
    """
    from cytogate.analysis.quantify import marker_rows

    population = population or plan.populations[0]
    if simulated is None:
        simulated = is_simulated(stained.sample.keywords)
    s_rows, _ = marker_rows(stained, control, plan)
    rows = {r["marker"]: r for r in s_rows if r["population"] == population}
    markers = [m for m in plan.markers if m in rows]
    n = max(1, len(markers))
    panel_w, left, gap, right, top, bottom, height = 2.6, 0.55, 0.55, 0.2, 0.75, 0.75, 2.3
    width = left + n * panel_w + (n - 1) * gap + right
    fig_h = top + height + bottom
    fig = new_figure(width, fig_h)
    c_name = control.sample.path.name if control is not None else "(no control tube)"
    _header(
        fig,
        left / width,
        title or f"{stained.sample.path.name}  —  markers on {population}",
        f"stained tube {stained.sample.path.name} vs control tube {c_name}",
        simulated,
    )
    for i, marker in enumerate(markers):
        ax = fig.add_axes(
            ((left + i * (panel_w + gap)) / width, bottom / fig_h, panel_w / width, height / fig_h)
        )
        _marker_panel(ax, stained, control, marker, population, rows[marker], plan)
    if not markers:
        fig.text(0.5, 0.5, "no markers to plot", ha="center")
    fig.text(
        left / width,
        0.06 / fig_h,
        f"Histograms normalised to their mode; MFI = {plan.statistic} of compensated linear "
        f"intensities; RMFI = MFI(stained) / MFI({'control'}); threshold = "
        f"p{plan.percentile:g} of the control tube.",
        ha="left",
        va="bottom",
        fontsize=6,
        color="#444444",
    )
    return fig


def _marker_panel(
    ax: Axes,
    stained: GatingResult,
    control: GatingResult | None,
    marker: str,
    population: str,
    row: dict[str, Any],
    plan: MarkerPlan,
) -> None:
    from cytogate.errors import PanelError

    try:
        s_vals = stained.scaled_values(marker, population)
        axis = axis_for(stained, marker, s_vals)
    except (PanelError, KeyError) as exc:
        ax.text(0.5, 0.5, _wrap([f"{marker}: {exc}"], 2.4, 6), ha="center", va="center", fontsize=6)
        ax.set_axis_off()
        return
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
    _set_axis(ax, axis, "x")
    ax.set_ylim(0, 175)
    ax.set_yticks([0, 50, 100])
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylabel("% of mode", fontsize=7)
    ax.set_title(f"{marker} on {population}", fontsize=8, loc="left")
    stat = plan.statistic
    c_tube = _tube_name(control)
    s_mfi = row.get(f"mfi_{stat}", float("nan"))
    c_mfi = row.get("control_mfi", float("nan"))
    for value, colour in ((s_mfi, STAINED_COLOUR), (c_mfi, CONTROL_COLOUR)):
        if value is not None and math.isfinite(value):
            pos = float(axis.to_scaled([value])[0])
            ax.plot([pos, pos], [0, 108], color=colour, lw=0.8, ls=":", gid=f"mfi:{marker}")
    lines = [f"{stat} stained {_num(s_mfi)}", f"{stat} {c_tube} {_num(c_mfi)}"]
    if marker in plan.rmfi:
        lines.append(f"RMFI {_num(row.get('rmfi'), 3)}")
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
        lines.append(f"threshold {_num(threshold)}")
        lines.append(f"positive {_pct(row.get('pct_positive', float('nan')))}")
    if row.get("reason"):
        import textwrap

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


def _tube_name(result: GatingResult | None) -> str:
    if result is None:
        return "control"
    return result.sample.keywords.get("CYTOGATE_TUBE", "") or "control"


def _num(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits and thousands separators ("n/a" if NaN)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(v):
        return "n/a"
    if v == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{v:,.{decimals}f}"


# --------------------------------------------------------------------------- time course

_MEASURE_RE = re.compile(r"^(?P<pop>[A-Za-z0-9]+)_(?P<rest>.+)$")


def measure_label(measure: str) -> str:
    """``blasts_CXCR4_12G5_rmfi_median`` -> ``CXCR4 (12G5) RMFI on blasts`` etc."""
    if measure.endswith("_per_ul"):
        pop = measure.removesuffix("_per_ul")
        return f"{pop.capitalize()} /µL"
    m = _MEASURE_RE.match(measure)
    if not m:
        return measure
    pop, rest = m["pop"], m["rest"]
    rmfi = re.match(r"^(?P<marker>.+)_rmfi_(?P<stat>\w+)$", rest)
    if rmfi:
        return f"{_marker_label(rmfi['marker'])} RMFI on {pop}"
    if rest.endswith("_pct_positive"):
        return f"{_marker_label(rest.removesuffix('_pct_positive'))}+ % of {pop}"
    return measure


def _marker_label(marker: str) -> str:
    m = re.match(r"^CXCR4_(\w+)$", marker)
    return f"CXCR4 ({m[1]})" if m else marker


def timecourse_groups(measures: Iterable[str]) -> dict[str, list[str]]:
    """Figures of the report: mobilisation (counts), CXCR4 (12G5 | 1D9), other markers."""
    measures = sorted(set(measures))
    counts = [m for m in measures if m.endswith("_per_ul")]
    # leukocytes first, then blasts, as in the study's figure
    counts.sort(key=lambda m: (0 if m.startswith("leuko") else 1, m))
    cxcr4 = sorted((m for m in measures if "CXCR4" in m), key=lambda m: ("1D9" in m, m))
    others = [m for m in measures if m not in counts and m not in cxcr4]
    groups = {}
    if counts:
        groups["mobilisation"] = counts
    if cxcr4:
        groups["cxcr4"] = cxcr4
    if others:
        groups["markers"] = others
    return groups


_SERIES_COLOURS = ("#1f4e79", "#c0392b", "#27ae60", "#8e44ad")
_SERIES_MARKERS = ("o", "s", "^", "D")


def timecourse_figure(
    timecourse: pd.DataFrame,
    stats: pd.DataFrame,
    measures: Sequence[str],
    timepoints: Sequence[str],
    baseline: str = "baseline",
    *,
    overlay: bool = False,
    per_patient: bool = False,
    simulated: bool = False,
    title: str | None = None,
) -> Figure:
    """Mean fold change from baseline ± SEM per timepoint, with stars, like the study's Fig. 1.

    ``overlay``: every measure on one axes (leukocytes and blasts); otherwise one panel per
    measure side by side (12G5 | 1D9). Mean, SEM and stars are read from the ``stats`` table's
    "<timepoint> vs <baseline>" rows (baseline is 1 by definition); ``per_patient`` adds each
    patient's fold changes from ``timecourse`` as thin lines.
    """
    n_panels = 1 if overlay else max(1, len(measures))
    panel_w, left, gap, right, top, bottom, height = 3.4, 0.7, 0.75, 0.2, 0.85, 0.8, 2.7
    if overlay:
        panel_w = 5.0
    width = left + n_panels * panel_w + (n_panels - 1) * gap + right
    fig_h = top + height + bottom
    fig = new_figure(width, fig_h)
    _header(
        fig,
        left / width,
        title or ", ".join(measure_label(m) for m in measures),
        f"fold change from {baseline}, mean ± SEM over patients",
        simulated,
    )
    x = np.arange(len(timepoints))
    axes = []
    for i in range(n_panels):
        axes.append(
            fig.add_axes(
                (
                    (left + i * (panel_w + gap)) / width,
                    bottom / fig_h,
                    panel_w / width,
                    height / fig_h,
                )
            )
        )
    used_tests: set[str] = set()
    corrections: set[str] = set()
    n_info: list[str] = []
    for k, measure in enumerate(measures):
        ax = axes[0] if overlay else axes[k]
        colour = _SERIES_COLOURS[k % len(_SERIES_COLOURS)] if overlay else _SERIES_COLOURS[0]
        marker = _SERIES_MARKERS[k % len(_SERIES_MARKERS)] if overlay else "o"
        label = measure_label(measure)
        mean, sem, stars, npairs = _series(stats, measure, timepoints, baseline)
        rows = stats[(stats["measure"] == measure) & (stats["reference"] == baseline)]
        used_tests.update(str(t) for t in rows["test"].dropna())
        corrections.update(str(c) for c in rows["correction"].dropna())
        if per_patient and not timecourse.empty:
            tc = timecourse[timecourse["measure"] == measure]
            for _patient, rows_p in tc.groupby("patient", sort=True):
                fc = rows_p.set_index("timepoint")["fold_change"].reindex(list(timepoints))
                ax.plot(
                    x,
                    fc.to_numpy(dtype=float),
                    color=colour,
                    alpha=0.3,
                    lw=0.7,
                    marker=".",
                    ms=2.5,
                    gid=f"patient:{measure}:{_patient}",
                    zorder=1,
                )
        offset = (k - (len(measures) - 1) / 2) * 0.06 if overlay else 0.0
        ax.errorbar(
            x + offset,
            mean,
            yerr=sem,
            color=colour,
            marker=marker,
            ms=4.5,
            lw=1.5,
            capsize=3,
            label=label,
            gid=f"mean:{measure}",
            zorder=3,
        )
        finite_n = sorted({int(v) for v in npairs if math.isfinite(v)})
        if finite_n:
            n_info.append(
                f"{label}: n = {'–'.join(str(v) for v in (finite_n[0], finite_n[-1]))}"
                if len(finite_n) > 1
                else f"{label}: n = {finite_n[0]}"
            )
        for xi, m, s, st in zip(x + offset, mean, sem, stars, strict=True):
            if st and st != "ns" and math.isfinite(m):
                top_y = m + (s if math.isfinite(s) else 0)
                ax.annotate(
                    st,
                    (xi, top_y),
                    xytext=(0, 3 + (8 * k if overlay else 0)),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=9,
                    color=colour,
                    gid=f"stars:{measure}",
                )
        if not overlay:
            ax.set_title(label, fontsize=9, loc="left")
    for ax in axes:
        ax.axhline(1.0, color="#888888", lw=0.8, ls="--", zorder=0)
        ax.set_xticks(x, list(timepoints), fontsize=8)
        ax.set_xlim(-0.4, len(timepoints) - 0.6)
        ax.set_ylabel("fold change vs " + baseline + " (mean ± SEM)", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        lo, hi = ax.get_ylim()
        ax.set_ylim(min(0, lo), hi * 1.12)
        ax.spines[["top", "right"]].set_visible(False)
        if overlay:
            ax.legend(fontsize=8, frameon=False, loc="upper left")
    test = ", ".join(sorted(used_tests)) or "n/a"
    corr = ", ".join(sorted(corrections)) or "none"
    foot = (
        f"Stars: {test} vs {baseline} (correction: {corr}) from stats.csv; "
        "* p<0.05, ** p<0.01, *** p<0.001; no star = not significant."
        + ("  Thin lines: individual patients." if per_patient else "")
        + ("  " + "; ".join(n_info) + "." if n_info else "")
    )
    fig.text(
        left / width,
        0.04 / fig_h,
        _wrap([foot], width - left - right, 6.5, 4),
        ha="left",
        va="bottom",
        fontsize=6.5,
        color="#444444",
    )
    return fig


def _series(
    stats: pd.DataFrame, measure: str, timepoints: Sequence[str], baseline: str
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Mean fold change, SEM, stars and n per timepoint from the stats table (baseline = 1)."""
    rows = stats[(stats["measure"] == measure) & (stats["reference"] == baseline)]
    by_tp = {r.timepoint: r for r in rows.itertuples()}
    mean, sem, npairs, stars = [], [], [], []
    for tp in timepoints:
        if tp == baseline:
            mean.append(1.0)
            sem.append(0.0)
            stars.append("")
            npairs.append(float("nan"))
            continue
        r = by_tp.get(tp)
        mean.append(float(r.mean_fc) if r is not None else float("nan"))
        sem.append(float(r.sem_fc) if r is not None else float("nan"))
        stars.append(str(r.stars) if r is not None and isinstance(r.stars, str) else "")
        npairs.append(float(r.n_fc) if r is not None else float("nan"))
    return np.array(mean), np.array(sem), stars, np.array(npairs)


# --------------------------------------------------------------------------- writing a run's plots

#: Sub-folders of ``plots/``.
GATES_DIR, MARKERS_DIR, THUMBS_DIR = "gates", "markers", "thumbs"


def plot_group(
    group: Any,
    template: Any,
    config: Any,
    plots_dir: str,
    fmt: str = "png",
    dpi: int = DPI,
    pinned: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Worker: gate plots of one sample group's stained and control tubes and its marker plot.

    Re-reads and re-gates the files (a few ms each) so that only file names travel between
    processes. ``pinned`` (patient -> gate -> geometry, ``BatchResult.pinned``) makes the
    re-gating reuse the geometries the tables were computed with, for ``pin: baseline`` gates.
    Never raises for a bad file: its entry carries the error. Paths in the entries are relative
    to ``plots_dir``'s parent (the output folder), as the report links them.
    """
    import time

    from cytogate.analysis.quantify import MarkerPlan
    from cytogate.study.batch import _gate_file, _marker_reference
    from cytogate.study.design import STAINED

    start = time.perf_counter()
    root = Path(plots_dir)
    entries: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    reference = None
    for row in (group.stained, group.control):
        if row is None:
            continue
        entry = _entry("gates", row.file.name, group, row.tube)
        try:
            pins = (pinned or {}).get(group.patient) or None
            sample, result = _gate_file(row, template, reference, pins)
            if row.tube == STAINED:
                reference = _marker_reference(result, config)
            results[row.tube] = result
            entry["simulated"] = is_simulated(sample.keywords)
            stem = Path(row.file.name).stem
            fig = gate_figure(result, simulated=entry["simulated"])
            entry["counts"] = {
                pop: (result.count(pop), result.pct_parent(pop), result.parent(pop))
                for pop in result.populations
            }
            # adaptive gates whose fit is in doubt (engines without QC have no qc_flags)
            qc_flags = getattr(result, "qc_flags", None)
            entry["qc"] = {pop: list(r) for pop, r in (qc_flags() if qc_flags else {}).items()}
            _save_entry(entry, fig, root, GATES_DIR, stem, fmt, dpi)
        except Exception as exc:  # one bad file must not stop the other plots
            entry["error"] = _error_text(exc)
        entries.append(entry)
    stained = results.get(STAINED)
    if stained is not None and group.stained is not None:
        control = results.get(config.control_tube)
        stem = Path(group.stained.file.name).stem
        entry = _entry("markers", group.stained.file.name, group, STAINED)
        try:
            entry["simulated"] = is_simulated(stained.sample.keywords)
            fig = marker_figure(
                stained, control, MarkerPlan.from_config(config), simulated=entry["simulated"]
            )
            _save_entry(entry, fig, root, MARKERS_DIR, f"{stem}_markers", fmt, dpi)
        except Exception as exc:
            entry["error"] = _error_text(exc)
        entries.append(entry)
    return {"entries": entries, "seconds": time.perf_counter() - start}


def _entry(kind: str, file: str, group: Any, tube: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "file": file,
        "patient": group.patient,
        "timepoint": group.timepoint,
        "tube": tube,
        "path": "",
        "thumb": "",
        "error": "",
        "simulated": False,
        "counts": {},
        "qc": {},
    }


def _save_entry(
    entry: dict[str, Any], fig: Figure, root: Path, sub: str, stem: str, fmt: str, dpi: int
) -> None:
    full = root / sub / f"{stem}.{fmt}"
    thumb = root / THUMBS_DIR / f"{stem}.png"
    save_figure(fig, full, dpi=dpi, thumbnail=thumb, thumbnail_width=THUMB_WIDTH)
    entry["path"] = f"{root.name}/{sub}/{full.name}"
    entry["thumb"] = f"{root.name}/{THUMBS_DIR}/{thumb.name}"


def _error_text(exc: BaseException) -> str:
    from cytogate.errors import CytogateError

    if isinstance(exc, CytogateError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc} (please report)"


def plot_timecourses(
    timecourse: pd.DataFrame,
    stats: pd.DataFrame,
    timepoints: Sequence[str],
    baseline: str,
    plots_dir: str | os.PathLike[str],
    fmt: str = "png",
    dpi: int = DPI,
    simulated: bool = False,
) -> list[dict[str, Any]]:
    """Write the time-course figures (mean ± SEM, and with per-patient lines) into plots_dir.

    Returns one entry per figure: ``name``, ``title``, ``measures``, ``path`` (the figure),
    ``preview`` (a PNG the report can show; the figure itself unless it is a PDF),
    ``patients_path`` and ``patients_preview`` (the version with per-patient lines).
    """
    root = Path(plots_dir)
    entries = []
    if timecourse.empty or stats.empty:
        return entries
    titles = {
        "mobilisation": "Mobilisation: leukocytes and blasts per µL",
        "cxcr4": "CXCR4 on blasts: 12G5 and 1D9 RMFI",
        "markers": "Other markers on blasts",
    }
    for name, measures in timecourse_groups(timecourse["measure"].unique()).items():
        entry: dict[str, Any] = {
            "name": name,
            "title": titles.get(name, name),
            "measures": measures,
        }
        for suffix, per_patient in (("", False), ("_patients", True)):
            fig = timecourse_figure(
                timecourse,
                stats,
                measures,
                timepoints,
                baseline,
                overlay=(name == "mobilisation"),
                per_patient=per_patient,
                simulated=simulated,
                title=titles.get(name),
            )
            stem = f"timecourse_{name}{suffix}"
            full = root / f"{stem}.{fmt}"
            preview = root / THUMBS_DIR / f"{stem}.png" if fmt == "pdf" else None
            save_figure(fig, full, dpi=dpi, thumbnail=preview, thumbnail_width=1200)
            key = "patients_" if per_patient else ""
            entry["width_in"] = fig.get_figwidth()
            entry[f"{key}path"] = f"{root.name}/{full.name}"
            entry[f"{key}preview"] = (
                f"{root.name}/{THUMBS_DIR}/{preview.name}" if preview else entry[f"{key}path"]
            )
        entries.append(entry)
    return entries


# --------------------------------------------------------------------------- one sample (CLI)


class PlotError(CytogateError):
    """A plot cannot be written (bad output name or format, unwritable folder)."""


def plot_sample(
    file: str | os.PathLike[str],
    template: Any = None,
    out: str | os.PathLike[str] | None = None,
    *,
    control: str | os.PathLike[str] | None = None,
    dpi: int = DPI,
    compensation: str | None = None,
) -> list[Path]:
    """``cytogate plot``: one file's gate figure, and its marker figure if ``control`` is given.

    ``out`` (default ``<file stem>_gates.png`` in the current folder) names the gate figure;
    its suffix picks the format (png, svg, pdf). The marker figure goes next to it, named
    ``…_markers`` with the same suffix. Returns the files written.
    """
    from cytogate.analysis.quantify import MarkerPlan
    from cytogate.gating.engine import gate
    from cytogate.io.fcs import read_fcs
    from cytogate.study.batch import _marker_reference
    from cytogate.study.design import RunConfig

    target = Path(out) if out is not None else Path.cwd() / f"{Path(file).stem}_gates.png"
    fmt = target.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise PlotError(
            f"{target}: output must end in {', '.join('.' + f for f in FORMATS)} "
            f"(got {target.suffix or 'no suffix'})"
        )
    result = gate(read_fcs(file), template, compensation=compensation)
    jobs = [(gate_figure(result), target)]
    if control is not None:
        config = RunConfig()
        reference = _marker_reference(result, config)
        c_result = gate(read_fcs(control), template, compensation=compensation, reference=reference)
        stem = target.stem.removesuffix("_gates")
        jobs.append(
            (
                marker_figure(result, c_result, MarkerPlan.from_config(config)),
                target.with_name(f"{stem}_markers{target.suffix}"),
            )
        )
    written = []
    for fig, path in jobs:
        try:
            written += save_figure(fig, path, dpi=dpi)
        except OSError as exc:
            raise PlotError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    return written
