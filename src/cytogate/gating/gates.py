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

    def contains(self, points: np.ndarray) -> np.ndarray:
        from flowutils.gating import points_in_polygon  # C crossing-number test

        if points.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        verts = np.asarray(self.vertices, dtype=np.float64)
        # Only points within the vertices' bounding box can be inside (a ray from a point
        # outside it crosses the boundary an even number of times).
        lo, hi = verts.min(axis=0), verts.max(axis=0)
        x, y = points[:, 0], points[:, 1]
        near = np.flatnonzero((x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]))
        inside = np.zeros(points.shape[0], dtype=bool)
        if near.size < _GRID_MIN_POINTS or len(verts) < _GRID_MIN_VERTICES or not np.all(hi > lo):
            if near.size:
                inside[near] = points_in_polygon(verts, np.ascontiguousarray(points[near]))
            return inside
        inside[near] = _grid_membership(verts, lo, hi, x[near], y[near], points_in_polygon)
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


_GRID = 256  # cells per side of the pre-classification grid
_GRID_MIN_POINTS = 20_000  # below this the crossing test alone is cheaper
_GRID_MIN_VERTICES = 16  # a crossing test over few edges is cheaper than the grid


def _grid_membership(verts, lo, hi, x, y, points_in_polygon) -> np.ndarray:
    """The crossing test's exact answer, asked only where the boundary passes.

    The bounding box is cut into a grid; cells within one cell of the boundary (edges sampled
    every half cell, then dilated by one cell, so no crossed cell is missed) are "boundary".
    Every other cell lies wholly inside or outside, so its centre's answer is its points'
    answer. Points in boundary cells get the crossing test itself: the same memberships as
    testing every point, at a cost that scales with the boundary's share of the events.
    """
    cell = (hi - lo) / _GRID
    ix = np.clip(((x - lo[0]) / cell[0]).astype(np.int64), 0, _GRID - 1)
    iy = np.clip(((y - lo[1]) / cell[1]).astype(np.int64), 0, _GRID - 1)
    start, end = verts, np.roll(verts, -1, axis=0)
    steps = np.maximum(np.ceil(np.max(np.abs(end - start) / (cell / 2), axis=1)), 1).astype(int)
    frac = np.concatenate([np.arange(n + 1) / n for n in steps])
    seg = np.repeat(np.arange(len(verts)), steps + 1)
    along = start[seg] + (end[seg] - start[seg]) * frac[:, None]
    bx = np.clip(((along[:, 0] - lo[0]) / cell[0]).astype(np.int64), 0, _GRID - 1)
    by = np.clip(((along[:, 1] - lo[1]) / cell[1]).astype(np.int64), 0, _GRID - 1)
    boundary = np.zeros((_GRID + 2, _GRID + 2), dtype=bool)
    for dx in (0, 1, 2):  # dilation by one cell (indices shifted by the padding)
        for dy in (0, 1, 2):
            boundary[bx + dx, by + dy] = True
    boundary = boundary[1:-1, 1:-1]
    flat = ix * _GRID + iy
    on_edge = boundary.ravel()[flat]
    occupied = np.unique(flat[~on_edge])  # only the interior/exterior cells that hold points
    centres = np.column_stack(
        [(occupied // _GRID + 0.5) * cell[0] + lo[0], (occupied % _GRID + 0.5) * cell[1] + lo[1]]
    )
    answer = np.zeros(_GRID * _GRID, dtype=bool)
    if occupied.size:
        answer[occupied] = np.asarray(points_in_polygon(verts, centres), dtype=bool)
    result = answer[flat]
    edge = np.flatnonzero(on_edge)
    if edge.size:
        pts = np.ascontiguousarray(np.column_stack([x[edge], y[edge]]))
        result[edge] = np.asarray(points_in_polygon(verts, pts), dtype=bool)
    return result
