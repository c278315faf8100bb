"""``kind: relative`` — a rectangle whose bounds are statistics of other populations ("CD45
below the lymphocytes' median − 3 SD"); see docs/adaptive_gating.md, "relative"."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cytogate.gating import fields as f
from cytogate.gating.fields import REQUIRED, Entry, Field
from cytogate.gating.fitting.base import Fit, FitContext
from cytogate.gating.gates import Rectangle
from cytogate.gating.kinds.base import Kind, register
from cytogate.gating.kinds.bound import BOUND_FIELDS, Bound, bound_list


@dataclass(frozen=True, kw_only=True)
class RelativeGate:
    """A parsed relative gate: one bound (or None, open) per dimension on each side."""

    dims: tuple[str, ...]
    min: tuple[Bound | None, ...]
    max: tuple[Bound | None, ...]

    kind = "relative"

    def references(self) -> set[str]:
        return {p for b in (*self.min, *self.max) if b is not None for p in b.populations()}

    def marker_dims(self) -> tuple[str, ...]:
        """The gate's dims and the markers its bounds read."""
        extra = [b.dim for b in (*self.min, *self.max) if b is not None and b.dim is not None]
        return (*self.dims, *extra)


def parse(entry: Entry) -> RelativeGate:
    dims = f.dims(entry, None)
    lo = bound_list(entry, "min", len(dims))
    hi = bound_list(entry, "max", len(dims))
    if all(b is None for b in lo + hi):
        raise entry.fail(None, "give at least one bound", label="fields 'min'/'max'")
    return RelativeGate(dims=dims, min=lo, max=hi)


def fit_relative(
    spec: RelativeGate, name: str, parent: str, points: np.ndarray, ctx: FitContext
) -> Fit:
    """Evaluate the bounds on this file's reference populations."""
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


register(
    Kind(
        name="relative",
        summary="a rectangle whose bounds are statistics of other populations",
        fields=(
            Field("dims", "marker names", REQUIRED),
            Field("min", "per dimension: a number, null, or {of, dim, stat, q, n, spread}"),
            Field("max", "per dimension: a number, null, or {of, dim, stat, q, n, spread}"),
        ),
        parse=parse,
        fit=fit_relative,
        produces="a range / rectangle",
        references=lambda spec: spec.references(),
        marker_dims=lambda spec: spec.marker_dims(),
        nested=(("bound (`min`/`max` entry) fields", tuple(BOUND_FIELDS.values())),),
    )
)
