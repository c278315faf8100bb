"""One-dimensional cuts: density valleys and 1-D Gaussian-mixture edges (threshold gates;
see docs/adaptive_gating.md, "threshold")."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from cytogate.gating.fitting.base import FitError, one_native_thread, subsample


class CutSettings(Protocol):
    """The settings a 1-D cut reads (a threshold gate's declaration provides them)."""

    keep: str
    search: tuple[float, float] | None
    valley: str
    bandwidth: float | None
    min_depth: float
    min_mass: float
    significance: float
    components: tuple[int, int]
    max_excluded: float | None
    min_kept: float | None
    seed: int


def implausible(spec: CutSettings, dropped: float) -> str:
    """Why a cut dropping this share of the parent's events is implausible ('' if it is not)."""
    if spec.max_excluded is not None and dropped > spec.max_excluded:
        return f"would drop {100 * dropped:.0f}% of events (> {100 * spec.max_excluded:g}%)"
    if spec.min_kept is not None and 1 - dropped < spec.min_kept:
        return f"would keep {100 * (1 - dropped):.1f}% of events (< {100 * spec.min_kept:g}%)"
    return ""


def mixture_cut(x: np.ndarray, spec: CutSettings) -> tuple[float, dict[str, Any]]:
    """Cut between the lowest (``keep: above``) or highest (``below``) component of a 1-D
    Gaussian mixture and the rest: where that component stops being the most probable.

    k is chosen by BIC within ``components``; EM starts from equally spaced quantiles, so the
    fit is deterministic. The cut is searched between that component's mean and the next one's.
    """
    from sklearn.mixture import GaussianMixture

    z = subsample(x, 5000, spec.seed)
    centre = float(np.median(z))
    scale = float(np.subtract(*np.quantile(z, [0.75, 0.25]))) / 1.349 or float(z.std()) or 1.0
    u = ((z - centre) / scale)[:, None]
    best: tuple[float, Any] | None = None
    with one_native_thread():
        for k in range(spec.components[0], spec.components[1] + 1):
            # starts spread from the 1st to the 99th percentile, so a small population in a
            # tail (CD45-negative cells next to a dominant dim-blast peak) gets a component
            starts = np.quantile(u[:, 0], np.linspace(0.01, 0.99, k))[:, None]
            model = GaussianMixture(
                n_components=k, reg_covar=1e-4, means_init=starts, random_state=spec.seed
            ).fit(u)
            bic = float(model.bic(u))
            if best is None or bic < best[0]:
                best = (bic, model)
    assert best is not None
    model = best[1]
    means = model.means_[:, 0]
    order = np.argsort(means)
    edge = order[0] if spec.keep != "below" else order[-1]
    nearest = order[1] if spec.keep != "below" else order[-2]
    grid = np.linspace(means[edge], means[nearest], 512)[:, None]
    post = model.predict_proba(grid)[:, edge]
    beyond = np.flatnonzero(post < 0.5)
    if beyond.size == 0:
        raise FitError("the mixture's edge component dominates up to the next one")
    cut = float(grid[beyond[0], 0] * scale + centre)
    info = {
        "mixture_components": int(means.size),
        "mixture_means": [float(m * scale + centre) for m in np.sort(means)],
        "mixture_edge_weight": float(model.weights_[edge]),
    }
    return cut, info


def valley(x: np.ndarray, spec: CutSettings) -> tuple[float, dict[str, Any]]:
    """The density valley between two peaks, within ``spec.search``.

    The density is a histogram smoothed with a Gaussian kernel (``bandwidth``). A local minimum
    inside the search range is a *valley* when the lower of the highest peaks on its two sides
    (the flank) is at least ``1 / (1 - min_depth)`` times the density there, the difference is
    at least ``significance`` SDs of counting noise (events within one bandwidth of each point,
    Poisson), and each side holds at least ``min_mass`` of the events; among valleys,
    ``first`` / ``last`` / ``deepest`` chooses.
    The cut is the middle of the valley floor (where the density stays within 10 % of the
    depth above its minimum), so a wide empty gap gets its centre, not one noisy end.
    """
    lo_q, hi_q = np.quantile(x, [0.001, 0.999])
    search = spec.search or (float(lo_q), float(hi_q))
    bw = spec.bandwidth or max((hi_q - lo_q) / 80.0, 1e-12)
    centres, density, cum = smoothed_density(
        x, min(lo_q, search[0]) - 3 * bw, max(hi_q, search[1]) + 3 * bw, bw
    )
    info: dict[str, Any] = {"bandwidth": float(bw), "search": [float(s) for s in search]}
    inside = np.flatnonzero((centres >= search[0]) & (centres <= search[1]))
    index, depth, flank = _valleys(density, cum, inside, x.size * 2 * bw, spec)
    info["n_valleys"] = int(index.size)
    if not index.size:
        raise FitError(f"no valley in [{search[0]:g}, {search[1]:g}] (depth >= {spec.min_depth:g})")
    # among the valleys, only cuts that keep a plausible share of the parent
    dropped = cum[index] if spec.keep == "above" else 1 - cum[index]
    plausible = np.array([not implausible(spec, float(d)) for d in dropped], dtype=bool)
    if not plausible.any():
        why = implausible(spec, float(dropped[0]))
        raise FitError(f"no plausible valley (the first, at {centres[index[0]]:.4g}, {why})")
    index, depth, flank = index[plausible], depth[plausible], flank[plausible]
    if spec.valley == "first":
        k = 0
    elif spec.valley == "last":
        k = index.size - 1
    else:  # the deepest; the first of equally deep ones
        k = int(np.argmax(depth))
    i = int(index[k])
    cut = _floor_middle(density, centres, i, float(flank[k]), inside)
    info.update(
        {
            "depth": float(depth[k]),
            "valley_density": float(density[i]),
            "fraction_below": float(np.mean(x < cut)),
        }
    )
    return cut, info


def smoothed_density(
    x: np.ndarray, lo: float, hi: float, bandwidth: float, bins: int = 512
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin centres, density, cumulative share) of ``x`` on ``bins`` bins over [lo, hi]: a
    histogram smoothed by a Gaussian of SD ``bandwidth`` (scipy, truncated at 4 SD)."""
    from scipy.ndimage import gaussian_filter1d

    edges = np.linspace(lo, hi, bins + 1)
    counts, _ = np.histogram(x, edges)
    width = edges[1] - edges[0]
    smooth = gaussian_filter1d(counts.astype(np.float64), bandwidth / width, mode="constant")
    centres = (edges[:-1] + edges[1:]) / 2
    return centres, smooth / (x.size * width), np.cumsum(counts) / x.size


def _valleys(
    density: np.ndarray, cum: np.ndarray, inside: np.ndarray, per_density: float, spec: CutSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local minima inside the search range deep enough to be valleys: (index, depth, flank).

    The flank is the lower of the highest peaks on the two sides; the valley must be
    ``min_depth`` below it, ``significance`` SDs of counting noise below it (events within
    one bandwidth, Poisson: ``per_density`` turns a density into that count), and leave
    ``min_mass`` of the events on each side.
    """
    n = density.size
    i = inside[(inside > 0) & (inside < n - 1)]
    i = i[(density[i] <= density[i - 1]) & (density[i] < density[i + 1])]
    left_max = np.maximum.accumulate(density)
    right_max = np.maximum.accumulate(density[::-1])[::-1]
    flank = np.minimum(left_max[i - 1], right_max[i + 1])
    i, flank = i[flank > 0], flank[flank > 0]
    depth = 1.0 - density[i] / flank
    c_valley, c_flank = density[i] * per_density, flank * per_density
    z = (c_flank - c_valley) / np.sqrt(c_flank + c_valley)
    below = cum[i]
    ok = (
        (depth >= spec.min_depth)
        & (z >= spec.significance)
        & (np.minimum(below, 1 - below) >= spec.min_mass)
    )
    return i[ok], depth[ok], flank[ok]


def _floor_middle(
    density: np.ndarray, centres: np.ndarray, i: int, flank: float, inside: np.ndarray
) -> float:
    """The middle of the valley floor around ``i``: where the density stays within 10 % of the
    depth above its minimum (a wide empty gap gets its centre, not one noisy end)."""
    floor = density[i] + 0.1 * (flank - density[i])
    a = b = i
    while a - 1 >= inside[0] and density[a - 1] <= floor:
        a -= 1
    while b + 1 <= inside[-1] and density[b + 1] <= floor:
        b += 1
    return float((centres[a] + centres[b]) / 2)
