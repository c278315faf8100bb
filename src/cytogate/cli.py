"""The ``cytogate`` command.

User errors (a bad file, template or manifest) print one line, ``cytogate: error: …``, and exit
with status 2; they never show a traceback. Ctrl-C (SIGINT), SIGTERM (what ``timeout`` and
schedulers send) and SIGHUP stop the command — workers stopped, staged outputs removed — and
exit 128 + the signal number (130, 143, 129), never 1, which means "some files failed".
Heavy modules are imported inside each command so ``cytogate --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from cytogate import __version__
from cytogate.errors import CytogateError

EXIT_USAGE = 2
F = TypeVar("F", bound=Callable[..., Any])


class Stopped(BaseException):
    """A stop signal arrived (raised in the main thread, so every ``finally`` cleans up)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Stopped`, as SIGINT raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: Any) -> None:
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _user_errors(func: F) -> F:
    """One line and exit 2 for a :class:`CytogateError`; exit 128 + N for a stop signal."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _stop_on_signals():
                return func(*args, **kwargs)
        except CytogateError as exc:
            click.echo(f"cytogate: error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("cytogate: interrupted (SIGINT); outputs left as they were", err=True)
            sys.exit(128 + signal.SIGINT)
        except Stopped as stopped:
            name = signal.Signals(stopped.signum).name
            click.echo(f"cytogate: stopped by {name}; outputs left as they were", err=True)
            sys.exit(128 + stopped.signum)

    return wrapper  # type: ignore[return-value]


# Options several commands share, declared once.
TEMPLATE_OPTION = click.option(
    "-t",
    "--template",
    default="aml_blasts_cd45_ssc",
    show_default=True,
    help="Bundled template name, or path to a YAML template, GatingML .xml or FlowJo .wsp.",
)
GROUP_OPTION = click.option(
    "--group",
    default=None,
    help="With a FlowJo .wsp template: the sample group whose gates to use (default All Samples).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cytogate")
def cli() -> None:
    """Flow cytometry gating with reusable templates and CXCR4 quantification."""


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_user_errors
def inspect(file: Path, as_json: bool) -> None:
    """Show an FCS file's version, events, channels, spillover and key keywords."""
    from cytogate.io.describe import describe_sample, format_description, to_json
    from cytogate.io.fcs import read_fcs

    info = describe_sample(read_fcs(file))
    click.echo(to_json(info) if as_json else format_description(info))


@cli.command(name="gate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@TEMPLATE_OPTION
@GROUP_OPTION
@click.option(
    "--compensation", default=None, help="Override the template: 'file', 'none' or a spillover CSV."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@_user_errors
def gate_command(
    file: Path, template: str, group: str | None, compensation: str | None, fmt: str
) -> None:
    """Gate one FCS file with a template and print its population table."""
    from cytogate.gating.engine import gate
    from cytogate.io.fcs import read_fcs

    result = gate(read_fcs(file), _template(template, group), compensation=compensation)
    table = result.table()
    if fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(table.to_json(orient="records", indent=2))
    else:
        click.echo(
            f"{file.name}: {result.n_events} events; template {result.template.name}; "
            f"compensation: {result.compensation}"
        )
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        for g in result.gates:
            if g.status == "skipped":
                click.echo(f"note: gate '{g.name}' {g.note}")


@cli.command()
@click.option("--kinds", is_flag=True, help="List the gate kinds and their fields instead.")
@_user_errors
def templates(kinds: bool) -> None:
    """List the bundled gating templates (or, with --kinds, every gate kind's fields)."""
    from cytogate.gating.template import list_templates, load_template

    if kinds:
        from cytogate.gating.loader import reference_markdown

        click.echo(reference_markdown())
        return
    for name, path in list_templates().items():
        tmpl = load_template(path)
        click.echo(f"{name}\t{tmpl.description}\t{path}")


@cli.command()
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--patients",
    default=None,
    type=click.IntRange(1, 1000),
    help="Patients (default 6; 8 with --design multitube).",
)
@click.option(
    "--events",
    "events_per_file",
    default=None,
    type=click.IntRange(100, 50_000_000),
    help="Events per FCS file (default 6000; 5000 with --design multitube).",
)
@click.option("--seed", default=42, show_default=True, type=int)
@click.option(
    "--hard",
    is_flag=True,
    help="Hard conditions: blast CD45 0.38-0.66 and SSC 0.05-0.20 (scaled), blast share "
    "0.5-90%, scatter gain 0.7-1.4 per patient, one CD45-negative-blast patient. The options "
    "below override single settings.",
)
@click.option(
    "--blast-cd45",
    nargs=2,
    type=float,
    default=None,
    metavar="LO HI",
    help="Blast CD45 centre range (logicle scale 0..1; CD45-negative cells 0.25, monocytes 0.72).",
)
@click.option(
    "--blast-ssc",
    nargs=2,
    type=float,
    default=None,
    metavar="LO HI",
    help="Blast SSC-A centre range (fraction of range; lymphocytes 0.075, monocytes 0.22).",
)
@click.option(
    "--blast-share",
    nargs=2,
    type=float,
    default=None,
    metavar="LO HI",
    help="Baseline blast share of leukocytes, uniform per patient (e.g. 0.005 0.9).",
)
@click.option(
    "--scatter-gain",
    nargs=2,
    type=float,
    default=None,
    metavar="LO HI",
    help="Scatter gain range (FSC and SSC scaled, e.g. 0.7 1.4).",
)
@click.option(
    "--scatter-gain-level",
    type=click.Choice(["run", "patient", "file"]),
    default=None,
    help="Draw the scatter gain once per run, patient or file.",
)
@click.option(
    "--cd45-channel",
    type=click.Choice(["FITC-A", "PE-A", "PerCP-Cy5-5-A", "PE-Cy7-A", "APC-A", "BV421-A"]),
    default=None,
    help="Detector of CD45 (default PerCP-Cy5-5-A); the marker there moves.",
)
@click.option(
    "--cd45-negative-blast-patients",
    type=click.IntRange(0, 1000),
    default=None,
    help="Patients whose blasts are CD45-negative (default 0, or 1 with --hard).",
)
@click.option(
    "--design",
    type=click.Choice(["two-tube", "multitube"]),
    default="two-tube",
    show_default=True,
    help="multitube: the AML study's panel as a FACSDiva export (CXCR4 and Ki67 tubes, each "
    "with its isotype; some patients without CD114/CD49f or the Ki67 tubes); see "
    "docs/designs.md.",
)
@click.option(
    "--cd34",
    is_flag=True,
    help="Instead: an ISHAGE CD34+ mobilisation cohort (blood and apheresis tubes, counting "
    "beads, 7-AAD) in three regimen groups, --patients spread over them; see docs/cd34.md.",
)
@_user_errors
def simulate(
    outdir: Path,
    patients: int,
    events_per_file: int,
    seed: int,
    hard: bool,
    blast_cd45: tuple[float, float] | None,
    blast_ssc: tuple[float, float] | None,
    blast_share: tuple[float, float] | None,
    scatter_gain: tuple[float, float] | None,
    scatter_gain_level: str | None,
    cd45_channel: str | None,
    cd45_negative_blast_patients: int | None,
    design: str,
    cd34: bool,
) -> None:
    """Write a SIMULATED mobilisation study (FCS 3.1 files, manifest, ground truth)."""
    import dataclasses
    import warnings

    blast_options = hard or any(
        v is not None for v in (blast_cd45, blast_ssc, blast_share, scatter_gain,
                                scatter_gain_level, cd45_channel, cd45_negative_blast_patients)
    )  # fmt: skip
    if design == "multitube":
        if cd34 or blast_options:
            raise click.UsageError(
                "--design multitube does not take --cd34, --hard or the blast/scatter/CD45 options"
            )
        _simulate_multitube(outdir, patients or 8, events_per_file or 5000, seed)
        return
    patients = patients or 6
    events_per_file = events_per_file or 6000
    if cd34:
        _simulate_cd34(outdir, patients, seed, blast_options)
        return

    from cytogate.sim.simulate import StudyConfig, cd45_on_channel, hard_config, simulate_study

    for name, pair in (
        ("--blast-cd45", blast_cd45),
        ("--blast-ssc", blast_ssc),
        ("--blast-share", blast_share),
        ("--scatter-gain", scatter_gain),
    ):
        if pair is not None and not pair[0] <= pair[1]:
            raise click.BadParameter(
                f"LO must not exceed HI (got {pair[0]} {pair[1]})", param_hint=name
            )
    if hard:
        config = hard_config(patients, events_per_file, seed)
    else:
        # one patient whose blasts sit outside the fixed blast gate, unless there is only one
        config = StudyConfig(
            n_patients=patients,
            events_per_file=events_per_file,
            seed=seed,
            atypical_patients=min(1, patients - 1),
        )
    geometry = {
        k: v
        for k, v in (
            ("blast_cd45_range", blast_cd45),
            ("blast_ssc_range", blast_ssc),
            ("scatter_gain_range", scatter_gain),
            ("scatter_gain_level", scatter_gain_level),
        )
        if v is not None
    }
    if geometry:
        config = dataclasses.replace(
            config, geometry=dataclasses.replace(config.geometry, **geometry)
        )
    if blast_share is not None:
        config = dataclasses.replace(
            config,
            composition=dataclasses.replace(config.composition, blast_share_range=blast_share),
        )
    if cd45_negative_blast_patients is not None:
        config = dataclasses.replace(
            config,
            cd45_negative_blast_patients=cd45_negative_blast_patients,
            atypical_patients=min(
                config.atypical_patients, patients - cd45_negative_blast_patients
            ),
        )
    if cd45_channel:
        config = cd45_on_channel(config, cd45_channel)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        truth = simulate_study(outdir, config)
    capped = [w for w in caught if "capped" in str(w.message)]
    for w in caught:
        if w not in capped:
            click.echo(f"warning: {w.message}", err=True)
    if capped:
        click.echo(
            f"note: planted blast share capped at {config.composition.blast_share_cap:g} for "
            f"{len(capped)} patient-timepoint(s) (see ground_truth/planted_effects.csv)",
            err=True,
        )
    kinds = ", ".join(f"{p.patient} {p.kind}" for p in truth.patients if p.kind != "typical")
    click.echo(
        f"wrote {len(truth.files)} SIMULATED FCS files, manifest.csv and ground_truth/ to {outdir}"
        + (f" ({kinds})" if kinds else "")
    )


def _simulate_multitube(outdir: Path, patients: int, events_per_file: int, seed: int) -> None:
    import warnings

    from cytogate.sim.multitube import MultiTubeConfig, simulate_multitube_study

    config = MultiTubeConfig.for_patients(patients, events_per_file, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        truth = simulate_multitube_study(outdir, config)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    n = {m: int(truth.panels[f"has_{m}"].sum()) for m in ("CD114", "CD49f", "Ki67")}
    click.echo(
        f"wrote {len(truth.files)} SIMULATED FCS files (FACSDiva-style, {patients} patients; "
        f"CD114 in {n['CD114']}, CD49f in {n['CD49f']}, Ki67 tubes in {n['Ki67']}), "
        f"manifest.csv and ground_truth/ to {outdir}"
    )


def _simulate_cd34(outdir: Path, patients: int, seed: int, blast_options: bool) -> None:
    from cytogate.sim.cd34 import CD34Config, simulate_cd34_study

    if blast_options:
        raise click.UsageError("--cd34 does not take --hard or the blast/scatter/CD45 options")
    config = CD34Config(patients_per_regimen=max(1, -(-patients // 3)), seed=seed)
    study = simulate_cd34_study(outdir, config)
    click.echo(
        f"wrote {len(study.manifest)} SIMULATED CD34 tubes ({len(study.patients)} patients in "
        f"{', '.join(config.regimens)}), manifest.csv, cytogate.yaml and ground_truth/ to {outdir}"
    )


@cli.command("design")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Run config YAML with design rules (default: RUN_DIR/cytogate.yaml if present).",
)
@click.option("--write", is_flag=True, help="Write the inferred design as RUN_DIR/manifest.csv.")
@click.option("--force", is_flag=True, help="With --write: replace an existing manifest.csv.")
@_user_errors
def design_command(run_dir: Path, config_path: Path | None, write: bool, force: bool) -> None:
    """Show the design inferred from FCS keywords and file names, with each field's source.

    Exits 1 when a file cannot be placed (each is listed with the reason); docs/designs.md.
    """
    from cytogate.atomic import atomic_write_bytes
    from cytogate.study.design import MANIFEST_NAME, infer_design, load_config, manifest_text
    from cytogate.study.design_report import inference_lines, manifest_agreement

    config = load_config(run_dir, config_path)
    inference = infer_design(run_dir, config)
    for line in inference_lines(inference):
        click.echo(line)
    agreement = manifest_agreement(run_dir, inference, config)
    if agreement:
        click.echo(agreement)
    if write:
        target = run_dir / MANIFEST_NAME
        if target.exists() and not force:
            raise click.UsageError(f"{target} exists; add --force to replace it")
        atomic_write_bytes(target, [manifest_text(inference.rows).encode("utf-8")])
        left = len(inference.unplaced) + len(inference.unreadable)
        click.echo(
            f"wrote {target} ({len(inference.rows)} file(s)"
            + (f"; {left} file(s) left out: place them by hand" if left else "")
            + ")"
        )
    if not inference.ok:
        sys.exit(1)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-t",
    "--template",
    default=None,
    help="Template name or path: YAML, GatingML .xml or FlowJo .wsp (default: the run config's,"
    " else aml_blasts_cd45_ssc).",
)
@GROUP_OPTION
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Run config YAML (default: RUN_DIR/cytogate.yaml if present).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: RUN_DIR/cytogate_results).",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 512),
    default=None,
    help="Worker processes (default: number of CPUs).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["csv", "parquet", "both"]),
    default="csv",
    show_default=True,
)
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.option(
    "--no-plots", is_flag=True, help="Skip plots/ and report.html (tables and run.json only)."
)
@click.option(
    "--plot-format",
    type=click.Choice(["png", "svg", "pdf"]),
    default="png",
    show_default=True,
    help="Format of the figures in plots/ (the report shows PNG previews of PDFs).",
)
@click.option(
    "--plot-dpi",
    type=click.IntRange(50, 1200),
    default=None,
    help="PNG resolution of the per-sample plots (default 150; time-course figures >= 300).",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(0, 86_400, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Per-file time limit; a file over it is reported failed (default: the config's "
    "file_time_limit_s, else none).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run the per-file jobs on a dask.distributed scheduler (e.g. tcp://host:8786); the "
    "workers must see the run folder at the same path.",
)
@click.option(
    "--export-wsp",
    is_flag=True,
    help="Also write the gates applied to every file as OUT/flowjo/cytogate.wsp (FlowJo 10) and "
    "OUT/flowjo/gatingml/<file>.xml.",
)
@_user_errors
def batch(
    run_dir: Path,
    template: str | None,
    group: str | None,
    config_path: Path | None,
    out: Path | None,
    jobs: int | None,
    output_format: str,
    quiet: bool,
    no_plots: bool,
    plot_format: str,
    plot_dpi: int | None,
    time_limit: float | None,
    scheduler: str | None,
    export_wsp: bool,
) -> None:
    """Gate and quantify every file of a run; write tables, paired statistics, plots, report.

    The tables are written first; then plots/ (gate and marker plots per sample, time-course
    figures) and report.html, unless --no-plots. The whole set replaces the previous one in
    OUT at the end, in one step; one run at a time per OUT.

    Exit status: 0 all files processed, 1 some files failed (the rest are reported),
    2 usage or configuration error, 130/143 interrupted by SIGINT/SIGTERM (OUT unchanged).
    """
    from cytogate.pipeline import run_batch
    from cytogate.progress import batch_progress

    out = out or run_dir / "cytogate_results"
    with _dask_client(scheduler) as client, batch_progress(enabled=not quiet) as progress:
        result = run_batch(
            run_dir,
            template=_template(template, group) if template else None,
            config=config_path,
            out=out,
            jobs=jobs,
            output_format=output_format,
            progress=progress,
            plots=not no_plots,
            plot_format=plot_format,
            plot_dpi=plot_dpi,
            plot_progress=None if quiet else _plot_progress(out),
            client=client,
            time_limit=time_limit,
            export_wsp=export_wsp,
        )  # type: ignore[arg-type]
    n, failed = len(result.samples), result.failed
    for warning in result.run["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    for row in failed.itertuples():
        click.echo(f"failed: {row.file}: {row.error}", err=True)
    click.echo(f"{n - len(failed)} of {n} files processed ({len(failed)} failed); tables in {out}")
    for err in result.run.get("plots", {}).get("errors", []):
        click.echo(f"{err['kind']} failed: {err['file'] or 'run'}: {err['error']}", err=True)
    if result.run.get("plots", {}).get("report"):
        summary = result.run["plots"]
        click.echo(
            f"plots in {Path(out) / 'plots'}; report: {summary['report']} "
            f"({summary['timings']['total_s']:.1f} s)"
        )
    if result.run.get("plots", {}).get("flowjo_workspace"):
        click.echo(f"FlowJo workspace: {result.run['plots']['flowjo_workspace']}")
    sys.exit(result.exit_status)


@contextlib.contextmanager
def _dask_client(address: str | None) -> Iterator[Any]:
    """A ``dask.distributed`` client of the scheduler at ``address`` (None: no client)."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise CytogateError(
            "--scheduler needs dask.distributed (pip install 'dask[distributed]')"
        ) from exc
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise CytogateError(f"--scheduler {address}: cannot connect: {exc}") from exc
    try:
        yield client
    finally:
        client.close()


def _plot_progress(out: Path) -> Callable[[int, int], None]:
    """One stderr line when drawing starts (the tables are on disk by then) and every ~10%."""
    state = {"done": 0}

    def report(_i: int, total: int) -> None:
        if state["done"] == 0:
            click.echo(
                f"tables written to {out}; drawing plots for {total} sample groups", err=True
            )
        state["done"] += 1
        step = max(1, total // 10)
        if state["done"] % step == 0 or state["done"] == total:
            click.echo(f"plots: {state['done']}/{total} sample groups", err=True)

    return report


@cli.command(name="plot")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@TEMPLATE_OPTION
@GROUP_OPTION
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Output file; .png, .svg or .pdf (default: <FILE stem>_gates.png here).",
)
@click.option(
    "--control",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Matched isotype/control tube: also draw the marker plot (<out stem>_markers).",
)
@click.option("--dpi", type=click.IntRange(50, 1200), default=300, show_default=True)
@click.option(
    "--compensation", default=None, help="Override the template: 'file', 'none' or a spillover CSV."
)
@_user_errors
def plot_command(
    file: Path,
    template: str,
    group: str | None,
    out: Path | None,
    control: Path | None,
    dpi: int,
    compensation: str | None,
) -> None:
    """Draw one sample's gate plots (one panel per gate, in the template's order)."""
    from cytogate.viz.plots import plot_sample

    written = plot_sample(
        file, _template(template, group), out, control=control, dpi=dpi, compensation=compensation
    )
    for path in written:
        click.echo(str(path))


@cli.command(name="compare")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-r",
    "--reference",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Expert gating: a FlowJo .wsp, a GatingML .xml, or per-event labels (.csv, or a folder "
    "of <file stem>.csv).",
)
@click.option(
    "-t",
    "--template",
    default="aml_blasts_cd45_ssc",
    show_default=True,
    help="cytogate's side: template name or path (YAML, GatingML .xml, FlowJo .wsp).",
)
@click.option("--group", default=None, help="FlowJo sample group (for a .wsp reference/template).")
@click.option(
    "-m",
    "--map",
    "mapping",
    multiple=True,
    help="REFERENCE=OURS population names (repeatable or comma-separated), e.g. Blasts=blasts; "
    "labels may be joined with '+'. Default: the populations named alike on both sides.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder for agreement.csv, agreement.html and its figures (default: "
    "RUN/cytogate_compare).",
)
@click.option(
    "--worst",
    type=click.IntRange(0, 100),
    default=3,
    show_default=True,
    help="This many worst files get, in worst/, a panel per population with both gates and "
    "each side's gate tree.",
)
@_user_errors
def compare_command(
    run: Path,
    reference: Path,
    template: str,
    group: str | None,
    mapping: tuple[str, ...],
    out: Path | None,
    worst: int,
) -> None:
    """Agreement of cytogate's gating of RUN (a folder of FCS files, or one file) with an
    expert's: agreement.csv (per file x population, worst first), a Bland-Altman plot, the
    worst files' gates (both in one panel) and agreement.html."""
    from cytogate.interop.compare import AGREEMENT_NAME, run_compare
    from cytogate.viz.agreement_report import write_agreement_report

    chosen = _template(template, group)

    def render(result: Any) -> list[Path]:
        # the gate trees first: the page links them
        trees = _worst_plots(result.out / AGREEMENT_NAME, run, chosen, reference, group, worst)
        return trees + write_agreement_report(result)

    written = run_compare(
        run, reference, chosen, mapping=mapping, out=out, group=group, worst=worst, renderer=render
    )
    for path in written:
        click.echo(str(path))


def _worst_plots(
    agreement: Path, run: Path, template: Any, reference: Path, group: str | None, n: int
) -> list[Path]:
    """Gate plots of the ``n`` worst files: cytogate's gates and, for a .wsp/.xml reference,
    the reference's gates on the same events (``worst/<stem>_cytogate.png``, ``_reference``)."""
    import pandas as pd

    from cytogate.viz.plots import plot_sample

    table = pd.read_csv(agreement)
    folder = run if run.is_dir() else run.parent
    files = list(dict.fromkeys(table["file"]))[:n]
    ref = reference.suffix.lower() in (".wsp", ".xml")
    ref_template = _template(str(reference), group) if ref and group else str(reference)
    out = []
    for name in files:
        fcs = folder / name
        target = agreement.parent / "worst" / f"{Path(name).stem}_cytogate.png"
        target.parent.mkdir(exist_ok=True)
        out += plot_sample(fcs, template, target, dpi=100)
        if ref:
            other = target.with_name(f"{Path(name).stem}_reference.png")
            out += plot_sample(fcs, ref_template, other, dpi=100)
    return out


@cli.command(name="export")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["anndata", "wsp", "gatingml"]),
    default="anndata",
    show_default=True,
    help="anndata: one .h5ad per file; wsp: one FlowJo 10 workspace; gatingml: one per file.",
)
@click.option(
    "-t",
    "--template",
    default="aml_blasts_cd45_ssc",
    show_default=True,
    help="Template name or path (YAML, GatingML .xml, FlowJo .wsp).",
)
@click.option("--group", default=None, help="FlowJo sample group (with a .wsp template).")
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: cytogate_export beside SOURCE's files).",
)
@_user_errors
def export_command(
    source: Path, fmt: str, template: str, group: str | None, out: Path | None
) -> None:
    """Gate SOURCE (an FCS file, or the FCS files of a run folder) and export the events and
    memberships (AnnData) or the gates applied to each file (FlowJo workspace, GatingML)."""
    from cytogate.interop.export import run_export

    for path in run_export(source, fmt, _template(template, group), out):
        click.echo(str(path))


def _template(template: str, group: str | None) -> Any:
    """The template argument as given, or a FlowJo workspace's ``--group``."""
    if group is None:
        return template
    if not template.lower().endswith(".wsp"):
        raise click.UsageError("--group applies to a FlowJo workspace (.wsp) template only")
    from cytogate.interop.flowjo import load_workspace

    return load_workspace(template, group)


def main() -> None:
    # One BLAS/OpenMP thread per process, set before numpy loads (the CLI imports it lazily):
    # threadpoolctl in each worker does not stop every spinning pool, and on a 24-file run
    # `--jobs 2` took 17.6 s without these and 5.6 s with them (benchmarks/bench_batch.py).
    from cytogate.study import timeline
    from cytogate.study.executors import hold_native_threads_from_the_start

    hold_native_threads_from_the_start()
    if timeline.enabled():  # CYTOGATE_TIMELINE: where a batch's wall time goes (diagnostic)
        import atexit

        timeline.mark("process started", t=timeline.process_start_time())
        timeline.mark("cli main")
        atexit.register(timeline.mark, "exit")
    cli(prog_name="cytogate")


if __name__ == "__main__":  # pragma: no cover
    main()
