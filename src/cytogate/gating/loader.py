"""YAML → :class:`~cytogate.gating.model.Template`, with every error on one line naming the
file, its line, the gate and the field (see docs/adaptive_gating.md, "Template errors").

A template names markers (resolved per file by :mod:`cytogate.model.panel`), says how to
compensate, gives each dimension a scale (:mod:`cytogate.model.transforms`) and lists gates as
a tree. A gate's fields are validated by its kind's declaration (:mod:`cytogate.gating.kinds`);
this module reads the sections, the fields every gate has (``name``, ``parent``, ``optional``,
``variants``, ``pin``, ``qc``) and checks the whole tree (references, cycles, panel, scales).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

from cytogate.errors import CytogateError, TemplateError
from cytogate.gating.fields import (
    Entry,
    Field,
    MarkedDict,
    MarkedList,
    did_you_mean,
    field_table,
    line_of,
)
from cytogate.gating.kinds import KINDS, kind_of
from cytogate.gating.model import PIN_CHOICES, QC_FIELDS, ROOT, GateSpec, QCRules, Template
from cytogate.model.panel import Marker
from cytogate.model.transforms import Scale, ScaleAlternatives
from cytogate.userregex import compile_user_regex
from cytogate.yamlsafe import load_yaml

TOP_FIELDS = ("name", "description", "version", "panel", "compensation", "scales", "gates", "roles")
GATE_FIELDS = field_table(
    (
        Field("name", "the population's name (a quadrant names its own)"),
        Field("parent", "the population it gates", ROOT),
        Field("optional", "skip (and record) when no variant fits the file", False),
        Field("description", "free text", ""),
        Field("variants", "geometries tried in order: the first whose dims all exist"),
        Field("pin", "baseline: a batch reuses the patient's baseline fit (adaptive gates)"),
        Field("qc", f"quality rules: {', '.join(QC_FIELDS)}"),
    )
)


# --------------------------------------------------------------------------- YAML with lines


def _marked_loader() -> type:
    import yaml

    class MarkedLoader(yaml.SafeLoader):
        """Safe YAML whose mappings and sequences remember their (1-based) lines."""

    def mapping(loader: Any, node: Any) -> MarkedDict:
        out = MarkedDict()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            out[key] = loader.construct_object(value_node, deep=True)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out

    def sequence(loader: Any, node: Any) -> MarkedList:
        out = MarkedList(loader.construct_object(v, deep=True) for v in node.value)
        out.line = node.start_mark.line + 1
        out.key_lines = {i: v.start_mark.line + 1 for i, v in enumerate(node.value)}
        return out

    MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    return MarkedLoader


# --------------------------------------------------------------------------- public


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
    return _parsed(raw, path)


@functools.lru_cache(maxsize=32)
def _parsed(raw: bytes, path: Path) -> Template:
    """:func:`parse_template`, once per (text, path): ``gate(sample)`` by template name parsed
    the YAML on every call (more time than gating a 5,000-event file); a changed file has
    other bytes and is parsed again. Templates are not changed after loading."""
    return parse_template(raw, path)


def parse_template(raw: bytes | str, path: Path | None = None) -> Template:
    """Parse and validate template text. ``path`` is used in messages and provenance."""

    data = raw.encode() if isinstance(raw, str) else raw
    where = str(path) if path else "<template>"
    try:  # a SafeLoader subclass, bounded against alias bombs (cytogate.yamlsafe)
        doc = load_yaml(data, where, _marked_loader())
    except CytogateError as exc:
        raise TemplateError(str(exc)) from exc
    if not isinstance(doc, dict):
        raise TemplateError(f"{where}: a template is a YAML mapping with 'panel', 'gates', …")
    top = Entry(doc, where, "")
    top.reject_unknown(TOP_FIELDS)
    name = str(doc.get("name") or (path.stem if path else "template"))
    compensation = str(doc.get("compensation", "file"))
    if compensation not in ("file", "none") and path is not None:
        matrix = Path(compensation)
        compensation = str(matrix if matrix.is_absolute() else (path.parent / matrix))
    gates = _parse_gates(top)
    template = Template(
        name=name,
        description=str(doc.get("description", "")).strip(),
        panel=_parse_panel(top),
        compensation=compensation,
        scales=_parse_scales(top),
        gates=_dependency_order(gates, where),
        roles={str(k): str(v) for k, v in (doc.get("roles") or {}).items()},
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    _check_references(template, top)
    return template


# --------------------------------------------------------------------------- sections


def _parse_panel(top: Entry) -> dict[str, Marker]:
    section = top.raw("panel")
    if not isinstance(section, dict) or not section:
        raise top.fail("panel", "a mapping of marker name -> patterns")
    panel = {}
    for marker, patterns in section.items():
        label = f"panel marker {marker!r}"
        at = Entry(section, top.source, "")
        pats = [patterns] if isinstance(patterns, str) else patterns
        if not isinstance(pats, list) or not pats or not all(isinstance(p, str) for p in pats):
            raise at.fail(marker, "a pattern or list of patterns", label=label)
        for p in pats:
            try:  # the linear-time engine used when matching (cytogate.userregex)
                compile_user_regex(p, "pattern")
            except CytogateError as exc:
                raise at.fail(marker, f"bad pattern {p!r}: {exc}", label=label) from exc
        panel[str(marker)] = Marker(str(marker), tuple(pats))
    return panel


def _parse_scales(top: Entry) -> dict[str, Scale | ScaleAlternatives]:
    section = top.raw("scales") or {}
    if not isinstance(section, dict):
        raise top.fail("scales", "a mapping of marker name -> scale")
    out: dict[str, Scale | ScaleAlternatives] = {}
    for dim, spec in section.items():
        swhere = f"{Entry(section, top.source, '').where(dim)}: scale of {dim!r}"
        if isinstance(spec, list):
            out[str(dim)] = ScaleAlternatives.from_spec(spec, swhere)
        else:
            out[str(dim)] = Scale.from_spec(spec, swhere)
    return out


def _parse_gates(top: Entry) -> list[GateSpec]:
    section = top.raw("gates")
    if not isinstance(section, list) or not section:
        raise top.fail("gates", "a list of gates")
    gates = []
    for i, item in enumerate(section):
        if not isinstance(item, dict) or not item.get("name"):
            line = line_of(section, i)
            head = f"{top.source}:{line}" if line else top.source
            raise TemplateError(f"{head}: gate #{i + 1}: a mapping with a 'name'")
        gates.append(_parse_gate(Entry(item, top.source, f"gate '{item['name']}'", GATE_FIELDS)))
    return gates


def _parse_gate(entry: Entry) -> GateSpec:
    if "variants" in entry:
        entry.reject_unknown(GATE_FIELDS)
        specs = entry.raw("variants")
        if not isinstance(specs, list) or not specs:
            raise entry.fail("variants", "a non-empty list")
        variants = tuple(
            _parse_geometry(
                Entry(
                    spec if isinstance(spec, dict) else {},
                    entry.source,
                    entry.context + (f" variant {j + 1}" if len(specs) > 1 else ""),
                    line=line_of(specs, j),
                ),
                spec,
            )
            for j, spec in enumerate(specs)
        )
    else:
        variants = (_parse_geometry(entry, entry.data, gate_fields=True),)
    if len(variants) > 1 and not all(kind_of(v).variants for v in variants):
        raise entry.fail(None, "quadrant and boolean gates cannot have variants")
    pin = entry.raw("pin")
    if pin is not None:
        if pin not in PIN_CHOICES:
            raise entry.fail("pin", f"one of {', '.join(PIN_CHOICES)} (got {pin!r})")
        if not any(kind_of(v).adaptive for v in variants):
            raise entry.fail("pin", "only adaptive gates can be pinned")
    return GateSpec(
        name=str(entry.raw("name")),
        parent=str(entry.raw("parent", ROOT)),
        variants=variants,
        optional=bool(entry.raw("optional", False)),
        description=str(entry.raw("description", "")),
        pin=pin,
        qc=_parse_qc(entry),
        line=entry.line,
    )


def _parse_geometry(entry: Entry, spec: Any, gate_fields: bool = False) -> Any:
    """One geometry (or adaptive gate) of a gate, validated by its kind's declaration."""
    kinds = ", ".join(KINDS)
    if not isinstance(spec, dict) or "kind" not in spec:
        raise entry.fail("kind", f"one of {kinds}")
    name = spec["kind"]
    if name not in KINDS:
        hint = did_you_mean(str(name), KINDS)
        raise entry.fail("kind", f"unknown gate kind {name!r}{hint} (one of {kinds})")
    kind = KINDS[name]
    entry.fields = {**(GATE_FIELDS if gate_fields else {}), **kind.field_map}
    entry.reject_unknown({"kind", *kind.field_map, *(GATE_FIELDS if gate_fields else ())})
    return kind.parse(entry)


def _parse_qc(gate: Entry) -> QCRules:
    if gate.raw("qc") is None:
        return QCRules()
    qc = gate.sub("qc", QC_FIELDS)
    qc.reject_unknown(QC_FIELDS)
    flag_with = qc.raw("flag_with", [])
    flag_with = [flag_with] if isinstance(flag_with, str) else flag_with
    if not isinstance(flag_with, list) or not all(isinstance(p, str) for p in flag_with):
        raise qc.fail("flag_with", "a list of population names")
    rules = {
        k: qc.get(k)
        for k in ("min_fraction", "max_fraction", "max_overlap")
        if qc.raw(k) is not None
    }
    return QCRules(reason=str(qc.raw("reason", "")), flag_with=tuple(flag_with), **rules)


# --------------------------------------------------------------------------- whole-tree checks


def _dependency_order(gates: list[GateSpec], where: str) -> tuple[GateSpec, ...]:
    """Order gates so each comes after its parent and the populations it refers to."""
    owner: dict[str, GateSpec] = {}

    def at(g: GateSpec) -> str:
        return f"{where}:{g.line}" if g.line else where

    for g in gates:
        for pop in g.populations():
            if pop == ROOT:
                raise TemplateError(f"{at(g)}: gate '{g.name}': '{ROOT}' is reserved")
            if pop in owner:
                raise TemplateError(f"{at(g)}: gate '{g.name}': population {pop!r} defined twice")
            owner[pop] = g
    ordered: list[GateSpec] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(g: GateSpec, chain: list[str]) -> None:
        if state.get(g.name) == 2:
            return
        if state.get(g.name) == 1:
            raise TemplateError(f"{at(g)}: gates form a cycle: {' -> '.join([*chain, g.name])}")
        state[g.name] = 1
        for dep in sorted(g.depends_on()):
            if dep not in owner:
                fieldname = "parent" if dep == g.parent else "of"
                known = [ROOT, *owner]
                raise TemplateError(
                    f"{at(g)}: gate '{g.name}': field '{fieldname}': no population {dep!r}"
                    f"{did_you_mean(dep, known)} (populations: {', '.join(known)})"
                )
            visit(owner[dep], [*chain, g.name])
        state[g.name] = 2
        ordered.append(g)

    for g in gates:
        visit(g, [])
    return tuple(ordered)


def _check_references(template: Template, top: Entry) -> None:
    by_population = {pop: g for g in template.gates for pop in g.populations()}
    source = top.source
    for g in template.gates:
        entry = Entry({}, source, f"gate '{g.name}'", line=g.line)
        for geometry in g.variants:
            kind = kind_of(geometry)
            for dim in kind.marker_dims(geometry):
                if dim not in template.panel:
                    raise entry.fail(
                        "dims",
                        f"marker {dim!r} is not in the panel{did_you_mean(dim, template.panel)} "
                        f"({', '.join(template.panel)})",
                    )
                template.scale_for(dim)
            if kind.check is not None:
                kind.check(g, geometry, by_population, entry)
    populations = set(template.population_names()) | {ROOT}
    for g in template.gates:
        for pop in g.qc.flag_with:
            if pop not in populations:
                raise Entry({}, source, f"gate '{g.name}'", line=g.line).fail(
                    "qc", f"flag_with: no population {pop!r}"
                )
    for role, pop in template.roles.items():
        if pop not in populations:
            raise top.fail("roles", f"{role} -> no population {pop!r}")


def reference_markdown() -> str:
    """The template field reference, generated from the declarations: the fields every gate
    has, its ``qc:`` rules, then every registered kind (docs/gate_kinds.md is this text)."""
    from cytogate.gating.kinds.base import fields_markdown, kinds_markdown

    return "\n".join(
        [
            "# Gate kinds and their fields",
            "",
            "Generated from the kind declarations in `src/cytogate/gating/kinds/` "
            "(`cytogate templates --kinds` prints the same). Coordinates are in the scaled "
            "space of the gate's dimensions.",
            "",
            "## Fields of every gate",
            "",
            fields_markdown(tuple(GATE_FIELDS.values())),
            "",
            "`qc:` fields:",
            "",
            fields_markdown(tuple(QC_FIELDS.values())),
            "",
            "## Kinds",
            "",
            kinds_markdown(),
        ]
    )
