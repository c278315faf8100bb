"""``kind: cluster`` — a Gaussian mixture on two dimensions, clusters picked by position.

The mixture (:mod:`cytogate.gating.fitting.mixture`) is fitted once per file for all sibling
gates with the same parent, dims and ``mixture:`` settings; each gate then applies its
``select`` steps to the clusters — ``exclude: [pops]``, ``where: {DIM: {below: BOUND}}``,
``min_weight``, ``lowest`` / ``highest: DIM`` (optionally ``within: k`` SDs), ``largest``,
``all`` — and its region (events more probably from the chosen clusters than any other, within
``distance`` SDs) is outlined as a polygon (:mod:`cytogate.gating.fitting.contour`), or stored
as the cluster's moment ellipse (``shape: ellipse``). See docs/adaptive_gating.md, "cluster".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cytogate.gating import fields as f
from cytogate.gating.fields import REQUIRED, Entry, Field, field_table
from cytogate.gating.fitting.base import Fit, FitContext, FitError, empty_gate
from cytogate.gating.fitting.contour import region_polygon
from cytogate.gating.fitting.mixture import Mixture, MixtureSpec, bhattacharyya, fit_mixture
from cytogate.gating.gates import Ellipse, Geometry
from cytogate.gating.kinds.base import KINDS, Kind, register
from cytogate.gating.kinds.bound import BOUND_FIELDS, parse_bound


def _merge(entry: Entry, name: str, value: Any) -> float | str:
    return "modes" if value == "modes" else f.fraction(entry, name, value)


MIXTURE_FIELDS = field_table(
    (
        Field("components", "[min, max] components, BIC chooses", (2, 6), f.int_range(1, 12)),
        Field("subsample", "events the mixture is fitted on (seeded)", 5000, f.count(50)),
        Field("seed", "seed of the subsample and EM start", 0, f.count(0)),
        Field(
            "merge", "modes, or a Bhattacharyya coefficient above which to merge", "modes", _merge
        ),
        Field("max_iter", "EM iterations", 100, f.count(1)),
        Field("init", "EM start: peaks | kmeans++", "peaks", f.choice("peaks", "kmeans++")),
        Field("balance", "fit shapes on a density-balanced subsample", True, f.flag),
    )
)

PICKS = ("largest", "all")
STEPS = ("exclude", "where", "min_weight", "lowest", "highest", *PICKS)
FALLBACK_KINDS = ("rectangle", "polygon", "ellipse")

FIELDS = field_table(
    (
        Field("dims", "two marker names", REQUIRED),
        Field("mixture", f"mapping: {', '.join(MIXTURE_FIELDS)}"),
        Field("select", f"steps applied in order: {', '.join(STEPS)}", ("largest",)),
        Field("distance", "region: within this many SDs (Mahalanobis)", 3.5, f.positive),
        Field(
            "shape", "posterior (polygon) | ellipse", "posterior", f.choice("posterior", "ellipse")
        ),
        Field("grid", "posterior: grid cells per axis for the outline", 128, f.count(16, 2048)),
        Field("fallback", f"a fixed gate ({', '.join(FALLBACK_KINDS)}) used when the fit fails"),
    )
)

SelectStep = tuple[str, Any]  # ("exclude", (pops)), ("where", ((dim_i, "above", Bound), …)), …


@dataclass(frozen=True, kw_only=True)
class ClusterGate:
    """A parsed cluster gate (defaults: :data:`FIELDS`, :data:`MIXTURE_FIELDS`)."""

    dims: tuple[str, str]
    mixture: MixtureSpec
    select: tuple[SelectStep, ...] = (("largest", None),)
    distance: float = FIELDS["distance"].default
    shape: Literal["posterior", "ellipse"] = FIELDS["shape"].default
    grid: int = FIELDS["grid"].default
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

    def flag_sources(self) -> set[str]:
        """Clusters it merely excludes do not pass their flags on (a missing monocyte cluster
        does not make a blast gate doubtful)."""
        return self.references() - set(self.excluded())

    def marker_dims(self) -> tuple[str, ...]:
        extra = [
            b.dim
            for op, arg in self.select
            if op == "where"
            for _, _, b in arg
            if b.dim is not None
        ]
        return (*self.dims, *extra)


# --------------------------------------------------------------------------- parsing


def parse(entry: Entry) -> ClusterGate:
    d = f.dims(entry, 2)
    dims = (d[0], d[1])
    mix = entry.sub("mixture", MIXTURE_FIELDS)
    mix.reject_unknown(MIXTURE_FIELDS)
    mixture = MixtureSpec(**{name: mix.get(name) for name in MIXTURE_FIELDS})
    select = parse_select(entry, entry.raw("select", ["largest"]), dims)
    fallback = None
    if "fallback" in entry:
        fallback = _parse_fallback(entry, dims)
    return ClusterGate(
        dims=dims,
        mixture=mixture,
        select=select,
        distance=entry.get("distance"),
        shape=entry.get("shape"),
        grid=entry.get("grid"),
        fallback=fallback,
    )


def _parse_fallback(entry: Entry, dims: tuple[str, str]) -> Geometry:
    fb = entry.raw("fallback")
    if not isinstance(fb, dict):
        raise entry.fail("fallback", "a fixed gate (kind, vertices, ...)")
    if fb.get("kind") not in FALLBACK_KINDS:
        raise entry.fail(
            "fallback", f"kind {', '.join(FALLBACK_KINDS[:-1])} or {FALLBACK_KINDS[-1]}"
        )
    kind = KINDS[fb["kind"]]
    sub = Entry(
        {"dims": list(dims), **fb},
        entry.source,
        entry.context,
        kind.field_map,
        f.line_of(fb) or entry.line,
        prefix="fallback.",
    )
    sub.reject_unknown({"kind", *kind.field_map})
    fallback = kind.parse(sub)
    if tuple(fallback.dims) != dims:
        raise entry.fail("fallback", f"must use the gate's dims {list(dims)}")
    return fallback


def parse_select(entry: Entry, value: Any, dims: tuple[str, str]) -> tuple[SelectStep, ...]:
    """The ``select`` steps, each checked against the gate's dims."""
    steps = value if isinstance(value, list) else [value]
    if not steps:
        raise entry.fail("select", f"a list of steps ({', '.join(STEPS)})")
    return tuple(_parse_step(entry, step, dims) for step in steps)


def _parse_step(entry: Entry, step: Any, dims: tuple[str, str]) -> SelectStep:
    if isinstance(step, str) and step in PICKS:
        return (step, None)
    within = None
    if isinstance(step, dict) and "within" in step and len(step) == 2:
        step = dict(step)
        within = f.number(entry, "select.within", step.pop("within"))
        if within < 0 or not set(step) <= {"lowest", "highest"}:
            raise entry.fail("select", "'within' (>= 0) goes with lowest or highest")
    if not isinstance(step, dict) or len(step) != 1:
        raise entry.fail(
            "select",
            f"each step is one of {', '.join(PICKS)} or a one-key mapping "
            f"({', '.join(STEPS[:5])}); got {step!r}",
        )
    ((op, arg),) = step.items()
    if op == "exclude":
        pops = [arg] if isinstance(arg, str) else arg
        if not isinstance(pops, list) or not all(isinstance(p, str) for p in pops):
            raise entry.fail("select", "'exclude': a list of population names")
        return ("exclude", tuple(pops))
    if op == "where":
        return ("where", _parse_where(entry, arg, dims))
    if op == "min_weight":
        return ("min_weight", f.fraction(entry, "select.min_weight", arg))
    if op in ("lowest", "highest"):
        if arg not in dims:
            raise entry.fail("select", f"'{op}': one of the gate's dims {list(dims)}")
        return (op, (dims.index(arg), within))
    hint = f.did_you_mean(str(op), STEPS)
    raise entry.fail("select", f"unknown step {op!r}{hint} (one of {', '.join(STEPS)})")


def _parse_where(entry: Entry, arg: Any, dims: tuple[str, ...]) -> tuple[Any, ...]:
    label = "field 'select': 'where'"
    if not isinstance(arg, dict) or not arg:
        raise entry.fail("select", "a mapping DIM -> {above|below: bound}", label=label)
    out = []
    for dim, cond in arg.items():
        if dim not in dims:
            raise entry.fail(
                "select", f"{dim!r} is not one of the gate's dims {list(dims)}", label=label
            )
        if not isinstance(cond, dict) or not cond or set(cond) - {"above", "below"}:
            raise entry.fail("select", f"{dim}: a mapping with 'above' and/or 'below'", label=label)
        for side, b in cond.items():
            out.append((dims.index(dim), side, parse_bound(entry, b, f"{label}: {dim}.{side}")))
    return tuple(out)


def check_excluded(
    gate: Any, geometry: ClusterGate, by_population: dict[str, Any], entry: Entry
) -> None:
    """``exclude`` names cluster gates fitted on the same mixture (parent, dims, settings)."""
    for pop in geometry.excluded():
        other = by_population.get(pop)
        same = other is not None and any(
            isinstance(v, ClusterGate) and v.dims == geometry.dims and v.mixture == geometry.mixture
            for v in other.variants
        )
        if not same or other is None or other.parent != gate.parent:
            raise entry.fail(
                "select",
                f"'exclude' population {pop!r} must be a cluster gate with the same parent, "
                "dims and mixture settings",
            )


# --------------------------------------------------------------------------- fitting


def fit_cluster(
    spec: ClusterGate, name: str, parent: str, points: np.ndarray, ctx: FitContext
) -> Fit:
    """Fit (or reuse) the parent's mixture, select clusters, outline the region; a failed fit
    falls back to the template's fallback gate or an empty one, flagged."""
    key = ("mixture", parent, spec.dims, spec.mixture)
    diag: dict[str, Any] = {"method": "cluster"}
    try:
        mixture = ctx.mixture(key, lambda: fit_mixture(points, spec.mixture))
        diag.update(
            {
                "components": mixture.k,
                "clusters": len(mixture.clusters),
                "bic": {str(k): round(v, 3) for k, v in mixture.bic.items()},
                "n_fit": mixture.n_fit,
                "cluster_table": mixture.summary(),
            }
        )
        chosen = select_clusters(spec, mixture, key, ctx)
        comps = tuple(sorted(c for cl in chosen for c in mixture.clusters[cl]))
        others = [cl for cl in range(len(mixture.clusters)) if cl not in chosen]
        mean, cov = mixture.moments(comps)
        overlap = max(
            (bhattacharyya(mean, cov, *mixture.moments(mixture.clusters[o])) for o in others),
            default=0.0,
        )
        diag.update(
            {
                "selected": list(chosen),
                "weight": round(mixture.weight(comps), 6),
                "mean": [float(v) for v in mean],
                "overlap": round(overlap, 6),
                "fallback": False,
            }
        )
        if spec.shape == "ellipse":
            geometry: Geometry = Ellipse(
                spec.dims,
                (float(mean[0]), float(mean[1])),
                ((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
                float(spec.distance**2),
            )
        else:
            geometry = region_polygon(mixture, chosen, spec.dims, spec.distance, spec.grid)
            diag["vertices"] = len(geometry.vertices)
        ctx.record_selection(name, key, chosen)
        return Fit(geometry, diag)
    except FitError as exc:
        diag["fallback"] = True
        if spec.fallback is not None:
            return Fit(spec.fallback, diag, [f"{exc}; fallback gate used"])
        return Fit(empty_gate(spec.dims), diag, [f"{exc}; gate left empty"])


def select_clusters(
    spec: ClusterGate, mixture: Mixture, key: tuple[Any, ...], ctx: FitContext
) -> tuple[int, ...]:
    """Apply the selection steps; the chosen cluster indices, or FitError saying why none."""
    n = len(mixture.clusters)
    means = [mixture.moments(c)[0] for c in mixture.clusters]
    weights = [mixture.weight(c) for c in mixture.clusters]
    owner: dict[int, str] = {}  # cluster -> population that took it
    candidates = list(range(n))
    for op, arg in spec.select:
        before = list(candidates)
        if op == "exclude":
            for pop in arg:
                taken = _taken_by(pop, key, mixture, means, ctx)
                for cl in taken:
                    owner.setdefault(cl, pop)
                candidates = [c for c in candidates if c not in taken]
        elif op == "where":
            for j, side, bound in arg:
                value = bound.evaluate(ctx, spec.dims[j])
                candidates = [
                    c
                    for c in candidates
                    if (means[c][j] < value if side == "below" else means[c][j] >= value)
                ]
        elif op == "min_weight":
            candidates = [c for c in candidates if weights[c] >= arg]
        elif op in ("lowest", "highest") and candidates:
            j, within = arg
            pick = min if op == "lowest" else max
            best = pick(candidates, key=lambda c, j=j: (means[c][j], -c))
            if within is None:
                candidates = [best]
            else:  # keep the clusters tied with the best: within `within` SDs of it along j
                reach = within * math.sqrt(mixture.moments(mixture.clusters[best])[1][j, j])
                candidates = [c for c in candidates if abs(means[c][j] - means[best][j]) <= reach]
        elif op == "largest" and candidates:
            candidates = [max(candidates, key=lambda c: (weights[c], -c))]
        if not candidates:
            raise FitError(_why_none(spec, op, arg, before, owner, mixture, ctx))
    return tuple(sorted(candidates))


def _taken_by(
    pop: str, key: tuple[Any, ...], mixture: Mixture, means: list[np.ndarray], ctx: FitContext
) -> tuple[int, ...]:
    chosen = ctx.selection(pop)
    if chosen is not None and chosen[0] == key:
        return tuple(chosen[1])
    geometry = ctx.geometry(pop)  # pinned or otherwise not fitted on this mixture
    if geometry is None or not hasattr(geometry, "contains"):
        return ()
    inside = geometry.contains(np.asarray(means))
    return tuple(int(i) for i in np.flatnonzero(inside))


def _why_none(
    spec: ClusterGate,
    op: str,
    arg: Any,
    before: list[int],
    owner: dict[int, str],
    mixture: Mixture,
    ctx: FitContext,
) -> str:
    """Why no cluster is left; names the population a distinct component was merged into.

    A cluster another gate took "swallowed" a population when it holds two components whose
    means lie more than 2 SDs apart along a dimension (a skewed population fitted by two
    Gaussians has them closer); with nothing left to choose, that is the likely story.
    """
    for cl, pop in sorted(owner.items()):
        comps = mixture.clusters[cl]
        for a in comps:
            for b in comps:
                gap = np.abs(mixture.means[a] - mixture.means[b])
                sd = np.sqrt(
                    np.maximum(np.diag(mixture.covariances[a]), np.diag(mixture.covariances[b]))
                )
                if a < b and np.any(gap > 2 * sd):
                    return f"no cluster matches the selection: merged with {pop}"
    step = op if arg is None else f"{op}: {_describe_arg(op, arg, spec)}"
    return f"no cluster matches the selection (none left after '{step}')"


def _describe_arg(op: str, arg: Any, spec: ClusterGate) -> str:
    if op == "where":
        return ", ".join(f"{spec.dims[j]} {side} {b.describe()}" for j, side, b in arg)
    if op in ("lowest", "highest"):
        return spec.dims[arg[0]] + (f" (within {arg[1]:g} SD)" if arg[1] is not None else "")
    if op == "exclude":
        return ", ".join(arg)
    return str(arg)


register(
    Kind(
        name="cluster",
        summary="a cluster of a 2-D Gaussian mixture, picked by rules on position",
        fields=tuple(FIELDS.values()),
        parse=parse,
        fit=fit_cluster,
        produces="a polygon (or, with shape: ellipse, an ellipse)",
        references=lambda spec: spec.references(),
        flag_sources=lambda spec: spec.flag_sources(),
        marker_dims=lambda spec: spec.marker_dims(),
        check=check_excluded,
        nested=(
            ("`mixture:` fields", tuple(MIXTURE_FIELDS.values())),
            ("bound (`select: [{where: …}]`) fields", tuple(BOUND_FIELDS.values())),
        ),
    )
)
