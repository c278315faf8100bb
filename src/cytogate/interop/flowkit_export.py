"""Express a cytogate template, resolved for one file, as a FlowKit ``GatingStrategy``.

Why: FlowKit (and, through GatingML 2.0, FlowJo) is the reference implementation our users
trust. Translating our gates into FlowKit's model lets them check our gates in their own tools
(docs/architecture.md §2) and lets our tests compare cytogate's masks with FlowKit's, event
for event.

A template names *markers* and may offer several geometry *variants* per gate; FlowKit/GatingML
name *channels* ($PnN) and have exactly one geometry per gate. So a strategy is always built for
one file: each marker is resolved to that file's channel and each gate uses the variant the
engine chooses for that file. Pass a :class:`~cytogate.gating.engine.GatingResult` to reuse
exactly what the engine did, or a template and a sample to resolve the same way without gating.

How each part maps (GatingML 2.0 names; formulas checked against FlowKit 1.3 / flowutils):

* compensation: an explicit ``Matrix`` (id ``spillover``) holding the very matrix the engine
  used, in the same channel order, so FlowKit's ``flowutils.compensate`` call is the same
  computation as ours. Dimensions on channels outside the matrix (scatter) are
  ``uncompensated``. With ``fcs_compensation=True`` the file's own keyword is referenced instead
  (``FCS``), which makes an exported document portable across files of one instrument.
* ``linear`` ``(x - bottom) / (top - bottom)`` = ``flin(x, T, A) = (x + A) / (T + A)`` with
  ``T = top`` and ``A = -bottom`` (bit-identical: ``x + (-b)`` is the same IEEE operation as
  ``x - b``).
* ``log`` = ``flog(T, M)`` and ``logicle`` = ``logicle(T, W, M, A)``, same flowutils code;
  ``"range"`` parameters are the channel's $PnR. One deliberate difference: cytogate puts
  non-positive values on a log scale at ``-1/M`` (one decade below the scale) so gates see them
  as "low"; GatingML leaves them undefined (FlowKit gives -inf for 0, NaN for x < 0). A gate
  that reaches down to ``-1/M`` on a log dimension therefore may disagree on such events, and
  :func:`to_flowkit_strategy` warns (:class:`FlowKitAgreementWarning`) when a gate does.
* ``arcsinh`` ``asinh(x / c)`` has no parameter-for-parameter GatingML twin, but ``fasinh(x,
  T, M, A) = (asinh(x sinh(M ln 10) / T) + A ln 10) / ((M + A) ln 10)`` equals it with ``A = 0``,
  ``M = 1 / ln 10`` and ``T = c sinh(1)``. ``M`` is the double for which ``M * ln(10)`` rounds
  to exactly 1.0, so the scaled values (and therefore all gate coordinates) agree to the last
  bit of ``x / c`` (flowutils computes ``x * (sinh(1) / T)``): only an event within about one
  ulp of a gate edge can fall differently.
* gates: rectangle/range → ``RectangleGate`` (a ``None`` bound stays open), polygon →
  ``PolygonGate``, ellipse → ``EllipsoidGate`` (mean, covariance, distance square), quadrant →
  ``QuadrantGate`` (one divider per dimension, "+" = ``[at, ∞)``, "-" = ``(-∞, at)``), boolean →
  ``BooleanGate`` (and/or/not of gate references), in the same hierarchy. A quadrant gate keeps
  its name as the FlowKit QuadrantGate and its populations become the quadrants.
* input values: FlowKit reads the file itself. Where its reader deliberately differs from
  :func:`cytogate.io.fcs.read_fcs` (float channels with ``$PnG != 1`` or a log ``$PnE``, gain on
  integer log channels, ``Time`` with ``$TIMESTEP``; see :mod:`cytogate.io.fcs`), a gate on such a
  channel sees other numbers in FlowKit; :func:`to_flowkit_strategy` warns for gated channels.
* an optional gate the engine skipped (no variant fits the file) passes its parent's events
  through; it becomes a range gate with no bounds on the file's first channel, which FlowKit
  evaluates as "every event" (the GatingML 2.0 schema accepts it, though the specification's
  text asks for a bound, so other readers may not; a skipped gate is best fixed in the
  template).

flowkit is imported inside the functions only, so ``import cytogate`` stays light.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cytogate.errors import CytogateError, GatingError
from cytogate.gating.gates import Boolean, Ellipse, Geometry, Polygon, Quadrant, Rectangle
from cytogate.gating.template import ROOT, GateSpec, Template, load_template
from cytogate.model.panel import ResolvedMarker

if TYPE_CHECKING:  # pragma: no cover
    import flowkit
    import pandas as pd

    from cytogate.gating.engine import GatingResult
    from cytogate.io.fcs import Sample

__all__ = [
    "FlowKitAgreementWarning",
    "export_gatingml",
    "flowkit_memberships",
    "strategy_from_outcome",
    "to_flowkit_strategy",
    "write_gatingml",
]

MATRIX_ID = "spillover"
# The double M for which flowutils' divisor (M + 0) * ln(10) is exactly 1.0 (see module doc).
ASINH_M = 0.4342944819032518


class FlowKitAgreementWarning(UserWarning):
    """A translated gate may include events differently in FlowKit than in cytogate."""


@dataclass(frozen=True)
class _Planned:
    """One gate of the template as applied to one file."""

    spec: GateSpec
    geometry: Geometry | None  # None: optional gate skipped for this file
    markers: tuple[ResolvedMarker, ...]  # one per geometry dimension


@dataclass(frozen=True)
class _Plan:
    template: Template
    sample: Sample
    gates: tuple[_Planned, ...]
    spillover: pd.DataFrame | None  # the matrix the engine used (None: uncompensated)
    from_file: bool  # the matrix is the file's own spillover keyword
    scales: Mapping[str, Any] = field(default_factory=dict)  # marker -> Scale applied (per file)


# --------------------------------------------------------------------------- public API


def to_flowkit_strategy(
    source: GatingResult | Template | str | os.PathLike[str],
    sample: Sample | None = None,
    *,
    compensation: str | pd.DataFrame | None = None,
    reference: Mapping[str, str] | None = None,
    fcs_compensation: bool = False,
) -> flowkit.GatingStrategy:
    """Build the FlowKit GatingStrategy equivalent to ``source`` on ``sample``.

    Args:
        source: a :class:`GatingResult` (its sample, compensation, resolved channels and chosen
            variants are used as they are), or a template (object, bundled name or path), which
            is resolved for ``sample`` exactly as :func:`cytogate.gating.engine.gate` would.
        sample: the file; required with a template, optional (and must be the result's) with a
            result.
        compensation: as in :func:`~cytogate.gating.engine.gate` ("file", "none", a CSV path
            or a labelled matrix). With a result it is only needed when the engine was given a
            matrix object by the caller (a result does not keep the matrix itself).
        reference: marker -> $PnN of the matched stained tube (isotype tubes), as in ``gate``.
        fcs_compensation: reference the file's own spillover keyword (GatingML ``FCS``) rather
            than embedding the matrix. Only when the engine used the file's keyword.

    Raises:
        CytogateError: the template or file cannot be expressed (see the message).
    """
    return _strategy(_plan(source, sample, compensation, reference), fcs_compensation)


def strategy_from_outcome(
    outcome: Any, template: Template, sample: Sample, *, fcs_compensation: bool = False
) -> flowkit.GatingStrategy:
    """The FlowKit GatingStrategy of the gates a batch applied to one file, from its recorded
    :class:`~cytogate.study.outcome.FileOutcome` (geometries, channels, scales, matrix), so an
    export shows exactly what the batch did without gating again. ``sample``: the file."""
    return _strategy(_plan_from_outcome(outcome, template, sample), fcs_compensation)


def _strategy(plan: _Plan, fcs_compensation: bool) -> flowkit.GatingStrategy:
    import flowkit as fk

    comp_ref_of = _compensation_refs(plan, fcs_compensation)
    strategy = fk.GatingStrategy()
    if plan.spillover is not None and not fcs_compensation:
        strategy.add_comp_matrix(MATRIX_ID, _matrix(plan))

    _warn_reader_differences(plan)
    xforms = _Transforms(plan, strategy)
    node_path: dict[str, tuple[str, ...]] = {ROOT: ("root",)}
    for planned in plan.gates:
        spec, geometry = planned.spec, planned.geometry
        parent_path = node_path[spec.parent]
        if geometry is None:
            first = str(plan.sample.channels["pnn"].iloc[0])
            fk_gate: Any = fk.gates.RectangleGate(
                spec.name, [fk.Dimension(first, "uncompensated", None, None, None)]
            )
        elif isinstance(geometry, Boolean):
            refs = [
                {"ref": op, "path": node_path[op][:-1], "complement": False}
                for op in geometry.operands
            ]
            fk_gate = fk.gates.BooleanGate(spec.name, geometry.op, refs)
        else:
            fk_gate = _geometry_gate(fk, spec.name, geometry, planned.markers, xforms, comp_ref_of)
            xforms.warn_log_floor(spec.name, geometry, planned.markers)
        strategy.add_gate(fk_gate, parent_path)
        if isinstance(geometry, Quadrant):
            for pop in geometry.populations:
                node_path[pop] = (*parent_path, spec.name, pop)
        else:
            node_path[spec.name] = (*parent_path, spec.name)
    return strategy


def export_gatingml(
    source: GatingResult | Template | str | os.PathLike[str],
    path: str | os.PathLike[str],
    sample: Sample | None = None,
    **options: Any,
) -> Path:
    """Write ``source`` (a result, or a template with ``sample``) as a GatingML 2.0 document.

    Uses FlowKit's writer on :func:`to_flowkit_strategy`'s strategy (``options`` are passed on),
    so FlowJo/FlowKit users can load our gates. One repair: FlowKit 1.3 writes a quadrant's
    position as ``2 * divider`` or ``divider / 2``, which lands on the wrong side of a divider
    at or below zero; positions are rewritten to lie strictly inside each quadrant. The file is
    written to a temporary name and renamed, so a crash never leaves half a document.
    """
    strategy = to_flowkit_strategy(source, sample, **options)
    return write_gatingml(strategy, _template_of(source), path)


def write_gatingml(
    strategy: flowkit.GatingStrategy, template: Template, path: str | os.PathLike[str]
) -> Path:
    """Write a strategy built here (from a result or a batch outcome) as GatingML 2.0, with
    the quadrant-position repair of :func:`export_gatingml`."""
    import io

    import flowkit as fk
    from lxml import etree

    names = template.population_names() + [g.name for g in template.gates]
    bad = sorted({n for n in names if _ncname(n) != n})
    if bad:
        warnings.warn(
            f"GatingML ids must be XML names (letters, digits, '_', '-', '.'; not starting with "
            f"a digit): {', '.join(map(repr, bad))} are not, so schema-validating readers may "
            "reject the document (FlowKit reads it)",
            FlowKitAgreementWarning,
            stacklevel=3,
        )
    buffer = io.BytesIO()
    fk.export_gatingml(strategy, buffer)
    root = etree.fromstring(buffer.getvalue())
    _fix_quadrant_positions(root, strategy)
    payload = etree.tostring(root, encoding="utf-8", xml_declaration=True, pretty_print=True)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(payload)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def flowkit_memberships(
    fk_results: Any, source: GatingResult | Template | str | os.PathLike[str]
) -> dict[str, np.ndarray]:
    """Population -> boolean mask over all events from FlowKit ``GatingResults``.

    Population names are unique within a template, so each is looked up by name; the result
    has the same keys, in the same order, as :attr:`GatingResult.populations`.
    """
    template = _template_of(source)
    return {
        pop: np.asarray(fk_results.get_gate_membership(pop), dtype=bool)
        for pop in template.population_names()
    }


# --------------------------------------------------------------------------- planning


def _template_of(source: Any) -> Template:
    if isinstance(source, Template | str | os.PathLike):
        return load_template(source)
    return source.template


def _plan(
    source: Any,
    sample: Sample | None,
    compensation: str | pd.DataFrame | None,
    reference: Mapping[str, str] | None,
) -> _Plan:
    if not isinstance(source, Template | str | os.PathLike):
        return _plan_from_result(source, sample, compensation)
    if sample is None:
        raise CytogateError("to_flowkit_strategy: a template needs the sample it is resolved for")
    # Gate the sample and export what the engine did: the variant it chose, the channels it
    # resolved and (for data-driven gates) the geometry it fitted to this file.
    from cytogate.gating.engine import gate

    result = gate(sample, load_template(source), compensation=compensation, reference=reference)
    return _plan_from_result(result, sample, None)


def _plan_from_result(
    result: GatingResult, sample: Sample | None, compensation: str | pd.DataFrame | None
) -> _Plan:
    if sample is not None and sample is not result.sample:
        raise CytogateError(
            "to_flowkit_strategy: the sample given is not the one the result was gated on"
        )
    template = result.template
    specs = {spec.name: spec for spec in template.gates}
    planned = []
    for applied in result.gates:
        spec = specs[applied.name]
        if applied.status != "applied" or applied.geometry is None:
            planned.append(_Planned(spec, None, ()))
            continue
        markers = tuple(result.markers[d] for d in applied.geometry.dims)
        planned.append(_Planned(spec, applied.geometry, markers))
    if compensation is not None:
        matrix, from_file = _choose_matrix(result.sample, template.compensation, compensation)
    else:  # exactly the matrix the engine used
        matrix = result.spillover
        from_file = result.compensation.startswith("file spillover keyword")
    scales = {}
    for planned_gate in planned:
        for marker in planned_gate.markers:
            scales[marker.marker] = result.scale_for(marker.marker)
    return _Plan(template, result.sample, tuple(planned), matrix, from_file, scales)


def _plan_from_outcome(outcome: Any, template: Template, sample: Sample) -> _Plan:
    import pandas as pd

    if not outcome.ok:
        raise CytogateError(f"{outcome.file}: not gated ({outcome.error})")
    specs = {spec.name: spec for spec in template.gates}
    pns = [str(v) for v in sample.channels["pns"]]
    planned = []
    for record in outcome.gates:
        spec = specs[record.name]
        if record.status != "applied" or record.geometry is None:
            planned.append(_Planned(spec, None, ()))
            continue
        markers = []
        for dim in record.geometry.dims:
            rec = outcome.dimensions[dim]
            markers.append(ResolvedMarker(dim, rec.index, rec.channel, pns[rec.index], "pnn"))
        planned.append(_Planned(spec, record.geometry, tuple(markers)))
    matrix = None
    if outcome.spillover is not None:
        names = list(outcome.spillover.channels)
        matrix = pd.DataFrame(outcome.spillover.matrix, index=names, columns=names)
    from_file = outcome.compensation.startswith("file spillover keyword")
    scales = {dim: rec.scale for dim, rec in outcome.dimensions.items()}
    return _Plan(template, sample, tuple(planned), matrix, from_file, scales)


def _choose_matrix(
    sample: Sample, template_choice: str, override: str | pd.DataFrame | None
) -> tuple[pd.DataFrame | None, bool]:
    """The spillover matrix the engine uses for this choice (same rules as the engine)."""
    from cytogate.model.transforms import read_spillover_csv

    choice = template_choice if override is None else override
    if isinstance(choice, str):
        if choice == "none":
            return None, False
        if choice == "file":
            return sample.spillover, sample.spillover is not None
        return read_spillover_csv(choice), False
    return choice, False


# --------------------------------------------------------------------------- building blocks


def _matrix(plan: _Plan) -> Any:
    import flowkit as fk

    assert plan.spillover is not None
    matrix = plan.spillover
    names = [str(c) for c in matrix.columns]
    if list(matrix.index) == list(matrix.columns):
        matrix = matrix.loc[names, names]
    pnn = [str(v) for v in plan.sample.channels["pnn"]]
    pns = [str(v) for v in plan.sample.channels["pns"]]
    missing = [n for n in names if n not in pnn]
    if missing:
        raise GatingError(
            f"{plan.sample.path.name}: spillover names channel(s) {', '.join(missing)} not in "
            f"the file (channels: {', '.join(pnn)})"
        )
    fluorochromes = [pns[pnn.index(n)] or n for n in names]
    return fk.Matrix(matrix.to_numpy(dtype=np.float64), names, fluorochromes)


def _compensation_refs(plan: _Plan, fcs_compensation: bool) -> dict[str, str]:
    """$PnN -> GatingML compensation-ref for every channel (``uncompensated`` by default)."""
    pnn = [str(v) for v in plan.sample.channels["pnn"]]
    refs = dict.fromkeys(pnn, "uncompensated")
    if plan.spillover is None:
        return refs
    if fcs_compensation and not plan.from_file:
        raise CytogateError(
            "to_flowkit_strategy: fcs_compensation=True references the file's spillover "
            "keyword, but this gating used another matrix"
        )
    for name in plan.spillover.columns:
        refs[str(name)] = "FCS" if fcs_compensation else MATRIX_ID
    return refs


def _warn_reader_differences(plan: _Plan) -> None:
    """Warn for gated channels whose values FlowKit's reader computes differently from ours."""
    sample = plan.sample
    datatype = str(sample.keywords.get("$DATATYPE", "")).strip().upper()
    seen: set[int] = set()
    for planned in plan.gates:
        for marker in planned.markers:
            if marker.index in seen:
                continue
            seen.add(marker.index)
            row = sample.channels.iloc[marker.index]
            try:
                log_decades = float(str(row["pne"]).split(",")[0])
            except ValueError:
                log_decades = 0.0
            gain = float(row["png"])
            causes = []
            if datatype in ("F", "D") and gain != 1.0:
                causes.append(f"FlowKit divides float channels by $PnG ({gain:g}), cytogate not")
            if datatype in ("F", "D") and log_decades > 0:
                causes.append("FlowKit exponentiates a float channel that claims log ($PnE)")
            if datatype not in ("F", "D") and log_decades > 0 and gain != 1.0:
                causes.append("FlowKit divides a log channel by $PnG, cytogate not")
            if marker.pnn == "Time" and "$TIMESTEP" in sample.keywords:
                causes.append("FlowKit multiplies Time by $TIMESTEP, cytogate not")
            if causes:
                warnings.warn(
                    f"{sample.path.name}: channel {marker.pnn} ({marker.marker}) is gated but "
                    f"read differently: {'; '.join(causes)}; FlowKit's gates may differ",
                    FlowKitAgreementWarning,
                    stacklevel=3,
                )


def _ncname(text: str) -> str:
    """A GatingML id (XML NCName) made from ``text``."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", text)
    return clean if re.match(r"[A-Za-z_]", clean) else f"_{clean}"


class _Transforms:
    """One FlowKit transform per marker (its scale, with $PnR resolved for its channel)."""

    def __init__(self, plan: _Plan, strategy: Any) -> None:
        self.plan = plan
        self.strategy = strategy
        self.ids: dict[str, tuple[str, float]] = {}  # marker -> (transform id, coordinate factor)

    def ref(self, marker: ResolvedMarker) -> tuple[str, float]:
        """Transform id for ``marker`` and the factor taking our coordinates to FlowKit's."""
        if marker.marker in self.ids:
            return self.ids[marker.marker]
        import flowkit as fk

        scale = self.plan.scales.get(marker.marker) or self.plan.template.scale_for(
            marker.marker, self.plan.sample, marker.index
        )
        pnr = float(self.plan.sample.channels["pnr"].iloc[marker.index])
        p = scale.params

        def value(key: str) -> float:
            return pnr if p[key] == "range" else float(p[key])

        factor = 1.0
        xform: Any
        if scale.kind == "linear":
            bottom = float(p["bottom"])
            xform = fk.transforms.LinearTransform(param_t=value("top"), param_a=0.0 - bottom)
        elif scale.kind == "log":
            xform = fk.transforms.LogTransform(param_t=value("T"), param_m=float(p["M"]))
        elif scale.kind == "logicle":
            xform = fk.transforms.LogicleTransform(
                param_t=value("T"),
                param_w=float(p["W"]),
                param_m=float(p["M"]),
                param_a=float(p["A"]),
            )
        elif scale.kind == "arcsinh":
            ln10 = np.log(10)
            top = float(p["cofactor"]) * float(np.sinh(ASINH_M * ln10))
            xform = fk.transforms.AsinhTransform(param_t=top, param_m=ASINH_M, param_a=0.0)
            factor = float(1.0 / ((ASINH_M + 0.0) * ln10))  # 1.0 exactly; kept for clarity
        else:  # pragma: no cover - Scale.from_spec admits no other kind
            raise NotImplementedError(f"no GatingML transform for scale {scale.kind!r}")
        taken = {xid for xid, _ in self.ids.values()}
        xid = base = _ncname(f"{scale.kind}_{marker.marker}")
        n = 2
        while xid in taken:
            xid, n = f"{base}_{n}", n + 1
        self.strategy.add_transform(xid, xform)
        self.ids[marker.marker] = (xid, factor)
        return xid, factor

    def warn_log_floor(
        self, gate: str, geometry: Geometry, markers: tuple[ResolvedMarker, ...]
    ) -> None:
        """Warn when a gate reaches the place cytogate puts non-positive values of a log dim."""
        for j, marker in enumerate(markers):
            scale = self.plan.template.scale_for(marker.marker)
            if scale.kind != "log":
                continue
            floor = -1.0 / float(scale.params["M"])
            if _lowest(geometry, j) <= floor:
                warnings.warn(
                    f"gate '{gate}': {marker.marker} ({marker.pnn}) is on a log scale and the "
                    f"gate reaches {floor:.4g}, where cytogate places non-positive values; "
                    "GatingML/FlowKit leave them undefined (x = 0 -> -inf, x < 0 -> NaN), so "
                    "such events may be gated differently",
                    FlowKitAgreementWarning,
                    stacklevel=3,
                )


def _lowest(geometry: Geometry, j: int) -> float:
    """Lowest coordinate the gate's region reaches along dimension ``j``."""
    if isinstance(geometry, Rectangle):
        lo = geometry.min[j]
        return -math.inf if lo is None else lo
    if isinstance(geometry, Polygon):
        return min(v[j] for v in geometry.vertices)
    if isinstance(geometry, Ellipse):
        return geometry.center[j] - math.sqrt(geometry.covariance[j][j] * geometry.distance_square)
    if isinstance(geometry, Quadrant):
        signs = {s[j] for s in geometry.populations.values()}
        return -math.inf if "-" in signs else geometry.at[j]
    return math.inf  # pragma: no cover - booleans have no dimensions


def _geometry_gate(
    fk: Any,
    name: str,
    geometry: Geometry,
    markers: tuple[ResolvedMarker, ...],
    xforms: _Transforms,
    comp_ref_of: dict[str, str],
) -> Any:
    refs = [xforms.ref(m) for m in markers]
    factors = [f for _, f in refs]

    def dim(j: int, lo: float | None = None, hi: float | None = None) -> Any:
        m = markers[j]
        return fk.Dimension(
            m.pnn,
            compensation_ref=comp_ref_of[m.pnn],
            transformation_ref=refs[j][0],
            range_min=None if lo is None else lo * factors[j],
            range_max=None if hi is None else hi * factors[j],
        )

    if isinstance(geometry, Rectangle):
        dims = [
            dim(j, lo, hi)
            for j, (lo, hi) in enumerate(zip(geometry.min, geometry.max, strict=True))
        ]
        return fk.gates.RectangleGate(name, dims)
    if isinstance(geometry, Polygon):
        vertices = [[x * factors[0], y * factors[1]] for x, y in geometry.vertices]
        return fk.gates.PolygonGate(name, [dim(0), dim(1)], vertices)
    if isinstance(geometry, Ellipse):
        f = np.asarray(factors)
        cov = np.asarray(geometry.covariance, dtype=np.float64) * np.outer(f, f)
        center = [c * fj for c, fj in zip(geometry.center, factors, strict=True)]
        return fk.gates.EllipsoidGate(
            name, [dim(0), dim(1)], center, cov.tolist(), float(geometry.distance_square)
        )
    if isinstance(geometry, Quadrant):
        dividers = []
        for j, m in enumerate(markers):
            dividers.append(
                fk.QuadrantDivider(
                    _ncname(f"{name}_div{j + 1}"),
                    m.pnn,
                    comp_ref_of[m.pnn],
                    [geometry.at[j] * factors[j]],
                    transformation_ref=refs[j][0],
                )
            )
        quadrants = []
        for pop, signs in geometry.populations.items():
            ranges = [
                (geometry.at[j] * factors[j], None)
                if s == "+"
                else (None, geometry.at[j] * factors[j])
                for j, s in enumerate(signs)
            ]
            quadrants.append(fk.gates.Quadrant(pop, [d.id for d in dividers], ranges))
        return fk.gates.QuadrantGate(name, dividers, quadrants)
    raise NotImplementedError(f"gate '{name}': no FlowKit gate for {type(geometry).__name__}")


def _fix_quadrant_positions(root: Any, strategy: Any) -> None:
    """Rewrite each quadrant ``position/@location`` to a point strictly inside its range."""
    import flowkit as fk

    ns_g = "http://www.isac-net.org/std/Gating-ML/v2.0/gating"
    ranges: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    for node in strategy.get_gate_ids():
        gate_id, gate_path = node
        try:
            g = strategy.get_gate(gate_id, gate_path)
        except fk.exceptions.QuadrantReferenceError:
            continue
        if isinstance(g, fk.gates.QuadrantGate):
            for q_id, q in g.quadrants.items():
                for div in q.divider_refs:
                    ranges[(q_id, div)] = q.get_divider_range(div)
    for quad in root.iter(f"{{{ns_g}}}Quadrant"):
        q_id = quad.get(f"{{{ns_g}}}id")
        for pos in quad.iter(f"{{{ns_g}}}position"):
            div = pos.get(f"{{{ns_g}}}divider_ref")
            lo, hi = ranges[(q_id, div)]
            if lo is None and hi is not None:
                inside = hi - max(1.0, abs(hi))
            elif hi is None and lo is not None:
                inside = lo + max(1.0, abs(lo))
            elif lo is not None and hi is not None:
                inside = (lo + hi) / 2.0
            else:  # pragma: no cover - our quadrants always have one bound per divider
                continue
            pos.set(f"{{{ns_g}}}location", repr(float(inside)))
