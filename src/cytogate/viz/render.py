"""Drawing a run's per-sample figures: one job per sample group, from the recorded outcomes.

A job gets the group's :class:`~cytogate.study.outcome.FileOutcome` values and its rows of
``markers.csv``; it re-reads the files (:class:`~cytogate.viz.events.EventView`) and draws the
gate plots of both tubes and the marker plot. Nothing is gated or fitted here; a file whose
gating failed gets an entry that carries the reason. Jobs run on worker processes (started
once per run, not per job) and return small :class:`PlotEntry` values.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cytogate.viz.figure import (
    DPI,
    FORMATS,
    PlotError,
    error_text,
    save_figure,
    save_image,
    thumbnail_width,
    with_text_style,
)
from cytogate.viz.gate_plots import draw_gates, gate_figure, gate_layout, gate_static
from cytogate.viz.layouts import LayoutCache
from cytogate.viz.marker_plots import draw_markers, marker_figure, marker_layout, marker_static
from cytogate.viz.timecourse import TimecourseEntry, TimecourseTask, draw_timecourse

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from cytogate.analysis.quantify import MarkerPlan
    from cytogate.gating.engine import GatingResult
    from cytogate.study.outcome import FileOutcome
    from cytogate.viz.events import EventView

#: Sub-folders of ``plots/``.
GATES_DIR, MARKERS_DIR, THUMBS_DIR = "gates", "markers", "thumbs"

#: This process's figure layouts (a worker draws many files of the same layout).
_LAYOUTS = LayoutCache()


@dataclass(frozen=True, kw_only=True)
class PlotEntry:
    """One per-sample figure as the report links it (paths relative to the output folder)."""

    kind: Literal["gates", "markers"]
    file: str
    patient: str
    timepoint: str
    tube: str
    path: str = ""
    thumb: str = ""
    error: str = ""
    simulated: bool = False
    #: population -> (events, % of parent, parent), gate plots only
    counts: Mapping[str, tuple[int, float, str]] = field(default_factory=dict)
    qc: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # flagged populations


@dataclass(frozen=True, kw_only=True)
class PlotJob:
    """One sample group to draw: its tubes' outcomes and the stained tube's marker rows."""

    patient: str
    timepoint: str
    stained: FileOutcome | None
    control: FileOutcome | None
    marker_rows: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True)
class PlotJobResult:
    entries: tuple[PlotEntry, ...]
    seconds: float


def plot_jobs(
    outcomes: Sequence[FileOutcome], markers: Any, stained_tube: str, control_tube: str
) -> list[PlotJob]:
    """One job per stained tube of a draw (in the outcomes' order), with its control and its
    marker rows: the control its markers were divided by (markers.csv ``control_file``), else
    its first control; a two-tube run's tubes are ``stained_tube`` and ``control_tube``."""
    groups: dict[tuple[str, str, str], dict[str, FileOutcome]] = {}
    for o in outcomes:
        if o.role == "stained" or o.tube == stained_tube:
            groups.setdefault((o.patient, o.timepoint, o.tube), {}).setdefault("stained", o)
    for o in outcomes:
        if o.role != "stained" and o.tube != stained_tube:
            target = o.control_for or stained_tube
            key = (o.patient, o.timepoint, target)
            tubes = groups.setdefault(key, {})
            tubes.setdefault(o.name, o)
            if o.tube == control_tube:
                tubes.setdefault("control", o)
    rows: dict[str, list[dict[str, Any]]] = {}
    used: dict[str, str] = {}
    if markers is not None and len(markers):
        stained_names = {t["stained"].name for t in groups.values() if "stained" in t}
        for r in markers[markers["file"].isin(stained_names)].to_dict("records"):
            rows.setdefault(r["file"], []).append(r)
            if isinstance(r.get("control_file"), str) and r["control_file"]:
                used.setdefault(r["file"], r["control_file"])
    jobs = []
    for (patient, timepoint, _), tubes in groups.items():
        stained = tubes.get("stained")
        controls = [o for k, o in tubes.items() if k not in ("stained", "control")]
        control = tubes.get("control")
        if stained is not None and stained.name in used:
            control = next((o for o in controls if o.name == used[stained.name]), control)
        if control is None and controls:
            control = controls[0]
        jobs.append(
            PlotJob(
                patient=patient,
                timepoint=timepoint,
                stained=stained,
                control=control,
                marker_rows=tuple(rows.get(stained.name, ())) if stained else (),
            )
        )
    return jobs


def plot_task(
    task: PlotJob | TimecourseTask,
    plan: MarkerPlan,
    plots_dir: str,
    fmt: str = "png",
    dpi: int = DPI,
    figure_dpi: int = DPI,
) -> PlotJobResult | TimecourseEntry:
    """Worker: a sample group's figures, or one time-course figure (one pool draws both)."""
    if isinstance(task, TimecourseTask):
        return draw_timecourse(task, plots_dir, fmt, figure_dpi)
    return plot_group(task, plan, plots_dir, fmt, dpi)


@with_text_style
def plot_group(
    job: PlotJob, plan: MarkerPlan, plots_dir: str, fmt: str = "png", dpi: int = DPI
) -> PlotJobResult:
    """Worker: gate plots of one group's stained and control tubes and its marker plot.

    Never raises for a bad file: its entry carries the error.
    """
    from cytogate.viz.events import EventView

    start = time.perf_counter()
    root = Path(plots_dir)
    entries: list[PlotEntry] = []
    views: dict[str, EventView] = {}
    for outcome in (job.stained, job.control):
        if outcome is None:
            continue
        base = {
            "file": outcome.name,
            "patient": job.patient,
            "timepoint": job.timepoint,
            "tube": outcome.tube,
        }
        try:
            view = EventView.from_outcome(outcome)
            paths = _draw_gates(view, root, outcome.file.stem, fmt, dpi)
            views["stained" if outcome is job.stained else "control"] = view
            counts = {
                p: (outcome.counts[p], outcome.pct_parent(p), outcome.parents[p])
                for p in outcome.populations
            }
            entries.append(
                PlotEntry(
                    kind="gates",
                    **base,
                    **paths,
                    simulated=view.simulated,
                    counts=counts,
                    qc=dict(outcome.qc),
                )
            )
        except Exception as exc:  # one bad file must not stop the other plots
            entries.append(PlotEntry(kind="gates", **base, error=outcome.error or error_text(exc)))
    stained = views.get("stained")
    if stained is not None and job.stained is not None:
        base = {
            "file": job.stained.name,
            "patient": job.patient,
            "timepoint": job.timepoint,
            "tube": job.stained.tube,
        }
        try:
            stem = f"{job.stained.file.stem}_markers"
            paths = _draw_markers(stained, views.get("control"), plan, job, root, stem, fmt, dpi)
            entries.append(PlotEntry(kind="markers", **base, **paths, simulated=stained.simulated))
        except Exception as exc:
            entries.append(PlotEntry(kind="markers", **base, error=error_text(exc)))
    return PlotJobResult(entries=tuple(entries), seconds=time.perf_counter() - start)


def _draw_gates(view: EventView, root: Path, stem: str, fmt: str, dpi: int) -> dict[str, str]:
    """The gate figure of ``view``, on a reused layout when it is a PNG with a shared one."""
    layout = gate_layout(view)
    if fmt != "png" or layout.key is None:
        return _save(gate_figure(view).figure, root, GATES_DIR, stem, fmt, dpi)
    image = _LAYOUTS.render(
        ("gates", layout.key),
        lambda: gate_static(layout),
        lambda fig: draw_gates(fig, view, layout),
        dpi,
    )
    return _save_png(image, root, GATES_DIR, stem, dpi)


def _draw_markers(
    stained: EventView,
    control: EventView | None,
    plan: MarkerPlan,
    job: PlotJob,
    root: Path,
    stem: str,
    fmt: str,
    dpi: int,
) -> dict[str, str]:
    population = plan.populations[0]
    layout, by_marker = marker_layout(stained, plan, job.marker_rows, population)
    if fmt != "png" or layout.key is None:
        fig = marker_figure(stained, control, plan, job.marker_rows)
        return _save(fig, root, MARKERS_DIR, stem, fmt, dpi)
    image = _LAYOUTS.render(
        ("markers", layout.key),
        lambda: marker_static(layout),
        lambda fig: draw_markers(fig, stained, control, plan, by_marker, layout),
        dpi,
    )
    return _save_png(image, root, MARKERS_DIR, stem, dpi)


def _save(fig: Figure, root: Path, sub: str, stem: str, fmt: str, dpi: int) -> dict[str, str]:
    full = root / sub / f"{stem}.{fmt}"
    thumb = root / THUMBS_DIR / f"{stem}.png"
    width = thumbnail_width(fig.get_figwidth())
    save_figure(fig, full, dpi=dpi, thumbnail=thumb, thumbnail_width=width)
    return {
        "path": f"{root.name}/{sub}/{full.name}",
        "thumb": f"{root.name}/{THUMBS_DIR}/{thumb.name}",
    }


def _save_png(image: Any, root: Path, sub: str, stem: str, dpi: int) -> dict[str, str]:
    full = root / sub / f"{stem}.png"
    thumb = root / THUMBS_DIR / f"{stem}.png"
    width = thumbnail_width(image.width / dpi)
    save_image(image, full, dpi, thumbnail=thumb, thumbnail_width=width)
    return {
        "path": f"{root.name}/{sub}/{full.name}",
        "thumb": f"{root.name}/{THUMBS_DIR}/{thumb.name}",
    }


# --------------------------------------------------------------------------- one sample (CLI)


def tube_marker_plan(result: GatingResult, plan: MarkerPlan) -> MarkerPlan:
    """``plan`` restricted to the markers ``result``'s panel carries.

    In a multi-tube panel a stained tube carries some of the run's markers (a Ki67 tube only
    Ki67), so ``cytogate plot`` of one tube draws those; a tube that carries none of them keeps
    them all, each panel then saying why it cannot be drawn.
    """
    from cytogate.analysis.quantify import panel_problem

    carried = {m for m in plan.markers if not panel_problem(result, m)}
    if not carried:
        return plan
    return replace(
        plan,
        rmfi=tuple(m for m in plan.rmfi if m in carried),
        positivity=tuple(m for m in plan.positivity if m in carried),
    )


@with_text_style
def plot_sample(
    file: str | os.PathLike[str],
    template: Any = None,
    out: str | os.PathLike[str] | None = None,
    *,
    control: str | os.PathLike[str] | None = None,
    dpi: int = DPI,
    compensation: str | None = None,
) -> list[Path]:
    """``cytogate plot``: one file's gate figure, and its marker figure if ``control`` is given.

    ``out`` (default ``<file stem>_gates.png`` in the current folder) names the gate figure;
    its suffix picks the format (png, svg, pdf). The marker figure goes next to it, named
    ``…_markers`` with the same suffix. Returns the files written.
    """
    from cytogate.analysis.quantify import MarkerPlan, marker_reference, marker_rows
    from cytogate.gating.engine import gate
    from cytogate.io.fcs import read_fcs
    from cytogate.study.design import RunConfig

    target = Path(out) if out is not None else Path.cwd() / f"{Path(file).stem}_gates.png"
    fmt = target.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise PlotError(
            f"{target}: output must end in {', '.join('.' + f for f in FORMATS)} "
            f"(got {target.suffix or 'no suffix'})"
        )
    result = gate(read_fcs(file), template, compensation=compensation)
    jobs = [(gate_figure(result).figure, target)]
    if control is not None:
        plan = tube_marker_plan(result, MarkerPlan.from_config(RunConfig()))
        reference = marker_reference(result, plan)
        c_result = gate(read_fcs(control), template, compensation=compensation, reference=reference)
        rows, _ = marker_rows(result, c_result, plan)
        stem = target.stem.removesuffix("_gates")
        jobs.append(
            (
                marker_figure(result, c_result, plan, rows),
                target.with_name(f"{stem}_markers{target.suffix}"),
            )
        )
    written = []
    for fig, path in jobs:
        try:
            written += save_figure(fig, path, dpi=dpi)
        except OSError as exc:
            raise PlotError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    return written
