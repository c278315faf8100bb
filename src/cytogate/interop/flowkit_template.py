"""A FlowKit ``GatingStrategy`` used as a cytogate template (GatingML documents, FlowJo gates).

Why evaluated by FlowKit rather than converted: GatingML 2.0 lets every gate dimension pick its
own compensation (a matrix, the file's ``FCS`` spillover or none) and transform (``fasinh``,
``hyperlog``, ``fratio`` ratio dimensions, …), and FlowJo adds per-sample gates. cytogate's
template model has one compensation per template and no hyperlog/ratio scales, so a
conversion could not be exact. FlowKit is the reference implementation both formats trust;
its memberships are adapted into a :class:`~cytogate.gating.engine.GatingResult`:

* populations: one per FlowKit gate (a GatingML quadrant gate gives one population per
  quadrant, whose parent is the quadrant gate's parent). A name used twice in the tree is
  qualified by its path (``T cells/CD4``).
* masks: FlowKit's ``get_gate_membership`` (each already within its parent).
* scaled values: the compensated, transformed values FlowKit gates on, per dimension, so plots
  and ``scaled_values`` show exactly the space the gates are defined in (FlowJo's biex, 0..4096
  channels, divided by 4096 so every axis spans about 0..1 as cytogate's plots expect; the
  geometries are scaled alike, so membership is unchanged).
* geometries (drawing only): rectangles, polygons, 2-D ellipses and booleans become cytogate
  geometries in that space; a quadrant becomes a rectangle of its ranges; anything else is an
  :class:`~cytogate.gating.external.ExternalGeometry` (named, not drawn).
* dimension names: the channel label; when one document uses a channel with two
  transform/compensation pairs, ``label [transform, compensation]``.

flowkit is imported inside functions only, so ``import cytogate`` stays light.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cytogate.errors import GatingError
from cytogate.gating.external import ExternalGeometry, ExternalTemplate
from cytogate.gating.gates import Boolean, Ellipse, Polygon, Rectangle
from cytogate.gating.template import ROOT, GateSpec
from cytogate.model.panel import Marker, ResolvedMarker
from cytogate.model.transforms import Compensation, Scale

if TYPE_CHECKING:  # pragma: no cover
    import flowkit
    import pandas as pd

    from cytogate.gating.engine import GatingResult
    from cytogate.io.fcs import Sample

__all__ = ["FlowKitTemplate", "PopulationRef", "strategy_template"]

GateId = tuple[str, tuple[str, ...]]  # FlowKit's (gate name, gate path)
DimKey = tuple[str, str | None, str | None]  # (label, compensation ref, transform ref)


@dataclass(frozen=True)
class PopulationRef:
    """Where a cytogate population lives in the FlowKit tree."""

    name: str  # cytogate population name
    gate_id: GateId  # FlowKit's id of the population (a quadrant's id for quadrants)
    owner: GateId  # the FlowKit gate that defines it (the quadrant gate for quadrants)
    parent: str  # cytogate name of the parent population


@dataclass(frozen=True)
class FlowKitTemplate(ExternalTemplate):
    """A template whose gates FlowKit evaluates. ``strategy_for`` gives each sample's
    ``GatingStrategy`` (a GatingML document: the same for all; a FlowJo group: per sample)."""

    refs: tuple[PopulationRef, ...] = ()
    dim_names: Mapping[DimKey, str] = field(default_factory=dict)
    strategy_for: Callable[[Sample], flowkit.GatingStrategy] | None = None
    origin: str = ""  # "GatingML 2.0" / "FlowJo workspace, group 'All Samples'"

    def gate_sample(
        self,
        sample: Sample,
        *,
        compensation: str | pd.DataFrame | None = None,
        reference: Mapping[str, str] | None = None,
        pinned: Mapping[str, Any] | None = None,
    ) -> GatingResult:
        """Gate ``sample`` with FlowKit; ``compensation`` overrides are refused (the document
        defines compensation per dimension); ``reference`` (marker -> the stained tube's $PnN)
        resolves quantified markers of an isotype tube; ``pinned`` does not apply."""
        if compensation is not None:
            raise GatingError(
                f"{sample.path.name}: {self.source} defines its own compensation ({self.origin});"
                " a compensation override does not apply"
            )
        assert self.strategy_for is not None
        return _gate_with_flowkit(self, self.strategy_for(sample), sample, reference)


# --------------------------------------------------------------------------- building


def strategy_template(
    strategy: flowkit.GatingStrategy,
    *,
    path: Path,
    origin: str,
    strategy_for: Callable[[Sample], flowkit.GatingStrategy],
    sha256: str,
) -> FlowKitTemplate:
    """The template describing ``strategy``'s tree (``strategy_for`` picks each sample's)."""
    refs = _population_refs(strategy)
    keys = [_dim_key(d) for ref in refs for d in _get(strategy, ref.owner).dimensions]
    dim_names = _dim_names(keys)
    specs, panel, scales = [], {}, {}
    for ref in refs:
        owner = _get(strategy, ref.owner)
        dims = tuple(dim_names[_dim_key(d)] for d in owner.dimensions)
        names = {r.gate_id: r.name for r in refs}
        geometry = _geometry(owner, ref, dims, names, _units(strategy, owner))
        specs.append(GateSpec(name=ref.name, parent=ref.parent, variants=(geometry,)))
        for dim, key in zip(dims, (_dim_key(d) for d in owner.dimensions), strict=True):
            panel[dim] = Marker(dim, (f"^{_regex_escape(key[0])}$",))
            scales[dim] = _display_scale(strategy, key[2])
    for marker, definition in _quantification_panel().items():
        panel.setdefault(marker, definition)
    return FlowKitTemplate(
        name=path.stem,
        description=f"{origin}: {path.name}, evaluated by FlowKit",
        panel=panel,
        compensation="external",
        scales=scales,
        gates=tuple(specs),
        path=path,
        sha256=sha256,
        refs=tuple(refs),
        dim_names=dim_names,
        strategy_for=strategy_for,
        origin=origin,
    )


def _quantification_panel() -> dict[str, Marker]:
    """Markers a batch quantifies (CXCR4, CD114, …) that a GatingML/FlowJo document does not
    name: resolved with the bundled default template's panel patterns, so a lab's own gates
    can be used in ``cytogate batch`` with the study's quantification."""
    from cytogate.gating.loader import load_template

    return dict(load_template("aml_blasts_cd45_ssc").panel)


def _population_refs(strategy: flowkit.GatingStrategy) -> list[PopulationRef]:
    import flowkit as fk

    ids: list[GateId] = [(n, tuple(p)) for n, p in strategy.get_gate_ids()]
    counts: dict[str, int] = {}
    for name, _ in ids:
        counts[name] = counts.get(name, 0) + 1
    quadrant_gates = {
        gid for gid in ids if isinstance(_try_gate(strategy, gid), fk.gates.QuadrantGate)
    }
    names: dict[GateId, str] = {}
    for name, path in ids:
        if (name, path) in quadrant_gates:
            continue
        qualified = "/".join([*(p for p in path[1:]), name])
        names[(name, path)] = name if counts[name] == 1 else qualified

    def parent_of(path: tuple[str, ...]) -> str:
        if path == ("root",):
            return ROOT
        parent_id = (path[-1], path[:-1])
        if parent_id in quadrant_gates:  # a quadrant's parent is its gate's parent
            return parent_of(path[:-1])
        return names[parent_id]

    refs = []
    for gid in ids:
        if gid in quadrant_gates:
            continue
        name, path = gid
        owner_id = (path[-1], path[:-1]) if len(path) > 1 else None
        owner = gid if owner_id not in quadrant_gates else owner_id
        assert owner is not None
        refs.append(PopulationRef(names[gid], gid, owner, parent_of(path)))
    return refs


def _try_gate(strategy: flowkit.GatingStrategy, gid: GateId) -> Any:
    try:
        return strategy.get_gate(gid[0], gid[1])
    except Exception:  # FlowKit raises QuadrantReferenceError for a quadrant's own id
        return None


def _get(strategy: flowkit.GatingStrategy, gid: GateId) -> Any:
    return strategy.get_gate(gid[0], gid[1])


def _dim_key(dim: Any) -> DimKey:
    label = getattr(dim, "ratio_ref", None) or getattr(dim, "dimension_ref", None) or dim.id
    comp = dim.compensation_ref if dim.compensation_ref not in (None, "uncompensated") else None
    return (str(label), comp, dim.transformation_ref)


def _dim_names(keys: list[DimKey]) -> dict[DimKey, str]:
    by_label: dict[str, set[DimKey]] = {}
    for key in keys:
        by_label.setdefault(key[0], set()).add(key)
    names = {}
    for key in keys:
        label, comp, xform = key
        unique = len(by_label[label]) == 1
        names[key] = (
            label if unique else f"{label} [{xform or 'untransformed'}, {comp or 'uncompensated'}]"
        )
    return names


def _regex_escape(text: str) -> str:
    import re

    return re.escape(text)


def _units(strategy: Any, owner: Any) -> tuple[float, ...]:
    """Per dimension of ``owner``, the factor from FlowKit's transformed values to the unit
    range cytogate's plots show: 1/4096 for FlowJo's biex (FlowJo channels 0..4096), 1 for
    GatingML transforms (already 0..1 up to the top of scale) and untransformed dimensions."""
    import flowkit as fk

    out = []
    for dim in owner.dimensions:
        xform = strategy.transformations.get(_dim_key(dim)[2])
        out.append(1.0 / 4096.0 if isinstance(xform, fk.transforms.WSPBiexTransform) else 1.0)
    return tuple(out)


def _geometry(
    owner: Any,
    ref: PopulationRef,
    dims: tuple[str, ...],
    names: dict,
    units: tuple[float, ...],
) -> Any:
    """A cytogate geometry for drawing ``ref`` (membership always comes from FlowKit), in
    FlowKit's coordinates times ``units``; a shape in more than two dimensions is named only
    (plots show planes)."""
    geometry = _scaled_shape(_shape(owner, ref, dims, names), dims, units)
    if len(geometry.dims) > 2 and not isinstance(geometry, ExternalGeometry):
        text = f"{len(geometry.dims)}-D {geometry.kind} on {', '.join(dims)}"
        return ExternalGeometry(dims, geometry.kind, text)
    return geometry


def _scaled_shape(geometry: Any, dims: tuple[str, ...], units: tuple[float, ...]) -> Any:
    if all(u == 1.0 for u in units) or not dims:
        return geometry
    f = dict(zip(dims, units, strict=True))
    if isinstance(geometry, Rectangle):
        lo = tuple(None if v is None else v * f[d] for v, d in zip(geometry.min, dims, strict=True))
        hi = tuple(None if v is None else v * f[d] for v, d in zip(geometry.max, dims, strict=True))
        return Rectangle(geometry.dims, lo, hi)
    if isinstance(geometry, Polygon):
        fx, fy = f[geometry.dims[0]], f[geometry.dims[1]]
        return Polygon(geometry.dims, tuple((x * fx, y * fy) for x, y in geometry.vertices))
    if isinstance(geometry, Ellipse):
        fv = np.array([f[geometry.dims[0]], f[geometry.dims[1]]])
        cov = np.asarray(geometry.covariance) * np.outer(fv, fv)
        center = (geometry.center[0] * fv[0], geometry.center[1] * fv[1])
        return Ellipse(
            geometry.dims,
            (float(center[0]), float(center[1])),
            ((cov[0, 0], cov[0, 1]), (cov[1, 0], cov[1, 1])),
            geometry.distance_square,
        )
    return geometry


def _shape(owner: Any, ref: PopulationRef, dims: tuple[str, ...], names: dict) -> Any:
    import flowkit as fk

    if isinstance(owner, fk.gates.QuadrantGate):
        quadrant = owner.quadrants[ref.gate_id[0]]
        divider_ids = [d.id for d in owner.dimensions]
        lo, hi = [], []
        for div_id in divider_ids:
            if div_id in quadrant.divider_refs:
                low, high = quadrant.get_divider_range(div_id)
            else:
                low = high = None
            lo.append(low)
            hi.append(high)
        return Rectangle(dims, tuple(lo), tuple(hi))
    if isinstance(owner, fk.gates.RectangleGate) and not owner.use_complement:
        return Rectangle(
            dims,
            tuple(d.min for d in owner.dimensions),
            tuple(d.max for d in owner.dimensions),
        )
    if isinstance(owner, fk.gates.PolygonGate) and len(dims) == 2 and not owner.use_complement:
        return Polygon((dims[0], dims[1]), tuple((float(x), float(y)) for x, y in owner.vertices))
    if isinstance(owner, fk.gates.EllipsoidGate) and len(dims) == 2:
        cov = np.asarray(owner.covariance_matrix, dtype=float)
        return Ellipse(
            (dims[0], dims[1]),
            (float(owner.coordinates[0]), float(owner.coordinates[1])),
            ((cov[0, 0], cov[0, 1]), (cov[1, 0], cov[1, 1])),
            float(owner.distance_square),
        )
    if isinstance(owner, fk.gates.BooleanGate):
        operands = []
        for r in owner.gate_refs:
            operand = names.get((r["ref"], tuple(r["path"])), r["ref"])
            operands.append(operand)
        op = str(owner.type).lower()
        if op in ("and", "or", "not") and not any(r.get("complement") for r in owner.gate_refs):
            return Boolean(op, tuple(operands))  # type: ignore[arg-type]
        text = ", ".join(
            ("not " if r.get("complement") else "") + o
            for r, o in zip(owner.gate_refs, operands, strict=True)
        )
        return ExternalGeometry((), "boolean", f"{op}({text})", tuple(operands))
    nearest = "ellipse" if isinstance(owner, fk.gates.EllipsoidGate) else "polygon"
    if isinstance(owner, fk.gates.RectangleGate):
        nearest = "rectangle" if len(dims) > 1 else "range"
    return ExternalGeometry(dims, nearest, f"{type(owner).__name__} on {', '.join(dims)}")


def _display_scale(strategy: flowkit.GatingStrategy, xform_ref: str | None) -> Scale:
    """cytogate's twin of a FlowKit transform, for axis ticks: exact for linear, log and
    logicle; other transforms (asinh with A != 0, hyperlog, ratio, FlowJo biex) are shown in
    their transformed units (identity scale)."""
    import flowkit as fk

    xform = strategy.transformations.get(xform_ref) if xform_ref else None
    identity = Scale("linear", {"top": 1.0, "bottom": 0.0})
    if isinstance(xform, fk.transforms.LinearTransform):
        return Scale("linear", {"top": float(xform.param_t), "bottom": -float(xform.param_a)})
    if isinstance(xform, fk.transforms.LogTransform):
        return Scale("log", {"T": float(xform.param_t), "M": float(xform.param_m)})
    if isinstance(xform, fk.transforms.LogicleTransform):
        return Scale(
            "logicle",
            {
                "T": float(xform.param_t),
                "W": float(xform.param_w),
                "M": float(xform.param_m),
                "A": float(xform.param_a),
            },
        )
    return identity


# --------------------------------------------------------------------------- gating


def flowkit_sample(sample: Sample) -> flowkit.Sample:
    """FlowKit's reading of ``sample``'s file (GatingML defines values as FlowKit reads them:
    $PnG/$PnE applied); the file must give the same number of events as cytogate's reader."""
    import flowkit as fk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fk_sample = fk.Sample(str(sample.path), sample_id=sample.path.name)
    if fk_sample.event_count != sample.n_events:
        raise GatingError(
            f"{sample.path.name}: FlowKit reads {fk_sample.event_count} events, cytogate "
            f"{sample.n_events}"
        )
    return fk_sample


def _gate_with_flowkit(
    template: FlowKitTemplate,
    strategy: Any,
    sample: Sample,
    reference: Mapping[str, str] | None = None,
) -> GatingResult:
    from cytogate.gating.engine import GatingResult

    fk_sample = flowkit_sample(sample)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            results = strategy.gate_sample(fk_sample)
        except (LookupError, ValueError) as exc:
            raise GatingError(f"{sample.path.name}: {template.source}: {exc}") from exc
        refs = _population_refs(strategy)
        if [r.name for r in refs] != [r.name for r in template.refs]:
            raise GatingError(
                f"{sample.path.name}: its gates ({', '.join(r.name for r in refs)}) differ from "
                f"the template's ({', '.join(r.name for r in template.refs)})"
            )
        masks = {
            r.name: np.asarray(results.get_gate_membership(*r.gate_id), dtype=bool) for r in refs
        }
        scaled, markers, applied = _values_and_gates(template, strategy, fk_sample, sample, refs)
    strategy.clear_cache()
    comp, note, spillover = _compensation_for_values(template, strategy, sample)
    return GatingResult(
        sample=sample,
        template=template,
        compensation=comp,
        compensation_note=note,
        spillover=spillover,
        markers=markers,
        scaled=scaled,
        scales={dim: template.scale_for(dim) for dim in scaled if dim in template.scales},
        gates=applied,
        masks=masks,
        parents={r.name: r.parent for r in refs},
        reference=reference,
        dependencies={g.name: g.qc_sources() for g in template.gates},
    )


def _values_and_gates(
    template: FlowKitTemplate,
    strategy: Any,
    fk_sample: Any,
    sample: Sample,
    refs: list[PopulationRef],
) -> tuple[dict[str, np.ndarray], dict[str, ResolvedMarker], list[Any]]:
    from cytogate.gating.engine import AppliedGate

    pnn = [str(v) for v in sample.channels["pnn"]]
    pns = [str(v) for v in sample.channels["pns"]]
    scaled: dict[str, np.ndarray] = {}
    markers: dict[str, ResolvedMarker] = {}
    applied = []
    names = {r.gate_id: r.name for r in refs}
    for ref in refs:
        owner = strategy.get_gate(*ref.owner)
        keys = [_dim_key(d) for d in owner.dimensions]
        dims = tuple(template.dim_names.get(k, k[0]) for k in keys)
        units = _units(strategy, owner)
        if keys and any(d not in scaled for d in dims):
            # the values FlowKit gates this gate on (FlowKit 1.3's own preprocessing step)
            frame = strategy._preprocess_sample_events(fk_sample, owner)
            for j, (dim, key) in enumerate(zip(dims, keys, strict=True)):
                if dim not in scaled:
                    scaled[dim] = frame.iloc[:, j].to_numpy(dtype=np.float64) * units[j]
                    markers[dim] = _resolved(dim, key[0], pnn, pns, strategy)
        geometry = _geometry(owner, ref, dims, names, units)
        note = (
            f"evaluated by FlowKit ({geometry.description})"
            if isinstance(geometry, ExternalGeometry)
            else "evaluated by FlowKit"
        )
        applied.append(
            AppliedGate(
                name=ref.name,
                parent=ref.parent,
                kind=geometry.kind,
                status="applied",
                geometry=geometry,
                dims=tuple(geometry.dims),
                channels=tuple(markers[d].pnn for d in geometry.dims if d in markers),
                note=note,
            )
        )
    return scaled, markers, applied


def _resolved(
    dim: str, label: str, pnn: list[str], pns: list[str], strategy: Any
) -> ResolvedMarker:
    """The file's channel of a GatingML/FlowJo dimension label, found as FlowKit finds it:
    $PnN, $PnS, FlowJo's $PnN ('/' as '_'), or a compensation matrix's fluorochrome name."""
    flowjo = [p.replace("/", "_") for p in pnn]
    for names, via in ((pnn, "pnn"), (pns, "pns"), (flowjo, "pnn")):
        if label in names:
            i = names.index(label)
            return ResolvedMarker(dim, i, pnn[i], pns[i], via)  # type: ignore[arg-type]
    for matrix in strategy.comp_matrices.values():
        if label in matrix.fluorochromes:
            detector = matrix.detectors[matrix.fluorochromes.index(label)]
            if detector in pnn:
                i = pnn.index(detector)
                return ResolvedMarker(dim, i, pnn[i], pns[i], "pns")
    # a ratio dimension: no single channel (index -1: the values are in ``scaled`` only)
    return ResolvedMarker(dim, -1, label, "", "pnn")


def _compensation_for_values(
    template: FlowKitTemplate, strategy: Any, sample: Sample
) -> tuple[Compensation, str, pd.DataFrame | None]:
    """The compensation ``values()`` (quantification) uses: the document's matrix when it uses
    exactly one on its gates, the file's spillover for ``FCS``, else none."""
    import pandas as pd

    refs = {k[1] for k in template.dim_names if k[1] is not None}
    pnn = [str(v) for v in sample.channels["pnn"]]
    matrix: pd.DataFrame | None = None
    if refs == {"FCS"} and sample.spillover is not None:
        matrix, note = sample.spillover, "file spillover keyword (GatingML 'FCS')"
    elif len(refs) == 1:
        ref = next(iter(refs))
        fk_matrix = strategy.comp_matrices.get(ref)
        if fk_matrix is not None and all(d in pnn for d in fk_matrix.detectors):
            matrix = pd.DataFrame(
                fk_matrix.matrix, index=fk_matrix.detectors, columns=fk_matrix.detectors
            )
            note = f"matrix {ref!r} of {template.source}"
        elif ref in ("FCS", "Acquisition-defined") and sample.spillover is not None:
            matrix, note = sample.spillover, f"file spillover keyword ({ref})"
    if matrix is None:
        note = "per gate dimension, as the document defines (gating); values uncompensated"
        return Compensation(sample.data, [], None), note, None
    columns = [pnn.index(str(c)) for c in matrix.columns]
    comp = Compensation(sample.data, columns, matrix.to_numpy(dtype=np.float64))
    return comp, note, matrix
