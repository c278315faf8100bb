"""The gate-kind registry: each kind is declared once, as a :class:`Kind`, and looked up by name.

A kind's declaration holds its YAML fields (names, defaults, checks, docs), its parser, and —
for a data-driven kind — its fitter. The loader's validation, the engine's fit dispatch and the
field listing (``cytogate templates --kinds``, :func:`kinds_markdown`) all read it, so a new
kind is one new module that calls :func:`register` (see docs/adaptive_gating.md, "Adding a
gate kind"; in the manner of openCyto's gating-method registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cytogate.gating.fields import REQUIRED, Entry, Field

Parse = Callable[[Entry], Any]
Fitter = Callable[..., Any]  # (spec, name, parent, points, ctx) -> fitting.base.Fit


def _no_references(geometry: Any) -> set[str]:
    return set()


def _own_dims(geometry: Any) -> tuple[str, ...]:
    return tuple(geometry.dims)


@dataclass(frozen=True)
class Kind:
    """One gate kind.

    ``references``: populations a geometry of this kind needs evaluated first (boolean
    operands, reference populations). ``flag_sources``: those whose QC flags it inherits
    (default: its references). ``marker_dims``: every marker it reads (dims and the dims of
    its bounds). ``check``: a whole-template rule run once every population is known
    (``(gate, geometry, gates_by_population, entry) -> None``). ``variants``: whether a gate of
    this kind may list ``variants``.
    """

    name: str
    summary: str
    fields: tuple[Field, ...]
    parse: Parse
    fit: Fitter | None = None
    produces: str = ""
    references: Callable[[Any], set[str]] = _no_references
    flag_sources: Callable[[Any], set[str]] | None = None
    marker_dims: Callable[[Any], tuple[str, ...]] = _own_dims
    check: Callable[..., None] | None = None
    variants: bool = True
    nested: tuple[tuple[str, tuple[Field, ...]], ...] = ()  # (label, fields) of sub-mappings

    @property
    def adaptive(self) -> bool:
        """Fitted per file (threshold, cluster, relative) rather than fixed in the template."""
        return self.fit is not None

    @property
    def field_map(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    def sources_of_flags(self, geometry: Any) -> set[str]:
        return (self.flag_sources or self.references)(geometry)


KINDS: dict[str, Kind] = {}
"""Registered kinds by name, in registration order."""


def register(kind: Kind) -> Kind:
    if kind.name in KINDS:
        raise ValueError(f"gate kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind
    return kind


def fields_markdown(fields: tuple[Field, ...] | list[Field]) -> str:
    """A Markdown table of declared fields: name, default, meaning."""
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for f in fields:
        default = "required" if f.default is REQUIRED else _show(f.default)
        doc = f.doc.replace("|", "\\|")  # a bar would end the table cell
        rows.append(f"| `{f.name}` | {default} | {doc} |")
    return "\n".join(rows)


def kinds_markdown() -> str:
    """The documented field list of every kind, generated from the registry (a Markdown table
    per kind; ``cytogate templates --kinds`` prints it, docs/gate_kinds.md holds it)."""
    out = []
    for kind in KINDS.values():
        tag = "fitted per file" if kind.adaptive else "fixed"
        out.append(f"### `{kind.name}` — {kind.summary} ({tag})\n")
        if kind.produces:
            out.append(f"Becomes: {kind.produces}.\n")
        out.append(fields_markdown(kind.fields) + "\n")
        for label, fields in kind.nested:
            out.append(f"`{kind.name}` {label}:\n")
            out.append(fields_markdown(fields) + "\n")
    return "\n".join(out)


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return f"`{value}`"
