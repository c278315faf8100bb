"""Population labels on gate plots: near their gate, inside the axes, never overlapping.

Label specs are plain values handed from the panel that drew the gates to the placement pass
(which needs the finished layout to measure text), never state stored on matplotlib Axes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cytogate.viz.figure import GATE_COLOUR

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from cytogate.gating.engine import AppliedGate


@dataclass(frozen=True)
class LabelSpec:
    """One population's label: its text and the gate outline (panel coordinates) it names."""

    population: str
    text: str
    gate: AppliedGate
    outline: np.ndarray  # closed (n × 2) outline, (lo, hi) on a 1-D panel, divider for quadrants


@dataclass
class LabelPanel:
    """The labels of one panel and what placement needs to know about the panel's events."""

    ax: Axes
    specs: list[LabelSpec] = field(default_factory=list)
    histogram: np.ndarray | None = None  # (nx × ny) events per bin of a 2-D panel
    x_limits: tuple[float, float] = (0.0, 1.0)
    y_limits: tuple[float, float] | None = None


_LABEL_BOX = {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#555555", "lw": 0.5, "alpha": 0.7}


#: Labels are measured at this resolution and scaled to the figure's, so a label is placed the
#: same whatever the output resolution (a full draw at 100 dpi and a reused layout at 150 dpi
#: chose different spots when text sizes were measured at each: hinting is not linear in dpi).
MEASURE_DPI = 100.0


def place_labels(fig: Figure, panels: list[LabelPanel]) -> None:
    """Put each population's label near its gate, inside the axes, without overlaps.

    Candidates around the gate (inside at the top, above, below, right, left, centre, then the
    corners) are tried; one is rejected if its box leaves the axes or overlaps a label already
    placed. The cheapest remaining one wins. Costs: 2.5 × the share of the panel's events the
    box would hide, 1.5 × its gap from the gate (fraction of the axes), 0.5 if it sits inside
    another population's gate (it would seem to label that one), 0.15 per other gate outline
    it crosses, 0.05 for crossing its own, and 0.02 per step down the candidate list. All
    candidates of a label are scored at once (arrays, not a loop per candidate).
    """
    from matplotlib.path import Path as MplPath

    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    scale = fig.dpi / MEASURE_DPI
    artists = [[_label_artist(panel.ax, spec) for spec in panel.specs] for panel in panels]
    texts = [(p.ax, a) for p, row in zip(panels, artists, strict=True) for a in row]
    sizes = iter(_measure(fig, texts))
    for panel, row in zip(panels, artists, strict=True):
        ax, specs = panel.ax, panel.specs
        ax_box = ax.get_window_extent(renderer)
        shapes: dict[str, tuple[np.ndarray, MplPath]] = {}  # gate -> (edge points, path)
        for spec in specs:
            g, outline = spec.gate, spec.outline
            if outline.ndim == 2 and g.name not in shapes:
                display = ax.transData.transform(outline)
                shapes[g.name] = (ax.transData.transform(_densify(outline)), MplPath(display))
        table = _SummedArea(panel)
        placed: list[np.ndarray] = []  # boxes (x0, y0, x1, y1) in display coordinates
        for spec, artist in zip(specs, row, strict=True):
            pop, g, outline = spec.population, spec.gate, spec.outline
            # the box's size does not depend on where it goes: measured once, shifted per spot
            bw, bh, dx0, dy0 = (v * scale for v in next(sizes))  # dx0, dy0: padding offset
            w, h = bw * 1.08, bh * 1.15
            gate_box = _gate_box(ax, outline)
            candidates = _label_candidates(ax, g, pop, outline)
            xy = np.array([(x, y) for x, y, _, _ in candidates], dtype=float)
            shift_x = np.array(
                [{"left": 0.0, "center": bw / 2, "right": bw}[c[2]] for c in candidates]
            )
            shift_y = np.array(
                [{"bottom": 0.0, "center": bh / 2, "top": bh}[c[3]] for c in candidates]
            )
            pxy = ax.transAxes.transform(xy)
            x0 = pxy[:, 0] + dx0 - shift_x - (w - bw) / 2
            y0 = pxy[:, 1] + dy0 - shift_y - (h - bh) / 2
            boxes = np.column_stack([x0, y0, x0 + w, y0 + h])
            valid = (
                (boxes[:, 0] >= ax_box.x0 - 1)
                & (boxes[:, 2] <= ax_box.x1 + 1)
                & (boxes[:, 1] >= ax_box.y0 - 1)
                & (boxes[:, 3] <= ax_box.y1 + 1)
            )
            for other in placed:  # Bbox.overlaps: touching counts
                valid &= ~(
                    (other[2] >= boxes[:, 0])
                    & (other[0] <= boxes[:, 2])
                    & (other[3] >= boxes[:, 1])
                    & (other[1] <= boxes[:, 3])
                )
            rank = np.arange(len(candidates), dtype=float)
            cost = (
                0.02 * rank
                + 2.5 * table.share(ax, boxes)
                + 1.5 * _distances(boxes, gate_box, ax_box)
            )
            centres = np.column_stack(
                [(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2]
            )
            for name, (edge, path) in shapes.items():
                crosses = _crossings(boxes, edge)
                if name == g.name:
                    cost = cost + 0.05 * crosses
                else:
                    cost = cost + (0.15 * crosses + 0.5 * path.contains_points(centres))
            if valid.any():
                best = int(np.argmin(np.where(valid, cost, np.inf)))
                x, y, ha, va = candidates[best]
                box = boxes[best]
            else:  # no free spot: stack down the top-left corner
                x, y, ha, va, box = 0.02, 0.98 - 0.1 * len(placed), "left", "top", None
            artist.set_position((x, y))
            artist.set_ha(ha)
            artist.set_va(va)
            if box is not None:
                placed.append(box)
                if g.name in shapes and _distances(box[None], gate_box, ax_box)[0] > _LEADER_ABOVE:
                    _leader_line(ax, pop, _Box(*box), shapes[g.name][0])


def _label_artist(ax: Axes, spec: LabelSpec) -> Any:
    """The label's text box, at the axes' origin until it is placed."""
    return ax.text(
        0,
        0,
        spec.text,
        transform=ax.transAxes,
        ha="left",
        va="bottom",
        fontsize=7,
        linespacing=1.1,
        gid=f"label:{spec.population}",
        bbox=_LABEL_BOX if not spec.gate.qc else {**_LABEL_BOX, "ec": "#c0392b", "lw": 1.2},
        zorder=5,
    )


def _measure(fig: Figure, texts: list[tuple[Axes, Any]]) -> list[tuple[float, float, float, float]]:
    """Width, height and offset from its anchor of each text at :data:`MEASURE_DPI` (pixels).

    Measured on a renderer of that resolution with the figure switched to it once, so the
    placement does not depend on the resolution the figure is drawn at.
    """
    if not texts:
        return []
    renderer = _measure_renderer()
    dpi = fig.dpi
    if dpi != MEASURE_DPI:
        fig.set_dpi(MEASURE_DPI)
    try:
        sizes = []
        for ax, text in texts:
            box = text.get_window_extent(renderer)
            anchor = ax.transAxes.transform((0, 0))
            sizes.append((box.width, box.height, box.x0 - anchor[0], box.y0 - anchor[1]))
        return sizes
    finally:
        if dpi != MEASURE_DPI:
            fig.set_dpi(dpi)


@functools.lru_cache(maxsize=1)
def _measure_renderer() -> Any:
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(1, 1, MEASURE_DPI)


@dataclass(frozen=True)
class _Box:
    x0: float
    y0: float
    x1: float
    y1: float


def _crossings(boxes: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """1.0 where a box (x0, y0, x1, y1) has a point of ``edge`` strictly inside it, else 0.0."""
    ex, ey = edge[:, 0], edge[:, 1]
    inside = (
        (ex[None, :] > boxes[:, 0:1])
        & (ex[None, :] < boxes[:, 2:3])
        & (ey[None, :] > boxes[:, 1:2])
        & (ey[None, :] < boxes[:, 3:4])
    )
    return inside.any(axis=1).astype(float)


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


def _distances(boxes: np.ndarray, gate_box: Any, ax_box: Any) -> np.ndarray:
    """Gap between each label box (x0, y0, x1, y1) and its gate's extent, as a fraction of the
    axes' size (0 on a histogram panel)."""
    if gate_box is None:
        return np.zeros(len(boxes))
    dx = np.maximum(np.maximum(gate_box.x0 - boxes[:, 2], boxes[:, 0] - gate_box.x1), 0.0)
    dy = np.maximum(np.maximum(gate_box.y0 - boxes[:, 3], boxes[:, 1] - gate_box.y1), 0.0)
    return np.hypot(dx / ax_box.width, dy / ax_box.height)


def _densify(outline: np.ndarray, per_edge: int = 24) -> np.ndarray:
    """Points along a closed outline's edges (to test whether a label box crosses it)."""
    if len(outline) < 2:
        return outline
    t = np.linspace(0.0, 1.0, per_edge, endpoint=False)[None, :, None]
    a, b = outline[:-1, None, :], outline[1:, None, :]
    return (a + t * (b - a)).reshape(-1, outline.shape[1])


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


class _SummedArea:
    """Events under label boxes, from a summed-area table of the panel's histogram."""

    def __init__(self, panel: LabelPanel) -> None:
        hist = panel.histogram
        self.empty = hist is None or panel.y_limits is None or hist.sum() == 0
        if self.empty:
            return
        assert hist is not None and panel.y_limits is not None
        self.shape = hist.shape
        self.total = float(hist.sum())
        self.table = np.zeros((hist.shape[0] + 1, hist.shape[1] + 1), dtype=np.int64)
        self.table[1:, 1:] = hist.cumsum(axis=0).cumsum(axis=1)
        self.limits = (panel.x_limits, panel.y_limits)

    def share(self, ax: Axes, boxes: np.ndarray) -> np.ndarray:
        """Share of the panel's events under each box (0 for histogram panels): the bins
        the box touches, whole."""
        if self.empty:
            return np.zeros(len(boxes))
        inv = ax.transData.inverted()
        lo = inv.transform(boxes[:, 0:2])
        hi = inv.transform(boxes[:, 2:4])
        (xlo, xhi), (ylo, yhi) = self.limits
        nx, ny = self.shape
        i0 = np.clip(np.floor((lo[:, 0] - xlo) / (xhi - xlo) * nx), 0, nx).astype(int)
        i1 = np.clip(np.ceil((hi[:, 0] - xlo) / (xhi - xlo) * nx), 0, nx).astype(int)
        j0 = np.clip(np.floor((lo[:, 1] - ylo) / (yhi - ylo) * ny), 0, ny).astype(int)
        j1 = np.clip(np.ceil((hi[:, 1] - ylo) / (yhi - ylo) * ny), 0, ny).astype(int)
        t = self.table
        inside = t[i1, j1] - t[i0, j1] - t[i1, j0] + t[i0, j0]
        inside = np.where((i1 > i0) & (j1 > j0), inside, 0)
        return inside / self.total
