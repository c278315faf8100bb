"""Population labels on gate plots: near their gate, inside the axes, never overlapping.

Label specs are plain values handed from the panel that drew the gates to the placement pass
(which needs the finished layout to measure text), never state stored on matplotlib Axes.
"""

from __future__ import annotations

import itertools
import math
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


def place_labels(fig: Figure, panels: list[LabelPanel]) -> None:
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
    for panel in panels:
        ax, specs = panel.ax, panel.specs
        ax_box = ax.get_window_extent(renderer)
        shapes: dict[str, tuple[np.ndarray, MplPath]] = {}  # gate -> (edge points, path)
        for spec in specs:
            g, outline = spec.gate, spec.outline
            if outline.ndim == 2 and g.name not in shapes:
                display = ax.transData.transform(outline)
                shapes[g.name] = (ax.transData.transform(_densify(outline)), MplPath(display))
        placed = []
        for spec in specs:
            pop, text, g, outline = spec.population, spec.text, spec.gate, spec.outline
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
                bbox=_LABEL_BOX if not g.qc else {**_LABEL_BOX, "ec": "#c0392b", "lw": 1.2},
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
                    + 2.5 * _covered_share(ax, box, panel)
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


def _covered_share(ax: Axes, box: Any, panel: LabelPanel) -> float:
    """Share of the panel's events under a label box (0 for histogram panels)."""
    hist = panel.histogram
    if hist is None or panel.y_limits is None or hist.sum() == 0:
        return 0.0
    inv = ax.transData.inverted()
    (dx0, dy0), (dx1, dy1) = inv.transform([(box.x0, box.y0), (box.x1, box.y1)])
    (xlo, xhi), (ylo, yhi) = panel.x_limits, panel.y_limits
    nx, ny = hist.shape
    i0 = int(np.clip(math.floor((dx0 - xlo) / (xhi - xlo) * nx), 0, nx))
    i1 = int(np.clip(math.ceil((dx1 - xlo) / (xhi - xlo) * nx), 0, nx))
    j0 = int(np.clip(math.floor((dy0 - ylo) / (yhi - ylo) * ny), 0, ny))
    j1 = int(np.clip(math.ceil((dy1 - ylo) / (yhi - ylo) * ny), 0, ny))
    return float(hist[i0:i1, j0:j1].sum() / hist.sum())
