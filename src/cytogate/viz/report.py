"""``report.html``: a batch run's summary, statistics, time-course figures and gate plots.

The report is one HTML file (rendered from ``templates/report.html.j2`` with autoescaping)
with inline CSS and a few lines of inline script, next to the ``plots/`` folder it links to
(relative links only, no network resource), so the output folder can be zipped, mailed or
archived as it is. If the page is opened without its ``plots/`` folder, the script says so.

:func:`write_plots_and_report` draws the figures from the batch's recorded outcomes and
tables (see :mod:`cytogate.viz.render`) and writes the page atomically.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytogate.atomic import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from jinja2 import Environment
    from jinja2 import Template as PageTemplate

    from cytogate.study.batch import BatchResult
    from cytogate.study.design import RunConfig
    from cytogate.viz.render import PlotEntry
    from cytogate.viz.timecourse import TimecourseEntry

PLOTS_DIR = "plots"
REPORT_NAME = "report.html"
#: What every drawing worker imports, imported once in this process before the workers are
#: forked (they inherit it): matplotlib with its font list, the figure modules, FCS reading.
PLOT_PRELOAD = (
    "matplotlib.backends.backend_agg",
    "matplotlib.figure",
    "matplotlib.image",
    "matplotlib.font_manager",
    "cytogate.viz.render",
    "cytogate.viz.events",
    "cytogate.viz.density_image",
    "cytogate.viz.timecourse_values",
    "cytogate.io.fcs",
    "cytogate.gating.gates",
)


def write_plots_and_report(
    result: BatchResult,
    config: RunConfig,
    out: str | os.PathLike[str],
    jobs: int = 1,
    fmt: str = "png",
    dpi: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Path], dict[str, Any]]:
    """Draw every plot of a run into ``out/plots/`` and write ``out/report.html``.

    Sample groups are drawn on ``jobs`` processes from ``result.outcomes``. PNG resolution:
    ``dpi`` for the per-sample plots (default :data:`~cytogate.viz.figure.SAMPLE_DPI`) and at
    least :data:`~cytogate.viz.figure.DPI` for the time-course figures. Returns the files
    written and a summary for run.json (format, dpi, timings, plot errors).
    """
    from cytogate.analysis.quantify import MarkerPlan
    from cytogate.study.design import STAINED
    from cytogate.study.executors import run_jobs
    from cytogate.viz.figure import DPI, FORMATS, SAMPLE_DPI
    from cytogate.viz.render import PlotJobResult, plot_jobs, plot_task
    from cytogate.viz.timecourse import TimecourseEntry, timecourse_tasks

    if fmt not in FORMATS:
        raise ValueError(f"plot format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    dpi = dpi or SAMPLE_DPI
    figure_dpi = max(DPI, dpi)
    out_path = Path(out)
    plots_dir = out_path / PLOTS_DIR
    plots_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    groups = plot_jobs(result.outcomes, result.markers, STAINED, config.control_tube)
    simulated = any(o.simulated for o in result.outcomes)
    courses = timecourse_tasks(
        result.timecourse,
        result.stats,
        result.measures.values(),
        config.timepoints,
        config.baseline,
        simulated,
        control=config.control_tube,
        controls=_marker_controls(config),
    )
    # one pool for both kinds: the time courses (largest figures) first, then the groups
    tasks: list[Any] = [*courses, *groups]
    done = 0

    def on_done(_i: int, res: Any) -> None:
        nonlocal done
        if isinstance(res, PlotJobResult) and progress is not None:
            done += 1
            progress(done - 1, len(groups))

    outputs = run_jobs(
        plot_task,
        tasks,
        max(1, jobs),
        args=(MarkerPlan.from_config(config), str(plots_dir), fmt, dpi, figure_dpi),
        on_done=on_done,
        preload=PLOT_PRELOAD,
    )
    drawn = time.perf_counter()
    figures = [o for o in outputs if isinstance(o, TimecourseEntry)]
    results = [o for o in outputs if isinstance(o, PlotJobResult)]
    entries = [e for o in results for e in o.entries]
    timecourse_s = sum(o.seconds for o in outputs if isinstance(o, TimecourseEntry))
    summary: dict[str, Any] = {
        "format": fmt,
        "dpi": dpi,
        "timecourse_dpi": figure_dpi,
        "jobs": max(1, jobs),
        "folder": str(plots_dir),
        "report": str(out_path / REPORT_NAME),
        "errors": [{"file": e.file, "kind": e.kind, "error": e.error} for e in entries if e.error],
        "qc_flags": [
            {"file": e.file, "flags": {p: list(r) for p, r in e.qc.items()}}
            for e in entries
            if e.qc
        ],
        "timings": {  # wall time of the whole pool, and process time of the time courses
            "sample_plots_s": drawn - start,
            "timecourse_plots_s": timecourse_s,
        },
    }
    cd34 = _cd34_section(result, out_path, simulated)  # ISHAGE runs: counts, flags, groups
    page = render_report(result, config, entries, figures, summary, simulated, cd34)
    report = atomic_write(
        out_path / REPORT_NAME, lambda p: Path(p).write_text(page, encoding="utf-8")
    )
    summary["timings"]["report_s"] = time.perf_counter() - drawn
    summary["timings"]["total_s"] = time.perf_counter() - start
    written = []
    for e in entries:
        written += [out_path / p for p in (e.path, e.thumb) if p]
    for f in figures:
        shown = (f.path, f.preview, f.patients_path, f.patients_preview)
        written += sorted({out_path / p for p in (*shown, f.values_path, f.values_preview) if p})
    written.append(report)
    if cd34:
        written.append(out_path / cd34["figure"])
    return written, summary


def _marker_controls(config: RunConfig) -> dict[str, str]:
    """marker -> the kind of control its RMFI divides by, where the config sets one."""
    control_role = getattr(config, "control_role", None)
    if control_role is None:
        return {}
    return {m: control_role(m) for m, _ in getattr(config, "marker_controls", ())}


def _cd34_section(result: BatchResult, out: Path, simulated: bool) -> dict[str, Any] | None:
    """The report's CD34 section: per-tube counts and flags, group tests, yield per group."""
    from cytogate.viz.cd34_figures import FIGURE_NAME, yield_by_group_figure

    cd34 = result.extra.get("cd34")
    if cd34 is None or not len(cd34):
        return None
    yield_by_group_figure(cd34, out / PLOTS_DIR / FIGURE_NAME, simulated=simulated)
    groups = result.extra.get("groups")

    def rows(frame: Any) -> tuple[list[str], list[list[str]]]:
        if frame is None or not len(frame):
            return [], []
        cells = [[_cell(v) for v in rec] for rec in frame.itertuples(index=False)]
        return [str(c) for c in frame.columns], cells

    tube_columns, tube_rows = rows(cd34)
    group_columns, group_rows = rows(groups)
    return {
        "figure": f"{PLOTS_DIR}/{FIGURE_NAME}",
        "tube_columns": tube_columns,
        "tube_rows": tube_rows,
        "group_columns": group_columns,
        "group_rows": group_rows,
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"
    return str(value)


# --------------------------------------------------------------------------- the page


@lru_cache(maxsize=1)
def page_environment() -> Environment:
    """The jinja2 environment of every page cytogate writes (autoescaped)."""
    from jinja2 import Environment, select_autoescape

    return Environment(
        autoescape=select_autoescape(default=True),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@lru_cache(maxsize=1)
def _page_template() -> PageTemplate:
    return page_environment().from_string(resource("report.html.j2"))


def resource(name: str) -> str:
    """A file of ``cytogate/viz/templates`` (page templates, CSS, script) as text."""
    return resources.files("cytogate.viz").joinpath("templates", name).read_text("utf-8")


_resource = resource


def _fmt(value: Any, digits: int = 3) -> str:
    """Numbers for tables: significant digits, 'n/a' for NaN, p-values in scientific form."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "n/a"
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.{digits}g}"


def render_report(
    result: BatchResult,
    config: RunConfig,
    entries: Sequence[PlotEntry],
    figures: Sequence[TimecourseEntry],
    plots: dict[str, Any],
    simulated: bool,
    cd34: dict[str, Any] | None = None,
) -> str:
    """The whole page as a string (see the module docstring for what it holds)."""
    from markupsafe import Markup

    from cytogate import __version__
    from cytogate.viz.figure import SIMULATED_TEXT

    run = result.run
    warnings = run.get("warnings") or []
    qc_flags = [
        (item["file"], "; ".join(dict.fromkeys(r for rs in item["flags"].values() for r in rs)))
        for item in plots.get("qc_flags", [])
    ]
    return _page_template().render(
        run_name=Path(str(run.get("run_dir", "run"))).name or "run",
        css=Markup(_resource("report.css")),
        script=Markup(_resource("report.js")),
        simulated=simulated,
        simulated_text=SIMULATED_TEXT,
        version=__version__,
        summary=_summary(result, config, plots),
        failed=[(r.file, r.error) for r in result.failed.itertuples()]
        if len(result.samples)
        else [],
        plot_errors=plots["errors"],
        qc_flags=qc_flags,
        warnings=warnings,
        figures=list(figures),
        baseline=config.baseline,
        stats_columns=[c for c, _ in _STATS_COLUMNS],
        stats_rows=_stats_rows(result),
        marker_populations=", ".join(config.marker_populations),
        control_tube=config.control_tube,
        mfi_statistic=config.mfi_statistic,
        gallery=_gallery(result, config, entries),
        cd34=cd34,
    )


def _summary(result: BatchResult, config: RunConfig, plots: dict[str, Any]) -> dict[str, Any]:
    run = result.run
    samples = result.samples
    n = len(samples)
    tmpl = run.get("template", {})
    timings = run.get("timings", {})
    return {
        "run_dir": run.get("run_dir", ""),
        "n_files": n,
        "n_failed": len(result.failed) if n else 0,
        "n_patients": samples["patient"].nunique() if n else 0,
        "n_timepoints": samples["timepoint"].nunique() if n else 0,
        "design": run.get("design_source", ""),
        "template_name": tmpl.get("name", ""),
        "template_sha": str(tmpl.get("sha256", ""))[:16],
        "template_path": tmpl.get("path", "") or "",
        "python": run.get("python", ""),
        "measures": (
            f"MFI statistic {config.mfi_statistic}; RMFI vs {config.control_tube} tube; "
            f"% positive above p{config.positivity_percentile:g} of the "
            f"{config.control_tube} tube; "
            f"test {config.test}, correction {config.correction}; baseline {config.baseline}"
        ),
        "timings": (
            "gating and quantification "
            f"{timings.get('gate_and_quantify_s', float('nan')):.1f} s "
            f"on {run.get('jobs', '?')} process(es); plots "
            f"{plots['timings'].get('sample_plots_s', float('nan')):.1f} s + time course "
            f"{plots['timings'].get('timecourse_plots_s', float('nan')):.1f} s "
            f"({plots['format']}, {plots['dpi']} dpi, {plots['jobs']} process(es))"
        ),
    }


_STATS_COLUMNS = (
    ("comparison", False),
    ("n_pairs", True),
    ("mean_fc", True),
    ("sem_fc", True),
    ("median_fc", True),
    ("test", False),
    ("p", True),
    ("p_adj", True),
    ("stars", False),
    ("note", False),
)


def _stats_rows(result: BatchResult) -> list[dict[str, Any]]:
    stats: pd.DataFrame = result.stats
    rows = []
    for row in stats.to_dict("records") if not stats.empty else []:
        cells = []
        for col, numeric in _STATS_COLUMNS:
            value = row.get(col, "")
            if numeric:
                cells.append((_fmt(value), True))
            else:
                blank = value is None or (isinstance(value, float) and math.isnan(value))
                cells.append(("" if blank else str(value), False))
        measure = result.measures.get(row["measure"])
        rows.append(
            {
                "measure": row["measure"],
                "label": measure.label if measure is not None else row["measure"],
                "significant": isinstance(row.get("stars"), str) and row["stars"].startswith("*"),
                "cells": cells,
            }
        )
    return rows


def _gallery(
    result: BatchResult, config: RunConfig, entries: Sequence[PlotEntry]
) -> list[dict[str, Any]]:
    """Patients -> timepoints -> cards (stained gates, control gates, markers)."""
    from cytogate.study.design import STAINED

    tubes = list(dict.fromkeys(result.samples["tube"])) if len(result.samples) else []
    multi = bool(set(tubes) - {STAINED, config.control_tube})
    by_key: dict[tuple[str, str], dict[str, PlotEntry]] = {}
    for e in entries:
        slot = e.tube if e.kind != "markers" else f"markers:{e.tube}" if multi else "markers"
        by_key.setdefault((e.patient, e.timepoint), {})[slot] = e
    failed = {r.file: r.error for r in result.failed.itertuples()} if len(result.samples) else {}
    order = {tp: i for i, tp in enumerate(config.timepoints)}
    slots = [
        (STAINED, "gates, stained tube"),
        (config.control_tube, f"gates, {config.control_tube} tube"),
        ("markers", f"markers, stained vs {config.control_tube}"),
    ]
    if multi:  # a multi-tube panel: each tube's gates, each stained tube's markers after it
        stained = {o.tube for o in result.outcomes if o.role == STAINED}
        slots = []
        for tube in tubes:
            slots.append((tube, f"gates, {tube} tube"))
            if tube in stained:
                slots.append((f"markers:{tube}", f"markers, {tube} vs its control"))
    gallery = []
    for patient in sorted({p for p, _ in by_key}):
        tps = sorted((tp for p, tp in by_key if p == patient), key=lambda t: order.get(t, 99))
        timepoints = []
        for tp in tps:
            cards = [
                _card(by_key[(patient, tp)].get(slot), failed, config, what) for slot, what in slots
            ]
            timepoints.append({"name": tp, "cards": cards})
        gallery.append({"name": patient, "timepoints": timepoints})
    return gallery


def _card(
    e: PlotEntry | None, failed: dict[str, str], config: RunConfig, what: str
) -> dict[str, Any]:
    if e is None:
        return {"missing": True, "what": what}
    card: dict[str, Any] = {"missing": False, "what": what, "file": e.file}
    if e.error or not e.thumb:
        card["error"] = failed.get(e.file) or e.error or "not drawn"
        return card
    card.update(path=e.path, thumb=e.thumb, alt=f"{e.kind} of {e.file}", error="")
    bits = []
    if e.kind == "gates":
        for pop in config.marker_populations:
            if pop in e.counts:
                count, pct, parent = e.counts[pop]
                bits.append(f"{pop} {count:,} ({_fmt(pct, 3)}% of {parent})")
    card["counts"] = "; ".join(bits)
    # a flag on a gate passes to the populations under it: name each reason once
    card["qc"] = "; ".join(dict.fromkeys(r for rs in e.qc.values() for r in rs))
    return card
