"""Refinements of a named leukocyte map where density modes alone mislead a CD45/SSC reading:
marrow myeloid maturation taken for blasts, the blasts' basin running up to the granulocytes,
and blasts and monocytes in one density cluster. Each states the cytometrist's reason in its
docstring and is switched by one ``Rules`` value."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cytogate.gating.fitting.base import one_native_thread
from cytogate.gating.leukomap.classify import (
    BLASTS,
    GRANULOCYTES,
    LYMPHOCYTES,
    MONOCYTES,
    Cluster,
    Rules,
)
from cytogate.gating.leukomap.density import Grid, saddles

MIN_EVENTS = 30  # fewer events below a blast cluster's peak: its SSC spread is not capped on
TAIL_SHARE = 0.05  # a blast basin is capped only when more than this lies above the cap
#: events the blast/monocyte mixture is fitted on (a seeded subsample): five parameters per
#: component are pinned down by thousands of points, and sklearn's EM costs ~1 ms per
#: thousand points per iteration
SPLIT_POINTS = 5_000


def rename_maturation(
    clusters: list[Cluster],
    classes: dict[int, int],
    labels: np.ndarray,
    grid: Grid,
    rules: Rules,
    decade: float,
) -> list[dict[str, float]]:
    """Rename as granulocytes a CD45dim cluster that is the marrow's myeloid maturation, not
    blasts: SSC at least ``maturation_decades`` above another blast cluster, CD45 brighter than
    it (CD45 rises with SSC as myeloid cells mature), and joined to the granulocytes by a higher
    density pass than to the SSC-low blasts (the continuum runs into the granulocytes).
    Changes ``classes`` in place; returns what was renamed (for the diagnostics)."""
    blasts = [c for c in clusters if classes[c.label] == BLASTS]
    grans = [c for c in clusters if classes[c.label] == GRANULOCYTES]
    if len(blasts) < 2 or not grans:
        return []
    pairs = saddles(labels, grid.density)

    def saddle(a: Cluster, b: Cluster) -> float:
        return pairs.get((min(a.label, b.label), max(a.label, b.label)), 0.0)

    low = min(blasts, key=lambda c: c.y)
    out = []
    for c in blasts:
        if c is low or c.y - low.y < rules.maturation_decades * decade or c.x <= low.x:
            continue
        to_gran = max(saddle(c, g) for g in grans)
        if to_gran > saddle(c, low):
            classes[c.label] = GRANULOCYTES
            out.append({"CD45": round(c.x, 4), "share": round(c.mass, 4)})
    return out


def split_monocytes(
    x: np.ndarray,
    v: np.ndarray,
    codes: np.ndarray,
    grid: Grid,
    clusters: list[Cluster],
    classes: dict[int, int],
    qc: dict[str, list[str]],
    rules: Rules,
    seed: int,
    decade: float,
) -> dict[str, float]:
    """Blood always holds monocytes: when no monocyte cluster was found and the blasts' one
    density cluster is two Gaussians — a CD45dim one and one as bright as the lymphocytes at
    monocyte SSC, apart by Ashman's D >= ``split_d`` in CD45 — the brighter one's bins become
    monocytes (changes ``codes`` and ``qc`` in place). The blasts stay flagged: the border
    lies on no valley. Returns the split's numbers for the diagnostics (empty: no split)."""
    found = set(classes.values())
    lymphs = [c for c in clusters if classes[c.label] == LYMPHOCYTES]
    if MONOCYTES in found or BLASTS not in found or not lymphs or rules.split_d <= 0:
        return {}
    lymph = max(lymphs, key=lambda c: c.mass)
    sdx = max(lymph.sd_x, 1e-6)
    i, j = grid.index(x, v)
    inside = codes[i, j] == BLASTS
    if inside.sum() < 200:
        return {}
    from sklearn.mixture import GaussianMixture

    pts = np.column_stack([x[inside], v[inside]])
    if pts.shape[0] > SPLIT_POINTS:
        pts = pts[np.random.default_rng(seed).choice(pts.shape[0], SPLIT_POINTS, replace=False)]
    with one_native_thread():
        gm = GaussianMixture(2, covariance_type="full", random_state=seed).fit(pts)
    if gm.bic(pts) > one_gaussian_bic(pts) - 10.0:  # one Gaussian explains the cluster as well
        return {}
    bright, dim = np.argsort(-gm.means_[:, 0])
    (bx, by), (dx, _) = gm.means_[bright], gm.means_[dim]
    sd = np.sqrt(gm.covariances_[:, 0, 0])
    ashman = float(np.sqrt(2) * (bx - dx) / np.sqrt(sd[0] ** 2 + sd[1] ** 2))
    # as bright as the lymphocytes given both spreads (the mixture pulls an overlapped
    # component's mean towards its neighbour), at monocyte SSC
    reach = rules.bright_sd * float(np.hypot(sdx, sd[bright]))
    monocyte_like = bx >= lymph.x - reach and by > lymph.y + rules.mono_decades * decade
    if not (
        monocyte_like
        and lymph.x - dx > rules.dim_sd * sdx
        and ashman >= rules.split_d
        and gm.weights_.min() >= 0.05
    ):
        return {}
    xc, yc = grid.centres()
    gx, gy = np.meshgrid(xc, yc, indexing="ij")
    region = codes == BLASTS
    post = gm.predict_proba(np.column_stack([gx[region], gy[region]]))[:, bright]
    new = np.where(post > 0.5, MONOCYTES, BLASTS).astype(codes.dtype)
    codes[region] = new
    qc["monocytes"] = [r for r in qc.get("monocytes", []) if "no monocyte cluster" not in r]
    if not qc["monocytes"]:
        del qc["monocytes"]
    why = (
        "blasts and monocytes form one density cluster, split by a two-Gaussian mixture "
        f"(Ashman's D {ashman:.1f} in CD45): the blast/monocyte border is uncertain"
    )
    qc["blasts"] = [
        why if "no monocyte cluster separate" in r else r for r in qc.get("blasts", [])
    ] or [why]
    return {"ashman_d": round(ashman, 2), "monocyte_weight": round(float(gm.weights_[bright]), 3)}


def one_gaussian_bic(points: np.ndarray, reg_covar: float = 1e-6) -> float:
    """BIC of one full-covariance Gaussian fitted to ``points`` (n x d), as sklearn's
    ``GaussianMixture(1).fit(points).bic(points)`` gives it (same ``reg_covar``): with one
    component EM converges in its first step to the sample mean and covariance, so the
    maximum-likelihood fit is that closed form, without sklearn's initialisation and EM."""
    n, d = points.shape
    diff = points - points.mean(axis=0)
    cov = diff.T @ diff / n + reg_covar * np.eye(d)
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, diff.T)  # whitened: squared norms are Mahalanobis distances
    log_det = 2.0 * float(np.sum(np.log(np.diag(chol))))
    log_likelihood = -0.5 * (n * (d * np.log(2 * np.pi) + log_det) + float(np.sum(z * z)))
    n_parameters = d + d * (d + 1) / 2
    return -2.0 * log_likelihood + n_parameters * np.log(n)


def cap_blasts(
    codes: np.ndarray,
    grid: Grid,
    labels: np.ndarray,
    clusters: list[Cluster],
    classes: dict[int, int],
    rules: Rules,
) -> tuple[np.ndarray, float | None]:
    """Blasts are SSC-low and compact: bins of a blast basin more than ``blast_ssc_sd`` of
    that cluster's own SSC spreads above its peak go to the granulocytes when theirs is the
    nearest other leukocyte region and they hold more than ``TAIL_SHARE`` of the basin (a
    continuum, not the cluster's own tail).

    Why: in marrow the myeloid maturation (promyelocytes to myelocytes: SSC intermediate, CD45
    rising with SSC) is a continuum with no valley between it and the blasts, so the blasts'
    watershed basin runs up to the granulocytes; a cytometrist's blast gate stops above the
    blast cluster. Returns the codes and the highest cap applied (working SSC units), or None."""
    _, yc = grid.centres()
    caps = []
    for c in clusters:
        if classes[c.label] != BLASTS:
            continue
        # the SSC spread from the cluster's lower side (events below its peak): nothing of the
        # maturation above inflates it, and on a small cluster it is steadier than the core's
        below = (labels == c.label) & (yc[None, :] < c.y)
        n = float(grid.counts[below].sum())
        if n < MIN_EVENTS:
            continue
        dy = np.broadcast_to(yc[None, :] - c.y, labels.shape)[below]
        sd = float(np.sqrt(np.sum(grid.counts[below] * dy**2) / n))
        caps.append((c.label, c.y + rules.blast_ssc_sd * max(sd, c.sd_y)))
    if not caps:
        return codes, None
    high = np.zeros(codes.shape, dtype=bool)
    used = []
    for label, cap in caps:
        basin = labels == label
        above = basin & (yc[None, :] > cap)
        # a cluster's own tail holds few events that far out; a continuum holds many
        if grid.counts[above].sum() > TAIL_SHARE * grid.counts[basin].sum():
            high |= above
            used.append(cap)
    gran = codes == GRANULOCYTES
    if not high.any() or not gran.any():
        return codes, None
    # only the continuum towards the granulocytes is cut off: blasts' upper tail nearer the
    # monocytes stays where the valley between them put it
    to_gran = ndimage.distance_transform_edt(~gran)
    mono = codes == MONOCYTES
    to_mono = ndimage.distance_transform_edt(~mono) if mono.any() else np.inf
    move = high & (to_gran <= to_mono)
    codes = codes.copy()
    codes[move] = GRANULOCYTES
    return codes, max(used)
