"""Load and validate declarative gating templates (YAML).

A template names markers (resolved per file by :mod:`cytogate.panel`), says how to compensate,
gives each dimension a scale, and lists gates as a tree. Coordinates are in the scaled space of
the gate's dimensions (see :mod:`cytogate.transforms`). A gate may list ``variants`` — the first
whose dimensions all exist in the file is used — so one singlet gate serves instruments with
FSC-H and those with only FSC-W. A gate marked ``optional`` is skipped (and recorded as skipped)
when no variant fits the file.

Every validation error names the template file, the gate and the field, because the person who
reads it is editing that file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cytogate.errors import TemplateError
from cytogate.gating.gates import (
    QUADRANT_SIGNS,
    Boolean,
    Ellipse,
    Geometry,
    Polygon,
    Quadrant,
    Rectangle,
)
from cytogate.panel import Marker
from cytogate.transforms import Scale

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
_GATE_FIELDS = {"name", "parent", "optional", "description", "variants"}
_GEOMETRY_FIELDS: dict[str, set[str]] = {
    "rectangle": {"dims", "min", "max"},
    "range": {"dims", "min", "max"},
    "polygon": {"dims", "vertices"},
    "ellipse": {"dims", "center", "half_axes", "angle", "covariance", "distance_square"},
    "quadrant": {"dims", "at", "populations"},
    "boolean": {"op", "of"},
}


@dataclass(frozen=True)
class GateSpec:
    """One gate of the tree: a name, its parent population and one or more geometry variants."""

    name: str
    parent: str
    variants: tuple[Geometry, ...]
    optional: bool = False
    description: str = ""

    @property
    def kind(self) -> str:
        return self.variants[0].kind

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
        return deps - {ROOT}


@dataclass(frozen=True)
class Template:
    """A validated gating template. Gates are in dependency order (parents first)."""

    name: str
    description: str
    panel: dict[str, Marker]
    compensation: str  # "file" (the FCS spillover keyword), "none", or a path to a CSV matrix
    scales: dict[str, Scale]
    gates: tuple[GateSpec, ...]
    roles: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""

    def scale_for(self, dim: str) -> Scale:
        if dim in self.scales:
            return self.scales[dim]
        if "default" in self.scales:
            return self.scales["default"]
        raise TemplateError(f"{self.source}: dimension {dim!r} has no scale and no default scale")

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
    """Load a template by bundled name (``"aml_blasts_cd45_ssc"``) or by path to a YAML file."""
    if isinstance(name_or_path, Template):
        return name_or_path
    path = Path(name_or_path)
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


def _parse_scales(section: Any, where: str) -> dict[str, Scale]:
    if not isinstance(section, dict):
        raise TemplateError(f"{where}: field 'scales': a mapping of marker name -> scale")
    return {
        str(dim): Scale.from_spec(spec, f"{where}: scale of {dim!r}")
        for dim, spec in section.items()
    }


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
        gates.append(
            GateSpec(
                name=gname,
                parent=str(entry.get("parent", ROOT)),
                variants=variants,
                optional=bool(entry.get("optional", False)),
                description=str(entry.get("description", "")),
            )
        )
    return gates


def _all_geometry_fields() -> set[str]:
    return {"kind"}.union(*_GEOMETRY_FIELDS.values())


def _parse_geometry(spec: Any, where: str) -> Geometry:
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
    for g in template.gates:
        for geometry in g.variants:
            for dim in geometry.dims:
                if dim not in template.panel:
                    raise TemplateError(
                        f"{where}: gate '{g.name}': field 'dims': marker {dim!r} is not in the "
                        f"panel ({', '.join(template.panel)})"
                    )
                template.scale_for(dim)
    populations = set(template.population_names()) | {ROOT}
    for role, pop in template.roles.items():
        if pop not in populations:
            raise TemplateError(f"{where}: field 'roles': {role} -> no population {pop!r}")
