"""What the batch did to each file, as values: the record plots and the report draw from.

A :class:`FileOutcome` carries every decision the gating made for one file (the gates as
applied, with their fitted geometries; the scale and channel of each dimension; the
compensation matrix; the population counts and QC flags), so a figure can re-read the events
and show exactly those gates without fitting or choosing anything. Workers return a
:class:`GroupOutput` (table rows, outcomes, pinned geometries), never a dict of loose keys.
See docs/architecture.md (per-file outcome).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cytogate.errors import CytogateError

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.gating.engine import AppliedGate, GatingResult
    from cytogate.gating.gates import Geometry
    from cytogate.io.fcs import Sample
    from cytogate.model.transforms import Scale

FileStatus = Literal["ok", "failed"]


@dataclass(frozen=True, kw_only=True)
class DimensionRecord:
    """Where one template dimension was read in a file and on which scale it was shown."""

    dim: str
    channel: str  # $PnN
    index: int  # column of the file's events
    channel_range: float  # $PnR
    scale: Scale


@dataclass(frozen=True, kw_only=True)
class CompensationRecord:
    """The spillover matrix applied (rows and columns labelled by $PnN)."""

    channels: tuple[str, ...]
    matrix: tuple[tuple[float, ...], ...]


@dataclass(frozen=True, kw_only=True)
class FileOutcome:
    """One file of the run: its design keys, status, and what the gating applied to it."""

    file: Path
    name: str = ""  # how the tables name the file (relative to the run folder)
    patient: str
    timepoint: str
    tube: str
    status: FileStatus
    error: str = ""
    role: str = "stained"  # stained, isotype, fmo or unstained
    control_for: str = ""  # a control's stained tube (its name in the draw)
    sha256: str = ""
    n_events: int = 0
    template: str = ""
    compensation: str = ""  # which matrix, in words
    spillover: CompensationRecord | None = None
    gates: tuple[AppliedGate, ...] = ()  # as the engine applied them (fitted geometries)
    #: gate name -> the populations it defines (a quadrant defines several, even if skipped)
    defines: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dimensions: Mapping[str, DimensionRecord] = field(default_factory=dict)
    channel_map: Mapping[str, str] = field(default_factory=dict)  # marker -> $PnN
    counts: Mapping[str, int] = field(default_factory=dict)
    parents: Mapping[str, str] = field(default_factory=dict)
    qc: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # flagged populations
    keywords: Mapping[str, str] = field(default_factory=dict)  # CYTOGATE_* design keywords

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.file.name)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def simulated(self) -> bool:
        return str(self.keywords.get("CYTOGATE_SIMULATED", "")).strip().upper() == "TRUE"

    @property
    def populations(self) -> list[str]:
        return list(self.counts)

    def pct_parent(self, population: str) -> float:
        parent = self.parents[population]
        total = self.n_events if parent == "root" else self.counts[parent]
        return 100.0 * self.counts[population] / total if total else float("nan")

    def populations_of(self, gate: AppliedGate) -> tuple[str, ...]:
        """The populations ``gate`` defines in this file's template."""
        return tuple(self.defines.get(gate.name, (gate.name,)))

    def gate_of(self, population: str) -> AppliedGate:
        for g in self.gates:
            if population in self.populations_of(g):
                return g
        raise KeyError(population)


@dataclass(frozen=True, kw_only=True)
class GroupOutput:
    """A worker's result: table rows, the files' outcomes, the baseline pins it used."""

    samples: tuple[dict[str, Any], ...] = ()
    populations: tuple[dict[str, Any], ...] = ()
    markers: tuple[dict[str, Any], ...] = ()
    seconds: Mapping[str, float] = field(default_factory=dict)
    outcomes: tuple[FileOutcome, ...] = ()
    #: patient -> gate name -> geometry reused from the baseline (``pin: baseline`` templates)
    pins: Mapping[str, Mapping[str, Geometry]] = field(default_factory=dict)

    @staticmethod
    def merge(outputs: list[GroupOutput]) -> GroupOutput:
        return GroupOutput(
            samples=tuple(r for o in outputs for r in o.samples),
            populations=tuple(r for o in outputs for r in o.populations),
            markers=tuple(r for o in outputs for r in o.markers),
            seconds={k: v for o in outputs for k, v in o.seconds.items()},
            outcomes=tuple(x for o in outputs for x in o.outcomes),
            pins={k: v for o in outputs for k, v in o.pins.items()},
        )


_DESIGN_KEYWORDS = ("CYTOGATE_PATIENT", "CYTOGATE_TIMEPOINT", "CYTOGATE_TUBE", "CYTOGATE_SIMULATED")


def failed_outcome(row: Any, error: str) -> FileOutcome:
    """The outcome of a design row (:class:`~cytogate.study.design.DesignRow`) not gated."""
    return FileOutcome(
        file=row.file,
        name=row.name,
        patient=row.patient,
        timepoint=row.timepoint,
        tube=row.tube,
        status="failed",
        error=error,
        role=getattr(row, "role", "") or "stained",
        control_for=getattr(row, "control_for", ""),
    )


def record_outcome(
    result: GatingResult,
    *,
    file: Path | None = None,
    name: str = "",
    patient: str = "",
    timepoint: str = "",
    tube: str = "",
    channel_map: Mapping[str, str] | None = None,
    role: str = "stained",
    control_for: str = "",
) -> FileOutcome:
    """The outcome of a gated file. Call it after the file's channel map has been taken for
    its control tube: recording a dimension resolves the panel's other markers in ``result``.
    """
    sample = result.sample
    gates = tuple(result.gates)
    cmap = dict(channel_map if channel_map is not None else result.channel_map())
    path = Path(file) if file is not None else sample.path
    return FileOutcome(
        file=path,
        name=name or path.name,
        patient=patient,
        timepoint=timepoint,
        tube=tube,
        role=role,
        control_for=control_for,
        status="ok",
        sha256=sample.sha256,
        n_events=sample.n_events,
        template=result.template.name,
        compensation=result.compensation,
        spillover=_spillover(result),
        gates=gates,
        defines={spec.name: tuple(spec.populations()) for spec in result.template.gates},
        dimensions=_dimensions(result, sample),
        channel_map=cmap,
        counts={pop: result.count(pop) for pop in result.populations},
        parents={pop: result.parent(pop) for pop in result.populations},
        qc=result.qc_flags(),
        keywords={k: str(sample.keywords[k]) for k in _DESIGN_KEYWORDS if k in sample.keywords},
    )


def _spillover(result: GatingResult) -> CompensationRecord | None:
    matrix = result.spillover
    if matrix is None:
        return None
    return CompensationRecord(  # as the engine applied it: columns are the file's $PnN
        channels=tuple(str(c) for c in matrix.columns),
        matrix=tuple(tuple(float(v) for v in row) for row in matrix.to_numpy(dtype=float)),
    )


def _dimensions(result: GatingResult, sample: Sample) -> dict[str, DimensionRecord]:
    """Every panel marker found in the file, with the scale this file used for it."""
    out = {}
    for marker in result.template.panel:
        try:
            resolved = result.resolve(marker)
            scale = result.scale_for(marker)
        except CytogateError:
            continue  # not in this file: a figure that needs it says so
        out[marker] = DimensionRecord(
            dim=marker,
            channel=resolved.pnn,
            index=resolved.index,
            channel_range=float(sample.channels["pnr"].iloc[resolved.index]),
            scale=scale,
        )
    return out
