"""The grid pre-classification of polygon membership gives the crossing test's exact answer."""

from __future__ import annotations

import numpy as np
import pytest
from flowutils.gating import points_in_polygon

from cytogate.gating.gates import Polygon


def _star(rng: np.random.Generator, n: int) -> np.ndarray:
    """A jagged star-shaped polygon (like a contour traced from a density grid)."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = rng.uniform(0.2, 1.0, n)
    return np.column_stack(
        [0.5 + 0.4 * radius * np.cos(angles), 0.5 + 0.4 * radius * np.sin(angles)]
    )


@pytest.mark.parametrize("seed", range(6))
def test_grid_membership_equals_the_crossing_test_everywhere(seed: int) -> None:
    rng = np.random.default_rng(seed)
    verts = _star(rng, int(rng.integers(16, 400)))  # the grid path
    points = rng.uniform(0, 1, (200_000, 2))
    # points exactly on vertices and on edges, where a shortcut would most likely differ
    t = rng.uniform(0, 1, (2_000, 1))
    j = rng.integers(0, len(verts), 2_000)
    on_edges = verts[j] + t * (np.roll(verts, -1, axis=0)[j] - verts[j])
    points = np.vstack([points, verts, on_edges])
    gate = Polygon(("x", "y"), tuple(map(tuple, verts)))
    expected = np.asarray(points_in_polygon(verts, np.ascontiguousarray(points)), dtype=bool)
    got = gate.contains(points)
    assert expected.sum() > 1_000  # the polygon holds points: the comparison means something
    np.testing.assert_array_equal(got, expected)


def _bow_tie() -> np.ndarray:
    """A self-intersecting polygon: the crossing test's even-odd rule decides its inside."""
    return np.array([[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]])


@pytest.mark.parametrize("shape", ["star", "bow_tie", "quad", "beyond"])
def test_shared_point_grid_equals_the_crossing_test(shape: str) -> None:
    """The engine's path: the parent's points quantised once (PointGrid), each polygon then
    rasterised onto it. Polygons larger than the points' extent, with four vertices, or
    crossing themselves must give the crossing test's answer event for event too."""
    from cytogate.gating.gates import PointGrid

    rng = np.random.default_rng(7)
    points = np.asfortranarray(rng.normal(0.5, 0.18, (150_000, 2)))
    verts = {
        "star": _star(rng, 300),
        "bow_tie": _bow_tie(),
        "quad": np.array([[0.0, 0.0], [1.0, 0.7], [1.0, 1.0], [0.0, 0.04]]),
        "beyond": np.array([[-3.0, -3.0], [4.0, -2.0], [0.5, 0.55], [-2.0, 4.0]]),
    }[shape]
    points = np.asfortranarray(np.vstack([points, verts]))  # points exactly on vertices
    grid = PointGrid.of(points)
    assert grid is not None
    gate = Polygon(("x", "y"), tuple(map(tuple, verts)))
    expected = np.asarray(points_in_polygon(verts, np.ascontiguousarray(points)), dtype=bool)
    assert 1_000 < expected.sum() < points.shape[0]  # both answers occur
    np.testing.assert_array_equal(gate.contains(points, grid), expected)
    np.testing.assert_array_equal(gate.contains(points), expected)
