"""Fit a CD45/SSC leukocyte map: every bin of the plot named lymphocytes, monocytes,
granulocytes, blasts or CD45-negative, from the density's own modes.

Why a map and not one gate per population: the four leukocyte populations and the CD45-negative
events tile the CD45/SSC plot, and a cytometrist draws their gates against each other — blasts
reach up to where the monocytes begin and down to where the CD45-negative events end. One
partition of the plot makes sibling gates disjoint by construction and puts every boundary in
a density valley. The fit costs the same for any number of events: a seeded subsample is
binned, and the rest happens on the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from cytogate.gating.leukomap.classify import (
    BLASTS,
    GRANULOCYTES,
    LYMPHOCYTES,
    MONOCYTES,
    NAMES,
    Cluster,
    Rules,
    classify,
)
from cytogate.gating.leukomap.density import Grid, basins, binned_density, merge_basins, saddles
from cytogate.gating.leukomap.refine import cap_blasts, rename_maturation, split_monocytes
from cytogate.gating.leukomap.region import fill_holes

TRUNCATED_SD = 0.619  # SD of a normal within its half-maximum ÷ its full SD


@dataclass(frozen=True)
class MapSpec:
    """How the map is fitted (template ``map:`` settings)."""

    bins: int = 128
    smooth: float = 1.5  # Gaussian smoothing, in bins
    merge: float = 0.8  # basins whose saddle is above this × the lower peak are one cluster
    min_mass: float = 0.002  # smaller basins join a neighbour
    significance: float = 0.0  # a peak must rise this many noise SDs above its saddle (0: off)
    subsample: int = 100_000
    seed: int = 0
    ssc: Literal["auto", "log", "as_is"] = "auto"  # auto: log when SSC is stored linear
    ssc_decades: float = 4.0  # SSC stored as a log channel fraction: decades over 0..1
    rules: Rules = field(default_factory=Rules)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> MapSpec:
        """From a template's ``map:`` mapping (rule names go to :class:`Rules`); an unknown or
        mistyped name raises ValueError naming it."""
        own = {f for f in cls.__dataclass_fields__ if f != "rules"}
        rule_names = set(Rules.__dataclass_fields__)
        unknown = sorted(set(settings) - own - rule_names)
        if unknown:
            raise ValueError(
                f"unknown setting {unknown[0]!r} (one of {', '.join(sorted(own | rule_names))})"
            )
        for k, v in settings.items():
            if k != "ssc" and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ValueError(f"setting {k!r}: a number (got {v!r})")
        if settings.get("ssc", "auto") not in ("auto", "log", "as_is"):
            raise ValueError(f"setting 'ssc': auto, log or as_is (got {settings['ssc']!r})")
        rules = Rules(**{k: float(v) for k, v in settings.items() if k in rule_names})
        mine = {k: v for k, v in settings.items() if k in own}
        for k in ("bins", "subsample", "seed"):
            if k in mine:
                mine[k] = int(mine[k])
        return cls(**mine, rules=rules)


@dataclass
class LeukoMap:
    """The fitted partition: a population code per grid bin (working space)."""

    grid: Grid
    log_y: bool
    y_floor: float
    codes: np.ndarray
    qc: dict[str, list[str]]  # population name -> what a cytometrist would worry about
    diagnostics: dict[str, Any]

    def warp_y(self, y: np.ndarray) -> np.ndarray:
        return np.log10(np.maximum(y, self.y_floor)) if self.log_y else y

    def unwarp_y(self, v: np.ndarray) -> np.ndarray:
        return np.power(10.0, v) if self.log_y else v

    def assign(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Population code of each event (NaN coordinates: −1)."""
        ok = np.isfinite(x) & np.isfinite(y)
        out = np.full(x.shape, -1, dtype=np.int8)
        i, j = self.grid.index(x[ok], self.warp_y(y[ok]))
        out[ok] = self.codes[i, j]
        return out

    def present(self, code: int) -> bool:
        return bool(np.any(self.codes == code))


def fit_map(
    x: np.ndarray, y: np.ndarray, spec: MapSpec = MapSpec(), zero: float | None = None
) -> LeukoMap:
    """Fit the map to CD45 (``x``) and SSC (``y``) on their scaled axes. ``zero``: where
    linear CD45 = 0 lies on ``x``'s scale (None: unknown; no over-compensation check)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 50:
        raise ValueError(f"only {x.size} events to map")
    if x.size > spec.subsample:
        take = np.random.default_rng(spec.seed).choice(x.size, spec.subsample, replace=False)
        x, y = x[take], y[take]
    positive = y[y > 0]
    # linear SSC spans over a decade between its 1st and 99th percentiles (lymphocytes to
    # granulocytes); a log channel's fraction of range does not
    linear = positive.size > 0.9 * y.size and np.quantile(positive, 0.99) > 6 * np.quantile(
        positive, 0.01
    )
    log_y = spec.ssc == "log" or (spec.ssc == "auto" and bool(linear))
    y_floor = float(np.quantile(positive, 0.001)) if positive.size else 1e-6
    v = np.log10(np.maximum(y, y_floor)) if log_y else y
    grid = binned_density(x, v, spec.bins, spec.smooth)
    labels = basins(grid.density, 1e-3 * float(grid.density.max()))
    labels = merge_basins(
        labels, grid.density, grid.counts, spec.merge, spec.min_mass, spec.smooth, spec.significance
    )
    clusters = _clusters(grid, labels, zero)
    decade = 1.0 if log_y else 1.0 / spec.ssc_decades
    classes, qc = classify(clusters, spec.rules, decade)
    matured = rename_maturation(clusters, classes, labels, grid, spec.rules, decade)
    codes = np.vectorize(classes.__getitem__, otypes=[np.int8])(labels)
    codes, cap = cap_blasts(codes, grid, labels, clusters, classes, spec.rules)
    split = split_monocytes(x, v, codes, grid, clusters, classes, qc, spec.rules, spec.seed, decade)
    codes = _tidy(codes, grid.counts)
    diag = {
        "ssc_working_scale": "log10" if log_y else "as stored",
        "n_fit": int(x.size),
        "cd45_zero": None if zero is None else round(float(zero), 4),
        "clusters": [
            {
                "population": NAMES[classes[c.label]],
                "CD45": round(c.x, 4),
                "SSC": round(float(10**c.y) if log_y else c.y, 4),
                "share": round(c.mass, 4),
                "below_zero": round(c.below_zero, 3),
            }
            for c in sorted(clusters, key=lambda c: -c.mass)
        ],
    }
    if matured:
        diag["myeloid_maturation"] = matured
    if split:
        diag["monocyte_split"] = split
    if cap is not None:
        diag["blast_ssc_cap"] = round(float(10**cap) if log_y else cap, 4)
    _separation(clusters, classes, labels, grid, diag, qc, spec.rules)
    return LeukoMap(grid, log_y, y_floor, codes, qc, diag)


def _clusters(grid: Grid, labels: np.ndarray, zero: float | None = None) -> list[Cluster]:
    xc, yc = grid.centres()
    gx, gy = np.meshgrid(xc, yc, indexing="ij")
    total = max(float(grid.counts.sum()), 1.0)
    out = []
    for lab in np.unique(labels):
        pi, pj = np.unravel_index(int(lab), labels.shape)
        peak = grid.density[pi, pj]
        core = (labels == lab) & (grid.density >= 0.5 * peak)
        w = grid.counts[core]
        if w.sum() <= 0:
            w = grid.density[core]
        mx = float(np.average(gx[core], weights=w))
        my = float(np.average(gy[core], weights=w))
        sx = float(np.sqrt(np.average((gx[core] - mx) ** 2, weights=w))) / TRUNCATED_SD
        sy = float(np.sqrt(np.average((gy[core] - my) ** 2, weights=w))) / TRUNCATED_SD
        members = grid.counts[labels == lab]
        mass = float(members.sum()) / total
        below = 0.0
        if zero is not None and members.sum() > 0:
            below = float(grid.counts[(labels == lab) & (gx < zero)].sum() / members.sum())
        out.append(Cluster(int(lab), float(xc[pi]), float(yc[pj]), mass, sx, sy, below))
    return out


def _tidy(codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """One connected region per population, without holes: islands join their surroundings."""
    codes = codes.copy()
    for _ in range(4):
        changed = False
        for code in np.unique(codes):
            region = codes == code
            parts, n = ndimage.label(region, structure=np.ones((3, 3)))
            if n > 1:
                mass = ndimage.sum(counts + 1e-9, parts, np.arange(1, n + 1))
                keep = 1 + int(np.argmax(mass))
                stray = region & (parts != keep)
                codes[stray] = -1
                changed = True
            filled = fill_holes(codes == code)
            holes = filled & (codes != code)
            if holes.any():
                codes[holes] = code
                changed = True
        if (codes < 0).any():
            _, (ii, jj) = ndimage.distance_transform_edt(codes < 0, return_indices=True)
            codes = codes[ii, jj]
        if not changed:
            break
    return codes


def _separation(
    clusters: list[Cluster],
    classes: dict[int, int],
    labels: np.ndarray,
    grid: Grid,
    diag: dict[str, Any],
    qc: dict[str, list[str]],
    rules: Rules,
) -> None:
    """How deep the valley between the blasts and the monocytes is (a cytometrist's worry)."""
    flat = grid.density.ravel()
    blast = [c for c in clusters if classes[c.label] == BLASTS]
    mono = [c for c in clusters if classes[c.label] == MONOCYTES]
    if not blast or not mono:
        return
    pairs = saddles(labels, grid.density)
    depth = 1.0
    for b in blast:
        for m in mono:
            s = pairs.get((min(b.label, m.label), max(b.label, m.label)))
            if s is not None:
                depth = min(depth, 1.0 - s / max(min(flat[b.label], flat[m.label]), 1e-12))
    diag["blast_monocyte_valley_depth"] = round(depth, 3)
    if depth < rules.min_valley:
        qc.setdefault("blasts", []).append(
            f"no CD45dim cluster clearly separate from the monocytes (valley {100 * depth:.0f}%"
            f" deep, < {100 * rules.min_valley:.0f}%): the blast/monocyte border is uncertain"
        )


def codes_of(population: str) -> tuple[int, ...]:
    """Map codes that make up a template population (leukocytes: every CD45+ population)."""
    if population == "leukocytes":
        return (LYMPHOCYTES, MONOCYTES, GRANULOCYTES, BLASTS)
    return (next(c for c, n in NAMES.items() if n == population),)


def population_outline(leukomap: LeukoMap, codes: tuple[int, ...]) -> np.ndarray:
    """Polygon vertices (scaled CD45, scaled SSC) around the bins of ``codes``."""
    from cytogate.gating.leukomap.region import outline

    xc, vc = leukomap.grid.centres()
    yc = leukomap.unwarp_y(vc)
    return outline(np.isin(leukomap.codes, codes), xc, yc)
