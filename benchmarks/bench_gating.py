"""Read + gate one large simulated file: cytogate vs FlowKit 1.3 vs the raw read floor.

Why: performance is stated as ratios against FlowKit (the tool our users would otherwise use)
and against the fastest possible read (``numpy.fromfile`` of the DATA segment), measured on the
same file in one run, so the figures do not depend on the machine (issue 12, item 1). The
machine's load (``os.getloadavg``) is printed beside them: figures taken under load are not final.

What is timed (median of ``--repeats`` runs; the order of the tools alternates between runs and
the file is in the page cache for all of them, so this measures CPU work, not the disk):

* floor     ``numpy.fromfile`` of the DATA segment (offsets from the file's TEXT);
* cytogate  ``read_fcs``, then ``cytogate.gate`` (compensate with the file's spillover + scale +
  fit the data-driven gates + evaluate every gate) with the fixed template (``--template``) and
  with the adaptive default template (``--adaptive``);
* FlowKit   ``flowkit.Sample(path)``, then ``GatingStrategy.gate_sample`` with strategies that
  :mod:`cytogate.interop.flowkit_export` builds from the fixed template (built once, outside the
  timing, as a FlowKit user would load a GatingML file once): the 4-gate blast hierarchy
  (cells → singlets → leukocytes → blasts, the issue's baseline) and the whole fixed template
  (those four plus lymphocytes, monocytes and granulocytes: the same 7 gates as cytogate's).

Goals (issue 12): FlowKit 4-gate ÷ cytogate adaptive >= 10; cytogate fixed ÷ floor <= 5. The
fixed template's population masks are compared with FlowKit's 7-gate run (they must be
identical; see ``tests/test_flowkit_agreement.py``); the exit status is 1 if they are not.
Nothing is asserted about time.

    python benchmarks/bench_gating.py [--events 1000000] [--repeats 5] [--profile]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def data_segment(path: Path) -> tuple[int, np.dtype, int, int]:
    """(offset, dtype, events, parameters) of the DATA segment, from HEADER and TEXT only.

    Deliberately minimal (float data, one data set): the floor is a number to compare against,
    not a reader.
    """
    with open(path, "rb") as fh:
        header = fh.read(58)
        text_start, text_end = int(header[10:18]), int(header[18:26])
        fh.seek(text_start)
        raw = fh.read(text_end - text_start + 1).decode("latin-1")
    delim = raw[0]
    tokens = re.split(f"(?<!{re.escape(delim)}){re.escape(delim)}(?!{re.escape(delim)})", raw[1:])
    keywords = {tokens[i].upper(): tokens[i + 1] for i in range(0, len(tokens) - 1, 2)}
    if keywords["$DATATYPE"] not in ("F", "D") or keywords.get("$MODE", "L") != "L":
        raise SystemExit(f"{path}: the floor handles float list-mode data only")
    byteorder = "<" if keywords["$BYTEORD"].startswith("1") else ">"
    dtype = np.dtype(f"{byteorder}{'f4' if keywords['$DATATYPE'] == 'F' else 'f8'}")
    return (
        int(keywords["$BEGINDATA"]) or int(header[26:34]),
        dtype,
        int(keywords["$TOT"]),
        int(keywords["$PAR"]),
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the file")
    parser.add_argument("--repeats", type=int, default=5, help="runs per tool (median)")
    parser.add_argument("--seed", type=int, default=None, help="simulator seed (default: config)")
    parser.add_argument("--keep", type=Path, default=None, help="write the file here, keep it")
    parser.add_argument(
        "--template",
        default="aml_blasts_cd45_ssc_fixed",
        help="the fixed-gate template (FlowKit applies the same hierarchy)",
    )
    parser.add_argument(
        "--adaptive", default="aml_blasts_cd45_ssc", help="the data-driven template to time"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile one cytogate read + gate"
    )
    parser.add_argument(
        "--summary", type=Path, default=None, help="also write the figures as JSON (bench_all)"
    )
    args = parser.parse_args(argv)

    import flowkit as fk

    import cytogate
    from cytogate import read_fcs
    from cytogate.gating.template import load_template
    from cytogate.interop.flowkit_export import flowkit_memberships, to_flowkit_strategy
    from cytogate.sim.simulate import StudyConfig, write_benchmark_file

    template = load_template(args.template)
    adaptive = load_template(args.adaptive)
    config = StudyConfig() if args.seed is None else StudyConfig(seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"bench_{args.events}.fcs"
        t_write, _ = timed(lambda: write_benchmark_file(path, n_events=args.events, config=config))
        size_mb = path.stat().st_size / 1e6
        offset, dtype, n_events, n_par = data_segment(path)
        print(
            f"file: {path.name}, {n_events:,} events x {n_par} channels, {size_mb:.1f} MB "
            f"(simulated, seed {config.seed}, written in {t_write:.2f} s)"
        )
        print(
            f"cytogate {cytogate.__version__}, flowkit {fk.__version__}, numpy {np.__version__}, "
            f"python {sys.version.split()[0]}; median of {args.repeats} runs\n",
            flush=True,
        )

        strategy = to_flowkit_strategy(template, read_fcs(path))  # once, like loading GatingML
        chain = blast_chain(template)
        strategy4 = to_flowkit_strategy(chain, read_fcs(path))
        print(f"FlowKit 4-gate blast hierarchy: {' -> '.join(g.name for g in chain.gates)}\n")

        def floor() -> np.ndarray:
            return np.fromfile(path, dtype=dtype, count=n_events * n_par, offset=offset)

        def cytogate_run() -> tuple[float, float, float, Any]:
            t_read, sample = timed(lambda: read_fcs(path))
            t_gate, result = timed(lambda: cytogate.gate(sample, template))
            sample = read_fcs(path)  # a fresh sample: nothing cached from the fixed run
            t_adaptive, _ = timed(lambda: cytogate.gate(sample, adaptive))
            return t_read, t_gate, t_adaptive, result

        def flowkit_run() -> tuple[float, float, float, float, Any]:
            t_read, fk_sample = timed(lambda: fk.Sample(str(path)))
            with np.errstate(invalid="ignore", divide="ignore"):
                t_gate4, _ = timed(lambda: strategy4.gate_sample(fk_sample))
                t_gate, results = timed(lambda: strategy.gate_sample(fk_sample))
                # FlowKit's opt-in cache of compensated/transformed columns across gates
                t_cached, _ = timed(lambda: strategy.gate_sample(fk_sample, cache_events=True))
            strategy.clear_cache()  # so no run starts with a warm cache
            return t_read, t_gate4, t_gate, t_cached, results

        keys = (
            "floor", "cg_read", "cg_gate", "cg_adaptive",
            "fk_read", "fk_gate4", "fk_gate", "fk_cached",
        )  # fmt: skip
        times: dict[str, list[float]] = {k: [] for k in keys}
        cytogate.gate(read_fcs(path), adaptive)  # warm-up: imports, logicle tables
        load_before = os.getloadavg()
        result = fk_results = None
        for i in range(args.repeats):
            times["floor"].append(timed(floor)[0])
            order = ("cg", "fk") if i % 2 == 0 else ("fk", "cg")
            for tool in order:
                if tool == "cg":
                    t_read, t_gate, t_adaptive, result = cytogate_run()
                    times["cg_read"].append(t_read)
                    times["cg_gate"].append(t_gate)
                    times["cg_adaptive"].append(t_adaptive)
                else:
                    t_read, t_gate4, t_gate, t_cached, fk_results = flowkit_run()
                    times["fk_read"].append(t_read)
                    times["fk_gate4"].append(t_gate4)
                    times["fk_gate"].append(t_gate)
                    times["fk_cached"].append(t_cached)
            print(f"  run {i + 1}/{args.repeats} done", file=sys.stderr)

        med = {k: statistics.median(v) for k, v in times.items()}
        med["cg_total"] = med["cg_read"] + med["cg_gate"]
        med["cg_adaptive_total"] = med["cg_read"] + med["cg_adaptive"]
        med["fk_total"] = med["fk_read"] + med["fk_gate"]
        med["fk_total4"] = med["fk_read"] + med["fk_gate4"]
        print_table(med, n_events)
        load_after = os.getloadavg()
        print_goals(med)
        print(
            "machine load (1, 5, 15 min) before: "
            + ", ".join(f"{v:.2f}" for v in load_before)
            + "; after: "
            + ", ".join(f"{v:.2f}" for v in load_after)
            + f" on {os.cpu_count()} cores"
        )

        assert result is not None and fk_results is not None
        fk_masks = flowkit_memberships(fk_results, template)
        print("\npopulation counts (cytogate / FlowKit):")
        same = True
        for pop in result.populations:
            ours, theirs = result.count(pop), int(fk_masks[pop].sum())
            identical = bool(np.array_equal(result.mask(pop), fk_masks[pop]))
            same &= identical
            flag = "identical masks" if identical else "MASKS DIFFER"
            print(f"  {pop:<13} {ours:>9,} / {theirs:>9,}  {flag}")
        print(
            f"blasts: cytogate {result.count('blasts'):,}, "
            f"FlowKit {int(fk_masks['blasts'].sum()):,} -> {'agree' if same else 'DISAGREE'}"
        )

        if args.summary is not None:
            args.summary.write_text(
                json.dumps(
                    {
                        "events": n_events,
                        "seconds": med,
                        "fk4_over_cg_adaptive": med["fk_total4"] / med["cg_adaptive_total"],
                        "fk_over_cg_adaptive": med["fk_total"] / med["cg_adaptive_total"],
                        "fk_over_cg_fixed": med["fk_total"] / med["cg_total"],
                        "cg_fixed_over_floor": med["cg_total"] / med["floor"],
                        "cg_adaptive_over_floor": med["cg_adaptive_total"] / med["floor"],
                        "identical_masks": same,
                        "load_before": load_before,
                        "load_after": load_after,
                    },
                    indent=1,
                )
            )
        if args.profile:
            profile(path, template)
    return 0 if same else 1


def print_table(med: dict[str, float], n_events: int) -> None:
    def rate(seconds: float) -> str:
        return f"{n_events / seconds / 1e6:6.1f} M/s" if seconds > 0 else "-"

    # FlowKit column: the same 7 fixed gates, except the adaptive rows: its 4-gate blast chain
    rows = [
        ("read", med["floor"], med["cg_read"], med["fk_read"]),
        ("gate, fixed (7 gates)", None, med["cg_gate"], med["fk_gate"]),
        ("total, fixed", med["floor"], med["cg_total"], med["fk_total"]),
        ("gate, adaptive / FK 4", None, med["cg_adaptive"], med["fk_gate4"]),
        ("total, adaptive / FK 4", med["floor"], med["cg_adaptive_total"], med["fk_total4"]),
    ]
    head = (
        f"{'stage':<24}{'floor s':>9}{'cytogate s':>12}{'FlowKit s':>11}"
        f"{'FK/cg':>8}{'cg/floor':>10}   {'cytogate ev/s':>13}{'FlowKit ev/s':>14}"
    )
    print(head)
    print("-" * len(head))
    for name, fl, cg, fkt in rows:
        fl_s = f"{fl:9.3f}" if fl is not None else f"{'':>9}"
        cg_floor = f"{cg / fl:10.1f}" if fl else f"{'':>10}"
        print(
            f"{name:<24}{fl_s}{cg:12.3f}{fkt:11.3f}{fkt / cg:8.1f}{cg_floor}   "
            f"{rate(cg):>13}{rate(fkt):>14}"
        )
    print(f"(floor: numpy.fromfile of DATA, {rate(med['floor']).strip()})")
    cached_total = med["fk_read"] + med["fk_cached"]
    print(
        f"(FlowKit with gate_sample(cache_events=True): gate {med['fk_cached']:.3f} s, total "
        f"{cached_total:.3f} s, FK/cg {cached_total / med['cg_total']:.1f})"
    )


def print_goals(med: dict[str, float]) -> None:
    """The issue-12 ratios, each beside its goal."""
    adaptive_ratio = med["fk_total4"] / med["cg_adaptive_total"]
    floor_ratio = med["cg_total"] / med["floor"]
    print("\ngoals (read + compensate + transform + gates, same file, same run):")
    print(
        f"  FlowKit fixed 4-gate blast hierarchy {med['fk_total4']:.3f} s / cytogate adaptive "
        f"{med['cg_adaptive_total']:.3f} s = {adaptive_ratio:.1f}x   (goal >= 10x)"
    )
    print(
        f"  cytogate fixed {med['cg_total']:.3f} s / read floor {med['floor']:.3f} s = "
        f"{floor_ratio:.1f}x   (goal <= 5x)"
    )
    print(
        f"  same 7 fixed gates: FlowKit {med['fk_total']:.3f} s / cytogate "
        f"{med['cg_total']:.3f} s = {med['fk_total'] / med['cg_total']:.1f}x; FlowKit 7 gates / "
        f"cytogate adaptive = {med['fk_total'] / med['cg_adaptive_total']:.1f}x; adaptive gate "
        f"alone {med['cg_adaptive']:.3f} s"
    )


def blast_chain(template: Any) -> Any:
    """The template cut to the blasts and their ancestors (cells → singlets → leukocytes →
    blasts): the 4-gate hierarchy the issue measures FlowKit on."""
    import dataclasses

    by_name = {g.name: g for g in template.gates}
    keep, name = set(), "blasts"
    while name in by_name:
        keep.add(name)
        name = by_name[name].parent
    gates = tuple(g for g in template.gates if g.name in keep)
    return dataclasses.replace(template, gates=gates, roles={"blasts": "blasts"})


def profile(path: Path, template: Any) -> None:
    """cProfile one cytogate read + gate; print where the time goes."""
    import cProfile
    import pstats

    import cytogate
    from cytogate import read_fcs

    profiler = cProfile.Profile()
    profiler.enable()
    cytogate.gate(read_fcs(path), template)
    profiler.disable()
    print("\ncProfile of one cytogate read + gate (top 20 by own time):")
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    raise SystemExit(main())
