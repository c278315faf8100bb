"""One draw's work in a worker: read, gate and quantify its tubes (docs/architecture.md §3).

Per sample group (the stained tube and its matched control tube of one patient at one
timepoint) the stained tube is gated first, so the control resolves its markers on the same
detectors; with gates pinned to the baseline, a worker takes all of one patient's groups,
baseline first, and reuses the baseline stained tube's fits. A file that cannot be read or
gated is recorded as failed with its reason; nothing here raises for a bad file.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cytogate.errors import CytogateError
from cytogate.study.design import (
    STAINED,
    DesignRow,
    RunConfig,
    SampleGroup,
)
from cytogate.study.outcome import FileOutcome, GroupOutput, failed_outcome, record_outcome

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.gating.engine import GatingResult
    from cytogate.gating.gates import Geometry
    from cytogate.gating.template import Template


SAMPLE_KEYS = ["file", "patient", "timepoint", "tube"]


def sample_record(row: DesignRow) -> dict[str, Any]:
    """The samples.csv row of a file before it is read: failed until proven otherwise."""
    return {
        "file": row.name,  # relative to the run folder
        "sha256": "",
        "patient": row.patient,
        "timepoint": row.timepoint,
        "tube": row.tube,
        "cohort": row.cohort,
        "wbc_per_ul": row.wbc_per_ul,
        "beads_per_ul": row.beads_per_ul,
        "fcs_version": "",
        "events": None,
        "compensation": "",
        "status": "failed",
        "error": "",
        "warnings": "",
    }


@dataclass
class _GroupState:
    """What one sample group's files accumulate while they are gated, stained tube first."""

    out_samples: list[dict[str, Any]] = field(default_factory=list)
    out_populations: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    outcomes: list[FileOutcome] = field(default_factory=list)
    results: dict[str, GatingResult] = field(default_factory=dict)
    reference: dict[str, str] | None = None


def process_group(
    group: SampleGroup,
    template: Template,
    config: RunConfig,
    pinned: Mapping[str, Geometry] | None = None,
) -> GroupOutput:
    """Read, gate and quantify one patient × timepoint (stained tube + control tube).

    ``pinned``: gate name -> geometry reused instead of fitting (see :func:`process_patient`);
    ``{}`` means pins were asked for but none is available (such gates are fitted and flagged).
    For a template with pinned gates and ``pinned=None`` (the baseline group), the stained
    tube is fitted and its control tube reuses those fits; they come back as ``pins``.
    Never raises for a bad file: the file's record says ``failed`` with the reason.
    """
    from cytogate.analysis.quantify import MarkerPlan, marker_rows

    state = _GroupState()
    pin_gates = {g.name for g in template.gates if g.pin}
    baseline_pins: dict[str, Geometry] | None = None
    for row in (group.stained, group.control):  # stained first: the control resolves through it
        if row is None:
            continue
        result = _gate_one(row, template, config, pinned, state)
        if row.tube == STAINED and pin_gates and pinned is None:  # baseline: its fits are pins
            fits = result.fitted_geometries() if result is not None else {}
            pinned = baseline_pins = {g: fits[g] for g in pin_gates if g in fits}

    markers: list[dict[str, Any]] = []
    stained = state.results.get(STAINED)
    if stained is not None and group.stained is not None:
        control = state.results.get(config.control_tube)
        s_rows, c_rows = marker_rows(stained, control, MarkerPlan.from_config(config))
        markers += [{**_keys(group.stained), **r} for r in s_rows]
        if control is not None and group.control is not None:
            markers += [{**_keys(group.control), **r} for r in c_rows]
            _flag_draw(state.out_populations, stained, control, group, template, config)
    return GroupOutput(
        samples=tuple(state.out_samples),
        populations=tuple(state.out_populations),
        markers=tuple(markers),
        seconds=state.seconds,
        outcomes=tuple(state.outcomes),
        pins={group.patient: baseline_pins} if baseline_pins is not None else {},
    )


def _flag_draw(
    populations: list[dict[str, Any]],
    stained: GatingResult,
    control: GatingResult,
    group: SampleGroup,
    template: Template,
    config: RunConfig,
) -> None:
    """Flag the blasts of both tubes when their blast shares of one draw disagree."""
    from cytogate.analysis.draw_agreement import draw_disagreement

    blasts = template.roles.get("blasts", "blasts")
    why = draw_disagreement(
        stained,
        control,
        f"{group.patient} {group.timepoint}",
        config.control_tube,
        blasts,
        template.roles.get("leukocytes", "leukocytes"),
    )
    if not why:
        return
    for r in populations:
        if r.get("population") == blasts and "qc_flag" in r:
            r["qc_flag"] = True
            r["qc_reason"] = "; ".join(x for x in (r.get("qc_reason"), why) if x)


def _gate_one(
    row: DesignRow,
    template: Template,
    config: RunConfig,
    pinned: Mapping[str, Geometry] | None,
    state: _GroupState,
) -> GatingResult | None:
    """Gate one file into ``state``: its samples/populations rows, outcome and timing."""
    from cytogate.analysis.quantify import MarkerPlan, marker_reference, population_rows
    from cytogate.gating.engine import gate
    from cytogate.io.fcs import read_fcs

    record = sample_record(row)
    start = time.perf_counter()
    result = None
    try:
        sample = read_fcs(row.file)
        result = gate(sample, template, reference=state.reference, pinned=pinned)
        record.update(
            sha256=sample.sha256,
            fcs_version=sample.version,
            events=sample.n_events,
            compensation=result.compensation,
            status="ok",
            warnings="; ".join(sample.warnings),
        )
        state.results[row.tube] = result
        channel_map = None
        if row.tube == STAINED:
            plan = MarkerPlan.from_config(config)
            state.reference = channel_map = marker_reference(result, plan)
        keys = {k: record[k] for k in SAMPLE_KEYS}
        state.out_populations += [
            {**keys, **r} for r in population_rows(result, row.wbc_per_ul, row.beads_per_ul)
        ]
        outcome = record_outcome(
            result,
            file=row.file,
            name=row.name,
            patient=row.patient,
            timepoint=row.timepoint,
            tube=row.tube,
            channel_map=channel_map,
        )
    except CytogateError as exc:
        record["error"] = str(exc)
    except Exception as exc:  # a bug must not sink a 1,000-file run; report it per file
        record["error"] = f"unexpected {type(exc).__name__}: {exc} (please report)"
    if record["error"]:
        outcome = failed_outcome(row, record["error"])
    state.outcomes.append(outcome)
    state.seconds[row.name] = time.perf_counter() - start
    state.out_samples.append(record)
    return result


def process_patient(
    groups: list[SampleGroup], template: Template, config: RunConfig
) -> GroupOutput:
    """All sample groups of one patient, baseline first, for templates with pinned gates.

    The baseline stained tube's fits of the ``pin: baseline`` gates are reused for every other
    file of the patient (its control tube included). Without a usable baseline stained tube
    those gates are fitted per file and flagged. ``pins`` = {patient: {gate: geometry}}.
    """
    baseline = [g for g in groups if g.timepoint == config.baseline]
    others = [g for g in groups if g.timepoint != config.baseline]
    outputs = []
    pins: dict[str, Geometry] = {}
    for group in baseline:
        out = process_group(group, template, config, None)
        pins = dict(out.pins.get(group.patient, {}))
        outputs.append(out)
    outputs += [process_group(group, template, config, pins) for group in others]
    merged = GroupOutput.merge(outputs)
    patient = {groups[0].patient: pins} if groups else {}
    return GroupOutput(
        samples=merged.samples,
        populations=merged.populations,
        markers=merged.markers,
        seconds=merged.seconds,
        outcomes=merged.outcomes,
        pins=patient,
    )


def _keys(row: DesignRow) -> dict[str, str]:
    return {
        "file": row.name,
        "patient": row.patient,
        "timepoint": row.timepoint,
        "tube": row.tube,
    }
