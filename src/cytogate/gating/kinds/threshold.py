"""``kind: threshold`` — a 1-D cut fitted per file, on one dimension or on the ratio of two.

Methods (tried in order, the first plausible cut wins): ``valley`` (density minimum between two
peaks), ``mixture`` (edge of a BIC-chosen 1-D Gaussian mixture, as openCyto's flowClust 1-D
gate), ``quantile``, ``sd`` / ``mad`` (centre ± n spreads of a reference population). The cut
becomes a range (or a ratio wedge polygon); see docs/adaptive_gating.md, "threshold".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cytogate.gating import fields as f
from cytogate.gating.fields import REQUIRED, Entry, Field, field_table
from cytogate.gating.fitting.base import Fit, FitContext, FitError, spread, subsample
from cytogate.gating.fitting.density1d import implausible, mixture_cut, valley
from cytogate.gating.gates import Geometry, Polygon, Rectangle
from cytogate.gating.kinds.base import Kind, register

METHODS = ("valley", "mixture", "quantile", "sd", "mad")

FIELDS = field_table(
    (
        Field("dims", "marker(s); two with ratio", REQUIRED),
        Field("method", f"one of {', '.join(METHODS)}, or a list tried in order", REQUIRED),
        Field("keep", "above | below | between", "above", f.choice("above", "below", "between")),
        Field("ratio", "cut dims[1] / dims[0] instead of one dimension", False, f.flag),
        Field("axis", "the dimension of the cut (needed with more than one dim)"),
        Field("search", "valley: [low, high] where the valley may lie"),
        Field("valley", "valley: which valley", "deepest", f.choice("deepest", "first", "last")),
        Field(
            "bandwidth", "valley: smoothing in scaled units (null: range / 80)", None, f.positive
        ),
        Field("min_depth", "valley: 1 - density(valley) / lower flanking peak", 0.3, f.fraction),
        Field("min_mass", "valley: share of events needed on each side", 0.005, f.fraction),
        Field("significance", "valley: depth in SDs of counting noise", 3.0, f.non_negative),
        Field(
            "components", "mixture: [min, max] components, BIC chooses", (2, 5), f.int_range(2, 8)
        ),
        Field(
            "max_excluded", "reject a cut dropping more of the parent than this", None, f.fraction
        ),
        Field("min_kept", "reject a cut keeping less of the parent than this", None, f.fraction),
        Field("q", "quantile: one quantile, or [low, high] with keep: between", ()),
        Field("n", "sd / mad: how many spreads from the centre", 3.0, f.non_negative),
        Field("of", "sd / mad / quantile: reference population (default: the parent)"),
        Field("fallback", "threshold(s) used, and flagged, when every method fails"),
        Field("subsample", "events the cut is fitted on (seeded)", 20000, f.count(10)),
        Field("seed", "seed of the subsample", 0, f.count(0)),
    )
)


def _default(name: str) -> Any:
    return FIELDS[name].default


@dataclass(frozen=True, kw_only=True)
class ThresholdGate:
    """A parsed threshold gate (defaults: :data:`FIELDS`)."""

    dims: tuple[str, ...]
    method: tuple[str, ...]  # tried in order
    keep: Literal["above", "below", "between"] = _default("keep")
    ratio: bool = _default("ratio")  # threshold dims[1] / dims[0] (2 dims) instead of dims[0]
    axis: int = 0  # without ratio: the dim the cut is on (the others stay unbounded)
    search: tuple[float, float] | None = _default("search")
    valley: Literal["first", "last", "deepest"] = _default("valley")
    bandwidth: float | None = _default("bandwidth")
    min_depth: float = _default("min_depth")
    min_mass: float = _default("min_mass")
    significance: float = _default("significance")
    components: tuple[int, int] = _default("components")
    max_excluded: float | None = _default("max_excluded")
    min_kept: float | None = _default("min_kept")
    q: tuple[float, ...] = _default("q")
    n: float = _default("n")
    of: str | None = _default("of")
    fallback: tuple[float, ...] | None = _default("fallback")
    subsample: int = _default("subsample")
    seed: int = _default("seed")

    kind = "threshold"

    def references(self) -> set[str]:
        return {self.of} if self.of else set()


def parse(entry: Entry) -> ThresholdGate:
    ratio = entry.get("ratio")
    dims = f.dims(entry, 2 if ratio else None)
    axis = entry.raw("axis", dims[0])
    if ratio and "axis" in entry:
        raise entry.fail("axis", "a ratio uses both dims")
    if not ratio and ((len(dims) > 1 and "axis" not in entry) or axis not in dims):
        raise entry.fail(
            "axis",
            f"the dimension of the cut, one of {list(dims)} (needed with more than one dim; "
            "the others stay unbounded)",
        )
    methods = _methods(entry)
    keep = entry.get("keep")
    one_cut = {"valley", "mixture"} & set(methods)
    if one_cut and keep == "between":
        raise entry.fail("keep", f"{' and '.join(sorted(one_cut))} give one cut (above or below)")
    values: dict[str, Any] = {
        name: entry.get(name)
        for name in (
            "valley",
            "bandwidth",
            "min_depth",
            "min_mass",
            "significance",
            "components",
            "max_excluded",
            "min_kept",
            "subsample",
            "seed",
        )
    }
    if "search" in entry:
        search = f.pair(entry, "search", entry.raw("search"))
        if not search[0] < search[1]:
            raise entry.fail("search", "[low, high] with low < high")
        values["search"] = search
    n_cuts = 2 if keep == "between" else 1
    values.update(_statistic_fields(entry, methods, n_cuts))
    if "fallback" in entry:
        fb = entry.raw("fallback")
        fbs = fb if isinstance(fb, list) else [fb]
        if len(fbs) != n_cuts:
            raise entry.fail("fallback", f"{n_cuts} threshold(s)")
        values["fallback"] = tuple(f.number(entry, "fallback", v) for v in fbs)
    return ThresholdGate(
        dims=dims,
        axis=0 if ratio else dims.index(axis),
        method=tuple(methods),
        keep=keep,
        ratio=ratio,
        **values,
    )


def _methods(entry: Entry) -> list[str]:
    methods = entry.raw("method")
    methods = [methods] if isinstance(methods, str) else methods
    if (
        not isinstance(methods, list)
        or not methods
        or any(m not in METHODS for m in methods)
        or len(set(methods)) != len(methods)
    ):
        hint = (
            f.did_you_mean(str(methods[0]), METHODS)
            if isinstance(methods, list) and methods
            else ""
        )
        raise entry.fail(
            "method",
            f"one of {', '.join(METHODS)}, or a list of them tried in order "
            f"(got {entry.raw('method')!r}){hint}",
        )
    return methods


def _statistic_fields(entry: Entry, methods: list[str], n_cuts: int) -> dict[str, Any]:
    """``q``, ``n`` and ``of``, which only some methods take."""
    out: dict[str, Any] = {}
    if "quantile" in methods:
        q = entry.raw("q")
        qs = q if isinstance(q, list) else [q]
        if q is None or len(qs) != n_cuts:
            wanted = "two quantiles [low, high]" if n_cuts == 2 else "a quantile"
            raise entry.fail("q", f"{wanted} between 0 and 1")
        out["q"] = tuple(f.fraction(entry, "q", v) for v in qs)
    elif "q" in entry:
        raise entry.fail("q", "only for method quantile")
    if {"sd", "mad"} & set(methods):
        out["n"] = entry.get("n")
    elif "n" in entry:
        raise entry.fail("n", "only for methods sd and mad")
    if "of" in entry:
        if not {"quantile", "sd", "mad"} & set(methods):
            raise entry.fail("of", "a reference population is for quantile, sd and mad")
        if not isinstance(entry.raw("of"), str):
            raise entry.fail("of", "a population name")
        out["of"] = entry.raw("of")
    return out


def fit_threshold(
    spec: ThresholdGate, name: str, parent: str, points: np.ndarray, ctx: FitContext
) -> Fit:
    """Try the gate's methods in order; the first plausible cut (or the fallback) wins."""
    rows = subsample(points, spec.subsample, spec.seed)  # bounded: the cost is not per event
    x = _ratio(rows) if spec.ratio else rows[:, spec.axis]
    x = x[np.isfinite(x)]
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


def _check_plausible(spec: ThresholdGate, x: np.ndarray, cuts: tuple[float, ...]) -> None:
    if spec.keep == "above":
        dropped = float(np.mean(x < cuts[0]))
    elif spec.keep == "below":
        dropped = float(np.mean(x >= cuts[0]))
    else:
        dropped = float(np.mean((x < cuts[0]) | (x >= cuts[1])))
    why = implausible(spec, dropped)
    if why:
        raise FitError(f"cut at {', '.join(f'{c:.4g}' for c in cuts)} {why}")


def _ratio(points: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(points[:, 0] > 0, points[:, 1] / points[:, 0], np.nan)


def _statistic_cuts(
    spec: ThresholdGate, method: str, x: np.ndarray, ctx: FitContext
) -> tuple[float, ...]:
    if spec.of is not None:
        limit = (spec.subsample, spec.seed)
        if spec.ratio:
            a = ctx.values(spec.of, spec.dims[0], limit)
            b = ctx.values(spec.of, spec.dims[1], limit)
            ref = _ratio(np.column_stack([a, b]))
        else:
            ref = ctx.values(spec.of, spec.dims[spec.axis], limit)
        ref = ref[np.isfinite(ref)]
        if ref.size < 3:
            raise FitError(f"reference population '{spec.of}' has {ref.size} events")
    else:
        ref = x
    if method == "quantile":
        return tuple(float(v) for v in np.quantile(ref, spec.q))
    centre = float(np.median(ref)) if method == "mad" else float(ref.mean())
    step = spec.n * spread(ref, method)
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


register(
    Kind(
        name="threshold",
        summary="a 1-D cut on one dimension or on the ratio of two",
        fields=tuple(FIELDS.values()),
        parse=parse,
        fit=fit_threshold,
        produces="a range (a rectangle open along other dims), or a ratio wedge polygon",
        references=lambda spec: spec.references(),
    )
)
