"""Fixed gate kinds — rectangle, range, polygon, ellipse, quadrant, boolean — declared once each:
their YAML fields and how a template entry becomes a geometry of :mod:`cytogate.gating.gates`."""

from __future__ import annotations

from typing import Any

import numpy as np

from cytogate.gating import fields as f
from cytogate.gating.fields import REQUIRED, Entry, Field
from cytogate.gating.gates import QUADRANT_SIGNS, Boolean, Ellipse, Polygon, Quadrant, Rectangle
from cytogate.gating.kinds.base import Kind, register

DIMS = Field("dims", "marker names (the gate's dimensions)", REQUIRED)


def bounds(entry: Entry, name: str, n: int) -> tuple[float | None, ...]:
    """``min``/``max``: one number per dimension (``null`` = open), or one number for one dim."""
    return f.per_dimension(entry, name, n, lambda v: f.number(entry, name, v))


def _box(entry: Entry, n: int | None) -> Rectangle:
    dims = f.dims(entry, n)
    lo = bounds(entry, "min", len(dims))
    hi = bounds(entry, "max", len(dims))
    if all(v is None for v in lo + hi):
        raise entry.fail(None, "give at least one bound", label="fields 'min'/'max'")
    for a, b in zip(lo, hi, strict=True):
        if a is not None and b is not None and not a < b:
            raise entry.fail("min", f"must be below 'max' ({a} >= {b})", label="field 'min'")
    return Rectangle(dims, lo, hi)


_BOX_FIELDS = (
    DIMS,
    Field("min", "lower bound per dimension, included (null: open)"),
    Field("max", "upper bound per dimension, excluded (null: open)"),
)

register(
    Kind(
        name="rectangle",
        summary="axis-aligned box, min <= x < max",
        fields=_BOX_FIELDS,
        parse=lambda entry: _box(entry, None),
    )
)
register(
    Kind(
        name="range",
        summary="1-D interval, min <= x < max",
        fields=_BOX_FIELDS,
        parse=lambda entry: _box(entry, 1),
    )
)


def _points(entry: Entry, name: str) -> tuple[tuple[float, float], ...]:
    value = entry.raw(name)
    if not isinstance(value, list):
        raise entry.fail(name, "a list of [x, y] pairs")
    points = []
    for p in value:
        if not isinstance(p, list) or len(p) != 2:
            raise entry.fail(name, f"{p!r} is not an [x, y] pair")
        points.append((f.number(entry, name, p[0]), f.number(entry, name, p[1])))
    return tuple(points)


def _polygon(entry: Entry) -> Polygon:
    dims = f.dims(entry, 2)
    vertices = _points(entry, "vertices")
    if len(vertices) < 3:
        raise entry.fail("vertices", "at least 3 [x, y] pairs")
    return Polygon((dims[0], dims[1]), vertices)


register(
    Kind(
        name="polygon",
        summary="closed polygon on two dimensions (GatingML crossing rule)",
        fields=(DIMS, Field("vertices", "[x, y] pairs, listed once", REQUIRED)),
        parse=_polygon,
    )
)


def _ellipse(entry: Entry) -> Ellipse:
    d = f.dims(entry, 2)
    dims = (d[0], d[1])
    center = f.pair(entry, "center", entry.raw("center"))
    if "covariance" in entry:
        cov = entry.raw("covariance")
        if not (isinstance(cov, list) and len(cov) == 2):
            raise entry.fail("covariance", "a 2 x 2 matrix")
        rows = (f.pair(entry, "covariance", cov[0]), f.pair(entry, "covariance", cov[1]))
        d2 = f.number(entry, "distance_square", entry.raw("distance_square", 1.0))
        if rows[0][1] != rows[1][0] or np.any(np.linalg.eigvalsh(np.array(rows)) <= 0) or d2 <= 0:
            raise entry.fail(
                "covariance",
                "must be symmetric positive definite, with distance_square > 0",
            )
        return Ellipse(dims, center, rows, d2)
    axes = f.pair(entry, "half_axes", entry.raw("half_axes"))
    if min(axes) <= 0:
        raise entry.fail("half_axes", "both must be > 0")
    return Ellipse.from_axes(dims, center, axes, f.number(entry, "angle", entry.get("angle")))


register(
    Kind(
        name="ellipse",
        summary="ellipse (x - c)ᵀ Σ⁻¹ (x - c) <= D², boundary included",
        fields=(
            DIMS,
            Field("center", "[x, y]", REQUIRED),
            Field("half_axes", "[a, b] (with angle), instead of covariance"),
            Field("angle", "degrees anticlockwise from the x axis", 0.0),
            Field("covariance", "2 x 2 matrix Σ (GatingML form)"),
            Field("distance_square", "D² with covariance", 1.0),
        ),
        parse=_ellipse,
    )
)


def _quadrant(entry: Entry) -> Quadrant:
    d = f.dims(entry, 2)
    at = f.pair(entry, "at", entry.raw("at"))
    pops = entry.raw("populations")
    if not isinstance(pops, dict) or not pops:
        raise entry.fail(
            "populations",
            f"a mapping of population name -> one of {', '.join(QUADRANT_SIGNS)} "
            "(signs in the order of 'dims')",
        )
    signs = [str(s) for s in pops.values()]
    bad = [s for s in signs if s not in QUADRANT_SIGNS]
    if bad or len(set(signs)) != len(signs):
        raise entry.fail(
            "populations",
            f"signs must be distinct, from {', '.join(QUADRANT_SIGNS)} (got {', '.join(signs)})",
        )
    return Quadrant((d[0], d[1]), at, {str(k): str(v) for k, v in pops.items()})


register(
    Kind(
        name="quadrant",
        summary="splits its parent into up to four named populations at a point",
        fields=(
            DIMS,
            Field("at", "[x, y] dividers ('+' is >= the divider)", REQUIRED),
            Field("populations", "population name -> '++', '+-', '-+' or '--'", REQUIRED),
        ),
        parse=_quadrant,
        variants=False,
    )
)


def _boolean(entry: Entry) -> Boolean:
    op = entry.raw("op")
    if op not in ("and", "or", "not"):
        raise entry.fail("op", f"one of and, or, not (got {op!r})")
    of = entry.raw("of")
    of = [of] if isinstance(of, str) else of
    if not isinstance(of, list) or not of or not all(isinstance(o, str) for o in of):
        raise entry.fail("of", "a list of population names")
    if op == "not" and len(of) != 1:
        raise entry.fail("of", "'not' takes exactly one population")
    if op != "not" and len(of) < 2:
        raise entry.fail("of", f"'{op}' takes two or more populations")
    return Boolean(op, tuple(of))


def _operands(geometry: Any) -> set[str]:
    return set(geometry.operands)


register(
    Kind(
        name="boolean",
        summary="and/or of populations, or not of one, within the gate's parent",
        fields=(
            Field("op", "and | or | not", REQUIRED),
            Field("of", "population names", REQUIRED),
        ),
        parse=_boolean,
        references=_operands,
        marker_dims=lambda geometry: (),
        variants=False,
    )
)
