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
    passes and its mass is their sum, which is what a re-scan of the merged labels gives.
    """
    flat_density = density.ravel()
    kernel_bins = 4.0 * np.pi * smooth**2  # effective area of the Gaussian kernel, in bins
    total = max(float(counts.sum()), 1.0)
    ids = np.unique(labels)
    if ids.size <= 1:
        return labels
    events = dict(zip(ids.tolist(), ndimage.sum(counts, labels, ids).tolist(), strict=True))
    peak_of = {int(i): float(flat_density[i]) for i in ids}
    passes = saddles(labels, density)  # (lower id, higher id) -> highest pass
    into = {i: i for i in events}  # basin -> the basin that absorbed it
    while len(events) > 1:
        best: tuple[float, int, int] | None = None  # (score, absorbed, absorber)
        for (a, b), s in sorted(passes.items()):
            low, high = (a, b) if peak_of[a] < peak_of[b] else (b, a)
            prominence = 1.0 - s / max(peak_of[low], 1e-12)  # 0: a shoulder, 1: a clean valley
            p = peak_of[low]
            noise = np.sqrt(max(p + s, 1e-12) / kernel_bins)  # SD of (peak - saddle), per bin
            small = events[low] / total < min_mass or (p - s) < significance * noise
            if prominence < 1.0 - merge or small:
                score = s / max(peak_of[low], 1e-12) + (1.0 if small else 0.0)
                if best is None or score > best[0]:
                    best = (score, low, high)
        if best is None:
            break
        _, low, high = best
        events[high] += events.pop(low)
        for i, target in into.items():
            if target == low:
                into[i] = high
        merged: dict[tuple[int, int], float] = {}
        for (a, b), s in passes.items():
            a, b = (high if a == low else a), (high if b == low else b)
            if a == b:
                continue
            key = (min(a, b), max(a, b))
            merged[key] = max(merged.get(key, s), s)
        passes = merged
    lookup = np.array(sorted(into), dtype=labels.dtype)
    targets = np.array([into[i] for i in sorted(into)], dtype=labels.dtype)
    return targets[np.searchsorted(lookup, labels)]
