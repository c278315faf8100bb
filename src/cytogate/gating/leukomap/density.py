"""A binned, smoothed 2-D density and its watershed basins (the modes of a dot plot).

Why binned: a histogram of a bounded subsample costs the same for 10⁴ or 10⁷ events, and
everything after it (modes, basins, region outlines) works on the grid, never on events.
Basins are found by steepest ascent (each bin points to its highest 3 × 3 neighbour; pointer
jumping finds every bin's peak), then merged by topological persistence: a basin whose peak
rises less than ``merge`` × its height above the saddle to its neighbour is a shoulder, not a
population, and joins that neighbour — the way a cytometrist ignores a bump on a cluster; so
does a basin whose peak is not significantly above its saddle given the events counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Grid:
    """A regular grid over (x, y) in the working space: bin edges and the smoothed density."""

    x_edges: np.ndarray
    y_edges: np.ndarray
    counts: np.ndarray  # events per bin (of the fitted subsample), shape (nx, ny)
    density: np.ndarray  # smoothed counts, same shape

    def index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bin indices of points; points beyond the grid fall in its edge bins."""
        return bin_index(x, self.x_edges), bin_index(y, self.y_edges)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        return (self.x_edges[:-1] + self.x_edges[1:]) / 2, (
            self.y_edges[:-1] + self.y_edges[1:]
        ) / 2


def bin_index(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value on evenly spaced ``edges``, as ``searchsorted(edges, v, "right") - 1``
    clipped to the bins (values beyond the edges fall in the end bins; the last edge belongs to
    the last bin, as in ``np.histogram``), without a binary search per value: the bin is
    computed from the spacing, then moved by one where rounding put it beside the value's."""
    n = edges.size - 1
    step = (edges[-1] - edges[0]) / n
    with np.errstate(invalid="ignore"):
        guess = np.subtract(v, edges[0])
        guess *= 1.0 / step
        np.clip(guess, 0, n - 1, out=guess)
        i = guess.astype(np.intp)
    i -= v < edges[i]
    np.maximum(i, 0, out=i)
    i += v >= edges[i + 1]
    np.minimum(i, n - 1, out=i)
    return i


def binned_density(
    x: np.ndarray, y: np.ndarray, bins: int, smooth: float, clip: float = 0.0005
) -> Grid:
    """Histogram of (x, y) on ``bins`` × ``bins`` over the central 1 − 2·clip of each axis
    (widened by 4 %), smoothed with a Gaussian of ``smooth`` bins. The counts are those of
    ``np.histogram2d`` on the clipped values, counted by :func:`bin_index` and ``bincount``."""
    edges = []
    for v in (x, y):
        lo, hi = np.quantile(v, [clip, 1 - clip])
        pad = 0.04 * max(hi - lo, 1e-9)
        edges.append(np.linspace(lo - pad, hi + pad, bins + 1))
    flat = bin_index(x, edges[0]) * bins + bin_index(y, edges[1])
    counts = np.bincount(flat, minlength=bins * bins).reshape(bins, bins).astype(np.float64)
    density = ndimage.gaussian_filter(counts, smooth, mode="constant")
    return Grid(edges[0], edges[1], counts, density)


def basins(density: np.ndarray, floor: float) -> np.ndarray:
    """Label of the peak each bin climbs to (steepest ascent); bins below ``floor`` get the
    label of the nearest bin above it. Labels are flat indices of the peaks."""
    nx, ny = density.shape
    padded = np.pad(density, 1, constant_values=-np.inf)
    flat = np.arange(nx * ny).reshape(nx, ny)
    best = density.copy()
    target = flat.copy()
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == dj == 0:
                continue
            nb = padded[1 + di : 1 + di + nx, 1 + dj : 1 + dj + ny]
            better = nb > best
            best = np.where(better, nb, best)
            shifted = np.roll(np.roll(flat, -di, axis=0), -dj, axis=1)
            target = np.where(better, shifted, target)
    parent = target.ravel()
    while True:  # pointer jumping: O(log path length) vectorised passes
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    labels = parent.reshape(nx, ny)
    low = density < floor
    if low.any() and not low.all():
        _, (ii, jj) = ndimage.distance_transform_edt(low, return_indices=True)
        labels = labels[ii, jj]
    return labels


def saddles(labels: np.ndarray, density: np.ndarray) -> dict[tuple[int, int], float]:
    """Highest pass between each pair of touching basins: max over neighbouring bin pairs of
    the lower of their two densities."""
    out: dict[tuple[int, int], float] = {}
    pairs = []
    for a, b, da, db in (
        (labels[:-1, :], labels[1:, :], density[:-1, :], density[1:, :]),
        (labels[:, :-1], labels[:, 1:], density[:, :-1], density[:, 1:]),
        (labels[:-1, :-1], labels[1:, 1:], density[:-1, :-1], density[1:, 1:]),
        (labels[:-1, 1:], labels[1:, :-1], density[:-1, 1:], density[1:, :-1]),
    ):
        diff = a != b
        lo = np.minimum(a[diff], b[diff])
        hi = np.maximum(a[diff], b[diff])
        pairs.append((lo, hi, np.minimum(da[diff], db[diff])))
    if not pairs:
        return out
    lo = np.concatenate([p[0] for p in pairs])
    hi = np.concatenate([p[1] for p in pairs])
    val = np.concatenate([p[2] for p in pairs])
    if lo.size == 0:
        return out
    key = lo.astype(np.int64) * (labels.size + 1) + hi
    order = np.argsort(key, kind="stable")
    key, val, lo, hi = key[order], val[order], lo[order], hi[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    peaks = np.maximum.reduceat(val, starts)
    for s, v in zip(starts, peaks, strict=True):
        out[(int(lo[s]), int(hi[s]))] = float(v)
    return out


def merge_basins(
    labels: np.ndarray,
    density: np.ndarray,
    counts: np.ndarray,
    merge: float,
    min_mass: float,
    smooth: float = 1.5,
    significance: float = 3.0,
) -> np.ndarray:
    """Merge into its neighbour every basin that is a shoulder (its saddle above ``merge`` ×
    its peak), holds under ``min_mass`` of the events, or whose peak rises above the saddle by
    less than ``significance`` SDs of counting noise (events under the smoothing kernel,
    Poisson) — so a small file's noise does not make populations.

    One merge at a time, the most shoulder-like first. The grid is scanned once: when basin
    ``low`` joins ``high``, the pass from the union to a third basin is the higher of their two
    passes and its mass is their sum, which is what a re-scan of the merged labels gives. The
    passes are arrays, scored together per merge (a noisy small file has hundreds of basins;
    scoring them one by one in Python cost more than the rest of its map).
    """
    kernel_bins = 4.0 * np.pi * smooth**2  # effective area of the Gaussian kernel, in bins
    total = max(float(counts.sum()), 1.0)
    ids = np.unique(labels)
    if ids.size <= 1:
        return labels
    n = ids.size  # basins by their position in ids from here on
    events = np.asarray(ndimage.sum(counts, labels, ids), dtype=np.float64)
    peak = density.ravel()[ids].astype(np.float64)
    passes = saddles(labels, density)  # (lower id, higher id) -> highest pass, in key order
    a = np.searchsorted(ids, np.fromiter((k[0] for k in passes), np.int64, len(passes)))
    b = np.searchsorted(ids, np.fromiter((k[1] for k in passes), np.int64, len(passes)))
    s = np.fromiter(passes.values(), np.float64, len(passes))
    into = np.arange(n)  # basin -> the basin that absorbed it
    for _ in range(n - 1):
        if not a.size:
            break
        # every pass scored at once; argmax takes the first best in key order, as a scan does
        a_lower = peak[a] < peak[b]
        low, high = np.where(a_lower, a, b), np.where(a_lower, b, a)
        p = peak[low]
        ratio = s / np.maximum(p, 1e-12)
        noise = np.sqrt(np.maximum(p + s, 1e-12) / kernel_bins)  # SD of (peak - saddle)
        small = (events[low] / total < min_mass) | ((p - s) < significance * noise)
        candidate = (1.0 - ratio < 1.0 - merge) | small  # 1 - ratio: 0 shoulder, 1 valley
        if not candidate.any():
            break
        k = int(np.argmax(np.where(candidate, ratio + small, -np.inf)))
        gone, kept = int(low[k]), int(high[k])
        events[kept] += events[gone]
        into[into == gone] = kept
        a, b = np.where(a == gone, kept, a), np.where(b == gone, kept, b)
        own = a != b
        a, b, s = np.minimum(a[own], b[own]), np.maximum(a[own], b[own]), s[own]
        if not a.size:
            break
        key = a * n + b  # passes now shared by the union and a third basin: the higher one
        order = np.argsort(key, kind="stable")
        key, s = key[order], s[order]
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        s, key = np.maximum.reduceat(s, first), key[first]
        a, b = key // n, key % n
    return ids[into][np.searchsorted(ids, labels)]
