"""A whole run: ``cytogate batch`` on 1 and 2 worker processes vs FlowKit 1.3 sequential.

Why: docs/architecture.md §7 asks for batches that scale out over processes and whose memory
does not grow
with the number of files. This measures both on a simulated run (default 4 patients x 6
timepoints x 2 tubes = 48 files of 200,000 events), next to FlowKit doing the gating part of the
same work, in the same process run, so ratios and not seconds are what carry over.

What is timed (median of ``--repeats`` runs; the order of the configurations alternates between
runs; the files are in the page cache for all of them, so this is CPU work, not the disk). Every
configuration runs in its own fresh subprocess, so its peak memory is its own:

* cytogate: the real CLI, ``cytogate batch RUN --jobs N --out TMP --quiet`` (and
  ``--no-plots`` if the CLI has plots, unless ``--plots``), called through ``cytogate.cli.main``
  (what the ``cytogate`` script runs) in a fresh interpreter. Wall time is the whole subprocess,
  spawn to exit: interpreter start, imports, design, read + gate + quantify every file, time
  course, paired statistics and writing every table and run.json.
* FlowKit: ``flowkit.Sample(path)`` + ``GatingStrategy.gate_sample`` + the count of every
  population, for every file, one after the other, with ``gate_sample``'s default and with its
  opt-in ``cache_events=True``. Wall time is that per-file loop only: interpreter start,
  ``import flowkit`` and unpickling the strategies are excluded (printed apart). The strategies
  (one per file, :func:`cytogate.interop.flowkit_export.to_flowkit_strategy` of that file's
  cytogate result with the template the batch uses, so the gates are identical) are built
  beforehand in a setup subprocess; their construction time is printed apart, not charged to
  FlowKit. FlowKit does not quantify or run statistics, so the comparison is conservative for
  cytogate.
* Diagnostic rows: cytogate (jobs 1 and 2) again with ``OPENBLAS_NUM_THREADS=1``: numpy's
  OpenBLAS threads spin after each small product; see the README.

Also printed per configuration: CPU seconds (user + system of the subprocess tree; FlowKit: its
loop), and "others": cores kept busy by other processes meanwhile (``/proc/stat`` minus our own),
because a busy machine skews wall times, and jobs=2 most.

Memory: ``getrusage`` in each subprocess: ``RUSAGE_SELF`` (the CLI / FlowKit process) and
``RUSAGE_CHILDREN`` (the largest worker process, jobs > 1); with psutil installed, also the sum
of RSS over the process tree, polled every 0.1 s (an upper bound: forked workers share pages with
their parent and each counts them).

Checks: the blast counts cytogate wrote in populations.csv must equal FlowKit's for every
stained file (every population of every file is compared too); the exit status is 1 if not.
Bounded memory (docs/architecture.md §7): ``--jobs 1`` on the first 10 files of the run vs on
all of them.
Nothing is asserted about time.

Two more sections (issue 12 items 2, 4, 5), after the table:

* ``--thousand N`` (default 1,000; 0 skips): a SIMULATED run of about N small files
  (``--thousand-events``, default 2,000 events), ``cytogate batch --jobs 2`` in a fresh
  subprocess: wall time, files/s and peak RSS (CLI process, largest worker, polled tree sum).
* ``--dask`` (default on; ``--no-dask`` skips): the main run on a two-worker
  ``distributed.LocalCluster(processes=True, threads_per_worker=1)`` against the same
  ``run_batch(jobs=2)`` in the same subprocess (cluster start-up printed apart), tables compared
  byte for byte.

* ``--sections scaling``: ``--jobs 1`` against ``--jobs 2`` alone (no FlowKit rows, no
  strategies to build), alternating, median of ``--repeats``.

Every cytogate run records its timeline (``CYTOGATE_TIMELINE``, :mod:`cytogate.study.timeline`):
printed are the main process's serial phases (interpreter start, imports, design, marker check,
worker imports, fork, tables, writing), the span from the first task's start to the last one's
end, each worker's tasks and busy share of that span, the size of a job's pickled result, and
the main process's RSS when the workers were forked and when all jobs were done.

Every section prints ``os.getloadavg()`` beside its figures: figures taken on a busy machine
are not final.

    python benchmarks/bench_batch.py [--patients 4] [--events 200000] [--repeats 3]
        [--thousand 1000] [--thousand-jobs1] [--no-dask] [--sections main,scaling,thousand,dask]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_gating import timed

SMALL_RUN = 10  # files in the bounded-memory comparison run
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Config:
    label: str
    tool: str  # "cytogate" or "flowkit"
    jobs: int = 1
    cache_events: bool = False
    one_blas_thread: bool = False  # diagnostic: OPENBLAS_NUM_THREADS=1 (see the README)

    @property
    def env(self) -> dict[str, str]:
        return dict(ONE_BLAS_THREAD) if self.one_blas_thread else {}


CONFIGS = (
    Config("cytogate batch --jobs 1", "cytogate", 1),
    Config("cytogate batch --jobs 2", "cytogate", 2),
    Config("FlowKit sequential", "flowkit"),
    Config("FlowKit sequential, cache_events", "flowkit", cache_events=True),
    Config("cytogate --jobs 1, 1 BLAS thread", "cytogate", 1, one_blas_thread=True),
    Config("cytogate --jobs 2, 1 BLAS thread", "cytogate", 2, one_blas_thread=True),
)
BASELINE = CONFIGS[2].label


@dataclass
class Measured:
    """One subprocess run of one configuration."""

    wall: float  # the figure in the table (see the module doc for what each tool's includes)
    process_wall: float  # spawn to exit
    cpu: float  # user + system seconds of the subprocess tree
    rss_self_mb: float  # CLI / FlowKit process
    rss_workers_mb: float  # largest worker (0: no workers)
    rss_tree_mb: float | None  # polled sum over the tree (None: no psutil)
    others: float | None  # cores used by other processes on the machine meanwhile
    report: dict[str, Any]


# --------------------------------------------------------------------------- the run folders


def prepare_runs(workdir: Path, patients: int, events: int, seed: int | None) -> tuple[Path, Path]:
    """Simulate the run into ``workdir/run`` (reused if made with the same parameters) and
    link its first ``SMALL_RUN`` files into ``workdir/run10``."""
    import cytogate
    from cytogate.sim.simulate import StudyConfig, simulate_study

    seeded = {} if seed is None else {"seed": seed}
    config = StudyConfig(n_patients=patients, events_per_file=events, **seeded)
    params = {
        "patients": patients,
        "events": events,
        "seed": config.seed,
        "cytogate": cytogate.__version__,
    }
    run, small, stamp = workdir / "run", workdir / f"run{SMALL_RUN}", workdir / "params.json"
    current = json.loads(stamp.read_text()) if stamp.is_file() else None
    if current == params and _complete(run) and _complete(small):
        print(f"reusing {run} ({params})")
        return run, small
    if (run.exists() or small.exists()) and current is None:
        raise SystemExit(f"{workdir}: has run/ or run{SMALL_RUN}/ not made by this benchmark")
    stamp.unlink(missing_ok=True)
    for folder in (run, small):
        shutil.rmtree(folder, ignore_errors=True)
    seconds, _ = timed(lambda: simulate_study(run, config))
    with open(run / "manifest.csv", newline="") as fh:
        lines = fh.read().splitlines(keepends=True)
    small.mkdir()
    (small / "manifest.csv").write_text("".join(lines[: SMALL_RUN + 1]))
    for row in csv.DictReader(lines[1 : SMALL_RUN + 1], fieldnames=next(csv.reader(lines[:1]))):
        try:
            os.link(run / row["file"], small / row["file"])
        except OSError:
            shutil.copyfile(run / row["file"], small / row["file"])
    stamp.write_text(json.dumps(params) + "\n")
    print(f"simulated {run} in {seconds:.1f} s ({params})")
    return run, small


def _complete(folder: Path) -> bool:
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        return False
    with open(manifest, newline="") as fh:
        return all((folder / row["file"]).is_file() for row in csv.DictReader(fh))


def manifest_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def build_strategies(run: Path, rows: list[dict[str, str]], path: Path) -> tuple[str, float, float]:
    """Pickle {file: FlowKit strategy} (same gates as cytogate's, per file) to ``path``.

    Returns (template name, seconds in ``to_flowkit_strategy`` per file, seconds of cytogate
    read + gate needed to build them per file). Stained tubes first, as in the batch: an
    isotype tube is gated with its stained tube's channels as the reference.
    """
    import cytogate
    from cytogate import read_fcs
    from cytogate.gating.template import load_template
    from cytogate.interop.flowkit_export import to_flowkit_strategy
    from cytogate.study.design import load_config

    template = load_template(load_config(run).template)  # the template the batch will use
    strategies: dict[str, Any] = {}
    references: dict[tuple[str, str], dict[str, str]] = {}
    t_bridge = t_gate = 0.0
    for row in sorted(rows, key=lambda r: r["tube"] != "stained"):
        key = (row["patient"], row["timepoint"])
        seconds, result = timed(
            lambda row=row, key=key: cytogate.gate(
                read_fcs(run / row["file"]), template, reference=references.get(key)
            )
        )
        t_gate += seconds
        if row["tube"] == "stained":
            references[key] = result.channel_map()
        seconds, strategies[row["file"]] = timed(lambda result=result: to_flowkit_strategy(result))
        t_bridge += seconds
    payload = {
        "template": template.name,
        "files": [r["file"] for r in rows],
        "populations": template.population_names(),
        "strategies": strategies,
    }
    path.write_bytes(pickle.dumps(payload))
    return template.name, t_bridge / len(rows), t_gate / len(rows)


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Simulate (or reuse) the runs and build the FlowKit strategies; a subprocess of its own,
    so that the measured processes, started from a small parent, do not inherit its peak."""
    import flowkit as fk
    import numpy as np

    import cytogate

    run, small = prepare_runs(args.run, args.patients, args.events, args.seed)
    rows = manifest_rows(run)
    if str(args.strategies) == "-":  # no FlowKit rows (--sections without main)
        from cytogate.study.design import load_config

        template, bridge_s, gate_s = load_config(run).template, 0.0, 0.0
    else:
        template, bridge_s, gate_s = build_strategies(run, rows, args.strategies)
    return {
        "template": template,
        "run": str(run),
        "small": str(small),
        "bridge_s": bridge_s,
        "gate_s": gate_s,
        "size_mb": sum((run / r["file"]).stat().st_size for r in rows) / 1e6,
        "versions": f"cytogate {cytogate.__version__} ({Path(cytogate.__file__).parent}), "
        f"flowkit {fk.__version__}, numpy "
        f"{np.__version__}, python {sys.version.split()[0]}",
    }


# --------------------------------------------------------------------------- measuring


def _busy_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine since boot (None: no /proc/stat)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


class TreePoller:
    """Peak of the summed RSS of a process and its descendants, polled (needs psutil)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        try:
            import psutil
        except ImportError:
            self.peak: float | None = None
            return
        self.peak = 0.0
        self._stop = threading.Event()
        self._root = psutil.Process(pid)
        self._psutil = psutil
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        psutil = self._psutil
        while not self._stop.is_set():
            try:
                procs = [self._root, *self._root.children(recursive=True)]
                total = 0
                for proc in procs:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak or 0.0, total / 2**20)
            except psutil.Error:
                return
            self._stop.wait(interval)

    def stop(self) -> float | None:
        if self.peak is not None:
            self._stop.set()
            self._thread.join()
        return self.peak


def measure(
    config: Config, run: Path, scratch: Path, strategies: Path, plots: bool = False
) -> Measured:
    """Run ``config`` on ``run`` in a fresh subprocess; return its figures."""
    report_path = scratch / "report.json"
    out = scratch / "out"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", config.tool, "--run", str(run)]
    cmd += ["--report", str(report_path)]
    if config.tool == "cytogate":
        cmd += ["--out", str(out), "--jobs", str(config.jobs)] + (["--plots"] if plots else [])
    else:
        cmd += ["--strategies", str(strategies)] + (
            ["--cache-events"] if config.cache_events else []
        )
    env = {**os.environ, **config.env}
    timeline_path = scratch / "timeline.jsonl"
    timeline_path.unlink(missing_ok=True)
    if config.tool == "cytogate":
        env["CYTOGATE_TIMELINE"] = str(timeline_path)  # cytogate.study.timeline
    busy0, self0 = _busy_seconds(), _cpu(resource.getrusage(resource.RUSAGE_SELF))
    children0 = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    poller = TreePoller(proc.pid)
    stdout, stderr = proc.communicate()
    process_wall = time.perf_counter() - start
    tree_peak = poller.stop()
    busy1, self1 = _busy_seconds(), _cpu(resource.getrusage(resource.RUSAGE_SELF))
    cpu_tree = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - children0
    if proc.returncode != 0:
        sys.stderr.write(stdout.decode(errors="replace") + stderr.decode(errors="replace"))
        raise SystemExit(f"{config.label}: exit status {proc.returncode}")
    report = json.loads(report_path.read_text())
    others = None
    if busy0 is not None and busy1 is not None:
        others = max(0.0, (busy1 - busy0) - cpu_tree - (self1 - self0)) / process_wall
    if config.tool == "cytogate":
        report["populations"] = read_populations(out / "populations.csv")
        if timeline_path.is_file():
            report["timeline"] = timeline_summary(timeline_path)
        wall = process_wall
    else:
        wall = report["loop_s"]
    return Measured(
        wall=wall,
        process_wall=process_wall,
        cpu=cpu_tree if config.tool == "cytogate" else report["loop_cpu_s"],
        rss_self_mb=report["maxrss_self_kb"] / 1024,
        rss_workers_mb=report["maxrss_children_kb"] / 1024,
        rss_tree_mb=tree_peak,
        others=others,
        report=report,
    )


#: the parent's marks (cytogate.study.timeline) in the order a run passes them
PHASES = (
    ("process started", "cli main", "interpreter start"),
    ("cli main", "run_batch", "imports: click, pipeline, template code"),
    ("run_batch", "design read", "config, template, design"),
    ("design read", "markers checked", "marker check (keywords of each stained file)"),
    ("markers checked", "preloaded", "worker imports in the parent (sklearn, ...)"),
    ("preloaded", "workers forked", "fork the workers"),
    ("all jobs done", "tables assembled", "tables + paired statistics"),
    ("tables assembled", "tables written", "write tables and run.json"),
    ("tables written", "exit", "publish the set, exit"),
)


def timeline_summary(path: Path) -> dict[str, Any]:
    """Where one run's wall time went, from its ``CYTOGATE_TIMELINE`` file."""
    marks = sorted(
        (json.loads(line) for line in path.read_text().splitlines() if line.strip()),
        key=lambda m: m["t"],
    )
    parent = {m["event"]: m["t"] for m in marks if m["who"] == "parent"}
    t0 = parent.get("process started", marks[0]["t"])
    starts = [m for m in marks if m["event"] == "task start"]
    ends = [m for m in marks if m["event"] == "task end"]
    first, last = min(m["t"] for m in starts), max(m["t"] for m in ends)
    phases = [
        (label, parent[b] - parent[a]) for a, b, label in PHASES if a in parent and b in parent
    ]
    workers: dict[int, dict[str, float]] = {}
    begun: dict[tuple[int, int], float] = {}
    for m in marks:
        if m["event"] == "task start":
            begun[(m["pid"], m["task"])] = m["t"]
        elif m["event"] == "task end":
            w = workers.setdefault(
                m["pid"], {"tasks": 0, "busy_s": 0.0, "cpu_s": 0.0, "last_end": 0.0}
            )
            w["tasks"] += 1
            w["busy_s"] += m["t"] - begun[(m["pid"], m["task"])]
            w["cpu_s"] += m.get("cpu_s", 0.0)
            w["last_end"] = max(w["last_end"], m["t"] - t0)
    rss = [m["rss_mb"] for m in marks if m["who"] == "parent" and m.get("rss_mb")]
    packed = [m for m in marks if m["event"] == "result packed"]
    return {
        "result_kb": {
            "outcomes": statistics.mean(m["outcomes_bytes"] for m in packed) / 1024,
            "rows": statistics.mean(m["rows_bytes"] for m in packed) / 1024,
        }
        if packed
        else None,
        "total_s": parent.get("exit", last) - t0,
        "before_first_task_s": first - t0,
        "gating_span_s": last - first,
        "after_last_task_s": parent.get("exit", last) - last,
        "phases": phases,
        "workers": {str(k): v for k, v in workers.items()},
        "parent_rss_mb": {
            "at workers forked": next(
                (m["rss_mb"] for m in marks if m["event"] == "workers forked"), None
            ),
            "at all jobs done": next(
                (m["rss_mb"] for m in marks if m["event"] == "all jobs done"), None
            ),
            "max": max(rss) if rss else None,
        },
    }


def print_timeline(label: str, t: dict[str, Any]) -> None:
    print(
        f"  {label}: {t['total_s']:.2f} s = {t['before_first_task_s']:.2f} s before the first "
        f"task + {t['gating_span_s']:.2f} s first task start -> last task end + "
        f"{t['after_last_task_s']:.2f} s after it"
    )
    print("    " + "; ".join(f"{name} {sec:.2f} s" for name, sec in t["phases"]))
    span = t["gating_span_s"] or float("nan")
    for pid, w in t["workers"].items():
        print(
            f"    worker {pid}: {w['tasks']} tasks, busy {w['busy_s']:.2f} s "
            f"({100 * w['busy_s'] / span:.0f}% of the span; CPU {w['cpu_s']:.2f} s of it), "
            f"last task ended at {w['last_end']:.2f} s"
        )
    if t.get("result_kb"):
        print(
            f"    a job's result, pickled: outcomes {t['result_kb']['outcomes']:.0f} KB (written "
            f"to disk by the parent), table rows {t['result_kb']['rows']:.1f} KB (kept)"
        )
    r = t["parent_rss_mb"]
    print(
        f"    parent RSS: {r['at workers forked']} MB when the workers were forked, "
        f"{r['at all jobs done']} MB when all jobs were done, {r['max']} MB max"
    )


def read_populations(path: Path) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["count"] != "":
                counts.setdefault(row["file"], {})[row["population"]] = int(row["count"])
    return counts


# --------------------------------------------------------------------------- subprocesses


def child(args: argparse.Namespace) -> int:
    """Body of one measured subprocess; writes its figures to ``args.report`` as JSON."""
    report: dict[str, Any] = {
        # Linux keeps ru_maxrss across exec: a process starts with its parent's peak. Recorded
        # so that a figure which is only that inherited floor can be told apart.
        "maxrss_start_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    }
    if args.child == "setup":
        report.update(setup(args))
        args.report.write_text(json.dumps(report))
        return 0
    if args.child == "simulate":
        report.update(simulate_many(args.run, args.patients, args.events))
        args.report.write_text(json.dumps(report))
        return 0
    if args.child == "dask":
        report.update(dask_vs_local(args.run, args.out))
        args.report.write_text(json.dumps(report))
        return 0
    if args.child == "cytogate":
        from cytogate.cli import cli
        from cytogate.cli import main as cytogate_main

        sys.argv = ["cytogate", "batch", str(args.run), "--jobs", str(args.jobs)]
        sys.argv += ["--out", str(args.out), "--quiet"]
        has_plots = "no_plots" in {p.name for p in cli.commands["batch"].params}
        if has_plots and not args.plots:
            sys.argv.append("--no-plots")  # tables only: what FlowKit is compared with
        report["plots"] = has_plots and args.plots
        try:
            cytogate_main()
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        run_json = json.loads((args.out / "run.json").read_text()) if status == 0 else {}
        report["timings"] = {
            k: v for k, v in run_json.get("timings", {}).items() if k != "per_file_s"
        }
    else:
        status = 0
        report.update(flowkit_loop(args))
    usage_self = resource.getrusage(resource.RUSAGE_SELF)
    usage_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    report["maxrss_self_kb"] = usage_self.ru_maxrss  # kilobytes on Linux
    report["maxrss_children_kb"] = usage_children.ru_maxrss  # the largest child, not a sum
    args.report.write_text(json.dumps(report))
    return status


def flowkit_loop(args: argparse.Namespace) -> dict[str, Any]:
    t_import, fk = timed(lambda: __import__("flowkit"))
    import numpy as np

    t_load, payload = timed(lambda: pickle.loads(args.strategies.read_bytes()))
    counts: dict[str, dict[str, int]] = {}
    cpu0, start = time.process_time(), time.perf_counter()
    for name in payload["files"]:
        strategy = payload["strategies"][name]
        sample = fk.Sample(str(args.run / name))
        with np.errstate(invalid="ignore", divide="ignore"):
            results = strategy.gate_sample(sample, cache_events=args.cache_events)
        counts[name] = {pop: int(results.get_gate_count(pop)) for pop in payload["populations"]}
        if args.cache_events:
            strategy.clear_cache()
    return {
        "loop_s": time.perf_counter() - start,
        "loop_cpu_s": time.process_time() - cpu0,
        "import_s": t_import,
        "load_strategies_s": t_load,
        "populations": counts,
    }


# --------------------------------------------------------------------------- 1,000 files, Dask


def simulate_many(run: Path, patients: int, events: int) -> dict[str, Any]:
    """A SIMULATED run of ``patients`` x 12 small files (reused if complete)."""
    from cytogate.sim.simulate import StudyConfig, simulate_study

    if _complete(run):
        return {"files": len(manifest_rows(run)), "simulate_s": 0.0}
    shutil.rmtree(run, ignore_errors=True)
    seconds, _ = timed(
        lambda: simulate_study(run, StudyConfig(n_patients=patients, events_per_file=events))
    )
    return {"files": len(manifest_rows(run)), "simulate_s": seconds}


def dask_vs_local(run: Path, out: Path) -> dict[str, Any]:
    """``run_batch`` on a two-worker LocalCluster and with ``jobs=2``, in this process."""
    import distributed

    from cytogate.study.batch import run_batch

    load = os.getloadavg()[0]
    start = time.perf_counter()
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    cluster_s = time.perf_counter() - start
    figures: dict[str, Any] = {"cluster_start_s": cluster_s, "load_start": load}
    try:
        for label, kwargs in (
            ("dask_first", {"client": client}),  # workers import cytogate on their first task
            ("local", {"jobs": 2}),
            ("dask", {"client": client}),
        ):
            target = out / label
            shutil.rmtree(target, ignore_errors=True)
            seconds, result = timed(lambda kw=kwargs, t=target: run_batch(run, out=t, **kw))
            figures[f"{label}_s"] = seconds
            figures[f"{label}_failed"] = len(result.failed)
    finally:
        client.close()
        cluster.close()
    figures["identical_tables"] = all(
        (out / "local" / f"{t}.csv").read_bytes() == (out / "dask" / f"{t}.csv").read_bytes()
        for t in ("samples", "populations", "markers", "timecourse", "stats")
    )
    figures["load_end"] = os.getloadavg()[0]
    return figures


def run_child(mode: str, scratch: Path, **options: Any) -> dict[str, Any]:
    report = scratch / f"{mode}.json"
    cmd = [sys.executable, __file__, "--child", mode, "--report", str(report)]
    for key, value in options.items():
        cmd += [f"--{key}", str(value)]
    subprocess.run(cmd, check=True)
    return json.loads(report.read_text())


def scaling_section(run: Path, scratch: Path, repeats: int) -> dict[str, Any]:
    """``--jobs 1`` against ``--jobs 2`` alone (no FlowKit rows), alternating, with the
    timeline of each: where the serial time goes and how busy each worker is."""
    configs = CONFIGS[:2]
    runs: dict[str, list[Measured]] = {c.label: [] for c in configs}
    load = os.getloadavg()[0]
    for i in range(repeats):
        for config in configs if i % 2 == 0 else configs[::-1]:
            runs[config.label].append(measure(config, run, scratch, Path("-")))
    wall = {k: statistics.median(m.wall for m in v) for k, v in runs.items()}
    cpu = {k: statistics.median(m.cpu for m in v) for k, v in runs.items()}
    others = {
        k: statistics.median(m.others for m in v if m.others is not None) if v[0].others else 0.0
        for k, v in runs.items()
    }
    one, two = (wall[c.label] for c in configs)
    a, b = (c.label for c in configs)
    print(
        f"\n--jobs scaling alone (median of {repeats}): --jobs 1 {one:.2f} s (CPU "
        f"{cpu[a]:.1f} s, other processes {others[a]:.2f} cores), --jobs 2 {two:.2f} s (CPU "
        f"{cpu[b]:.1f} s, other processes {others[b]:.2f} cores) = x{one / two:.2f} (goal >= "
        f"1.8x); load average {load:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    for label, v in runs.items():
        print(
            f"  {label}: "
            + ", ".join(f"{m.wall:.2f} s (others {m.others or 0:.2f} cores)" for m in v)
        )
    print("timeline (median run of each):")
    timelines = {}
    for config in configs:
        ordered = sorted(runs[config.label], key=lambda m: m.wall)
        tl = ordered[len(ordered) // 2].report.get("timeline")
        if tl:
            print_timeline(config.label, tl)
            timelines[config.label] = tl
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "ratio": one / two,
        "others_cores": others,
        "rss_parent_mb": {k: max(m.rss_self_mb for m in v) for k, v in runs.items()},
        "rss_worker_mb": max(m.rss_workers_mb for m in runs[configs[1].label]),
        "timeline": timelines,
        "load": [load, os.getloadavg()[0]],
    }


def thousand_section(args: argparse.Namespace, workdir: Path, scratch: Path) -> dict[str, Any]:
    patients = max(1, -(-args.thousand // 12))
    run = workdir / f"run_{patients}x12_{args.thousand_events}"
    info = run_child("simulate", scratch, run=run, patients=patients, events=args.thousand_events)
    load = os.getloadavg()[0]
    m = measure(Config("cytogate batch --jobs 2", "cytogate", 2), run, scratch, Path("-"))
    rss = f"CLI {m.rss_self_mb:.0f} MB, largest worker {m.rss_workers_mb:.0f} MB"
    if m.rss_tree_mb is not None:
        rss += f", tree sum {m.rss_tree_mb:.0f} MB (polled)"
    print(
        f"\n{info['files']} SIMULATED files x {args.thousand_events:,} events, cytogate batch "
        f"--jobs 2: {m.wall:.1f} s ({info['files'] / m.wall:.1f} files/s), CPU {m.cpu:.1f} s; "
        f"peak RSS {rss}; load average {load:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    if m.report.get("timeline"):
        print_timeline("--jobs 2", m.report["timeline"])
    return {
        "files": info["files"],
        "events": args.thousand_events,
        "wall_s": m.wall,
        "cpu_s": m.cpu,
        "rss_cli_mb": m.rss_self_mb,
        "rss_worker_mb": m.rss_workers_mb,
        "rss_tree_mb": m.rss_tree_mb,
        "load": [load, os.getloadavg()[0]],
        **(
            {"jobs1": thousand_jobs1(run, scratch, m.wall, info["files"])}
            if args.thousand_jobs1
            else {}
        ),
        "timeline": m.report.get("timeline"),
    }


def thousand_jobs1(run: Path, scratch: Path, two: float, files: int) -> dict[str, Any]:
    """The many-files run on one process too (``--thousand-jobs1``): the scaling where the
    start-up is a small part of the run."""
    load = os.getloadavg()[0]
    m = measure(Config("cytogate batch --jobs 1", "cytogate", 1), run, scratch, Path("-"))
    print(
        f"  the same, --jobs 1: {m.wall:.1f} s, CLI peak RSS {m.rss_self_mb:.0f} MB -> --jobs 1 / "
        f"--jobs 2 = x{m.wall / two:.2f} on {files} files; load average {load:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    if m.report.get("timeline"):
        print_timeline("--jobs 1", m.report["timeline"])
    return {"wall_s": m.wall, "rss_cli_mb": m.rss_self_mb, "ratio": m.wall / two}


def dask_section(run: Path, scratch: Path) -> dict[str, Any]:
    f = run_child("dask", scratch, run=run, out=scratch / "dask_out")
    print(
        f"\nDask LocalCluster (2 worker processes, 1 thread each) vs run_batch(jobs=2), same run, "
        f"same process:\n  cluster start {f['cluster_start_s']:.1f} s; first Dask run (workers "
        f"warm up) {f['dask_first_s']:.1f} s; local --jobs 2 {f['local_s']:.1f} s; Dask "
        f"{f['dask_s']:.1f} s (Dask / local = {f['dask_s'] / f['local_s']:.2f}); tables "
        f"{'byte-identical' if f['identical_tables'] else 'DIFFERENT'}; failed files "
        f"{f['dask_failed']}; load average {f['load_start']:.2f} -> {f['load_end']:.2f}"
    )
    return f


# --------------------------------------------------------------------------- reporting


def print_table(results: dict[str, list[Measured]], n_files: int, n_events: int) -> None:
    med = {k: statistics.median(m.wall for m in v) for k, v in results.items()}
    fk_cpu = statistics.median(m.cpu for m in results[BASELINE])
    head = (
        f"{'configuration':<35}{'wall s':>7}{'files/s':>8}{'Mev/s':>7}{'CPU s':>7}"
        f"{'peak RSS MB':>12}{'FK/x':>6}{'FK/x CPU':>9}{'others':>7}   RSS detail (MB)"
    )
    print(head)
    print("-" * (len(head) + 40))
    for i, config in enumerate(CONFIGS):
        if config.one_blas_thread and not (i and CONFIGS[i - 1].one_blas_thread):
            print("diagnostic, OPENBLAS_NUM_THREADS=1 (FK/x against FlowKit sequential above):")
        runs = results[config.label]
        wall = med[config.label]
        cpu = statistics.median(m.cpu for m in runs)
        rss_self = max(m.rss_self_mb for m in runs)
        rss_workers = max(m.rss_workers_mb for m in runs)
        trees = [m.rss_tree_mb for m in runs if m.rss_tree_mb is not None]
        others = [m.others for m in runs if m.others is not None]
        if config.tool == "cytogate" and config.jobs > 1:
            detail = f"parent {rss_self:.0f}, max worker {rss_workers:.0f}"
        else:
            detail = "one process"
        if trees:
            detail += f", tree sum {max(trees):.0f} (polled)"
        rate = n_files * n_events / wall / 1e6
        print(
            f"{config.label:<35}{wall:7.2f}{n_files / wall:8.1f}{rate:7.2f}{cpu:7.1f}"
            f"{max(rss_self, rss_workers):12.0f}{med[BASELINE] / wall:6.2f}{fk_cpu / cpu:9.2f}"
            f"{statistics.median(others) if others else float('nan'):7.2f}   {detail}"
        )


def agreement(results: dict[str, list[Measured]], rows: list[dict[str, str]]) -> bool:
    """Compare every configuration's population counts with FlowKit sequential's.

    cytogate's are read from the populations.csv it wrote (last run of each configuration).
    """
    fk_counts = results[BASELINE][-1].report["populations"]
    stained = [r["file"] for r in rows if r["tube"] == "stained"]
    ok = True
    for config in CONFIGS:
        if config.label == BASELINE:
            continue
        ours = results[config.label][-1].report["populations"]
        blasts = [
            f"{f}: {ours.get(f, {}).get('blasts')} vs FlowKit {fk_counts[f]['blasts']}"
            for f in stained
            if ours.get(f, {}).get("blasts") != fk_counts[f]["blasts"]
        ]
        others = [
            f"{f} {pop}"
            for f, pops in fk_counts.items()
            for pop, n in pops.items()
            if ours.get(f, {}).get(pop) != n
        ]
        verdict = "agree" if not blasts else f"{len(blasts)} MISMATCHES: " + "; ".join(blasts)
        print(f"  {config.label:<35} blasts, {len(stained)} stained files: {verdict}")
        if others:
            print(f"    other counts differing ({len(others)}): {', '.join(others[:10])}")
        ok &= not blasts and not others
    if ok:
        n_pops = len(next(iter(fk_counts.values())))
        print(f"  (and all {n_pops} populations of all {len(fk_counts)} files agree)")
    return ok


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=4, help="patients (12 files each)")
    parser.add_argument("--events", type=int, default=200_000, help="events per file")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (median)")
    parser.add_argument("--seed", type=int, default=None, help="simulator seed (default: config)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="simulate here and keep (reused next time)"
    )
    parser.add_argument(
        "--plots",
        action="store_true",
        help="let cytogate batch draw its plots and report (default: --no-plots, where the CLI "
        "has it)",
    )
    for name in ("--child", "--run", "--out", "--report", "--strategies"):
        parser.add_argument(name, type=None if name == "--child" else Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--thousand", type=int, default=1000, help="files in the many-files run (0: skip)"
    )
    parser.add_argument("--thousand-events", type=int, default=2000, help="events per file there")
    parser.add_argument(
        "--thousand-jobs1", action="store_true", help="also run the many-files run with --jobs 1"
    )
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster run")
    parser.add_argument(
        "--sections",
        default="main,thousand,dask",
        help="which of main,scaling,thousand,dask to run (scaling: --jobs 1 vs 2 alone)",
    )
    parser.add_argument(
        "--summary", type=Path, default=None, help="also write the figures as JSON (bench_all)"
    )
    parser.add_argument("--jobs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--cache-events", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    # This process stays small (stdlib + numpy): simulation and strategy building run in a
    # subprocess, so the measured subprocesses do not start from a large inherited peak RSS.
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="bench_batch_", dir=workdir))
        try:
            strategies, report = scratch / "strategies.pkl", scratch / "setup.json"
            cmd = [sys.executable, __file__, "--child", "setup", "--run", str(workdir)]
            sections = set(args.sections.split(","))
            if args.no_dask:
                sections.discard("dask")
            flowkit = "main" in sections
            cmd += ["--strategies", str(strategies) if flowkit else "-", "--report", str(report)]
            cmd += ["--patients", str(args.patients), "--events", str(args.events)]
            if args.seed is not None:
                cmd += ["--seed", str(args.seed)]
            subprocess.run(cmd, check=True)
            info = json.loads(report.read_text())
            run, small = Path(info["run"]), Path(info["small"])
            rows = manifest_rows(run)
            n_files = len(rows)
            print(
                f"run: {n_files} files x {args.events:,} events ({args.patients} patients x "
                f"{n_files // args.patients // 2} timepoints x 2 tubes), {info['size_mb']:.0f} MB"
                f"\n{info['versions']}, {os.cpu_count()} CPUs, load average "
                f"{os.getloadavg()[0]:.2f}; template {info['template']}; median of "
                f"{args.repeats} runs\n"
            )
            summary: dict[str, Any] = {"files": n_files, "events": args.events}
            same = True
            if "scaling" in sections:
                summary["scaling"] = scaling_section(run, scratch, args.repeats)
            if "main" in sections:
                results: dict[str, list[Measured]] = {c.label: [] for c in CONFIGS}
                for i in range(args.repeats):
                    order = CONFIGS if i % 2 == 0 else CONFIGS[::-1]
                    for config in order:
                        m = measure(config, run, scratch, strategies, args.plots)
                        results[config.label].append(m)
                        print(
                            f"  run {i + 1}/{args.repeats} {config.label.strip()}: {m.wall:.2f} s, "
                            f"CPU {m.cpu:.1f} s, others {m.others or 0:.2f} cores",
                            file=sys.stderr,
                            flush=True,
                        )
                small_runs = [measure(CONFIGS[0], small, scratch, strategies, args.plots)]

                print_table(results, n_files, args.events)
                summary["wall_s"] = {
                    k: statistics.median(m.wall for m in v) for k, v in results.items()
                }
                summary["load"] = os.getloadavg()
                print_notes(results, info["bridge_s"], info["gate_s"])
                print(f"\ntimeline (last run of each; load average {os.getloadavg()[0]:.2f}):")
                for config in CONFIGS[:2]:
                    tl = results[config.label][-1].report.get("timeline")
                    if tl:
                        print_timeline(config.label, tl)
                        summary.setdefault("timeline", {})[config.label] = tl
                plotted = results[CONFIGS[0].label][-1].report.get("plots")
                print(f"cytogate batch plots/report.html: {'drawn' if plotted else 'not drawn'}")
                print("\nblast counts, cytogate populations.csv vs FlowKit:")
                same = agreement(results, rows)
                big = max(m.rss_self_mb for m in results[CONFIGS[0].label])
                little = max(m.rss_self_mb for m in small_runs)
                print(
                    "\nbounded memory (docs/architecture.md §7), "
                    f"cytogate batch --jobs 1, peak RSS: "
                    f"{SMALL_RUN} files {little:.0f} MB, {n_files} files {big:.0f} MB "
                    f"({n_files}/{SMALL_RUN} files -> x{big / little:.2f} memory)"
                )
                floors = sorted(
                    {
                        label
                        for label, runs in [*results.items(), ("small run", small_runs)]
                        for m in runs
                        if m.report["maxrss_self_kb"] <= m.report["maxrss_start_kb"]
                    }
                )
                if floors:
                    print(f"WARNING: peak RSS is only the inherited floor for: {', '.join(floors)}")
            if "thousand" in sections and args.thousand > 0:
                summary["thousand"] = thousand_section(args, workdir, scratch)
            if "dask" in sections:
                summary["dask"] = dask_section(run, scratch)
            if args.summary is not None:
                args.summary.write_text(json.dumps(summary, indent=1))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0 if same else 1


def print_notes(results: dict[str, list[Measured]], bridge_s: float, gate_s: float) -> None:
    def med(label: str) -> float:
        return statistics.median(m.wall for m in results[label])

    fk_runs, cg_runs = results[BASELINE], results[CONFIGS[0].label]
    print(
        "\nwall: cytogate = whole CLI subprocess (start, imports, read + gate + quantify, stats, "
        "writing tables);\n      FlowKit = per-file loop only (Sample + gate_sample + counts); "
        "excluded: interpreter + import flowkit\n      "
        f"{statistics.median(m.process_wall - m.wall for m in fk_runs):.2f} s, strategy "
        f"construction {bridge_s * 1e3:.1f} ms/file (+ cytogate read + gate {gate_s * 1e3:.0f} "
        "ms/file to build them)"
    )
    print(
        "FK/x: FlowKit sequential wall / this wall (> 1: faster than FlowKit), FK/x CPU the same "
        "for CPU s;\n      FlowKit with cache_events / cytogate --jobs 1: "
        f"{med(CONFIGS[3].label) / med(CONFIGS[0].label):.2f}"
    )
    print(
        "--jobs scaling: --jobs 1 / --jobs 2 = "
        f"{med(CONFIGS[0].label) / med(CONFIGS[1].label):.2f}x (goal >= 1.8x); with 1 BLAS thread "
        f"{med(CONFIGS[4].label) / med(CONFIGS[5].label):.2f}x"
    )
    print(
        "CPU s: user + system of the subprocess tree (FlowKit: its loop); others: cores busy with "
        "other processes during the run (/proc/stat)"
    )
    timings = cg_runs[-1].report.get("timings", {})
    if timings:
        print(
            "cytogate --jobs 1 run.json timings (last run): "
            + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
        )


if __name__ == "__main__":
    raise SystemExit(main())
