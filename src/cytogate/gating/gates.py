"""Gate geometries: which events (points in the gate's scaled space) lie inside.

Every geometry works on a whole (m × d) array of points at once; no Python loop over events.
Boundaries follow GatingML 2.0, so results agree with FlowKit/FlowJo: a rectangle/range is
``min <= x < max`` (missing bounds are open), a polygon includes its left/bottom edges and
excludes its right/top ones (flowutils' crossing test), an ellipse includes its boundary.
A quadrant gate splits its parent into up to four named populations; a boolean gate combines
other populations and is evaluated by the engine, which knows their masks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

BoolOp = Literal["and", "or", "not"]


@dataclass(frozen=True)
class Rectangle:
    """Axis-aligned box; one dimension makes it a range gate. ``None`` bounds are open."""

    dims: tuple[str, ...]
    min: tuple[float | None, ...]
    max: tuple[float | None, ...]

    @property
    def kind(self) -> str:
        return "range" if len(self.dims) == 1 else "rectangle"

    def contains(self, points: np.ndarray) -> np.ndarray:
        inside = np.ones(points.shape[0], dtype=bool)
        for j, (lo, hi) in enumerate(zip(self.min, self.max, strict=True)):
            if lo is not None:
                inside &= points[:, j] >= lo
            if hi is not None:
                inside &= points[:, j] < hi
        return inside

    def outline(self) -> np.ndarray:
        """Closed vertex list for plotting (2-D only; open sides clipped at ±1e9)."""
        lo = [(-1e9 if v is None else v) for v in self.min]
        hi = [(1e9 if v is None else v) for v in self.max]
        if len(self.dims) == 1:
            return np.array([[lo[0]], [hi[0]]])
        return np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])


@dataclass(frozen=True)
class Polygon:
    """Closed polygon in two dimensions (vertices listed once, not repeated at the end)."""

    dims: tuple[str, str]
    vertices: tuple[tuple[float, float], ...]

    kind = "polygon"

    def contains(self, points: np.ndarray, grid: PointGrid | None = None) -> np.ndarray:
        """Membership of each point; ``grid`` (the same points quantised, shared by sibling
        gates) lets most points be answered by their grid cell (see :class:`PointGrid`)."""
        from flowutils.gating import points_in_polygon  # C crossing-number test

        if points.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        verts = np.asarray(self.vertices, dtype=np.float64)
        if grid is not None and grid.n_points == points.shape[0]:
            return grid.polygon_membership(verts, points[:, 0], points[:, 1], points_in_polygon)
        # Only points within the vertices' bounding box can be inside (a ray from a point
        # outside it crosses the boundary an even number of times).
        lo, hi = verts.min(axis=0), verts.max(axis=0)
        x, y = points[:, 0], points[:, 1]
        near = np.flatnonzero((x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]))
        inside = np.zeros(points.shape[0], dtype=bool)
        if near.size < GRID_MIN_POINTS or not np.all(hi > lo):
            if near.size:
                inside[near] = points_in_polygon(verts, np.ascontiguousarray(points[near]))
            return inside
        kept_x, kept_y = x[near], y[near]
        sub = PointGrid.of_columns(kept_x, kept_y)
        if sub is None:  # pragma: no cover - finite vertices bound the points kept
            inside[near] = points_in_polygon(verts, np.ascontiguousarray(points[near]))
        else:
            inside[near] = sub.polygon_membership(verts, kept_x, kept_y, points_in_polygon)
        return inside

    def outline(self) -> np.ndarray:
        return np.asarray(self.vertices, dtype=np.float64)


@dataclass(frozen=True)
class Ellipse:
    """Ellipse (GatingML form): ``(x - c)ᵀ Σ⁻¹ (x - c) <= D²``.

    Templates may give ``half_axes`` and ``angle`` (degrees, anticlockwise from the x axis)
    instead; :meth:`from_axes` turns those into Σ with D² = 1.
    """

    dims: tuple[str, str]
    center: tuple[float, float]
    covariance: tuple[tuple[float, float], tuple[float, float]]
    distance_square: float = 1.0

    kind = "ellipse"

    @classmethod
    def from_axes(
        cls,
        dims: tuple[str, str],
        center: tuple[float, float],
        half_axes: tuple[float, float],
        angle_deg: float,
    ) -> Ellipse:
        theta = math.radians(angle_deg)
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        cov = rot @ np.diag(np.square(half_axes)) @ rot.T
        return cls(dims, center, ((cov[0, 0], cov[0, 1]), (cov[1, 0], cov[1, 1])), 1.0)

    def contains(self, points: np.ndarray) -> np.ndarray:
        d = points - np.asarray(self.center)
        inv = np.linalg.inv(np.asarray(self.covariance, dtype=np.float64))
        return np.einsum("ij,jk,ik->i", d, inv, d) <= self.distance_square

    def outline(self, n: int = 100) -> np.ndarray:
        vals, vecs = np.linalg.eigh(np.asarray(self.covariance, dtype=np.float64))
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        circle = np.stack([np.cos(t), np.sin(t)], axis=1) * np.sqrt(vals * self.distance_square)
        return circle @ vecs.T + np.asarray(self.center)


QUADRANT_SIGNS = ("++", "+-", "-+", "--")


@dataclass(frozen=True)
class Quadrant:
    """Split at ``at = (x0, y0)``; ``populations`` maps a name to a sign pair over ``dims``.

    "+" means ``>= divider`` (the upper, half-open side, as for rectangles), "-" means below.
    """

    dims: tuple[str, str]
    at: tuple[float, float]
    populations: Mapping[str, str]

    kind = "quadrant"

    def assign(self, points: np.ndarray) -> dict[str, np.ndarray]:
        x_pos = points[:, 0] >= self.at[0]
        y_pos = points[:, 1] >= self.at[1]
        side = {"+": (x_pos, y_pos), "-": (~x_pos, ~y_pos)}
        return {name: side[s[0]][0] & side[s[1]][1] for name, s in self.populations.items()}


@dataclass(frozen=True)
class Boolean:
    """``and``/``or`` of several populations, or ``not`` of one (within the gate's parent)."""

    op: BoolOp
    operands: tuple[str, ...]

    kind = "boolean"
    dims: tuple[str, ...] = ()

    def combine(self, masks: list[np.ndarray]) -> np.ndarray:
        if self.op == "not":
            return ~masks[0]
        reduce = np.logical_and if self.op == "and" else np.logical_or
        return reduce.reduce(masks)


Geometry = Rectangle | Polygon | Ellipse | Quadrant | Boolean


GRID_MIN_POINTS = 20_000  # below this the crossing test alone is cheaper than a grid


@dataclass(frozen=True)
class AxisCells:
    """The cell (0..SIZE-1) of every value along one axis of a :class:`PointGrid`."""

    lo: float
    cell: float
    index: np.ndarray  # int32


class PointGrid:
    """2-D points quantised onto a ``SIZE`` x ``SIZE`` grid over their extent, built once per
    (parent, dimensions) and shared by every polygon evaluated on those points.

    A polygon is rasterised onto the grid (:meth:`polygon_membership`): cells the boundary
    passes through, dilated by one cell, are "boundary"; every other cell lies wholly inside or
    outside, so a point there is answered by one lookup of its cell. Only points in boundary
    cells get the crossing test itself: the same memberships as testing every point, at a cost
    that scales with the boundary's share of the events, not with vertices times events.
    """

    SIZE = 256

    def __init__(self, lo: np.ndarray, cell: np.ndarray, flat: np.ndarray) -> None:
        self.lo, self.cell, self.flat = lo, cell, flat
        self.n_points = int(flat.shape[0])

    @classmethod
    def of(cls, points: np.ndarray) -> PointGrid | None:
        """The grid of ``points`` (m x 2), or None when their extent is not finite and > 0."""
        return cls.of_columns(points[:, 0], points[:, 1])

    @classmethod
    def of_columns(cls, x: np.ndarray, y: np.ndarray) -> PointGrid | None:
        """The grid of the points ``(x[i], y[i])``, or None (extent not finite and > 0)."""
        ax, ay = cls.axis(x), cls.axis(y)
        return None if ax is None or ay is None else cls.of_axes(ax, ay)

    @classmethod
    def axis(cls, v: np.ndarray) -> AxisCells | None:
        """One axis quantised over its extent (None: extent not finite and > 0); an axis is
        shared by every grid it is part of (SSC-A by FSC-A/SSC-A and CD45/SSC-A)."""
        if not v.size:
            return None
        lo, hi = float(v.min()), float(v.max())
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            return None
        cell = (hi - lo) / cls.SIZE
        scaled = np.subtract(v, lo)  # >= 0: lo is the minimum
        scaled *= 1.0 / cell
        index = scaled.astype(np.int32)  # (numpy converts to int32 several times faster)
        np.minimum(index, cls.SIZE - 1, out=index)  # the maximum lies on the top edge
        return AxisCells(lo, cell, index)

    @classmethod
    def of_axes(cls, ax: AxisCells, ay: AxisCells) -> PointGrid:
        flat = ax.index * np.int32(cls.SIZE)
        flat += ay.index
        # intp: every polygon's lookup gathers by it, and an int32 index is cast per gather
        return cls(np.array([ax.lo, ay.lo]), np.array([ax.cell, ay.cell]), flat.astype(np.intp))

    def polygon_membership(
        self,
        verts: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        points_in_polygon,
        within: np.ndarray | None = None,
    ) -> np.ndarray:
        """Exact membership in the polygon ``verts`` of the grid's points ``(x, y)`` (the
        columns it was built from); with ``within`` (a mask), False outside it."""
        size, lo, cell = self.SIZE, self.lo, self.cell
        # the cells the polygon's bounding box touches, padded by one (the dilation below)
        first = np.clip(np.floor((verts.min(axis=0) - lo) / cell).astype(np.int64) - 1, 0, size - 1)
        last = np.clip(np.floor((verts.max(axis=0) - lo) / cell).astype(np.int64) + 1, 0, size - 1)
        shape = last - first + 1
        start, end = verts, np.roll(verts, -1, axis=0)
        steps = np.maximum(np.ceil(np.max(np.abs(end - start) / (cell / 2), axis=1)), 1)
        steps = steps.astype(np.int64)
        seg = np.repeat(np.arange(len(verts)), steps + 1)
        offsets = np.cumsum(steps + 1) - (steps + 1)
        frac = (np.arange(seg.size) - offsets[seg]) / steps[seg]  # 0, 1/n, ..., 1 per edge
        along = start[seg] + (end[seg] - start[seg]) * frac[:, None]
        bx = np.clip(np.floor((along[:, 0] - lo[0]) / cell[0]).astype(np.int64), 0, size - 1)
        by = np.clip(np.floor((along[:, 1] - lo[1]) / cell[1]).astype(np.int64), 0, size - 1)
        boundary = np.zeros((shape[0] + 2, shape[1] + 2), dtype=bool)
        bx, by = bx - first[0], by - first[1]
        for dx in (0, 1, 2):  # dilation by one cell (indices shifted by the padding)
            for dy in (0, 1, 2):
                boundary[bx + dx, by + dy] = True
        boundary = boundary[1:-1, 1:-1]
        classes = _region_classes(boundary, first, lo, cell, verts, points_in_polygon)
        table = np.zeros((size, size), dtype=np.uint8)  # 0 outside, 1 inside, 2 boundary
        table[first[0] : last[0] + 1, first[1] : last[1] + 1] = classes
        cls = np.take(table.ravel(), self.flat)
        inside = cls == 1
        on_edge = cls == 2
        if within is not None:
            inside &= within
            on_edge &= within
        edge = np.flatnonzero(on_edge)
        if edge.size:
            pts = np.empty((edge.size, 2))
            np.take(x, edge, out=pts[:, 0])
            np.take(y, edge, out=pts[:, 1])
            inside[edge] = np.asarray(points_in_polygon(verts, pts), dtype=bool)
        return inside


def _region_classes(boundary, first, lo, cell, verts, points_in_polygon) -> np.ndarray:
    """Per cell of a sub-grid: 2 on the boundary, else 1/0 for inside/outside.

    Cells off the boundary form 4-connected regions the boundary never touches, so each region
    is wholly inside or outside: one crossing test at one cell centre answers for all of it.
    """
    from scipy import ndimage

    regions, n_regions = ndimage.label(~boundary)
    answer = np.full(n_regions + 1, 2, dtype=np.uint8)  # label 0: the boundary cells
    if n_regions:
        flat = regions.ravel()
        cells = np.flatnonzero(flat)[::-1]
        rep = np.zeros(n_regions + 1, dtype=np.int64)
        rep[flat[cells]] = cells  # written last = the region's first cell
        rep = rep[1:]
        ny = boundary.shape[1]
        centres = np.column_stack(
            [
                (rep // ny + first[0] + 0.5) * cell[0] + lo[0],
                (rep % ny + first[1] + 0.5) * cell[1] + lo[1],
            ]
        )
        answer[1:] = np.asarray(points_in_polygon(verts, centres), dtype=np.uint8)
    return answer[regions]
