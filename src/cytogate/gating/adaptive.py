"""Data-driven ("adaptive") gates: fitted per sample on the parent population's events.

A fixed polygon drawn once cannot follow blasts that sit at a different CD45 and SSC in every
patient, nor scatter that shifts with instrument settings. An adaptive gate is declared once in
a template and *fitted* to each file; the fit is always turned into an ordinary geometry
(:class:`~cytogate.gating.gates.Rectangle`, :class:`~cytogate.gating.gates.Polygon`), and the
population is exactly that geometry's membership, so a fitted gate can be plotted, exported to
FlowKit/GatingML and reused (pinned) like any fixed gate.

Kinds (template ``kind:``):

* ``threshold`` — a 1-D cut on one dimension (or on the ratio of two, e.g. FSC-H / FSC-A):
  ``valley`` (density minimum between two peaks, within a search range), ``mixture`` (a 1-D
  Gaussian mixture, BIC-chosen: the cut where the lowest — or highest — component stops being
  the most probable, as openCyto's flowClust 1-D gate), ``quantile``, or ``sd`` / ``mad``
  (centre ± n × spread of a reference population). Several methods may be listed: the first
  that gives a plausible cut (``max_excluded``, ``min_kept``) wins, and a later one counts as
  a fallback.
  → range / ratio polygon.
* ``cluster`` — a Gaussian mixture (scikit-learn) on the gate's two dimensions, its number of
  components chosen by BIC within bounds, components sharing a density mode merged into
  clusters, and cluster(s) picked by rules on position (``lowest: CD45``, ``where: {SSC-A:
  {below: …}}``, ``exclude: [lymphocytes]``, ``largest``, ``all``). → polygon enclosing the
  events the chosen cluster(s) most probably generated (see :mod:`cytogate.gating.mixture`).
* ``relative`` — a rectangle whose bounds are statistics of other populations (``CD45 below the
  lymphocytes' median − 3 SD``). → rectangle / range.

Deterministic: every random choice (subsample, mixture initialisation) is seeded from the
template, so the same file gives the same gate to the last vertex. Fast: fits use a seeded
subsample (``subsample`` in the template); all events are then assigned by the geometry.

Quality control: every fit records diagnostics (method, threshold or components and clusters,
separation, whether a fallback was used) and problems as QC reasons ("no valley in [0.1,
0.6]", "no cluster matches the selection: merged with lymphocytes"). The engine adds the
fraction rules of a gate's ``qc:`` section. A doubtful fit never stops a batch: the gate falls
back (the template's ``fallback``, or the best available estimate) and is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from cytogate.gating.gates import Ellipse, Geometry, Polygon, Rectangle

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.gating.mixture import Mixture

ADAPTIVE_KINDS = ("threshold", "cluster", "relative", "leukomap")
MAP_POPULATIONS = (
    "leukocytes",
    "lymphocytes",
    "monocytes",
    "granulocytes",
    "blasts",
    "cd45_negative",
)
THRESHOLD_METHODS = ("valley", "mixture", "quantile", "sd", "mad")
MAD_TO_SD = 1.482602218505602  # MAD of a normal distribution × this = its SD
STAT_SAMPLE = 50_000  # reference-population statistics use at most this many events


class FitError(Exception):
    """A fit could not produce a gate (the message is the QC reason)."""


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Bound:
    """A coordinate: a number, or a statistic of a population on one dimension.

    ``stat + n × spread`` of population ``of`` on ``dim`` (default: the gate's dimension at this
    position), e.g. ``{of: lymphocytes, stat: median, n: -3, spread: sd}`` is "3 SD below the
    lymphocytes' median". ``stat: quantile`` with ``q`` takes a quantile instead.
    """

    value: float | None = None
    of: str | None = None
    dim: str | None = None
    stat: Literal["median", "mean", "quantile"] = "median"
    q: float = 0.5
    n: float = 0.0
    spread: Literal["sd", "mad"] = "mad"

    def populations(self) -> set[str]:
        return {self.of} if self.of else set()

    def evaluate(self, ctx: FitContext, default_dim: str) -> float:
        if self.of is None:
            assert self.value is not None
            return self.value
        dim = self.dim or default_dim
        values = ctx.values(self.of, dim)
        # statistics of at most 50,000 events (seeded): exact below, precise enough above
        values = subsample(values[np.isfinite(values)], STAT_SAMPLE, 0)
        if values.size < 3:
            raise FitError(f"reference population '{self.of}' has {values.size} events")
        if self.stat == "quantile":
            centre = float(np.quantile(values, self.q))
        elif self.stat == "mean":
            centre = float(values.mean())
        else:
            centre = float(np.median(values))
        if self.n == 0:
            return centre
        return centre + self.n * _spread(values, self.spread)

    def describe(self) -> str:
        if self.of is None:
            return f"{self.value:g}"
        centre = f"q{self.q:g}" if self.stat == "quantile" else self.stat
        text = f"{self.of}.{centre}" + (f"[{self.dim}]" if self.dim else "")
        return text + (f" {self.n:+g} {self.spread}" if self.n else "")


@dataclass(frozen=True)
class QCRules:
    """A gate's quality-control rules (any gate kind; fitted gates add their own reasons).

    ``min_fraction`` / ``max_fraction``: share of the parent's events in the gate outside which
    the gate is flagged (with ``reason`` appended, e.g. "possible CD45-negative blasts").
    ``flag_with``: populations whose flags this gate shares (besides its parent chain and the
    populations it refers to, which always pass their flags on).
    ``max_overlap``: cluster gates — flag when the chosen cluster's Bhattacharyya overlap with
    another cluster exceeds this (poorly separated).
    """

    min_fraction: float | None = None
    max_fraction: float | None = None
    max_overlap: float | None = None
    reason: str = ""
    flag_with: tuple[str, ...] = ()

    def check_fraction(self, fraction: float, parent: str) -> list[str]:
        out = []
        suffix = f": {self.reason}" if self.reason else ""
        if not math.isfinite(fraction):
            return [f"no {parent} events to gate"] if self.min_fraction is not None else []
        if self.min_fraction is not None and fraction < self.min_fraction:
            out.append(
                f"{100 * fraction:.2f}% of {parent} (< {100 * self.min_fraction:g}%){suffix}"
            )
        if self.max_fraction is not None and fraction > self.max_fraction:
            out.append(
                f"{100 * fraction:.2f}% of {parent} (> {100 * self.max_fraction:g}%){suffix}"
            )
        return out


@dataclass(frozen=True, kw_only=True)
class ThresholdGate:
    """``kind: threshold`` — a 1-D cut, fitted per file (see the module docstring)."""

    dims: tuple[str, ...]
    method: tuple[str, ...]  # tried in order: valley, mixture, quantile, sd, mad
    keep: Literal["above", "below", "between"] = "above"
    ratio: bool = False  # threshold dims[1] / dims[0] (2 dims) instead of dims[0]
    axis: int = 0  # without ratio: the dim the cut is on (the others stay unbounded)
    search: tuple[float, float] | None = None  # valley: where the valley may lie
    valley: Literal["first", "last", "deepest"] = "deepest"
    bandwidth: float | None = None  # valley: smoothing (scaled units); None = range / 80
    min_depth: float = 0.3  # valley: 1 - density(valley) / lower flanking peak
    min_mass: float = 0.005  # valley: share of events needed on each side
    significance: float = 3.0  # valley: depth in SDs of counting noise (small files are noisy)
    components: tuple[int, int] = (2, 5)  # mixture: BIC chooses k within these bounds
    max_excluded: float | None = None  # a cut dropping more of the parent than this is rejected
    min_kept: float | None = None  # a cut keeping less of the parent than this is rejected
    q: tuple[float, ...] = ()  # quantile: one (above/below) or two (between)
    n: float = 3.0  # sd/mad: how many spreads from the centre
    of: str | None = None  # sd/mad/quantile: reference population (default: the parent)
    fallback: tuple[float, ...] | None = None  # threshold(s) when the method fails
    subsample: int = 20000
    seed: int = 0

    kind = "threshold"

    def references(self) -> set[str]:
        return {self.of} if self.of else set()


@dataclass(frozen=True)
class MixtureSpec:
    """How a cluster gate's Gaussian mixture is fitted (shared by gates with equal specs)."""

    components: tuple[int, int] = (2, 6)  # BIC chooses k within these bounds
    subsample: int = 5000
    seed: int = 0
    # "modes": components climbing to the same mode of the (equally weighted) mixture form a
    # cluster; a number: merge components whose Bhattacharyya coefficient exceeds it
    merge: float | str = "modes"
    max_iter: int = 100
    init: Literal["peaks", "kmeans++"] = "peaks"  # EM start: density peaks, or k-means++
    balance: bool = True  # fit shapes on a density-balanced subsample, then re-weigh


SelectStep = tuple[str, Any]  # ("exclude", (pops)), ("where", ((dim_i, "above", Bound), …)), …


@dataclass(frozen=True, kw_only=True)
class ClusterGate:
    """``kind: cluster`` — pick a cluster of a Gaussian mixture by rules on position."""

    dims: tuple[str, str]
    mixture: MixtureSpec = MixtureSpec()
    select: tuple[SelectStep, ...] = (("largest", None),)
    distance: float = 3.5  # region: within this many SDs (Mahalanobis) of the cluster
    shape: Literal["posterior", "ellipse"] = "posterior"
    grid: int = 128  # posterior: grid cells per axis for the region's outline
    fallback: Geometry | None = None

    kind = "cluster"

    def references(self) -> set[str]:
        refs: set[str] = set()
        for op, arg in self.select:
            if op == "exclude":
                refs.update(arg)
            elif op == "where":
                for _, _, bound in arg:
                    refs.update(bound.populations())
        return refs

    def excluded(self) -> tuple[str, ...]:
        return tuple(p for op, arg in self.select if op == "exclude" for p in arg)


@dataclass(frozen=True, kw_only=True)
class RelativeGate:
    """``kind: relative`` — a rectangle whose bounds are statistics of other populations."""

    dims: tuple[str, ...]
    min: tuple[Bound | None, ...]
    max: tuple[Bound | None, ...]

    kind = "relative"

    def references(self) -> set[str]:
        return {p for b in (*self.min, *self.max) if b is not None for p in b.populations()}


@dataclass(frozen=True, kw_only=True)
class MapGate:
    """``kind: leukomap`` — one population of a CD45/SSC leukocyte map, fitted once per file
    on ``fit_on`` (default: the parent) and shared by every gate with the same settings; see
    :mod:`cytogate.gating.leukomap`. → polygon (siblings tile the plot: disjoint)."""

    dims: tuple[str, str]
    population: str
    fit_on: str | None = None
    settings: tuple[tuple[str, Any], ...] = ()  # MapSpec / Rules overrides

    kind = "leukomap"

    def references(self) -> set[str]:
        return {self.fit_on} if self.fit_on else set()


AdaptiveGeometry = ThresholdGate | ClusterGate | RelativeGate | MapGate


def is_adaptive(geometry: object) -> bool:
    return isinstance(geometry, ThresholdGate | ClusterGate | RelativeGate | MapGate)


# --------------------------------------------------------------------------- fitting


class FitContext(Protocol):
    """What a fit may ask the engine for."""

    def values(self, population: str, dim: str) -> np.ndarray:
        """Scaled values of ``dim`` on ``population``'s events."""
        ...

    def mixture(self, key: tuple[Any, ...], fit: Any) -> Mixture:
        """The mixture fitted for ``key`` (memoised per file: sibling gates share one fit)."""
        ...

    def selection(self, population: str) -> tuple[tuple[Any, ...], tuple[int, ...]] | None:
        """(mixture key, cluster indices) a cluster gate chose, or None."""
        ...

    def record_selection(
        self, population: str, key: tuple[Any, ...], clusters: tuple[int, ...]
    ) -> None: ...

    def geometry(self, population: str) -> Geometry | None:
        """The geometry applied for ``population`` (None: not a geometric gate / skipped)."""
        ...


@dataclass
class Fit:
    """A fitted gate: its geometry (ordinary), diagnostics, and QC reasons (empty = fine)."""

    geometry: Geometry
    diagnostics: dict[str, Any] = field(default_factory=dict)
    qc: list[str] = field(default_factory=list)


def fit(spec: AdaptiveGeometry, name: str, parent: str, points: np.ndarray, ctx: FitContext) -> Fit:
    """Fit ``spec`` to ``points`` (the parent's events, m × len(dims), scaled space)."""
    if isinstance(spec, ThresholdGate):
        return fit_threshold(spec, points, ctx, parent)
    if isinstance(spec, RelativeGate):
        return fit_relative(spec, ctx)
    if isinstance(spec, MapGate):
        return fit_map_gate(spec, parent, ctx)
    from cytogate.gating.mixture import fit_cluster

    return fit_cluster(spec, name, parent, points, ctx)


def empty_gate(dims: tuple[str, ...]) -> Rectangle:
    """A gate no event can be in (``0 <= x < 0``), for a fit that found nothing."""
    return Rectangle(tuple(dims), (0.0,) * len(dims), (0.0,) * len(dims))


def subsample(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """At most ``n`` rows of ``x``, chosen by a seeded generator, in their original order."""
    if x.shape[0] <= n:
        return x
    rng = np.random.default_rng(seed)
    return x[np.sort(rng.choice(x.shape[0], n, replace=False))]


def _spread(values: np.ndarray, kind: str) -> float:
    if kind == "sd":
        return float(values.std(ddof=1))
    return MAD_TO_SD * float(np.median(np.abs(values - np.median(values))))


# ---- threshold


def fit_threshold(spec: ThresholdGate, points: np.ndarray, ctx: FitContext, parent: str) -> Fit:
    x = _ratio(points) if spec.ratio else points[:, spec.axis]
    x = subsample(x[np.isfinite(x)], spec.subsample, spec.seed)
    diag: dict[str, Any] = {"method": "/".join(spec.method), "n_fit": int(x.size)}
    qc: list[str] = []
    cuts: tuple[float, ...] | None = None
    problems: list[str] = []
    for i, method in enumerate(spec.method):
        try:
            if x.size < 10:
                raise FitError(f"only {x.size} {parent} events to fit")
            if method == "valley":
                cut, info = valley(x, spec)
                diag.update(info)
                found: tuple[float, ...] = (cut,)
            elif method == "mixture":
                cut, info = mixture_cut(x, spec)
                diag.update(info)
                found = (cut,)
            else:
                found = _statistic_cuts(spec, method, x, ctx)
            _check_plausible(spec, x, found)
        except FitError as exc:
            problems.append(f"{method}: {exc}" if len(spec.method) > 1 else str(exc))
            continue
        cuts = found
        diag["method_used"] = method
        diag["fallback"] = i > 0
        if i > 0:
            qc.append(f"{'; '.join(problems)}; {method} cut used")
        break
    if cuts is None:
        if spec.fallback is None:
            raise FitError("; ".join(problems))
        cuts = spec.fallback
        qc.append(f"{'; '.join(problems)}; fallback {', '.join(f'{c:g}' for c in cuts)} used")
        diag["method_used"] = "fallback"
        diag["fallback"] = True
    diag["threshold"] = [float(c) for c in cuts]
    return Fit(_threshold_geometry(spec, cuts, points), diag, qc)


def _implausible(spec: ThresholdGate, dropped: float) -> str:
    """Why a cut dropping this share of the parent's events is implausible ('' if it is not)."""
    if spec.max_excluded is not None and dropped > spec.max_excluded:
        return f"would drop {100 * dropped:.0f}% of events (> {100 * spec.max_excluded:g}%)"
    if spec.min_kept is not None and 1 - dropped < spec.min_kept:
        return f"would keep {100 * (1 - dropped):.1f}% of events (< {100 * spec.min_kept:g}%)"
    return ""


def _check_plausible(spec: ThresholdGate, x: np.ndarray, cuts: tuple[float, ...]) -> None:
    if spec.keep == "above":
        dropped = float(np.mean(x < cuts[0]))
    elif spec.keep == "below":
        dropped = float(np.mean(x >= cuts[0]))
    else:
        dropped = float(np.mean((x < cuts[0]) | (x >= cuts[1])))
    why = _implausible(spec, dropped)
    if why:
        raise FitError(f"cut at {', '.join(f'{c:.4g}' for c in cuts)} {why}")


def mixture_cut(x: np.ndarray, spec: ThresholdGate) -> tuple[float, dict[str, Any]]:
    """Cut between the lowest (``keep: above``) or highest (``below``) component of a 1-D
    Gaussian mixture and the rest: where that component stops being the most probable.

    k is chosen by BIC within ``components``; EM starts from equally spaced quantiles, so the
    fit is deterministic. The cut is searched between that component's mean and the next one's.
    """
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    z = subsample(x, 5000, spec.seed)
    centre = float(np.median(z))
    scale = float(np.subtract(*np.quantile(z, [0.75, 0.25]))) / 1.349 or float(z.std()) or 1.0
    u = ((z - centre) / scale)[:, None]
    best: tuple[float, Any] | None = None
    with threadpool_limits(limits=1):
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


def _ratio(points: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(points[:, 0] > 0, points[:, 1] / points[:, 0], np.nan)


def _statistic_cuts(
    spec: ThresholdGate, method: str, x: np.ndarray, ctx: FitContext
) -> tuple[float, ...]:
    if spec.of is not None:
        if spec.ratio:
            a = ctx.values(spec.of, spec.dims[0])
            b = ctx.values(spec.of, spec.dims[1])
            ref = _ratio(np.column_stack([a, b]))
        else:
            ref = ctx.values(spec.of, spec.dims[spec.axis])
        ref = subsample(ref[np.isfinite(ref)], spec.subsample, spec.seed)
        if ref.size < 3:
            raise FitError(f"reference population '{spec.of}' has {ref.size} events")
    else:
        ref = x
    if method == "quantile":
        return tuple(float(v) for v in np.quantile(ref, spec.q))
    centre = float(np.median(ref)) if method == "mad" else float(ref.mean())
    step = spec.n * _spread(ref, method)
    if spec.keep == "above":
        return (centre - step,)
    if spec.keep == "below":
        return (centre + step,)
    return (centre - step, centre + step)


def _threshold_geometry(
    spec: ThresholdGate, cuts: tuple[float, ...], points: np.ndarray
) -> Geometry:
    lo, hi = (cuts[0], cuts[1]) if spec.keep == "between" else (None, None)
    if spec.keep == "above":
        lo = cuts[0]
    elif spec.keep == "below":
        hi = cuts[0]
    if not spec.ratio:  # a range, or a rectangle open along the other dims
        n, j = len(spec.dims), spec.axis
        return Rectangle(
            tuple(spec.dims),
            tuple(lo if k == j else None for k in range(n)),
            tuple(hi if k == j else None for k in range(n)),
        )
    # r_lo <= y / x < r_hi for x > 0: a wedge from the origin, reaching past every event
    reach = float(max(2.0, 2.0 * np.nanmax(np.abs(points)) if points.size else 2.0))
    steep = reach * (1.0 + max(abs(c) for c in cuts))
    low = (reach, reach * lo) if lo is not None else (reach, -steep)
    high = (reach, reach * hi) if hi is not None else (reach, steep)
    verts = [(0.0, 0.0), low, high]
    if hi is None:
        verts.append((0.0, steep))  # close along the y axis (y / 0 = +inf is above)
    return Polygon((spec.dims[0], spec.dims[1]), tuple((float(a), float(b)) for a, b in verts))


def valley(x: np.ndarray, spec: ThresholdGate) -> tuple[float, dict[str, Any]]:
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
    grid_lo = min(lo_q, search[0]) - 3 * bw
    grid_hi = max(hi_q, search[1]) + 3 * bw
    n_bins = 512
    edges = np.linspace(grid_lo, grid_hi, n_bins + 1)
    counts, _ = np.histogram(x, edges)
    width = edges[1] - edges[0]
    sigma = bw / width
    half = math.ceil(4 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    density = np.convolve(counts, kernel / kernel.sum(), mode="same") / (x.size * width)
    centres = (edges[:-1] + edges[1:]) / 2
    cum = np.cumsum(counts) / x.size
    info: dict[str, Any] = {"bandwidth": float(bw), "search": [float(s) for s in search]}

    inside = np.flatnonzero((centres >= search[0]) & (centres <= search[1]))
    candidates = []
    # running maxima give the highest peak on each side of every grid point
    left_max = np.maximum.accumulate(density)
    right_max = np.maximum.accumulate(density[::-1])[::-1]
    for i in inside:
        if i == 0 or i == n_bins - 1:
            continue
        if not (density[i] <= density[i - 1] and density[i] < density[i + 1]):
            continue
        flank = min(left_max[i - 1], right_max[i + 1])
        if flank <= 0:
            continue
        depth = 1.0 - density[i] / flank
        below = cum[i]
        # expected events within +-1 bandwidth at the valley and at the flank peak
        c_valley, c_flank = (v * x.size * 2 * bw for v in (density[i], flank))
        z = (c_flank - c_valley) / math.sqrt(c_flank + c_valley)
        if (
            depth >= spec.min_depth
            and z >= spec.significance
            and min(below, 1 - below) >= spec.min_mass
        ):
            candidates.append((i, depth, flank))
    info["n_valleys"] = len(candidates)
    if not candidates:
        raise FitError(f"no valley in [{search[0]:g}, {search[1]:g}] (depth >= {spec.min_depth:g})")
    # among the valleys, only cuts that keep a plausible share of the parent
    dropped = {i: cum[i] if spec.keep == "above" else 1 - cum[i] for i, _, _ in candidates}
    plausible = [c for c in candidates if not _implausible(spec, dropped[c[0]])]
    if not plausible:
        i = candidates[0][0]
        why = _implausible(spec, dropped[i])
        raise FitError(f"no plausible valley (the first, at {centres[i]:.4g}, {why})")
    candidates = plausible
    if spec.valley == "first":
        i, depth, flank = candidates[0]
    elif spec.valley == "last":
        i, depth, flank = candidates[-1]
    else:
        i, depth, flank = max(candidates, key=lambda c: (c[1], -c[0]))
    floor = density[i] + 0.1 * (flank - density[i])
    a = b = i
    while a - 1 >= inside[0] and density[a - 1] <= floor:
        a -= 1
    while b + 1 <= inside[-1] and density[b + 1] <= floor:
        b += 1
    cut = float((centres[a] + centres[b]) / 2)
    info.update(
        {
            "depth": float(depth),
            "valley_density": float(density[i]),
            "fraction_below": float(np.mean(x < cut)),
        }
    )
    return cut, info


# ---- leukocyte map


def fit_map_gate(spec: MapGate, parent: str, ctx: FitContext) -> Fit:
    """The population's region of the file's leukocyte map (fitted once, memoised)."""
    from cytogate.gating import leukomap

    base = spec.fit_on or parent
    key = ("leukomap", base, spec.dims, spec.settings)

    def build() -> Any:
        x, y = (ctx.values(base, d) for d in spec.dims)
        try:
            return leukomap.fit_map(x, y, leukomap.MapSpec.from_settings(dict(spec.settings)))
        except ValueError as exc:
            raise FitError(f"leukocyte map on {base}: {exc}") from exc

    fitted = ctx.mixture(key, build)
    codes = leukomap.codes_of(spec.population)
    diag = {"method": "leukomap", "fit_on": base, **fitted.diagnostics}
    qc = list(fitted.qc.get(spec.population, []))
    if not any(fitted.present(c) for c in codes):
        return Fit(empty_gate(spec.dims), {**diag, "fallback": True}, qc)
    ring = leukomap.population_outline(fitted, codes)
    return Fit(Polygon(spec.dims, tuple((float(a), float(b)) for a, b in ring)), diag, qc)


# ---- relative


def fit_relative(spec: RelativeGate, ctx: FitContext) -> Fit:
    lo = tuple(
        None if b is None else b.evaluate(ctx, d) for b, d in zip(spec.min, spec.dims, strict=True)
    )
    hi = tuple(
        None if b is None else b.evaluate(ctx, d) for b, d in zip(spec.max, spec.dims, strict=True)
    )
    qc = [
        f"{d}: lower bound {a:.4g} is not below upper bound {b:.4g} (empty gate)"
        for d, a, b in zip(spec.dims, lo, hi, strict=True)
        if a is not None and b is not None and not a < b
    ]
    diag = {
        "method": "relative",
        "min": [None if v is None else float(v) for v in lo],
        "max": [None if v is None else float(v) for v in hi],
        "bounds": {
            d: [None if a is None else a.describe(), None if b is None else b.describe()]
            for d, a, b in zip(spec.dims, spec.min, spec.max, strict=True)
        },
    }
    return Fit(Rectangle(tuple(spec.dims), lo, hi), diag, qc)


# --------------------------------------------------------------------------- serialisation


def geometry_to_dict(geometry: Geometry) -> dict[str, Any]:
    """A JSON-ready description of an ordinary geometry (the template syntax of its kind)."""
    if isinstance(geometry, Rectangle):
        return {
            "kind": geometry.kind,
            "dims": list(geometry.dims),
            "min": list(geometry.min),
            "max": list(geometry.max),
        }
    if isinstance(geometry, Polygon):
        return {
            "kind": "polygon",
            "dims": list(geometry.dims),
            "vertices": [list(v) for v in geometry.vertices],
        }
    if isinstance(geometry, Ellipse):
        return {
            "kind": "ellipse",
            "dims": list(geometry.dims),
            "center": list(geometry.center),
            "covariance": [list(r) for r in geometry.covariance],
            "distance_square": geometry.distance_square,
        }
    raise TypeError(f"no dict form for {type(geometry).__name__}")


def json_ready(value: Any) -> Any:
    """Diagnostics with numpy scalars turned into Python numbers (for JSON/CSV)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
