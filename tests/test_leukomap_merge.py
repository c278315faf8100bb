"""merge_basins updates the passes between basins as it merges; the oracle here re-scans the
merged labels after every merge (the definition). They must agree label for label."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cytogate.gating.leukomap.density import basins, binned_density, merge_basins, saddles


def rescan_merge(labels, density, counts, merge, min_mass, smooth=1.5, significance=3.0):
    kernel_bins = 4.0 * np.pi * smooth**2
    total = max(float(counts.sum()), 1.0)
    while True:
        ids = np.unique(labels)
        if ids.size <= 1:
            return labels
        share = (ndimage.sum(counts, labels, ids) / total).tolist()
        mass = dict(zip(ids.tolist(), share, strict=True))
        peak = {int(i): float(density.ravel()[i]) for i in ids}
        best = None
        for (a, b), s in saddles(labels, density).items():
            low, high = (a, b) if peak[a] < peak[b] else (b, a)
            noise = np.sqrt(max(peak[low] + s, 1e-12) / kernel_bins)
            small = mass[low] < min_mass or (peak[low] - s) < significance * noise
            if 1.0 - s / max(peak[low], 1e-12) < 1.0 - merge or small:
                score = s / max(peak[low], 1e-12) + (1.0 if small else 0.0)
                if best is None or score > best[0]:
                    best = (score, low, high)
        if best is None:
            return labels
        labels = np.where(labels == best[1], best[2], labels)


@pytest.mark.parametrize("seed", range(12))
def test_merging_equals_rescanning_after_every_merge(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(300, 50_000)), int(rng.integers(2, 8))
    centres, sd = rng.uniform(0, 1, (k, 2)), rng.uniform(0.02, 0.15, k)
    which = rng.integers(0, k, n)
    points = centres[which] + rng.normal(0, 1, (n, 2)) * sd[which, None]
    grid = binned_density(points[:, 0], points[:, 1], 96, 1.5)
    labels = basins(grid.density, 1e-3 * float(grid.density.max()))
    assert np.unique(labels).size > 1  # something to merge
    for merge, min_mass in ((0.9, 0.005), (0.7, 0.02), (0.97, 0.0005)):
        got = merge_basins(labels, grid.density, grid.counts, merge, min_mass)
        want = rescan_merge(labels, grid.density, grid.counts, merge, min_mass)
        assert np.array_equal(got, want)
