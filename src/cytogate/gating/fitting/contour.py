"""The outline of a cluster gate's region, as a polygon (see docs/adaptive_gating.md).

The region is a level set of a smooth field on a grid; contourpy traces it and the ring is
simplified with Douglas-Peucker to a third of a grid cell. The simplification is a short
function here because no declared dependency offers it for a plain vertex array (shapely,
which does, is not a dependency); it works on the few hundred vertices of one ring, never on
events.
"""

from __future__ import annotations

import math

import numpy as np

from cytogate.gating.fitting.base import FitError
from cytogate.gating.fitting.mixture import Mixture, mahalanobis2
from cytogate.gating.gates import Polygon


def region_polygon(
    mixture: Mixture, chosen: tuple[int, ...], dims: tuple[str, str], distance: float, grid: int
) -> Polygon:
    """Outline of {more probably from ``chosen`` than any other cluster} ∩ {within distance}.

    Traced on a ``grid`` × ``grid`` grid over the parent's extent, as the zero
    contour of ``min(log p(chosen) - max_other log p(other), D² - d²)``; the outer contour
    around the chosen cluster's mean is kept and simplified (Douglas-Peucker, a third of a grid
    cell), so it stays within a fraction of a cell of the exact region.
    """
    import contourpy
    from scipy.special import logsumexp

    n = grid
    xs = np.linspace(mixture.lo[0], mixture.hi[0], n)
    ys = np.linspace(mixture.lo[1], mixture.hi[1], n)
    gx, gy = np.meshgrid(xs, ys)
    points = np.column_stack([gx.ravel(), gy.ravel()])
    logd = mixture.log_densities(points)
    comps = [c for cl in chosen for c in mixture.clusters[cl]]
    selected = logsumexp(logd[:, comps], axis=1)
    other_clusters = [cl for i, cl in enumerate(mixture.clusters) if i not in chosen]
    if other_clusters:
        rival = np.max(
            np.column_stack([logsumexp(logd[:, list(cl)], axis=1) for cl in other_clusters]),
            axis=1,
        )
        margin = selected - rival
    else:
        margin = np.full(points.shape[0], np.inf)
    d2 = np.min(
        np.column_stack(
            [mahalanobis2(points, mixture.means[c], mixture.covariances[c]) for c in comps]
        ),
        axis=1,
    )
    field = np.minimum(margin, distance**2 - d2).reshape(gx.shape)
    field[0, :] = field[-1, :] = field[:, 0] = field[:, -1] = -1.0  # close every contour
    lines = contourpy.contour_generator(xs, ys, field).lines(0.0)
    rings = [np.asarray(line, dtype=np.float64) for line in lines if len(line) >= 4]
    if not rings:
        raise FitError("the chosen cluster's region is empty")
    centre, _ = mixture.moments(tuple(comps))
    from flowutils.gating import points_in_polygon

    def area(ring: np.ndarray) -> float:
        x, y = ring[:, 0], ring[:, 1]
        return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))

    around = [r for r in rings if points_in_polygon(r[:-1], centre[None, :])[0]]
    ring = max(around or rings, key=area)
    cell = min((mixture.hi[0] - mixture.lo[0]) / (n - 1), (mixture.hi[1] - mixture.lo[1]) / (n - 1))
    ring = simplify(ring[:-1] if np.array_equal(ring[0], ring[-1]) else ring, cell / 3)
    return Polygon(dims, tuple((float(a), float(b)) for a, b in ring))


def simplify(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker simplification of a closed ring (first vertex not repeated)."""
    if ring.shape[0] <= 4:
        return ring
    # split the ring at its first vertex and the vertex farthest from it
    far = int(np.argmax(np.sum((ring - ring[0]) ** 2, axis=1)))
    closed = np.vstack([ring, ring[:1]])
    first = _dp(closed[: far + 1], tolerance)
    second = _dp(closed[far:], tolerance)
    return np.vstack([first[:-1], second[:-1]])


def _dp(line: np.ndarray, tolerance: float) -> np.ndarray:
    keep = np.zeros(line.shape[0], dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, line.shape[0] - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        seg = line[b] - line[a]
        rel = line[a + 1 : b] - line[a]
        length = math.hypot(seg[0], seg[1])
        if length == 0:
            dist = np.hypot(rel[:, 0], rel[:, 1])
        else:
            dist = np.abs(seg[0] * rel[:, 1] - seg[1] * rel[:, 0]) / length
        i = int(np.argmax(dist))
        if dist[i] > tolerance:
            m = a + 1 + i
            keep[m] = True
            stack += [(a, m), (m, b)]
    return line[keep]
