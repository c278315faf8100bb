"""``cytogate batch``: a run folder in, the tables of docs/architecture.md §6 out.

Workers read, gate and quantify one draw each (:mod:`cytogate.study.worker`; one patient when
gates are pinned to the baseline); the parent assembles the small per-sample records into
tables, builds the time course and the paired statistics, and writes the whole output set in
one step (:mod:`cytogate.study.output_set`). A file that cannot be read or gated is recorded as
failed with its reason and the rest go on (exit status 1); a bad manifest, config or template
stops the run before any work (exit status 2, raised as a CytogateError). Rows are sorted and
no timing goes into the tables, so a second run over the same folder writes identical tables.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cytogate import __version__
from cytogate.atomic import atomic_write
from cytogate.errors import CytogateError, DesignError
from cytogate.model.measure import Measure
from cytogate.study.design import (
    STAINED,
    Design,
    DesignRow,
    RunConfig,
    SampleGroup,
    load_config,
    read_design,
)
from cytogate.study.executors import JobFailed, default_jobs, run_jobs
from cytogate.study.outcome import FileOutcome, GroupOutput, failed_outcome
from cytogate.study.outcome_spill import HeldOutput, OutcomeSpill, pack_result
from cytogate.study.spreadsheet import neutralise_formulas
from cytogate.study.timeline import mark
from cytogate.study.worker import process_group, process_patient, sample_record

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from cytogate.gating.gates import Geometry
    from cytogate.gating.template import Template

#: Draws a batch's figures and report into a folder: (result, config, folder, jobs, format, dpi,
#: progress) -> (files written, summary for run.json). Supplied from above (cytogate.pipeline).
Renderer = Callable[..., "tuple[list[Path], dict[str, Any]]"]
OutputFormat = Literal["csv", "parquet", "both"]
TABLES = ("samples", "populations", "markers", "timecourse", "stats")
EXIT_OK, EXIT_SOME_FAILED = 0, 1
#: what a worker imports to gate a draw, imported by the parent before it forks local workers
#: so each inherits them instead of importing them again (scikit-learn alone is ~1.5 s)
WORKER_IMPORTS = (
    "cytogate.io.fcs",
    "cytogate.gating.engine",
    "cytogate.analysis.quantify",
    "cytogate.analysis.draw_agreement",
    "sklearn.mixture",
    "scipy.stats",
)


@dataclass(kw_only=True)
class BatchResult:
    """The run's tables as DataFrames, the files' outcomes, provenance and exit status."""

    samples: pd.DataFrame
    populations: pd.DataFrame
    markers: pd.DataFrame
    timecourse: pd.DataFrame
    stats: pd.DataFrame
    run: dict[str, Any]
    out: Path | None = None
    written: list[Path] = field(default_factory=list)
    #: patient -> {gate name -> geometry} reused from the baseline (templates with ``pin``)
    pinned: dict[str, dict[str, Geometry]] = field(default_factory=dict)
    #: what was applied to each file, in the order of ``samples`` (a run keeps them on disk
    #: and loads them as they are read: :mod:`cytogate.study.outcome_spill`)
    outcomes: Sequence[FileOutcome] = ()
    #: measure name (the tables' ``measure`` column) -> what it measures
    measures: dict[str, Measure] = field(default_factory=dict)
    #: tables of a specialised run, e.g. ``cd34`` and ``groups`` for an ISHAGE template
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def failed(self) -> pd.DataFrame:
        return self.samples[self.samples["status"] == "failed"]

    @property
    def exit_status(self) -> int:
        return EXIT_SOME_FAILED if len(self.failed) else EXIT_OK

    def tables(self) -> dict[str, pd.DataFrame]:
        return {**{name: getattr(self, name) for name in TABLES}, **self.extra}


# --------------------------------------------------------------------------- the run


def run_batch(
    run_dir: str | os.PathLike[str],
    template: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | RunConfig | None = None,
    out: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    output_format: OutputFormat = "csv",
    progress: Callable[[int, int, GroupOutput], None] | None = None,
    plots: bool = False,
    plot_format: str = "png",
    plot_dpi: int | None = None,
    plot_progress: Callable[[int, int], None] | None = None,
    *,
    client: Any = None,
    time_limit: float | None = None,
    renderer: Renderer | None = None,
) -> BatchResult:
    """Process a run folder; return the tables, and write them to ``out`` unless it is None.

    ``template`` overrides the config's template; ``config`` is a RunConfig, a YAML path, or
    None (``run_dir/cytogate.yaml`` if present, else the study defaults). ``progress(done,
    total, group_output)`` is called as each sample group finishes.

    With ``plots`` (and ``out``), after the tables are written, ``renderer`` draws the figures
    and ``report.html`` into the staged set. The study layer does not import the figures (a
    layer above it); :func:`cytogate.run_batch` (``cytogate.pipeline``) passes
    :func:`cytogate.viz.report.write_plots_and_report`. ``plot_progress(done, total)`` is called
    as each sample group's plots are drawn.

    The whole set goes to ``out`` as one unit (:class:`~cytogate.study.output_set.OutputSet`):
    staged beside it and swapped in at the end, so an interrupted run leaves the previous set.
    ``client``: a ``dask.distributed.Client`` to run the per-group jobs on (default: local
    processes). ``time_limit``: seconds per file (default: the config's ``file_time_limit_s``);
    a job over its limit is killed and its files reported failed.
    """
    from cytogate.gating.template import load_template
    from cytogate.study.output_set import OutputSet

    started = time.perf_counter()
    mark("run_batch")
    run_path = Path(run_dir)
    cfg = (
        config
        if isinstance(config, RunConfig)
        else load_config(run_path, Path(config) if config is not None else None)
    )
    if plots and out is not None and renderer is None:
        raise CytogateError(
            "run_batch(plots=True) needs a renderer: call cytogate.run_batch, which draws with "
            "cytogate.viz"
        )
    tmpl = load_template(template or cfg.template)
    _check_config_against_template(cfg, tmpl)
    mark("config and template loaded")
    design = read_design(run_path, cfg)
    groups = design.groups(cfg)
    mark("design read", files=len(design.rows))
    n_jobs = max(1, jobs or default_jobs())
    check_markers_resolve(design, tmpl, cfg)
    mark("markers checked")
    output = OutputSet(out, inputs=run_path).open() if out is not None else None
    spill = None
    try:
        spill = OutcomeSpill(output.spill_folder() if output is not None else None)
        result = _gate_all(
            groups,
            design,
            tmpl,
            cfg,
            run_path,
            n_jobs,
            progress,
            started,
            spill,
            client=client,
            time_limit=time_limit,
        )
        if output is not None:
            _write_set(
                result,
                output,
                groups,
                tmpl,
                cfg,
                output_format,
                n_jobs,
                renderer,
                plot_format,
                plot_dpi,
                plot_progress,
            )
    except BaseException:
        if spill is not None:
            spill.remove()
        if output is not None:
            output.abort()
        raise
    finally:
        if output is not None:
            output.close()
    return result


def _gate_all(
    groups: list[SampleGroup],
    design: Design,
    tmpl: Template,
    cfg: RunConfig,
    run_path: Path,
    n_jobs: int,
    progress: Callable[[int, int, GroupOutput], None] | None,
    started: float,
    spill: OutcomeSpill,
    *,
    client: Any = None,
    time_limit: float | None = None,
) -> BatchResult:
    if any(g.pin for g in tmpl.gates):  # one job per patient: the baseline's fits come first
        by_patient: dict[str, list[SampleGroup]] = {}
        for group in groups:
            by_patient.setdefault(group.patient, []).append(group)
        jobs_list: list[Any] = list(by_patient.values())
        worker: Callable[..., GroupOutput] = process_patient
    else:
        jobs_list, worker = list(groups), process_group
    per_file = time_limit if time_limit is not None else cfg.file_time_limit_s
    outputs = run_jobs(
        functools.partial(pack_result, worker),  # results pickled in the worker, kept as bytes
        jobs_list,
        n_jobs,
        args=(tmpl, cfg),
        on_done=(lambda i, res: progress(i, len(jobs_list), res)) if progress else None,
        on_failure=failed_output,
        time_limit=(lambda item: per_file * len(_rows_of(item))) if per_file else None,
        client=client,
        warm=("scipy.stats",),  # the paired statistics' import, off the serial path
        preload=WORKER_IMPORTS,
        cost=_input_bytes,
        keep=spill.hold,  # outcomes to disk as they arrive; the table rows kept, pickled
    )
    outputs += [spill.hold(_unreadable_output(p, why)) for p, why in design.unreadable]
    gated = time.perf_counter()
    mark("all jobs done")
    result = _assemble(outputs, design, cfg, spill)
    mark("tables assembled")
    from cytogate.study.cd34_outputs import cd34_outputs

    result.extra = cd34_outputs(run_path, tmpl, result.populations)  # {} unless ISHAGE
    result.run = _provenance(
        run_path,
        tmpl,
        cfg,
        design,
        result,
        outputs,
        n_jobs,
        {"gate_and_quantify_s": gated - started},
    )
    if client is not None:
        result.run["scheduler"] = str(
            getattr(client, "scheduler", None) and client.scheduler.address
        )
    pins = {p: dict(g) for o in outputs for p, g in o.pins.items()}
    result.pinned = pins
    if pins:
        from cytogate.gating.adaptive import geometry_to_dict

        result.run["pinned_gates"] = {
            patient: {name: geometry_to_dict(geo) for name, geo in fits.items()}
            for patient, fits in sorted(pins.items())
        }
    result.run["timings"]["total_s"] = time.perf_counter() - started
    return result


def _write_set(
    result: BatchResult,
    output: Any,
    groups: list[SampleGroup],
    tmpl: Template,
    cfg: RunConfig,
    output_format: OutputFormat,
    n_jobs: int,
    renderer: Renderer | None,
    plot_format: str,
    plot_dpi: int | None,
    plot_progress: Callable[[int, int], None] | None,
) -> None:
    """Write the whole set into the staging folder, then publish it as ``out`` in one step."""
    staging = output.staging
    result.out = output.out
    if output.recovered:
        result.run["output_recovered"] = output.recovered
    written = write_outputs(result, staging, output_format)
    mark("tables written")
    if renderer is not None:  # the tables are staged first; plots never hold up the numbers
        try:
            files, summary = renderer(
                result, cfg, staging, n_jobs, plot_format, plot_dpi, plot_progress
            )
        except JobFailed as exc:  # a plot worker died twice: publish the tables, say so
            files, summary = [], _no_plots_summary(f"drawing stopped: {exc}")
        written += files
        result.run["plots"] = _unstaged(summary, str(staging), str(output.out))
        result.run["timings"]["plots_and_report_s"] = summary["timings"]["total_s"]
        write_run_json(result, staging)
    output.commit()
    mark("output set published")
    result.written = [output.final_path(p) for p in written]


def _no_plots_summary(reason: str) -> dict[str, Any]:
    return {
        "report": None,
        "errors": [{"file": "", "kind": "all", "error": reason}],
        "timings": {"total_s": 0.0},
    }


def _unstaged(value: Any, staging: str, out: str) -> Any:
    """``value`` with the staging folder's path replaced by the final one (run.json paths)."""
    if isinstance(value, str):
        return out + value[len(staging) :] if value.startswith(staging) else value
    if isinstance(value, dict):
        return {k: _unstaged(v, staging, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_unstaged(v, staging, out) for v in value]
    return value


def _input_bytes(item: SampleGroup | list[SampleGroup]) -> float:
    """A job's size for handing out the largest first: the bytes of its files."""
    total = 0
    for row in _rows_of(item):
        try:
            total += os.stat(row.file).st_size
        except OSError:
            continue
    return float(total)


def _rows_of(item: SampleGroup | list[SampleGroup]) -> list[DesignRow]:
    groups = item if isinstance(item, list) else [item]
    return [r for g in groups for r in g.rows]


def failed_output(item: SampleGroup | list[SampleGroup], reason: str) -> GroupOutput:
    """The output of a job that never returned (worker killed, time limit): its files failed."""
    records, outcomes = [], []
    for row in _rows_of(item):
        record = sample_record(row)
        record["error"] = reason
        records.append(record)
        outcomes.append(failed_outcome(row, reason))
    return GroupOutput(samples=tuple(records), outcomes=tuple(outcomes))


def _unreadable_output(path: Path, reason: str) -> GroupOutput:
    """A file the design could not place (unreadable, no manifest): failed, the rest go on."""
    row = DesignRow(path, "", "", "")
    record = sample_record(row)
    record["error"] = reason
    return GroupOutput(samples=(record,), outcomes=(failed_outcome(row, reason),))


def check_markers_resolve(design: Design, tmpl: Template, cfg: RunConfig) -> None:
    """Fail early (exit 2) when a configured marker is in no stained file of the run, or when
    two stained tubes of one draw both carry it and ``marker_tubes`` does not say which to use.

    A typo in the panel otherwise gives exit 0 and a silently NaN measure in every file. A
    marker some patients' panels lack is missing data for them, not an error (partial panels),
    so every stained file's keywords are read ($PnN/$PnS only, no event data); an unreadable
    file fails later, per file.
    """
    from cytogate.errors import FCSError, PanelError
    from cytogate.io.fcs import read_keywords
    from cytogate.model.panel import find_marker

    markers = list(dict.fromkeys((*cfg.rmfi_markers, *cfg.positivity_markers)))
    if not markers:
        return
    named = dict(cfg.marker_tubes)
    stained_tubes = {r.tube for r in design.rows if not r.is_control}
    problems = [
        f"marker_tubes: {marker}: no stained tube {tube!r} in the design "
        f"(stained tubes: {', '.join(sorted(stained_tubes))})"
        for marker, tube in named.items()
        if tube not in stained_tubes
    ]
    carried: dict[str, list[DesignRow]] = {m: [] for m in markers}
    why_not: dict[str, str] = {}
    read_any = False
    resolved: dict[tuple[tuple[str, ...], tuple[str, ...]], set[str]] = {}  # panel -> markers
    for row in design.rows:
        if row.is_control:
            continue
        try:
            panel = _panel_of(row.file, read_keywords(row.file))
        except FCSError:
            continue
        read_any = True
        key = (tuple(panel.channels["pnn"]), tuple(panel.channels["pns"]))
        if key not in resolved:  # a study repeats a few panels: resolve each once
            resolved[key] = set()
            for marker in markers:
                try:
                    find_marker(panel, tmpl.panel[marker])  # type: ignore[arg-type]
                except PanelError as exc:
                    why_not.setdefault(marker, str(exc))
                    continue
                resolved[key].add(marker)
        for marker in resolved[key]:
            carried[marker].append(row)
    for marker in markers if read_any else ():
        if not carried[marker]:
            problems.append(f"{marker}: in no stained file of the run ({why_not.get(marker, '')})")
            continue
        if marker in named:
            continue
        by_draw: dict[tuple[str, str], list[DesignRow]] = {}
        for row in carried[marker]:
            by_draw.setdefault((row.patient, row.timepoint), []).append(row)
        for (patient, tp), rows in by_draw.items():
            if len(rows) > 1:
                files = " and ".join(f"{r.name} (tube {r.tube})" for r in rows)
                problems.append(
                    f"{marker}: carried by {len(rows)} stained tubes of patient {patient} at "
                    f"{tp}: {files}; name the tube in the config's marker_tubes"
                )
                break
    if problems:
        raise DesignError("configured marker(s): " + "; ".join(problems))


@dataclass(frozen=True)
class _KeywordPanel:
    """A file's channels ($PnN, $PnS) from its keywords: enough to resolve markers."""

    path: Path
    channels: dict[str, list[str]]


def _panel_of(path: Path, keywords: dict[str, str]) -> _KeywordPanel:
    try:
        n = int(keywords.get("$PAR", "0").strip() or 0)
    except ValueError:
        n = 0
    pnn = [keywords.get(f"$P{i}N", "").strip() for i in range(1, n + 1)]
    pns = [keywords.get(f"$P{i}S", "").strip() for i in range(1, n + 1)]
    return _KeywordPanel(path, {"pnn": pnn, "pns": pns})


def _check_config_against_template(cfg: RunConfig, tmpl: Template) -> None:
    problems = []
    populations = set(tmpl.population_names())
    for pop in (*cfg.marker_populations, *cfg.count_populations):
        if pop not in populations:
            problems.append(
                f"population {pop!r} is not in template {tmpl.name} "
                f"({', '.join(tmpl.population_names())})"
            )
    measured = (*cfg.rmfi_markers, *cfg.positivity_markers)
    for field_name, mapping in (
        ("marker_controls", cfg.marker_controls),
        ("marker_tubes", cfg.marker_tubes),
    ):
        for marker, _ in mapping:
            if marker not in measured:
                problems.append(
                    f"{field_name}: {marker!r} is not a configured marker ({', '.join(measured)})"
                )
    for marker in measured:
        if marker not in tmpl.panel:
            problems.append(
                f"marker {marker!r} is not in template {tmpl.name}'s panel "
                f"({', '.join(tmpl.panel)})"
            )
    if problems:
        where = cfg.path or "run config"
        raise DesignError(f"{where}: " + "; ".join(problems))


def _assemble(
    outputs: Sequence[HeldOutput], design: Design, cfg: RunConfig, spill: OutcomeSpill
) -> BatchResult:
    import pandas as pd

    from cytogate.analysis.stats import (
        Comparison,
        default_comparisons,
        fold_changes,
        paired_statistics,
    )

    order = {tp: i for i, tp in enumerate(cfg.timepoints)}
    tube_order = design.tube_order()

    def frame(key: str, extra_sort: list[str]) -> pd.DataFrame:
        df = pd.DataFrame([r for o in outputs for r in getattr(o, key)])
        if df.empty:
            return df
        df = df.assign(_tp=df["timepoint"].map(order), _tube=df["tube"].map(tube_order))
        df = df.sort_values(["patient", "_tp", "_tube", *extra_sort], kind="stable")
        return df.drop(columns=["_tp", "_tube"]).reset_index(drop=True)

    samples = frame("samples", [])
    populations = frame("populations", [])
    markers = frame("markers", [])
    stained_files = {r.name for r in design.rows if not r.is_control}
    values, measures = _measure_values(populations, markers, samples, cfg, stained_files)
    timecourse = fold_changes(values, cfg.timepoints, cfg.baseline)
    comparisons = (
        [Comparison(a, b) for a, b in cfg.comparisons]
        if cfg.comparisons
        else default_comparisons(cfg.timepoints, cfg.baseline)
    )
    stats = paired_statistics(values, comparisons, test=cfg.test, correction=cfg.correction)
    keys = zip(samples["file"], samples["tube"], strict=True) if len(samples) else ()
    outcomes = spill.sequence(keys)
    return BatchResult(
        samples=samples,
        populations=populations,
        markers=markers,
        timecourse=timecourse,
        stats=stats,
        run={},
        outcomes=outcomes,
        measures={name: measures[name] for name in sorted(measures)},
    )


def _measure_values(
    populations: pd.DataFrame,
    markers: pd.DataFrame,
    samples: pd.DataFrame,
    cfg: RunConfig,
    stained_files: set[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, Measure]]:
    """Long table patient × timepoint × measure of the stained tubes' values, for statistics,
    and the :class:`Measure` behind each ``measure`` name (absolute counts of the count
    populations, RMFI and % positive of the configured markers).

    ``stained_files``: the stained tubes' file names (default: tube ``stained``). Counts come
    from a draw's first stained tube in table order that has them (every tube holds the same
    blood); each marker's value from the one stained tube it was quantified from."""
    import pandas as pd

    cohort = (
        samples.set_index(["patient", "timepoint"])["cohort"].groupby(level=[0, 1]).first()
        if not samples.empty
        else pd.Series(dtype=str)
    )
    measures: dict[str, Measure] = {}

    def part(rows: pd.DataFrame, make: Callable[[str, str], Measure], column: str) -> pd.DataFrame:
        keys = list(zip(rows["population"], rows.get("marker", rows["population"]), strict=True))
        built = {key: make(*key) for key in dict.fromkeys(keys)}  # one Measure per pair
        measures.update({m.name: m for m in built.values()})
        return pd.DataFrame(
            {
                "patient": rows["patient"],
                "timepoint": rows["timepoint"],
                "measure": [built[key].name for key in keys],
                "value": rows[column],
                "reason": rows["reason"],
            }
        )

    def is_stained(df: pd.DataFrame) -> pd.Series:
        if stained_files is None:
            return df["tube"] == STAINED
        return df["file"].isin(stained_files)

    parts = []
    if not populations.empty:
        pops = populations[
            is_stained(populations) & populations["population"].isin(cfg.count_populations)
        ]
        pops = pops.drop_duplicates(["patient", "timepoint", "population"], keep="first")
        parts.append(part(pops, lambda pop, _m: Measure.per_ul(pop), "per_ul"))
    if not markers.empty:
        stained = markers[is_stained(markers)]
        rmfi = stained[stained["marker"].isin(cfg.rmfi_markers)]
        stat = cfg.mfi_statistic
        parts.append(part(rmfi, lambda pop, m: Measure.rmfi(pop, m, stat), "rmfi"))
        pos = stained[stained["marker"].isin(cfg.positivity_markers)]
        parts.append(part(pos, Measure.pct_positive, "pct_positive"))
    if not parts:
        empty = pd.DataFrame(
            columns=["patient", "cohort", "timepoint", "measure", "value", "reason"]
        )
        return empty, measures
    values = pd.concat(parts, ignore_index=True)
    values["cohort"] = [
        cohort.get((p, t), "") for p, t in zip(values["patient"], values["timepoint"], strict=True)
    ]
    return values[["patient", "cohort", "timepoint", "measure", "value", "reason"]], measures


def _provenance(
    run_dir: Path,
    tmpl: Template,
    cfg: RunConfig,
    design: Design,
    result: BatchResult,
    outputs: Sequence[HeldOutput],
    jobs: int,
    timings: dict[str, float],
) -> dict[str, Any]:
    samples = result.samples
    seconds = {name: s for o in outputs for name, s in o.seconds.items()}
    return {
        "cytogate_version": __version__,
        "python": platform.python_version(),
        "run_dir": str(run_dir),
        "template": {
            "name": tmpl.name,
            "path": str(tmpl.path) if tmpl.path else None,
            "sha256": tmpl.sha256,
        },
        "config": cfg.to_dict(),
        "design_source": design.source,
        "inputs": [
            {
                "file": r.file,
                "sha256": r.sha256,
                "patient": r.patient,
                "timepoint": r.timepoint,
                "tube": r.tube,
                "status": r.status,
            }
            for r in samples.itertuples()
        ]
        if not samples.empty
        else [],
        "failures": [
            {"file": r.file, "error": r.error} for r in samples.itertuples() if r.status == "failed"
        ]
        if not samples.empty
        else [],
        "warnings": design.warnings,
        "exit_status": result.exit_status,
        "jobs": jobs,
        "timings": {**timings, "per_file_s": seconds},
    }


# --------------------------------------------------------------------------- writing


def write_outputs(
    result: BatchResult, out: Path, output_format: OutputFormat = "csv"
) -> list[Path]:
    """Write every table and run.json into ``out``, each atomically.

    CSV text cells a spreadsheet would run as a formula are neutralised (see
    :func:`cytogate.study.spreadsheet.neutralise_formulas`); Parquet keeps the values as they are.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in result.tables().items():
        if output_format in ("csv", "both"):
            safe = neutralise_formulas(table)
            written.append(
                atomic_write(out / f"{name}.csv", lambda p, t=safe: t.to_csv(p, index=False))
            )
        if output_format in ("parquet", "both"):
            written.append(
                atomic_write(
                    out / f"{name}.parquet", lambda p, t=table: t.to_parquet(p, index=False)
                )
            )
    written.append(write_run_json(result, out))
    return written


def write_run_json(result: BatchResult, out: Path) -> Path:
    """(Re)write ``out/run.json`` from ``result.run``, atomically."""
    return atomic_write(
        out / "run.json",
        lambda p: Path(p).write_text(
            json.dumps(result.run, indent=2, default=str) + "\n", encoding="utf-8"
        ),
    )
