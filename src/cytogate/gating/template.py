"""Load and validate declarative gating templates (YAML).

A template names markers (resolved per file by :mod:`cytogate.model.panel`), says how to
compensate, gives each dimension a scale, and lists gates as a tree. Coordinates are in the scaled
space of the gate's dimensions (see :mod:`cytogate.model.transforms`). A gate may list
``variants`` — the first
whose dimensions all exist in the file is used — so one singlet gate serves instruments with
FSC-H and those with only FSC-W. A gate marked ``optional`` is skipped (and recorded as skipped)
when no variant fits the file.

Besides fixed geometries, a gate may be *adaptive* (``threshold``, ``cluster``, ``relative``):
fitted per file on its parent's events (see :mod:`cytogate.gating.adaptive`). Their fields are
validated here like the rest; populations they refer to (reference populations, excluded
clusters) count as dependencies, so they are fitted first. ``pin: baseline`` asks a batch to
reuse a patient's baseline fit for the patient's other files; ``qc:`` sets quality rules.
A scale may list alternatives chosen per file by what the file says about the channel
(``when: {log_amplified: true}`` or ``when: {pnn: 'Log$'}``), so one template serves list-mode
files whose scatter and fluorescence are already log-amplified (Beckman FC500 era).

Every validation error names the template file, the gate and the field, because the person who
reads it is editing that file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytogate.errors import TemplateError
from cytogate.gating.adaptive import (
    ADAPTIVE_KINDS,
    THRESHOLD_METHODS,
    AdaptiveGeometry,
    Bound,
    ClusterGate,
    MixtureSpec,
    QCRules,
    RelativeGate,
    ThresholdGate,
    is_adaptive,
)
from cytogate.gating.gates import (
    QUADRANT_SIGNS,
    Boolean,
    Ellipse,
    Geometry,
    Polygon,
    Quadrant,
    Rectangle,
)
from cytogate.model.panel import Marker

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.io.fcs import Sample
from cytogate.model.transforms import Scale, ScaleAlternatives

ROOT = "root"
_TOP_FIELDS = {
    "name",
    "description",
    "version",
    "panel",
    "compensation",
    "scales",
    "gates",
    "roles",
}
_GATE_FIELDS = {"name", "parent", "optional", "description", "variants", "pin", "qc"}
_ADAPTIVE_COMMON = {"dims", "subsample", "seed"}
_GEOMETRY_FIELDS: dict[str, set[str]] = {
    "rectangle": {"dims", "min", "max"},
    "range": {"dims", "min", "max"},
    "polygon": {"dims", "vertices"},
    "ellipse": {"dims", "center", "half_axes", "angle", "covariance", "distance_square"},
    "quadrant": {"dims", "at", "populations"},
    "boolean": {"op", "of"},
    "threshold": _ADAPTIVE_COMMON
    | {"method", "keep", "ratio", "search", "valley", "bandwidth", "min_depth", "min_mass"}
    | {"significance", "components", "max_excluded", "min_kept", "axis"}
    | {"q", "n", "of", "fallback"},
    "cluster": {"dims", "mixture", "select", "distance", "shape", "grid", "fallback"},
    "relative": {"dims", "min", "max"},
}
_FIXED_KINDS = ("rectangle", "range", "polygon", "ellipse", "quadrant", "boolean")
_QC_FIELDS = {"min_fraction", "max_fraction", "max_overlap", "reason", "flag_with"}
_MIXTURE_FIELDS = {"components", "subsample", "seed", "merge", "max_iter", "init", "balance"}
_BOUND_FIELDS = {"of", "dim", "stat", "q", "n", "spread"}
PIN_CHOICES = ("baseline",)


@dataclass(frozen=True)
class GateSpec:
    """One gate of the tree: a name, its parent population and one or more geometry variants."""

    name: str
    parent: str
    variants: tuple[Geometry | AdaptiveGeometry, ...]
    optional: bool = False
    description: str = ""
    pin: str | None = None  # "baseline": a batch reuses the patient's baseline fit
    qc: QCRules = field(default_factory=QCRules)

    @property
    def kind(self) -> str:
        return self.variants[0].kind

    @property
    def adaptive(self) -> bool:
        return any(is_adaptive(v) for v in self.variants)

    def qc_sources(self) -> set[str]:
        """Populations whose QC flags this gate inherits: its parent, the populations whose
        statistics it uses (bounds, reference populations) and ``qc.flag_with``. Clusters it
        merely excludes are not among them (a missing monocyte cluster does not make a blast
        gate doubtful)."""
        deps = {self.parent, *self.qc.flag_with}
        for geometry in self.variants:
            if isinstance(geometry, Boolean):
                deps.update(geometry.operands)
            elif isinstance(geometry, ClusterGate):
                deps.update(geometry.references() - set(geometry.excluded()))
            elif is_adaptive(geometry):
                deps.update(geometry.references())  # type: ignore[union-attr]
        return deps - {ROOT}

    def populations(self) -> tuple[str, ...]:
        """Population names this gate defines (a quadrant gate defines several)."""
        first = self.variants[0]
        if isinstance(first, Quadrant):
            return tuple(first.populations)
        return (self.name,)

    def depends_on(self) -> set[str]:
        deps = {self.parent}
        for geometry in self.variants:
            if isinstance(geometry, Boolean):
                deps.update(geometry.operands)
            elif is_adaptive(geometry):
                deps.update(geometry.references())  # type: ignore[union-attr]
        return deps - {ROOT}


@dataclass(frozen=True)
class Template:
    """A validated gating template. Gates are in dependency order (parents first)."""

    name: str
    description: str
    panel: dict[str, Marker]
    compensation: str  # "file" (the FCS spillover keyword), "none", or a path to a CSV matrix
    scales: dict[str, Scale | ScaleAlternatives]
    gates: tuple[GateSpec, ...]
    roles: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""

    def scale_for(self, dim: str, sample: Sample | None = None, index: int | None = None) -> Scale:
        """The scale of ``dim``; with a sample and channel index, alternatives are resolved for
        that channel (``when`` conditions, ``pne`` parameters). Without them the unconditional
        alternative is returned."""
        if dim in self.scales:
            scale = self.scales[dim]
        elif "default" in self.scales:
            scale = self.scales["default"]
        else:
            raise TemplateError(
                f"{self.source}: dimension {dim!r} has no scale and no default scale"
            )
        if sample is None or index is None:
            return scale.otherwise() if isinstance(scale, ScaleAlternatives) else scale
        return scale.for_channel(sample, index)

    @property
    def source(self) -> str:
        return str(self.path) if self.path else f"template '{self.name}'"

    def population_names(self) -> list[str]:
        return [pop for g in self.gates for pop in g.populations()]

    def parents(self) -> dict[str, str]:
        return {pop: g.parent for g in self.gates for pop in g.populations()}


# --------------------------------------------------------------------------- loading


def bundled_template_dir() -> Path:
    """The folder of templates shipped inside the package (a copy of ``gating_templates/``)."""
    return Path(str(resources.files("cytogate") / "templates"))


def list_templates() -> dict[str, Path]:
    """Bundled templates by name."""
    folder = bundled_template_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load_template(name_or_path: str | Path | Template) -> Template:
    """Load a template by bundled name (``"aml_blasts_cd45_ssc"``) or by path to a YAML file,
    a GatingML 2.0 document (``.xml``) or a FlowJo 10 workspace (``.wsp``)."""
    if isinstance(name_or_path, Template):
        return name_or_path
    path = Path(name_or_path)
    if path.suffix.lower() in (".xml", ".wsp"):  # GatingML / FlowJo: see gating/external.py
        from cytogate.gating.external import load_external

        return load_external(path)
    if not path.is_file():
        bundled = list_templates()
        key = path.name.removesuffix(".yaml").removesuffix(".yml")
        if key not in bundled or len(path.parts) > 1:
            raise TemplateError(
                f"no template file {str(name_or_path)!r} and no bundled template of that name "
                f"(bundled: {', '.join(bundled) or 'none'})"
            )
        path = bundled[key]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read template: {exc.strerror}") from exc
    return parse_template(raw, path)


def parse_template(raw: bytes | str, path: Path | None = None) -> Template:
    """Parse and validate template text. ``path`` is used in messages and provenance."""
    import yaml

    data = raw.encode() if isinstance(raw, str) else raw
    where = str(path) if path else "<template>"
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise TemplateError(f"{where}: a template is a YAML mapping with 'panel', 'gates', …")
    _no_unknown(doc, _TOP_FIELDS, where)
    name = str(doc.get("name") or (path.stem if path else "template"))
    panel = _parse_panel(doc.get("panel"), where)
    scales = _parse_scales(doc.get("scales") or {}, where)
    compensation = str(doc.get("compensation", "file"))
    if compensation not in ("file", "none") and path is not None:
        matrix = Path(compensation)
        compensation = str(matrix if matrix.is_absolute() else (path.parent / matrix))
    gates = _parse_gates(doc.get("gates"), where)
    template = Template(
        name=name,
        description=str(doc.get("description", "")).strip(),
        panel=panel,
        compensation=compensation,
        scales=scales,
        gates=_dependency_order(gates, where),
        roles={str(k): str(v) for k, v in (doc.get("roles") or {}).items()},
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    _check_references(template, where)
    return template


# --------------------------------------------------------------------------- sections


def _no_unknown(mapping: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise TemplateError(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )


def _parse_panel(section: Any, where: str) -> dict[str, Marker]:
    import re

    if not isinstance(section, dict) or not section:
        raise TemplateError(f"{where}: field 'panel': a mapping of marker name -> patterns")
    panel = {}
    for marker, patterns in section.items():
        pats = [patterns] if isinstance(patterns, str) else patterns
        if not isinstance(pats, list) or not pats or not all(isinstance(p, str) for p in pats):
            raise TemplateError(f"{where}: panel marker {marker!r}: a pattern or list of patterns")
        for p in pats:
            try:
                re.compile(p)
            except re.error as exc:
                raise TemplateError(
                    f"{where}: panel marker {marker!r}: bad pattern {p!r}: {exc}"
                ) from exc
        panel[str(marker)] = Marker(str(marker), tuple(pats))
    return panel


def _parse_scales(section: Any, where: str) -> dict[str, Scale | ScaleAlternatives]:
    if not isinstance(section, dict):
        raise TemplateError(f"{where}: field 'scales': a mapping of marker name -> scale")
    out: dict[str, Scale | ScaleAlternatives] = {}
    for dim, spec in section.items():
        swhere = f"{where}: scale of {dim!r}"
        if isinstance(spec, list):
            out[str(dim)] = ScaleAlternatives.from_spec(spec, swhere)
        else:
            out[str(dim)] = Scale.from_spec(spec, swhere)
    return out


def _parse_gates(section: Any, where: str) -> list[GateSpec]:
    if not isinstance(section, list) or not section:
        raise TemplateError(f"{where}: field 'gates': a list of gates")
    gates = []
    for i, entry in enumerate(section):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise TemplateError(f"{where}: gate #{i + 1}: a mapping with a 'name'")
        gname = str(entry["name"])
        gwhere = f"{where}: gate '{gname}'"
        if "variants" in entry:
            _no_unknown(entry, _GATE_FIELDS, gwhere)
            specs = entry["variants"]
            if not isinstance(specs, list) or not specs:
                raise TemplateError(f"{gwhere}: field 'variants': a non-empty list")
        else:
            specs = [{k: v for k, v in entry.items() if k not in _GATE_FIELDS}]
            _no_unknown(
                {k: v for k, v in entry.items() if k not in _GATE_FIELDS},
                _all_geometry_fields(),
                gwhere,
            )
        variants = tuple(
            _parse_geometry(spec, f"{gwhere}" + (f" variant {j + 1}" if len(specs) > 1 else ""))
            for j, spec in enumerate(specs)
        )
        if len(variants) > 1 and {v.kind for v in variants} & {"quadrant", "boolean"}:
            raise TemplateError(f"{gwhere}: quadrant and boolean gates cannot have variants")
        pin = entry.get("pin")
        if pin is not None:
            if pin not in PIN_CHOICES:
                raise TemplateError(
                    f"{gwhere}: field 'pin': one of {', '.join(PIN_CHOICES)} (got {pin!r})"
                )
            if not any(is_adaptive(v) for v in variants):
                raise TemplateError(f"{gwhere}: field 'pin': only adaptive gates can be pinned")
        gates.append(
            GateSpec(
                name=gname,
                parent=str(entry.get("parent", ROOT)),
                variants=variants,
                optional=bool(entry.get("optional", False)),
                description=str(entry.get("description", "")),
                pin=pin,
                qc=_parse_qc(entry.get("qc"), gwhere),
            )
        )
    return gates


def _all_geometry_fields() -> set[str]:
    return {"kind"}.union(*_GEOMETRY_FIELDS.values())


def _parse_geometry(spec: Any, where: str) -> Geometry | AdaptiveGeometry:
    if not isinstance(spec, dict) or "kind" not in spec:
        raise TemplateError(f"{where}: field 'kind': one of {', '.join(_GEOMETRY_FIELDS)}")
    kind = spec["kind"]
    if kind not in _GEOMETRY_FIELDS:
        raise TemplateError(
            f"{where}: field 'kind': unknown gate kind {kind!r} "
            f"(one of {', '.join(_GEOMETRY_FIELDS)})"
        )
    _no_unknown(spec, _GEOMETRY_FIELDS[kind] | {"kind"}, where)
    if kind == "boolean":
        return _parse_boolean(spec, where)
    if kind in ADAPTIVE_KINDS:
        return _parse_adaptive(kind, spec, where)
    dims = _dims(spec, where, 1 if kind == "range" else (None if kind == "rectangle" else 2))
    if kind in ("rectangle", "range"):
        lo = _bounds(spec.get("min"), len(dims), "min", where)
        hi = _bounds(spec.get("max"), len(dims), "max", where)
        if all(v is None for v in lo + hi):
            raise TemplateError(f"{where}: fields 'min'/'max': give at least one bound")
        for a, b in zip(lo, hi, strict=True):
            if a is not None and b is not None and not a < b:
                raise TemplateError(f"{where}: field 'min' must be below 'max' ({a} >= {b})")
        return Rectangle(dims, lo, hi)
    if kind == "polygon":
        vertices = _points(spec.get("vertices"), where, "vertices")
        if len(vertices) < 3:
            raise TemplateError(f"{where}: field 'vertices': at least 3 [x, y] pairs")
        return Polygon((dims[0], dims[1]), vertices)
    if kind == "ellipse":
        return _parse_ellipse(spec, (dims[0], dims[1]), where)
    return _parse_quadrant(spec, (dims[0], dims[1]), where)


def _dims(spec: dict[str, Any], where: str, n: int | None) -> tuple[str, ...]:
    dims = spec.get("dims")
    if isinstance(dims, str):
        dims = [dims]
    if not isinstance(dims, list) or not dims or not all(isinstance(d, str) for d in dims):
        raise TemplateError(f"{where}: field 'dims': a list of marker names")
    if n is not None and len(dims) != n:
        raise TemplateError(f"{where}: field 'dims': needs {n} dimension(s), got {len(dims)}")
    return tuple(dims)


def _number(value: Any, where: str, fieldname: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TemplateError(f"{where}: field {fieldname!r}: {value!r} is not a number")
    return float(value)


def _bounds(value: Any, n: int, fieldname: str, where: str) -> tuple[float | None, ...]:
    if value is None:
        return (None,) * n
    values = value if isinstance(value, list) else [value]
    if len(values) != n:
        raise TemplateError(f"{where}: field {fieldname!r}: needs {n} value(s), got {len(values)}")
    return tuple(None if v is None else _number(v, where, fieldname) for v in values)


def _points(value: Any, where: str, fieldname: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list):
        raise TemplateError(f"{where}: field {fieldname!r}: a list of [x, y] pairs")
    points = []
    for p in value:
        if not isinstance(p, list) or len(p) != 2:
            raise TemplateError(f"{where}: field {fieldname!r}: {p!r} is not an [x, y] pair")
        points.append((_number(p[0], where, fieldname), _number(p[1], where, fieldname)))
    return tuple(points)


def _pair(value: Any, where: str, fieldname: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise TemplateError(f"{where}: field {fieldname!r}: an [x, y] pair")
    return (_number(value[0], where, fieldname), _number(value[1], where, fieldname))


def _parse_ellipse(spec: dict[str, Any], dims: tuple[str, str], where: str) -> Ellipse:
    center = _pair(spec.get("center"), where, "center")
    if "covariance" in spec:
        cov = spec["covariance"]
        if not (isinstance(cov, list) and len(cov) == 2):
            raise TemplateError(f"{where}: field 'covariance': a 2 x 2 matrix")
        rows = (_pair(cov[0], where, "covariance"), _pair(cov[1], where, "covariance"))
        d2 = _number(spec.get("distance_square", 1.0), where, "distance_square")
        import numpy as np

        if rows[0][1] != rows[1][0] or np.any(np.linalg.eigvalsh(np.array(rows)) <= 0) or d2 <= 0:
            raise TemplateError(
                f"{where}: field 'covariance': must be symmetric positive definite, with "
                "distance_square > 0"
            )
        return Ellipse(dims, center, rows, d2)
    axes = _pair(spec.get("half_axes"), where, "half_axes")
    if min(axes) <= 0:
        raise TemplateError(f"{where}: field 'half_axes': both must be > 0")
    return Ellipse.from_axes(dims, center, axes, _number(spec.get("angle", 0.0), where, "angle"))


def _parse_quadrant(spec: dict[str, Any], dims: tuple[str, str], where: str) -> Quadrant:
    at = _pair(spec.get("at"), where, "at")
    pops = spec.get("populations")
    if not isinstance(pops, dict) or not pops:
        raise TemplateError(
            f"{where}: field 'populations': a mapping of population name -> one of "
            f"{', '.join(QUADRANT_SIGNS)} (signs in the order of 'dims')"
        )
    signs = [str(s) for s in pops.values()]
    bad = [s for s in signs if s not in QUADRANT_SIGNS]
    if bad or len(set(signs)) != len(signs):
        raise TemplateError(
            f"{where}: field 'populations': signs must be distinct, from "
            f"{', '.join(QUADRANT_SIGNS)} (got {', '.join(signs)})"
        )
    return Quadrant(dims, at, {str(k): str(v) for k, v in pops.items()})


def _parse_boolean(spec: dict[str, Any], where: str) -> Boolean:
    op = spec.get("op")
    if op not in ("and", "or", "not"):
        raise TemplateError(f"{where}: field 'op': one of and, or, not (got {op!r})")
    of = spec.get("of")
    of = [of] if isinstance(of, str) else of
    if not isinstance(of, list) or not of or not all(isinstance(o, str) for o in of):
        raise TemplateError(f"{where}: field 'of': a list of population names")
    if op == "not" and len(of) != 1:
        raise TemplateError(f"{where}: field 'of': 'not' takes exactly one population")
    if op != "not" and len(of) < 2:
        raise TemplateError(f"{where}: field 'of': '{op}' takes two or more populations")
    return Boolean(op, tuple(of))


# --------------------------------------------------------------------------- adaptive gates


def _parse_adaptive(kind: str, spec: dict[str, Any], where: str) -> AdaptiveGeometry:
    if kind == "threshold":
        return _parse_threshold(spec, where)
    if kind == "cluster":
        return _parse_cluster(spec, where)
    dims = _dims(spec, where, None)
    lo = _bound_list(spec.get("min"), len(dims), "min", where)
    hi = _bound_list(spec.get("max"), len(dims), "max", where)
    if all(b is None for b in lo + hi):
        raise TemplateError(f"{where}: fields 'min'/'max': give at least one bound")
    return RelativeGate(dims=dims, min=lo, max=hi)


def _choice(spec: dict[str, Any], name: str, choices: tuple[str, ...], where: str) -> str:
    value = spec.get(name, choices[0])
    if value not in choices:
        raise TemplateError(f"{where}: field {name!r}: one of {', '.join(choices)} (got {value!r})")
    return str(value)


def _count(spec: dict[str, Any], name: str, default: int, where: str, low: int = 1) -> int:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise TemplateError(f"{where}: field {name!r}: an integer >= {low} (got {value!r})")
    return value


def _flag(spec: dict[str, Any], name: str, default: bool, where: str) -> bool:
    value = spec.get(name, default)
    if not isinstance(value, bool):
        raise TemplateError(f"{where}: field {name!r}: true or false (got {value!r})")
    return value


def _fraction(value: Any, where: str, fieldname: str) -> float:
    v = _number(value, where, fieldname)
    if not 0 <= v <= 1:
        raise TemplateError(f"{where}: field {fieldname!r}: between 0 and 1 (got {v:g})")
    return v


def _parse_threshold(spec: dict[str, Any], where: str) -> ThresholdGate:
    ratio = spec.get("ratio", False)
    if not isinstance(ratio, bool):
        raise TemplateError(f"{where}: field 'ratio': true or false")
    dims = _dims(spec, where, 2 if ratio else None)
    axis = spec.get("axis", dims[0])
    if ratio and "axis" in spec:
        raise TemplateError(f"{where}: field 'axis': a ratio uses both dims")
    if not ratio and ((len(dims) > 1 and "axis" not in spec) or axis not in dims):
        raise TemplateError(
            f"{where}: field 'axis': the dimension of the cut, one of {list(dims)} (needed with "
            "more than one dim; the others stay unbounded)"
        )
    methods = spec.get("method")
    methods = [methods] if isinstance(methods, str) else methods
    if (
        not isinstance(methods, list)
        or not methods
        or any(m not in THRESHOLD_METHODS for m in methods)
        or len(set(methods)) != len(methods)
    ):
        raise TemplateError(
            f"{where}: field 'method': one of {', '.join(THRESHOLD_METHODS)}, or a list of them "
            f"tried in order (got {spec.get('method')!r})"
        )
    keep = _choice(spec, "keep", ("above", "below", "between"), where)
    one_cut = {"valley", "mixture"} & set(methods)
    if one_cut and keep == "between":
        raise TemplateError(
            f"{where}: field 'keep': {' and '.join(sorted(one_cut))} give one cut (above or below)"
        )
    kwargs: dict[str, Any] = {}
    if "search" in spec:
        search = _pair(spec["search"], where, "search")
        if not search[0] < search[1]:
            raise TemplateError(f"{where}: field 'search': [low, high] with low < high")
        kwargs["search"] = search
    if "valley" in spec:
        kwargs["valley"] = _choice(spec, "valley", ("deepest", "first", "last"), where)
    if "bandwidth" in spec:
        kwargs["bandwidth"] = _number(spec["bandwidth"], where, "bandwidth")
        if kwargs["bandwidth"] <= 0:
            raise TemplateError(f"{where}: field 'bandwidth': must be > 0")
    for name in ("min_depth", "min_mass"):
        if name in spec:
            kwargs[name] = _fraction(spec[name], where, name)
    if "significance" in spec:
        kwargs["significance"] = _number(spec["significance"], where, "significance")
        if kwargs["significance"] < 0:
            raise TemplateError(f"{where}: field 'significance': must be >= 0")
    n_cuts = 2 if keep == "between" else 1
    if "quantile" in methods:
        q = spec.get("q")
        qs = q if isinstance(q, list) else [q]
        if q is None or len(qs) != n_cuts:
            wanted = "two quantiles [low, high]" if n_cuts == 2 else "a quantile"
            raise TemplateError(f"{where}: field 'q': {wanted} between 0 and 1")
        kwargs["q"] = tuple(_fraction(v, where, "q") for v in qs)
    elif "q" in spec:
        raise TemplateError(f"{where}: field 'q': only for method quantile")
    if {"sd", "mad"} & set(methods):
        kwargs["n"] = _number(spec.get("n", 3.0), where, "n")
        if kwargs["n"] < 0:
            raise TemplateError(f"{where}: field 'n': must be >= 0")
    elif "n" in spec:
        raise TemplateError(f"{where}: field 'n': only for methods sd and mad")
    if "components" in spec:
        comps = spec["components"]
        if (
            not isinstance(comps, list)
            or len(comps) != 2
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in comps)
            or not 2 <= comps[0] <= comps[1] <= 8
        ):
            raise TemplateError(f"{where}: field 'components': [min, max], 2 <= min <= max <= 8")
        kwargs["components"] = (comps[0], comps[1])
    for name in ("max_excluded", "min_kept"):
        if name in spec:
            kwargs[name] = _fraction(spec[name], where, name)
    if "of" in spec:
        if not {"quantile", "sd", "mad"} & set(methods):
            raise TemplateError(
                f"{where}: field 'of': a reference population is for quantile, sd and mad"
            )
        if not isinstance(spec["of"], str):
            raise TemplateError(f"{where}: field 'of': a population name")
        kwargs["of"] = spec["of"]
    if "fallback" in spec:
        fb = spec["fallback"]
        fbs = fb if isinstance(fb, list) else [fb]
        if len(fbs) != n_cuts:
            raise TemplateError(f"{where}: field 'fallback': {n_cuts} threshold(s)")
        kwargs["fallback"] = tuple(_number(v, where, "fallback") for v in fbs)
    return ThresholdGate(
        dims=dims,
        axis=0 if ratio else dims.index(axis),
        method=tuple(methods),
        keep=keep,  # type: ignore[arg-type]
        ratio=ratio,
        subsample=_count(spec, "subsample", 20000, where, 10),
        seed=_count(spec, "seed", 0, where, 0),
        **kwargs,
    )


def _parse_cluster(spec: dict[str, Any], where: str) -> ClusterGate:
    dims = _dims(spec, where, 2)
    dims2 = (dims[0], dims[1])
    mix = spec.get("mixture") or {}
    if not isinstance(mix, dict):
        raise TemplateError(f"{where}: field 'mixture': a mapping ({', '.join(_MIXTURE_FIELDS)})")
    _no_unknown(mix, _MIXTURE_FIELDS, f"{where}: field 'mixture'")
    comps = mix.get("components", [2, 6])
    if (
        not isinstance(comps, list)
        or len(comps) != 2
        or not all(isinstance(c, int) and not isinstance(c, bool) for c in comps)
        or not 1 <= comps[0] <= comps[1] <= 12
    ):
        raise TemplateError(
            f"{where}: field 'mixture.components': [min, max] with 1 <= min <= max <= 12"
        )
    mixture = MixtureSpec(
        components=(comps[0], comps[1]),
        subsample=_count(mix, "subsample", 5000, f"{where}: mixture", 50),
        seed=_count(mix, "seed", 0, f"{where}: mixture", 0),
        merge=(
            "modes"
            if mix.get("merge", "modes") == "modes"
            else _fraction(mix.get("merge"), where, "mixture.merge")
        ),
        max_iter=_count(mix, "max_iter", 100, f"{where}: mixture", 1),
        init=_choice(mix, "init", ("peaks", "kmeans++"), f"{where}: mixture"),  # type: ignore[arg-type]
        balance=_flag(mix, "balance", True, f"{where}: mixture"),
    )
    select = _parse_select(spec.get("select", ["largest"]), dims2, where)
    distance = _number(spec.get("distance", 3.5), where, "distance")
    if distance <= 0:
        raise TemplateError(f"{where}: field 'distance': must be > 0")
    fallback = None
    if "fallback" in spec:
        fb = spec["fallback"]
        if not isinstance(fb, dict):
            raise TemplateError(f"{where}: field 'fallback': a fixed gate (kind, vertices, ...)")
        fb = {"dims": list(dims2), **fb}
        if fb.get("kind") not in ("rectangle", "polygon", "ellipse"):
            raise TemplateError(f"{where}: field 'fallback': kind rectangle, polygon or ellipse")
        fallback = _parse_geometry(fb, f"{where}: fallback")
        if tuple(fallback.dims) != dims2:
            raise TemplateError(f"{where}: field 'fallback': must use the gate's dims {dims}")
    return ClusterGate(
        dims=dims2,
        mixture=mixture,
        select=select,
        distance=distance,
        shape=_choice(spec, "shape", ("posterior", "ellipse"), where),  # type: ignore[arg-type]
        grid=_count(spec, "grid", 128, where, 16),
        fallback=fallback,  # type: ignore[arg-type]
    )


_PICKS = ("largest", "all")
_STEPS = ("exclude", "where", "min_weight", "lowest", "highest", *_PICKS)


def _parse_select(value: Any, dims: tuple[str, str], where: str) -> tuple[Any, ...]:
    fw = f"{where}: field 'select'"
    steps = value if isinstance(value, list) else [value]
    if not steps:
        raise TemplateError(f"{fw}: a list of steps ({', '.join(_STEPS)})")
    out: list[tuple[str, Any]] = []
    for step in steps:
        if isinstance(step, str) and step in _PICKS:
            out.append((step, None))
            continue
        within = None
        if isinstance(step, dict) and "within" in step and len(step) == 2:
            step = dict(step)
            within = _number(step.pop("within"), where, "select.within")
            if within < 0 or not set(step) <= {"lowest", "highest"}:
                raise TemplateError(f"{fw}: 'within' (>= 0) goes with lowest or highest")
        if not isinstance(step, dict) or len(step) != 1:
            raise TemplateError(
                f"{fw}: each step is one of {', '.join(_PICKS)} or a one-key mapping "
                f"({', '.join(_STEPS[:5])}); got {step!r}"
            )
        ((op, arg),) = step.items()
        if op == "exclude":
            pops = [arg] if isinstance(arg, str) else arg
            if not isinstance(pops, list) or not all(isinstance(p, str) for p in pops):
                raise TemplateError(f"{fw}: 'exclude': a list of population names")
            out.append(("exclude", tuple(pops)))
        elif op == "where":
            out.append(("where", _parse_where(arg, dims, f"{fw}: 'where'")))
        elif op == "min_weight":
            out.append(("min_weight", _fraction(arg, where, "select.min_weight")))
        elif op in ("lowest", "highest"):
            if arg not in dims:
                raise TemplateError(f"{fw}: '{op}': one of the gate's dims {list(dims)}")
            out.append((op, (dims.index(arg), within)))
        else:
            raise TemplateError(f"{fw}: unknown step {op!r} (one of {', '.join(_STEPS)})")
    return tuple(out)


def _parse_where(arg: Any, dims: tuple[str, ...], where: str) -> tuple[Any, ...]:
    if not isinstance(arg, dict) or not arg:
        raise TemplateError(f"{where}: a mapping DIM -> {{above|below: bound}}")
    out = []
    for dim, cond in arg.items():
        if dim not in dims:
            raise TemplateError(f"{where}: {dim!r} is not one of the gate's dims {list(dims)}")
        if not isinstance(cond, dict) or not cond or set(cond) - {"above", "below"}:
            raise TemplateError(f"{where}: {dim}: a mapping with 'above' and/or 'below'")
        for side, b in cond.items():
            out.append((dims.index(dim), side, _parse_bound(b, f"{where}: {dim}.{side}")))
    return tuple(out)


def _bound_list(value: Any, n: int, fieldname: str, where: str) -> tuple[Bound | None, ...]:
    if value is None:
        return (None,) * n
    values = value if isinstance(value, list) else [value]
    if len(values) != n:
        raise TemplateError(f"{where}: field {fieldname!r}: needs {n} value(s), got {len(values)}")
    return tuple(
        None if v is None else _parse_bound(v, f"{where}: field {fieldname!r}") for v in values
    )


def _parse_bound(value: Any, where: str) -> Bound:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Bound(value=float(value))
    if not isinstance(value, dict) or not isinstance(value.get("of"), str):
        raise TemplateError(
            f"{where}: a number or {{of: POPULATION, stat: median|mean|quantile, n: k, "
            "spread: sd|mad}"
        )
    _no_unknown(value, _BOUND_FIELDS, where)
    stat = _choice(value, "stat", ("median", "mean", "quantile"), where)
    q = _fraction(value.get("q", 0.5), where, "q")
    if "q" in value and stat != "quantile":
        raise TemplateError(f"{where}: field 'q': only with stat: quantile")
    dim = value.get("dim")
    if dim is not None and not isinstance(dim, str):
        raise TemplateError(f"{where}: field 'dim': a marker name")
    return Bound(
        of=value["of"],
        dim=dim,
        stat=stat,  # type: ignore[arg-type]
        q=q,
        n=_number(value.get("n", 0.0), where, "n"),
        spread=_choice(value, "spread", ("mad", "sd"), where),  # type: ignore[arg-type]
    )


def _parse_qc(value: Any, where: str) -> QCRules:
    if value is None:
        return QCRules()
    fw = f"{where}: field 'qc'"
    if not isinstance(value, dict):
        raise TemplateError(f"{fw}: a mapping ({', '.join(sorted(_QC_FIELDS))})")
    _no_unknown(value, _QC_FIELDS, fw)
    flag_with = value.get("flag_with", [])
    flag_with = [flag_with] if isinstance(flag_with, str) else flag_with
    if not isinstance(flag_with, list) or not all(isinstance(p, str) for p in flag_with):
        raise TemplateError(f"{fw}: 'flag_with': a list of population names")
    rules = {
        k: _fraction(value[k], fw, k)
        for k in ("min_fraction", "max_fraction", "max_overlap")
        if value.get(k) is not None
    }
    return QCRules(reason=str(value.get("reason", "")), flag_with=tuple(flag_with), **rules)


# --------------------------------------------------------------------------- whole-tree checks


def _dependency_order(gates: list[GateSpec], where: str) -> tuple[GateSpec, ...]:
    """Order gates so each comes after its parent and its boolean operands."""
    owner: dict[str, GateSpec] = {}
    for g in gates:
        for pop in g.populations():
            if pop == ROOT:
                raise TemplateError(f"{where}: gate '{g.name}': '{ROOT}' is reserved")
            if pop in owner:
                raise TemplateError(f"{where}: gate '{g.name}': population {pop!r} defined twice")
            owner[pop] = g
    ordered: list[GateSpec] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(g: GateSpec, chain: list[str]) -> None:
        if state.get(g.name) == 2:
            return
        if state.get(g.name) == 1:
            raise TemplateError(f"{where}: gates form a cycle: {' -> '.join([*chain, g.name])}")
        state[g.name] = 1
        for dep in sorted(g.depends_on()):
            if dep not in owner:
                fieldname = "parent" if dep == g.parent else "of"
                raise TemplateError(
                    f"{where}: gate '{g.name}': field '{fieldname}': no population {dep!r} "
                    f"(populations: {', '.join([ROOT, *owner])})"
                )
            visit(owner[dep], [*chain, g.name])
        state[g.name] = 2
        ordered.append(g)

    for g in gates:
        visit(g, [])
    return tuple(ordered)


def _check_references(template: Template, where: str) -> None:
    by_population = {pop: g for g in template.gates for pop in g.populations()}
    for g in template.gates:
        for geometry in g.variants:
            dims = list(geometry.dims) + [d for d in _bound_dims(geometry) if d is not None]
            for dim in dims:
                if dim not in template.panel:
                    raise TemplateError(
                        f"{where}: gate '{g.name}': field 'dims': marker {dim!r} is not in the "
                        f"panel ({', '.join(template.panel)})"
                    )
                template.scale_for(dim)
            if isinstance(geometry, ClusterGate):
                _check_excluded(g, geometry, by_population, where)
    populations = set(template.population_names()) | {ROOT}
    for g in template.gates:
        for pop in g.qc.flag_with:
            if pop not in populations:
                raise TemplateError(
                    f"{where}: gate '{g.name}': field 'qc': flag_with: no population {pop!r}"
                )
    for role, pop in template.roles.items():
        if pop not in populations:
            raise TemplateError(f"{where}: field 'roles': {role} -> no population {pop!r}")


def _bound_dims(geometry: Any) -> list[str | None]:
    if isinstance(geometry, RelativeGate):
        return [b.dim for b in (*geometry.min, *geometry.max) if b is not None]
    if isinstance(geometry, ClusterGate):
        return [b.dim for op, arg in geometry.select if op == "where" for _, _, b in arg]
    return []


def _check_excluded(
    g: GateSpec, geometry: ClusterGate, by_population: dict[str, GateSpec], where: str
) -> None:
    """``exclude`` names cluster gates fitted on the same mixture (parent, dims, settings)."""
    for pop in geometry.excluded():
        other = by_population.get(pop)
        same = other is not None and any(
            isinstance(v, ClusterGate) and v.dims == geometry.dims and v.mixture == geometry.mixture
            for v in other.variants
        )
        if not same or other is None or other.parent != g.parent:
            raise TemplateError(
                f"{where}: gate '{g.name}': field 'select': 'exclude' population {pop!r} must be "
                "a cluster gate with the same parent, dims and mixture settings"
            )
