"""The template model: a validated template, its gates and their QC rules, apart from YAML
(:mod:`cytogate.gating.loader` builds these; see docs/architecture.md, "gating")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytogate.errors import TemplateError
from cytogate.gating import fields as f
from cytogate.gating.fields import Field, field_table
from cytogate.gating.gates import Quadrant
from cytogate.gating.kinds import kind_of
from cytogate.model.panel import Marker
from cytogate.model.transforms import Scale, ScaleAlternatives

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.io.fcs import Sample

ROOT = "root"
PIN_CHOICES = ("baseline",)

QC_FIELDS = field_table(
    (
        Field(
            "min_fraction",
            "flag when the gate holds less of its parent than this",
            None,
            f.fraction,
        ),
        Field(
            "max_fraction",
            "flag when the gate holds more of its parent than this",
            None,
            f.fraction,
        ),
        Field(
            "max_overlap", "cluster gates: flag above this Bhattacharyya overlap", None, f.fraction
        ),
        Field("reason", "text appended to a fraction flag", ""),
        Field("flag_with", "populations whose QC flags this gate shares", ()),
    )
)


@dataclass(frozen=True, kw_only=True)
class QCRules:
    """A gate's quality-control rules (any gate kind; fitted gates add their own reasons).

    ``min_fraction`` / ``max_fraction``: share of the parent's events in the gate outside which
    the gate is flagged (with ``reason`` appended, e.g. "possible CD45-negative blasts").
    ``flag_with``: populations whose flags this gate shares (besides its parent chain and the
    populations it refers to, which always pass their flags on).
    ``max_overlap``: cluster gates — flag when the chosen cluster's Bhattacharyya overlap with
    another cluster exceeds this (poorly separated).
    """

    min_fraction: float | None = QC_FIELDS["min_fraction"].default
    max_fraction: float | None = QC_FIELDS["max_fraction"].default
    max_overlap: float | None = QC_FIELDS["max_overlap"].default
    reason: str = QC_FIELDS["reason"].default
    flag_with: tuple[str, ...] = QC_FIELDS["flag_with"].default

    def check_fraction(self, fraction: float, parent: str) -> list[str]:
        out = []
        suffix = f": {self.reason}" if self.reason else ""
        if not math.isfinite(fraction):
            return [f"no {parent} events to gate"] if self.min_fraction is not None else []
        if self.min_fraction is not None and fraction < self.min_fraction:
            out.append(
                f"{100 * fraction:.2f}% of {parent} (< {100 * self.min_fraction:g}%){suffix}"
            )
        if self.max_fraction is not None and fraction > self.max_fraction:
            out.append(
                f"{100 * fraction:.2f}% of {parent} (> {100 * self.max_fraction:g}%){suffix}"
            )
        return out


@dataclass(frozen=True)
class GateSpec:
    """One gate of the tree: a name, its parent population and one or more geometry variants
    (fixed geometries of :mod:`cytogate.gating.gates` or parsed adaptive gates)."""

    name: str
    parent: str
    variants: tuple[Any, ...]
    optional: bool = False
    description: str = ""
    pin: str | None = None  # "baseline": a batch reuses the patient's baseline fit
    qc: QCRules = field(default_factory=QCRules)
    line: int | None = field(default=None, compare=False)  # YAML line of the entry

    @property
    def kind(self) -> str:
        return self.variants[0].kind

    @property
    def adaptive(self) -> bool:
        return any(kind_of(v).adaptive for v in self.variants)

    def qc_sources(self) -> set[str]:
        """Populations whose QC flags this gate inherits: its parent, the populations whose
        statistics it uses (bounds, reference populations) and ``qc.flag_with``."""
        deps = {self.parent, *self.qc.flag_with}
        for geometry in self.variants:
            deps.update(kind_of(geometry).sources_of_flags(geometry))
        return deps - {ROOT}

    def populations(self) -> tuple[str, ...]:
        """Population names this gate defines (a quadrant gate defines several)."""
        first = self.variants[0]
        if isinstance(first, Quadrant):
            return tuple(first.populations)
        return (self.name,)

    def depends_on(self) -> set[str]:
        """Populations that must be evaluated before this gate."""
        deps = {self.parent}
        for geometry in self.variants:
            deps.update(kind_of(geometry).references(geometry))
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
