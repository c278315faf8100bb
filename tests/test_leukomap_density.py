"""The leukocyte map's binning: bins computed from the spacing equal the binary search's."""

from __future__ import annotations

import numpy as np
import pytest

from cytogate.gating.leukomap.density import bin_index, binned_density


@pytest.mark.parametrize("seed", range(20))
def test_bin_index_equals_searchsorted_on_and_beside_every_edge(seed: int) -> None:
    """Values on every edge, one float step either side of it, and beyond both ends get the
    bin ``searchsorted(..., "right") - 1`` gives (clipped), over spans from 1e-6 to 1e3."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    lo = float(rng.normal())
    edges = np.linspace(lo, lo + 10 ** rng.uniform(-6, 3), n + 1)
    v = np.concatenate(
        [
            rng.uniform(edges[0] - 1, edges[-1] + 1, 2_000),
            edges,
            np.nextafter(edges, -np.inf),
            np.nextafter(edges, np.inf),
        ]
    )
    expected = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, n - 1)
    np.testing.assert_array_equal(bin_index(v, edges), expected)


def test_binned_counts_equal_histogram2d() -> None:
    """The map's counts are numpy's 2-D histogram of the clipped values, ties included."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(0.5, 0.1, 50_000), rng.normal(0.2, 0.05, 50_000)
    x[:5_000] = np.round(x[:5_000], 2)  # discrete values, many on one spot (integer data)
    grid = binned_density(x, y, 128, 1.5)
    counts, _, _ = np.histogram2d(
        np.clip(x, grid.x_edges[0], grid.x_edges[-1]),
        np.clip(y, grid.y_edges[0], grid.y_edges[-1]),
        [grid.x_edges, grid.y_edges],
    )
    np.testing.assert_array_equal(grid.counts, counts)
    assert grid.counts.sum() == x.size


@pytest.mark.parametrize("seed", range(10))
def test_fill_holes_equals_scipys(seed: int) -> None:
    """Filling holes by labelling the background once gives binary_fill_holes' mask, on
    random blobs with holes, diagonal gaps and regions touching the border."""
    from scipy import ndimage

    from cytogate.gating.leukomap.region import fill_holes

    rng = np.random.default_rng(seed)
    mask = ndimage.gaussian_filter(rng.random((64, 80)), 2.0) > 0.5 + rng.normal(0, 0.02)
    mask[rng.integers(0, 64, 40), rng.integers(0, 80, 40)] ^= True  # pinholes and specks
    np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
