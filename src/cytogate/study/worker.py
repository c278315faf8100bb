"""One draw's work in a worker: read, gate and quantify its tubes (docs/architecture.md §3).

Per draw (one patient at one timepoint: its stained tubes, each with its controls) each stained
tube is gated first, so its controls resolve their markers on the same detectors; with gates
pinned to the baseline, a worker takes all of one patient's draws, baseline first, and reuses
the baseline's first stained tube's fits. A file that cannot be read or
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
    TubeSet,
)
from cytogate.study.outcome import FileOutcome, GroupOutput, failed_outcome, record_outcome

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.analysis.quantify import MarkerPlan
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
    """What one draw's files accumulate while they are gated, each stained tube first."""

    out_samples: list[dict[str, Any]] = field(default_factory=list)
    out_populations: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    outcomes: list[FileOutcome] = field(default_factory=list)
    results: dict[str, GatingResult] = field(default_factory=dict)  # by file name


def process_group(
    group: SampleGroup,
    template: Template,
    config: RunConfig,
    pinned: Mapping[str, Geometry] | None = None,
) -> GroupOutput:
    """Read, gate and quantify one draw (patient × timepoint): each stained tube, then its
    controls, which resolve their markers on the stained tube's detectors.

    ``pinned``: gate name -> geometry reused instead of fitting (see :func:`process_patient`);
    ``{}`` means pins were asked for but none is available (such gates are fitted and flagged).
    For a template with pinned gates and ``pinned=None`` (the baseline draw), the draw's first
    stained tube is fitted and every other tube of the draw reuses those fits; they come back
    as ``pins``. Each marker is quantified from the stained tube that carries it (see
    :func:`_assign`) against that tube's control of the kind configured for the marker.
    Never raises for a bad file: the file's record says ``failed`` with the reason.
    """
    from cytogate.analysis.quantify import MarkerPlan, marker_reference

    state = _GroupState()
    plan = MarkerPlan.from_config(config)
    pin_gates = {g.name for g in template.gates if g.pin}
    baseline_pins: dict[str, Geometry] | None = None
    for tubes in group.tubes:
        result = _gate_one(tubes.stained, template, pinned, state, None, plan)
        if pin_gates and pinned is None:  # baseline: the first stained tube's fits are pins
            fits = result.fitted_geometries() if result is not None else {}
            pinned = baseline_pins = {g: fits[g] for g in pin_gates if g in fits}
        reference = marker_reference(result, plan) if result is not None else None
        for row in tubes.controls:
            _gate_one(row, template, pinned, state, reference, plan)
    for row in group.orphans:
        _gate_one(row, template, pinned, state, None, plan)

    markers = _marker_rows(group, state.results, plan, config)
    for tubes in group.tubes:
        stained = state.results.get(tubes.stained.name)
        for row in tubes.controls:
            control = state.results.get(row.name)
            if stained is not None and control is not None:
                _flag_draw(state.out_populations, stained, control, tubes, row, group, template)
    return GroupOutput(
        samples=tuple(state.out_samples),
        populations=tuple(state.out_populations),
        markers=tuple(markers),
        seconds=state.seconds,
        outcomes=tuple(state.outcomes),
        pins={group.patient: baseline_pins} if baseline_pins is not None else {},
    )


def _assign(
    group: SampleGroup,
    results: Mapping[str, GatingResult],
    marker: str,
    config: RunConfig,
) -> tuple[TubeSet | None, str]:
    """The stained tube of the draw ``marker`` is quantified from, or why none (missing data).

    A two-tube draw (tube ``stained``) measures every marker on its one stained tube (a
    channel it lacks is that row's reason). Otherwise: the tube ``marker_tubes`` names, else
    the one whose panel carries the marker; two carriers are refused (``check_markers_resolve``
    stops such a run before gating; here it is the row's reason).
    """
    from cytogate.analysis.quantify import panel_problem

    if len(group.tubes) == 1 and group.tubes[0].stained.tube == STAINED:
        return group.tubes[0], ""
    named = dict(config.marker_tubes).get(marker)
    if named is not None:
        hits = [t for t in group.tubes if t.stained.tube == named]
        if hits:
            return hits[0], ""
        return None, f"no {named!r} tube (marker_tubes) in this draw"
    problems = {
        t.stained.name: panel_problem(results[t.stained.name], marker)
        for t in group.tubes
        if t.stained.name in results
    }
    carriers = [t for t in group.tubes if problems.get(t.stained.name) == ""]
    if len(carriers) == 1:
        return carriers[0], ""
    if carriers:
        files = " and ".join(t.stained.name for t in carriers)
        return None, f"{marker} is in stained tubes {files}; name one in marker_tubes"
    listed = ", ".join(
        f"{t.stained.tube}" + ("" if t.stained.name in results else " (failed)")
        for t in group.tubes
    )
    ambiguous = [why for why in problems.values() if "matches no channel" not in why]
    return None, "; ".join([f"not in this draw's panel (stained tubes: {listed})", *ambiguous])


def _marker_rows(
    group: SampleGroup,
    results: Mapping[str, GatingResult],
    plan: MarkerPlan,
    config: RunConfig,
) -> list[dict[str, Any]]:
    """markers.csv rows of a draw: per population × marker, the stained tube's row (with the
    control file and role it was divided by) and the control's row."""
    from cytogate.analysis.quantify import marker_row, missing_marker_row

    gated = [t for t in group.tubes if t.stained.name in results]
    if not gated:
        return []
    assigned = {m: _assign(group, results, m, config) for m in plan.markers}
    stained_rows: dict[str, list[dict[str, Any]]] = {}
    control_rows: dict[str, list[dict[str, Any]]] = {}
    for population in plan.populations:
        for marker in plan.markers:
            tubes, why = assigned[marker]
            if tubes is None:
                row = missing_marker_row(population, marker, plan, why)
                first = gated[0].stained
                stained_rows.setdefault(first.name, []).append(
                    {**_keys(first), **row, "control_file": "", "control_role": ""}
                )
                continue
            if tubes.stained.name not in results:
                continue  # its stained file failed: it has no rows (as a two-tube draw)
            role = plan.control_role(marker)
            c_row = tubes.control(role, marker)
            control = results.get(c_row.name) if c_row is not None else None
            no_control = _no_control(tubes, role, marker, c_row)
            s, c = marker_row(
                results[tubes.stained.name], control, population, marker, plan, no_control
            )
            stained_rows.setdefault(tubes.stained.name, []).append(
                {
                    **_keys(tubes.stained),
                    **s,
                    "control_file": c_row.name if control is not None and c_row else "",
                    "control_role": role if control is not None else "",
                }
            )
            if c is not None and c_row is not None:
                control_rows.setdefault(c_row.name, []).append({**_keys(c_row), **c})
    out: list[dict[str, Any]] = []
    for tubes in group.tubes:  # a file's rows together, in the draw's tube order
        out += stained_rows.get(tubes.stained.name, [])
        for row in tubes.controls:
            out += control_rows.get(row.name, [])
    return out


def _no_control(tubes: TubeSet, role: str, marker: str, row: DesignRow | None) -> str:
    """Why a stained tube's marker has no control values (the RMFI / % positive reason)."""
    if row is not None:
        return f"{role} control {row.name} failed"
    if tubes.stained.tube == STAINED and not tubes.controls:
        return "no matched control tube"  # a two-tube draw without its control, as ever
    which = f"fmo control omitting {marker}" if role == "fmo" else f"{role} control"
    return f"no {which} for tube {tubes.stained.tube!r} in this draw"


def _flag_draw(
    populations: list[dict[str, Any]],
    stained: GatingResult,
    control: GatingResult,
    tubes: TubeSet,
    control_row: DesignRow,
    group: SampleGroup,
    template: Template,
) -> None:
    """Flag the blasts of a stained tube and its control when their blast shares disagree."""
    from cytogate.analysis.draw_agreement import draw_disagreement

    blasts = template.roles.get("blasts", "blasts")
    why = draw_disagreement(
        stained,
        control,
        f"{group.patient} {group.timepoint}",
        control_row.tube,
        blasts,
        template.roles.get("leukocytes", "leukocytes"),
    )
    if not why:
        return
    files = {tubes.stained.name, control_row.name}
    for r in populations:
        if r.get("population") == blasts and "qc_flag" in r and r.get("file") in files:
            r["qc_flag"] = True
            r["qc_reason"] = "; ".join(x for x in (r.get("qc_reason"), why) if x)


def _gate_one(
    row: DesignRow,
    template: Template,
    pinned: Mapping[str, Geometry] | None,
    state: _GroupState,
    reference: Mapping[str, str] | None,
    plan: MarkerPlan,
) -> GatingResult | None:
    """Gate one file into ``state``: its samples/populations rows, outcome and timing.

    ``reference``: marker -> $PnN of the stained tube a control belongs to (None for a
    stained tube, which records its own channel map).
    """
    from cytogate.analysis.quantify import marker_reference, population_rows
    from cytogate.gating.engine import gate
    from cytogate.io.fcs import read_fcs

    record = sample_record(row)
    start = time.perf_counter()
    result = None
    try:
        sample = read_fcs(row.file)
        result = gate(sample, template, reference=reference, pinned=pinned)
        record.update(
            sha256=sample.sha256,
            fcs_version=sample.version,
            events=sample.n_events,
            compensation=result.compensation,
            status="ok",
            warnings="; ".join(sample.warnings),
        )
        state.results[row.name] = result
        channel_map = None if row.is_control else marker_reference(result, plan)
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
            role=row.role,
            control_for=row.control_for,
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
