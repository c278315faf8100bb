"""The bundled run with and without plots: how much the figures and the report cost.

Why: issue 12 asks for the run with plots and report within 3x the time of the same run without
them. Both are the real CLI (``cytogate batch RUN --out TMP --quiet [--no-plots] --jobs N``) in
a fresh interpreter each, alternating, median of ``--repeats``; the files are in the page cache.
Also printed: the plot phase's own timings from run.json, the CPU time of each run (user +
system of the process and its workers: on a shared machine the wall time grows with the other
load, the CPU time much less), and the machine load (``os.getloadavg``) before and after each
run, because on a busy machine neither figure is final. Nothing is asserted about time; the
exit status is 1 only if the two runs' tables differ.

    python benchmarks/bench_plots.py [--run sample_fcs/run42] [--jobs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("samples", "populations", "markers", "timecourse", "stats")


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(run: Path, out: Path, jobs: int, plots: bool) -> tuple[float, float, tuple[float, ...]]:
    """Wall seconds, CPU seconds (the CLI and its workers) and the load before and after."""
    cmd = [sys.executable, "-m", "cytogate", "batch", str(run), "--out", str(out), "--quiet"]
    cmd += ["--jobs", str(jobs)] + ([] if plots else ["--no-plots"])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    load = os.getloadavg()
    cpu = _cpu_of_children()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return seconds, _cpu_of_children() - cpu, load + os.getloadavg()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "sample_fcs" / "run42")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--summary", type=Path, default=None, help="also write JSON (bench_all)")
    args = parser.parse_args()
    times: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="bench_plots_") as tmp:
        for i in range(args.repeats):
            order = (False, True) if i % 2 == 0 else (True, False)
            for plots in order:
                out = Path(tmp) / f"{'plots' if plots else 'tables'}_{i}"
                seconds, cpu, load = _run(args.run, out, args.jobs, plots)
                times[plots].append(seconds)
                cpus[plots].append(cpu)
                print(
                    f"run {i + 1} {'with plots   ' if plots else 'without plots'}: "
                    f"{seconds:6.1f} s ({cpu:6.1f} s CPU)   load before "
                    f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
                    f"  after {load[3]:.2f} {load[4]:.2f} {load[5]:.2f}",
                    flush=True,
                )
        same = all(
            filecmp.cmp(Path(tmp) / "tables_0" / f"{t}.csv", Path(tmp) / "plots_0" / f"{t}.csv")
            for t in TABLES
        )
        plots_run = json.loads((Path(tmp) / "plots_0" / "run.json").read_text())
        n_files = len(list((Path(tmp) / "plots_0" / "plots").rglob("*.png")))
    without, with_plots = statistics.median(times[False]), statistics.median(times[True])
    cpu_without, cpu_with = statistics.median(cpus[False]), statistics.median(cpus[True])
    timings = plots_run.get("plots", {}).get("timings", {})
    print()
    print(
        f"{args.run.name}: {len(plots_run['inputs'])} files, --jobs {args.jobs}, "
        f"median of {args.repeats}; {n_files} PNG files written"
    )
    print(f"  without plots: {without:6.1f} s   ({cpu_without:6.1f} s CPU)")
    print(
        f"  with plots:    {with_plots:6.1f} s   ({cpu_with:6.1f} s CPU)   = "
        f"{with_plots / without:.2f}x wall, {cpu_with / cpu_without:.2f}x CPU (goal <= 3x)"
    )
    print("  plot phase (run.json): " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(
        f"  load average now: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
        f"on {os.cpu_count()} CPUs"
    )
    print(f"  tables identical with and without plots: {same}")
    if args.summary is not None:
        args.summary.write_text(
            json.dumps(
                {
                    "files": len(plots_run["inputs"]),
                    "without_s": without,
                    "with_s": with_plots,
                    "ratio": with_plots / without,
                    "cpu_without_s": cpu_without,
                    "cpu_with_s": cpu_with,
                    "identical_tables": same,
                    "load": os.getloadavg(),
                }
            )
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
