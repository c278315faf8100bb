"""Gaussian mixtures on two dimensions for cluster gates: fitting, model choice, merging.

Per file (see docs/adaptive_gating.md, "cluster"): scikit-learn ``GaussianMixture`` (full
covariances) is fitted on a seeded, density-balanced subsample (a grid cell holding m events
keeps about sqrt(m), so small populations next to 90 % blasts still get components; weights are
re-estimated on a uniform subsample). k is chosen by BIC on half the subsample, EM starting at
the highest well-separated density peaks, and the chosen model is refined on all of it. The
data are standardised per dimension (median, IQR). Components are then merged into clusters:
by default those climbing to the same mode of the equally weighted mixture density
(``merge: modes``), or those whose Bhattacharyya coefficient exceeds ``merge``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cytogate.gating.fitting.base import FitError, one_native_thread, subsample

_REG_COVAR = 1e-4  # in standardised units: ~1 % of an IQR-sized SD
_MIN_SELECT = 500  # below 4 x this, k is chosen on the whole subsample
_SELECT_TOL = 3e-3  # EM tolerance while choosing k (the chosen model is refined to 1e-3)
_MIN_WEIGHT = 1e-9  # components lighter than this (after re-weighing) are dropped
_PRESAMPLE = 20  # the fit looks at most 20 x `subsample` events (uniform, seeded)
_PEAK_SEPARATION = 0.6  # EM starts at density peaks at least this far apart (IQR units)
_GRID_MARGIN = 0.05


@dataclass(frozen=True, kw_only=True)
class MixtureSpec:
    """How a cluster gate's mixture is fitted (gates with equal specs share one fit). The
    template fields and their defaults are declared in :mod:`cytogate.gating.kinds.cluster`."""

    components: tuple[int, int]  # BIC chooses k within these bounds
    subsample: int
    seed: int
    # "modes": components climbing to the same mode of the (equally weighted) mixture form a
    # cluster; a number: merge components whose Bhattacharyya coefficient exceeds it
    merge: float | str
    max_iter: int
    init: Literal["peaks", "kmeans++"]  # EM start: density peaks, or k-means++
    balance: bool  # fit shapes on a density-balanced subsample, then re-weigh


@dataclass(frozen=True)
class Mixture:
    """A fitted mixture in the gate's scaled space, its clusters and the data's extent."""

    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, 2)
    covariances: np.ndarray  # (k, 2, 2)
    clusters: tuple[tuple[int, ...], ...]
    bic: dict[int, float]
    n_fit: int
    lo: np.ndarray  # extent of the parent's events (all of them, not the subsample)
    hi: np.ndarray

    @property
    def k(self) -> int:
        return int(self.weights.size)

    def weight(self, comps: tuple[int, ...]) -> float:
        return float(self.weights[list(comps)].sum())

    def moments(self, comps: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the sub-mixture ``comps`` (moment matching)."""
        w = self.weights[list(comps)]
        w = w / w.sum()
        means = self.means[list(comps)]
        mean = w @ means
        cov = np.einsum("k,kij->ij", w, self.covariances[list(comps)])
        d = means - mean
        cov = cov + np.einsum("k,ki,kj->ij", w, d, d)
        return mean, cov

    def log_densities(self, points: np.ndarray) -> np.ndarray:
        """log(weight_j × N(point | component j)), shape (n, k)."""
        out = np.empty((points.shape[0], self.k))
        for j in range(self.k):
            out[:, j] = math.log(self.weights[j]) + log_normal(
                points, self.means[j], self.covariances[j]
            )
        return out

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        for c, comps in enumerate(self.clusters):
            mean, cov = self.moments(comps)
            rows.append(
                {
                    "cluster": c,
                    "components": list(comps),
                    "weight": round(self.weight(comps), 6),
                    "mean": [round(float(v), 6) for v in mean],
                    "sd": [round(float(math.sqrt(cov[i, i])), 6) for i in range(2)],
                }
            )
        return rows


def log_normal(points: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(point | mean, cov) for 2-D points, in closed form (no per-call inversions)."""
    a, b, c = cov[0, 0], cov[0, 1], cov[1, 1]
    det = a * c - b * b
    dx = points[:, 0] - mean[0]
    dy = points[:, 1] - mean[1]
    d2 = (c * dx * dx - 2 * b * dx * dy + a * dy * dy) / det
    return -0.5 * d2 - math.log(2 * math.pi) - 0.5 * math.log(det)


def mahalanobis2(points: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each point to a 2-D Gaussian."""
    a, b, c = cov[0, 0], cov[0, 1], cov[1, 1]
    det = a * c - b * b
    dx = points[:, 0] - mean[0]
    dy = points[:, 1] - mean[1]
    return (c * dx * dx - 2 * b * dx * dy + a * dy * dy) / det


def bhattacharyya(m1: np.ndarray, c1: np.ndarray, m2: np.ndarray, c2: np.ndarray) -> float:
    """Bhattacharyya coefficient of two Gaussians (1 = identical, 0 = disjoint)."""
    cov = (c1 + c2) / 2
    d = m1 - m2
    term = float(d @ np.linalg.solve(cov, d)) / 8
    logdet = math.log(np.linalg.det(cov)) - 0.5 * (
        math.log(np.linalg.det(c1)) + math.log(np.linalg.det(c2))
    )
    return math.exp(-(term + 0.5 * logdet))


# --------------------------------------------------------------------------- fitting


def fit_mixture(points: np.ndarray, spec: MixtureSpec) -> Mixture:
    """Fit the mixture (BIC over ``spec.components``) and merge components into clusters."""
    lo, hi = _extent(points)  # the region's grid covers every event
    # everything below works on a uniform pre-sample (20 x the fit's size): balancing and the
    # weights need no more, and a 10^6-event file then costs what a 10^5-event one does
    finite = subsample(points, _PRESAMPLE * spec.subsample, spec.seed + 2)
    finite = finite[np.all(np.isfinite(finite), axis=1)]
    if finite.shape[0] < 10 * spec.components[0]:
        raise FitError(f"only {finite.shape[0]} events to fit a mixture")
    unsaturated = finite[~_saturated(finite)]
    if unsaturated.shape[0] < 10 * spec.components[0]:
        raise FitError(f"only {unsaturated.shape[0]} unsaturated events to fit a mixture")
    if spec.balance:
        x = balanced_subsample(unsaturated, spec.subsample, spec.seed)
    else:
        x = subsample(unsaturated, spec.subsample, spec.seed)
    centre = np.median(x, axis=0)
    q75, q25 = np.quantile(x, [0.75, 0.25], axis=0)
    scale = (q75 - q25) / 1.349
    scale = np.where(scale > 0, scale, np.maximum(x.std(axis=0), 1e-12))
    z = (x - centre) / scale
    model, bic = _fit_by_bic(
        z, spec, k_hi=min(spec.components[1], max(spec.components[0], x.shape[0] // 20))
    )
    weights = np.asarray(model.weights_, dtype=np.float64)
    means = np.asarray(model.means_) * scale + centre
    covs = np.asarray(model.covariances_) * np.outer(scale, scale)
    if spec.balance:  # the balanced sample over-represents small populations: re-weigh
        uniform = subsample(unsaturated, spec.subsample, spec.seed + 1)
        weights = _weights_on(uniform, means, covs, weights)
    # a component no event is drawn to carries nothing (and log 0 would poison what follows)
    alive = weights > _MIN_WEIGHT
    weights, means, covs = weights[alive] / weights[alive].sum(), means[alive], covs[alive]
    order = np.lexsort((means[:, 1], means[:, 0]))  # stable component numbering
    weights, means, covs = weights[order], means[order], covs[order]
    if spec.merge == "modes":
        # equal weights: a small population next to a large one keeps its own peak
        clusters = _merge_by_modes(np.full(weights.size, 1.0 / weights.size), means, covs)
    else:
        clusters = _merge(means, covs, float(spec.merge))
    span = np.where(hi > lo, hi - lo, 1.0)
    return Mixture(
        weights=weights,
        means=means,
        covariances=covs,
        clusters=clusters,
        bic=bic,
        n_fit=int(x.shape[0]),
        lo=lo - _GRID_MARGIN * span,
        hi=hi + _GRID_MARGIN * span,
    )


def _extent(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension min and max of the finite points (no copy when all are finite).

    Column by column: numpy's ``min(axis=0)`` on an (n, 2) array is ~10x slower."""
    lo = np.array([points[:, j].min() for j in range(points.shape[1])])
    hi = np.array([points[:, j].max() for j in range(points.shape[1])])
    if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):  # NaN or inf propagate
        return lo, hi
    finite = points[np.all(np.isfinite(points), axis=1)]
    if finite.shape[0] == 0:
        raise FitError("no finite events to fit a mixture")
    return finite.min(axis=0), finite.max(axis=0)


def _fit_by_bic(z: np.ndarray, spec: MixtureSpec, k_hi: int) -> tuple[Any, dict[int, float]]:
    """The scikit-learn mixture with the lowest BIC for k in ``spec.components[0]..k_hi``.

    One BLAS thread: 2 x 2 solves gain nothing from threads, and idle threads spinning on a
    busy machine made each fit 10-100 x slower (and results must not depend on threading).
    k is chosen by BIC on an every-other-event half of the subsample (about 4x cheaper in
    all: fewer events and iterations), then the chosen model is refined on all of it.
    """
    from sklearn.mixture import GaussianMixture

    best: tuple[float, Any] | None = None
    bic: dict[int, float] = {}
    select = z[::2] if z.shape[0] >= 4 * _MIN_SELECT else z
    peaks = density_peaks(select) if spec.init == "peaks" else None
    with one_native_thread():
        for k in range(spec.components[0], k_hi + 1):
            start = {} if peaks is None else _start_from_peaks(select, peaks, k)
            model = GaussianMixture(
                n_components=k,
                covariance_type="full",
                reg_covar=_REG_COVAR,
                max_iter=spec.max_iter,
                tol=_SELECT_TOL if select is not z else 1e-3,
                init_params="k-means++",
                random_state=spec.seed,
                **start,
            ).fit(select)
            bic[k] = float(model.bic(select))
            if best is None or bic[k] < best[0]:
                best = (bic[k], model)
        assert best is not None
        model = best[1]
        if select is not z:
            model = GaussianMixture(
                n_components=model.n_components,
                covariance_type="full",
                reg_covar=_REG_COVAR,
                max_iter=spec.max_iter,
                random_state=spec.seed,
                weights_init=model.weights_,
                means_init=model.means_,
                precisions_init=model.precisions_,
            ).fit(z)
    return model, bic


def _saturated(points: np.ndarray, share: float = 0.002) -> np.ndarray:
    """Events piled on a dimension's extreme value (a saturated detector, values clipped at
    the range), when at least ``share`` of them sit exactly there: they carry no shape and
    would pull a degenerate, zero-width component onto the edge."""
    out = np.zeros(points.shape[0], dtype=bool)
    for j in range(points.shape[1]):
        for edge in (points[:, j].max(), points[:, j].min()):
            at = points[:, j] == edge
            if np.count_nonzero(at) >= share * points.shape[0]:
                out |= at
    return out


def balanced_subsample(points: np.ndarray, n: int, seed: int, bins: int = 24) -> np.ndarray:
    """About ``n`` events with dense regions thinned (seeded, original order kept).

    Events are binned on a ``bins`` x ``bins`` grid and each event of a cell holding m events
    is kept with probability ``sqrt(m) x const / m``: the density is flattened to its square
    root. With 90 % blasts, a
    uniform subsample of 4,000 leaves ~100 lymphocytes and ~50 monocytes, too few for the
    mixture to give them components; the square root raises them about fivefold relative to the
    blasts while keeping every population's peak (a full flattening would merge them). Weights
    are re-estimated on a uniform sample afterwards.
    """
    if points.shape[0] <= n:
        return points
    lo = np.quantile(points, 0.001, axis=0)
    hi = np.quantile(points, 0.999, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    cells = np.clip(((points - lo) / span * bins).astype(np.int64), 0, bins - 1)
    cell = cells[:, 0] * bins + cells[:, 1]
    counts = np.bincount(cell, minlength=bins * bins)
    root = np.sqrt(counts)
    keep_share = np.minimum(1.0, root * (n / root.sum()) / np.maximum(counts, 1))
    u = np.random.default_rng(seed).random(points.shape[0])
    return points[u < keep_share[cell]]


def _weights_on(
    x: np.ndarray, means: np.ndarray, covs: np.ndarray, weights: np.ndarray, steps: int = 20
) -> np.ndarray:
    """Mixture weights re-estimated on ``x`` with the components' shapes held fixed (EM)."""
    from scipy.special import logsumexp

    logn = np.column_stack([log_normal(x, means[j], covs[j]) for j in range(means.shape[0])])
    w = weights.copy()
    for _ in range(steps):
        logp = logn + np.log(np.maximum(w, 1e-300))
        resp = np.exp(logp - logsumexp(logp, axis=1)[:, None])
        w = resp.mean(axis=0)
    return w / w.sum()


def density_peaks(z: np.ndarray, bins: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima of the smoothed 2-D histogram of ``z``, highest first.

    Returns (peak positions, cell positions, cell densities); the cells are where the density is
    at least 5 % of its maximum, from which extra starting points are drawn.
    """
    from scipy.ndimage import gaussian_filter, maximum_filter

    lo = np.quantile(z, 0.005, axis=0)
    hi = np.quantile(z, 0.995, axis=0)
    hist, ex, ey = np.histogram2d(
        z[:, 0], z[:, 1], bins=bins, range=[[lo[0], hi[0]], [lo[1], hi[1]]]
    )
    dens = gaussian_filter(hist, 1.5, mode="constant")
    top = maximum_filter(dens, size=3, mode="constant")
    cells = np.argwhere((dens == top) & (dens > 0))
    heights = dens[cells[:, 0], cells[:, 1]]
    order = np.lexsort((cells[:, 1], cells[:, 0], -heights))
    cx, cy = (ex[:-1] + ex[1:]) / 2, (ey[:-1] + ey[1:]) / 2
    peaks = np.column_stack([cx[cells[order, 0]], cy[cells[order, 1]]])
    dense = np.argwhere(dens >= 0.05 * dens.max())
    positions = np.column_stack([cx[dense[:, 0]], cy[dense[:, 1]]])
    return peaks, positions, dens[dense[:, 0], dense[:, 1]]


def _start_from_peaks(
    z: np.ndarray, peaks: tuple[np.ndarray, np.ndarray, np.ndarray], k: int
) -> dict[str, np.ndarray]:
    """Deterministic EM start: the k highest density peaks at least ``_PEAK_SEPARATION``
    (standardised units) from a higher chosen one, so a long ridge (skewed granulocyte SSC)
    does not take every start; topped up with the dense cells farthest from the chosen ones;
    each event assigned to its nearest start."""
    tops, positions, densities = peaks
    means: list[np.ndarray] = []
    for peak in tops:
        if len(means) == k:
            break
        if all(np.linalg.norm(peak - m) >= _PEAK_SEPARATION for m in means):
            means.append(peak)
    while len(means) < k:
        dist = np.min(np.linalg.norm(positions[:, None, :] - np.asarray(means)[None], axis=2), 1)
        means.append(positions[int(np.argmax(dist * np.sqrt(densities)))])
    centres = np.asarray(means)
    nearest = np.argmin(((z[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    weights = np.empty(k)
    precisions = np.empty((k, 2, 2))
    for j in range(k):
        pts = z[nearest == j]
        weights[j] = max(pts.shape[0], 1) / z.shape[0]
        cov = np.cov(pts.T) if pts.shape[0] > 2 else np.eye(2) * 0.1
        precisions[j] = np.linalg.inv(cov + _REG_COVAR * 10 * np.eye(2))
    return {
        "weights_init": weights / weights.sum(),
        "means_init": centres,
        "precisions_init": precisions,
    }


def _merge_by_modes(
    weights: np.ndarray, means: np.ndarray, covs: np.ndarray, steps: int = 200
) -> tuple[tuple[int, ...], ...]:
    """Components whose means climb to the same mode of the mixture density form a cluster.

    Modal clustering (Li, Ray & Lindsay 2007): from each component mean, the fixed-point
    ascent x <- (sum_k p_k(x) S_k^-1)^-1 sum_k p_k(x) S_k^-1 m_k (p_k the posterior) reaches a
    local maximum of the density. A skewed population fitted by two Gaussians has one mode, so
    they join; two populations with their own peaks stay apart however much their Gaussians
    overlap, and a broad component bridging two populations joins one of them, not both.
    """
    k = means.shape[0]
    prec = np.linalg.inv(covs)
    prec_means = np.einsum("kij,kj->ki", prec, means)
    logdet = np.log(np.linalg.det(covs))
    x = means.copy()
    for _ in range(steps):
        d = x[:, None, :] - means[None]
        d2 = np.einsum("nki,kij,nkj->nk", d, prec, d)
        logp = np.log(weights)[None] - 0.5 * (d2 + logdet[None])
        post = np.exp(logp - logp.max(axis=1, keepdims=True))
        post /= post.sum(axis=1, keepdims=True)
        a = np.einsum("nk,kij->nij", post, prec)
        b = np.einsum("nk,ki->ni", post, prec_means)
        new = np.linalg.solve(a, b[..., None])[..., 0]
        if np.max(np.abs(new - x)) < 1e-9:
            x = new
            break
        x = new
    sd = np.sqrt(np.min(np.diagonal(covs, axis1=1, axis2=2), axis=0))
    groups: list[list[int]] = []
    modes: list[np.ndarray] = []
    for i in range(k):
        for g, mode in zip(groups, modes, strict=True):
            if np.all(np.abs(x[i] - mode) <= 0.05 * sd):
                g.append(i)
                break
        else:
            groups.append([i])
            modes.append(x[i])
    return tuple(tuple(g) for g in sorted(groups))


def _merge(means: np.ndarray, covs: np.ndarray, threshold: float) -> tuple[tuple[int, ...], ...]:
    k = means.shape[0]
    parent = list(range(k))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(k):
        for j in range(i + 1, k):
            if bhattacharyya(means[i], covs[i], means[j], covs[j]) > threshold:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(k):
        groups.setdefault(root(i), []).append(i)
    return tuple(tuple(g) for g in sorted(groups.values()))
