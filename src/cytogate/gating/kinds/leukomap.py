"""``kind: leukomap`` — one population of the file's CD45/SSC leukocyte map
(:mod:`cytogate.gating.leukomap`; see docs/real_data.md).

The map is fitted once per file on ``fit_on`` (default: the gate's parent; the default template
fits it on the singlets, so the CD45-negative events are part of the picture) and shared by
every leukomap gate with the same dims, ``fit_on`` and ``map:`` settings; each gate takes its
population's region as a polygon, so sibling gates tile the plot and are disjoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cytogate.gating import fields as f
from cytogate.gating.fields import REQUIRED, Entry, Field
from cytogate.gating.fitting.base import Fit, FitContext, FitError, empty_gate
from cytogate.gating.gates import Polygon
from cytogate.gating.kinds.base import Kind, register
from cytogate.gating.leukomap import MapSpec, codes_of, fit_map, population_outline

POPULATIONS = ("leukocytes", "lymphocytes", "monocytes", "granulocytes", "blasts", "cd45_negative")

MAP_FIELDS = {
    x.name: x
    for x in (
        Field("bins", "grid cells per axis of the binned density", 128, f.count(16)),
        Field("smooth", "Gaussian smoothing of the density, in grid cells", 1.5, f.positive),
        Field(
            "merge", "clusters whose saddle is above this x the lower peak are one", 0.8, f.fraction
        ),
        Field("min_mass", "smaller clusters join a neighbour (share of events)", 0.002, f.fraction),
        Field(
            "significance",
            "a peak must rise this many SDs of counting noise above its saddle (0: off)",
            0.0,
            f.non_negative,
        ),
        Field("subsample", "events the map is fitted on (seeded)", 100_000, f.count(50)),
        Field("seed", "seed of the subsample", 0, f.count(0)),
        Field(
            "ssc",
            "auto (log when stored linear) | log | as_is",
            "auto",
            f.choice("auto", "log", "as_is"),
        ),
        Field(
            "ssc_decades",
            "SSC stored as a log channel fraction: decades over 0..1",
            4.0,
            f.positive,
        ),
        Field(
            "negative_gap",
            "CD45-negative: this far (scaled) below the lymphocytes",
            0.44,
            f.positive,
        ),
        Field("dim_sd", "CD45dim: more than this many lymphocyte SDs below them", 2.5, f.positive),
        Field("bright_sd", "monocytes: CD45 within this many lymphocyte SDs", 3.0, f.positive),
        Field(
            "mono_decades",
            "monocytes: SSC this many decades above the lymphocytes",
            0.2,
            f.positive,
        ),
        Field(
            "gran_decades",
            "granulocytes: SSC this many decades above the lymphocytes",
            0.55,
            f.positive,
        ),
        Field("min_valley", "blasts/monocytes: flag a valley shallower than this", 0.3, f.fraction),
        Field(
            "below_zero",
            "a cluster with this share of its events below CD45 zero is over-compensated "
            "(gated by SSC, flagged; above 1: off)",
            0.85,
            f.positive,
        ),
        Field(
            "maturation_decades",
            "a CD45-brighter blast-like cluster this many SSC decades above the blasts, joined "
            "to the granulocytes more than to them, is myeloid maturation",
            0.3,
            f.positive,
        ),
        Field(
            "split_d",
            "no monocyte cluster: split a blast cluster that is two Gaussians (a CD45dim one, one "
            "as bright as the lymphocytes at monocyte SSC; BIC) apart by this Ashman's D",
            0.8,
            f.non_negative,
        ),
        Field(
            "blast_ssc_sd",
            "blast region: ends this many of its cluster's SSC SDs above its peak where the "
            "granulocytes are nearer than the monocytes (marrow myeloid maturation)",
            3.5,
            f.positive,
        ),
    )
}


@dataclass(frozen=True, kw_only=True)
class MapGate:
    """A parsed leukomap gate: which population of which map."""

    dims: tuple[str, str]
    population: str
    fit_on: str | None = None
    settings: tuple[tuple[str, Any], ...] = ()

    kind = "leukomap"

    def references(self) -> set[str]:
        return {self.fit_on} if self.fit_on else set()


def parse(entry: Entry) -> MapGate:
    d = f.dims(entry, 2)
    sub = entry.sub("map", MAP_FIELDS)
    sub.reject_unknown(MAP_FIELDS)
    settings = tuple(sorted((name, sub.get(name)) for name in MAP_FIELDS if name in sub))
    fit_on = entry.raw("fit_on")
    if fit_on is not None and not isinstance(fit_on, str):
        raise entry.fail("fit_on", "a population name")
    return MapGate(
        dims=(d[0], d[1]),
        population=entry.get("population"),
        fit_on=fit_on,
        settings=settings,
    )


def fit_leukomap(spec: MapGate, name: str, parent: str, points: np.ndarray, ctx: FitContext) -> Fit:
    """The population's region of the file's map (fitted once per file, then shared)."""
    base = spec.fit_on or parent
    key = ("leukomap", base, spec.dims, spec.settings)

    def build() -> Any:
        x, y = (ctx.values(base, dim) for dim in spec.dims)
        # where CD45 = 0 lies on this file's scale: a cluster below it is over-compensated
        zero = float(ctx.to_scaled(spec.dims[0], np.zeros(1))[0])
        try:
            return fit_map(x, y, MapSpec.from_settings(dict(spec.settings)), zero)
        except ValueError as exc:
            raise FitError(f"leukocyte map on {base}: {exc}") from exc

    fitted = ctx.mixture(key, build)
    codes = codes_of(spec.population)
    diag = {"method": "leukomap", "fit_on": base, **fitted.diagnostics}
    qc = list(fitted.qc.get(spec.population, []))
    if not any(fitted.present(c) for c in codes):
        return Fit(empty_gate(spec.dims), {**diag, "fallback": True}, qc)
    ring = population_outline(fitted, codes)
    vertices = tuple(map(tuple, np.asarray(ring, dtype=np.float64).tolist()))  # Python floats
    return Fit(Polygon(spec.dims, vertices), diag, qc)


register(
    Kind(
        name="leukomap",
        summary="one population of a CD45/SSC leukocyte map fitted from the density's clusters",
        fields=(
            Field("dims", "CD45 and SSC marker names", REQUIRED),
            Field("population", " | ".join(POPULATIONS), REQUIRED, f.choice(*POPULATIONS)),
            Field("fit_on", "population the map is fitted on (default: the parent)"),
            Field("map", "mapping of map settings (shared map: equal settings)"),
        ),
        parse=parse,
        fit=fit_leukomap,
        produces="a polygon (siblings of one map are disjoint)",
        references=lambda spec: spec.references(),
        nested=(("`map:` fields", tuple(MAP_FIELDS.values())),),
    )
)
