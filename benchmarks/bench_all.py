"""Every issue-12 figure in one run: per file, batches, 1,000 files, Dask, plots.

Why: the performance claims are ratios (to FlowKit 1.3 on the same work, to the raw read floor,
``--jobs 2`` to ``--jobs 1``, Dask to local, plots to no plots) measured in one sitting on one
machine, so they can be read together and re-run by anyone. This runs ``bench_gating.py``,
``bench_batch.py`` (its main table, the 1,000-file section and the Dask section) and
``bench_plots.py`` one after the other, each in its own interpreter (their full output is shown
as they go), then prints one summary table with each figure beside its goal and the machine's
load (``os.getloadavg``) at each stage: figures taken on a busy machine are not final.

    python benchmarks/bench_all.py [--events 1000000] [--patients 2] [--thousand 1000]
        [--repeats 3] [--quick]

``--quick`` (200,000 events, 1 repeat, 240 files) checks the harness in about two minutes; its
figures are not the issue's. Nothing is asserted about time; the exit status is 1 when a
benchmark found results that differ (masks vs FlowKit, tables Dask vs local or plots vs none).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run(script: str, args: list[str], summary: Path) -> tuple[int, dict[str, Any], float]:
    """Run one benchmark (output streamed); (exit status, its JSON summary, wall seconds)."""
    cmd = [sys.executable, str(HERE / script), *args, "--summary", str(summary)]
    print(f"\n=== {' '.join(Path(c).name if c.endswith('.py') else c for c in cmd)}", flush=True)
    start = time.perf_counter()
    code = subprocess.run(cmd, check=False).returncode
    seconds = time.perf_counter() - start
    data = json.loads(summary.read_text()) if summary.is_file() else {}
    return code, data, seconds


def _load(values: Any) -> str:
    if isinstance(values, int | float):
        return f"{values:.2f}"
    return " ".join(f"{v:.2f}" for v in values) if values else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="per-file benchmark")
    parser.add_argument("--patients", type=int, default=2, help="batch run: 12 files each")
    parser.add_argument("--batch-events", type=int, default=200_000)
    parser.add_argument("--thousand", type=int, default=1000, help="files in the many-files run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the harness")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.batch_events, args.thousand, args.repeats = 200_000, 50_000, 240, 1
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    codes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench_all_") as tmp:
        folder = Path(tmp)
        codes["gating"], gating, _ = run(
            "bench_gating.py",
            ["--events", str(args.events), "--repeats", str(args.repeats)],
            folder / "gating.json",
        )
        codes["batch"], batch, _ = run(
            "bench_batch.py",
            [
                "--patients", str(args.patients),
                "--events", str(args.batch_events),
                "--repeats", str(args.repeats),
                "--thousand", str(args.thousand),
                "--workdir", str(folder / "batch"),
            ],
            folder / "batch.json",
        )  # fmt: skip
        codes["plots"], plots, _ = run(
            "bench_plots.py", ["--repeats", str(max(1, args.repeats - 1))], folder / "plots.json"
        )
    print_summary(gating, batch, plots)
    failed = [name for name, code in codes.items() if code != 0]
    if failed:
        print(f"benchmarks reporting different results (or failing): {', '.join(failed)}")
    return 1 if failed else 0


def print_summary(gating: dict[str, Any], batch: dict[str, Any], plots: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str, str]] = []
    if gating:
        s = gating["seconds"]
        n = f"{gating['events']:,}"
        rows += [
            (
                f"one {n}-event file: read + comp + logicle + adaptive template",
                f"{s['cg_adaptive_total']:.3f} s; FlowKit 4-gate blast chain "
                f"{s['fk_total4']:.3f} s",
                f"FK/cg {gating['fk4_over_cg_adaptive']:.1f}x",
                ">= 10x",
            ),
            (
                "the same with the fixed template (7 gates)",
                f"{s['cg_total']:.3f} s; floor {s['floor']:.4f} s; FlowKit same 7 gates "
                f"{s['fk_total']:.3f} s",
                f"{gating['cg_fixed_over_floor']:.1f}x floor; "
                f"FK/cg {gating['fk_over_cg_fixed']:.1f}x",
                "<= 5x floor",
            ),
            (
                "fixed-template masks vs FlowKit",
                "",
                "identical" if gating["identical_masks"] else "DIFFERENT",
                "identical",
            ),
        ]
    if batch.get("wall_s"):
        w = batch["wall_s"]
        one, two = w["cytogate batch --jobs 1"], w["cytogate batch --jobs 2"]
        fk = w["FlowKit sequential"]
        rows += [
            (
                f"batch {batch['files']} x {batch['events']:,}: --jobs 1 / --jobs 2",
                f"{one:.1f} s / {two:.1f} s",
                f"{one / two:.2f}x",
                ">= 1.8x",
            ),
            ("  FlowKit sequential / cytogate --jobs 1", f"{fk:.1f} s", f"{fk / one:.2f}x", ""),
        ]
    if batch.get("thousand"):
        t = batch["thousand"]
        tree = f", tree {t['rss_tree_mb']:.0f} MB" if t.get("rss_tree_mb") else ""
        rows.append(
            (
                f"{t['files']} SIMULATED files x {t['events']:,} events, --jobs 2",
                f"{t['wall_s']:.1f} s ({t['files'] / t['wall_s']:.1f} files/s)",
                f"peak RSS CLI {t['rss_cli_mb']:.0f} MB, worker {t['rss_worker_mb']:.0f} MB{tree}",
                "bounded",
            )
        )
    if batch.get("dask"):
        d = batch["dask"]
        rows.append(
            (
                "Dask LocalCluster (2 workers) vs local --jobs 2",
                f"{d['dask_s']:.1f} s vs {d['local_s']:.1f} s",
                f"{d['dask_s'] / d['local_s']:.2f}x; tables "
                + ("identical" if d["identical_tables"] else "DIFFERENT"),
                "identical tables",
            )
        )
    if plots:
        rows.append(
            (
                f"bundled run ({plots['files']} files) with plots / without",
                f"{plots['with_s']:.1f} s / {plots['without_s']:.1f} s",
                f"{plots['ratio']:.2f}x",
                "<= 3x",
            )
        )
    print("\n=== summary (issue 12)")
    width = max(len(r[0]) for r in rows) if rows else 10
    for name, seconds, ratio, goal in rows:
        print(f"{name:<{width}}  {seconds:<36} {ratio:<44} goal {goal}")
    loads = [
        ("per file", gating.get("load_after")),
        ("batch", batch.get("load")),
        ("plots", plots.get("load")),
    ]
    print(
        "machine load (1, 5, 15 min) after each stage: "
        + "; ".join(f"{k} {_load(v)}" for k, v in loads if v)
        + f" on {os.cpu_count()} cores (figures under load are not final)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
