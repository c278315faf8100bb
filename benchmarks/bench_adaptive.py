"""Speed of the adaptive default template per 100,000-event sample (vs the fixed template).

Why: data-driven gates are fitted per file, so they cost more than fixed polygons; the target
is under 0.3 s per 100k-event sample for ``aml_blasts_cd45_ssc`` (gating only: compensate,
scale, fit, assign every event). Reading the file is not included (see bench_gating.py).

What is timed, on simulated stained files (already read; median of ``--repeats`` runs, the
two templates alternating):

* ``aml_blasts_cd45_ssc`` (adaptive: FSC valley, FSC-H/FSC-A ratio, CD45 valley, one CD45/SSC
  mixture shared by four cluster gates, a relative QC gate);
* ``aml_blasts_cd45_ssc_fixed`` (the same hierarchy with fixed gates), as a yardstick: the
  ratio adaptive / fixed carries over between machines better than seconds do;
* the mixture fit alone (``fit_mixture`` on the leukocytes), the largest single cost.

Files: ``--files`` simulated patients (typical blasts, and the ``--hard`` preset's positions,
shares and scatter gains), ``--events`` each. Nothing is asserted.

    python benchmarks/bench_adaptive.py [--events 100000] [--files 4] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np


def _samples(events: int, files: int, seed: int) -> list[tuple[str, object]]:
    """Simulated stained files, written as FCS and read back (as in production)."""
    import tempfile
    from pathlib import Path

    from cytogate.io.fcs import read_fcs
    from cytogate.sim.simulate import (
        StudyConfig,
        file_rng,
        hard_config,
        make_patients,
        simulate_sample,
        write_sample,
    )

    out = []
    tmp = tempfile.TemporaryDirectory()
    configs = [
        ("typical", StudyConfig(n_patients=files, events_per_file=events, seed=seed)),
        ("hard", hard_config(files, events, seed, cd45_negative_blast_patients=0)),
    ]
    for label, config in configs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            patients = make_patients(config)
        for p in patients[: max(1, files // 2)]:
            sim = simulate_sample(
                config, p, "baseline", "stained", events, file_rng(config, p.index, 0, 0)
            )
            path = Path(tmp.name) / f"{label}_{p.patient}.fcs"
            out.append((f"{label}/{p.patient}", read_fcs(write_sample(path, sim, config, p))))
    tmp.cleanup()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=4, help="simulated patients per kind")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from cytogate.gating.engine import gate
    from cytogate.gating.fitting.mixture import fit_mixture
    from cytogate.gating.template import load_template

    adaptive = load_template("aml_blasts_cd45_ssc")
    fixed = load_template("aml_blasts_cd45_ssc_fixed")
    mixture_spec = next(g for g in adaptive.gates if g.name == "blasts").variants[0].mixture
    samples = _samples(args.events, args.files, args.seed)
    per_100k = 100_000 / args.events
    print(
        f"{len(samples)} simulated stained files x {args.events:,} events; median of "
        f"{args.repeats} runs; seconds per 100k events"
    )
    header = f"{'file':<14}{'adaptive':>10}{'fixed':>10}{'ratio':>8}{'mixture':>10}"
    print(header)
    print("-" * len(header))
    rows = []
    for name, sample in samples:
        gate(sample, adaptive), gate(sample, fixed)  # warm caches and imports
        t_a, t_f, t_m = [], [], []
        for i in range(args.repeats):
            order = (adaptive, fixed) if i % 2 == 0 else (fixed, adaptive)
            for tmpl in order:
                start = time.perf_counter()
                result = gate(sample, tmpl)
                (t_a if tmpl is adaptive else t_f).append(time.perf_counter() - start)
                if tmpl is adaptive:
                    points = np.column_stack(
                        [result.scaled_values(d, "leukocytes") for d in ("CD45", "SSC-A")]
                    )
            start = time.perf_counter()
            fit_mixture(points, mixture_spec)
            t_m.append(time.perf_counter() - start)
        a, f, m = (statistics.median(t) * per_100k for t in (t_a, t_f, t_m))
        rows.append((a, f, m))
        print(f"{name:<14}{a:>10.3f}{f:>10.3f}{a / f:>8.1f}{m:>10.3f}")
    a, f, m = (statistics.median(col) for col in zip(*rows, strict=True))
    print("-" * len(header))
    print(f"{'median':<14}{a:>10.3f}{f:>10.3f}{a / f:>8.1f}{m:>10.3f}")
    print(
        f"\nadaptive default template: {a:.3f} s per 100k events (target < 0.3 s); "
        f"{a / f:.1f} x the fixed template; mixture fit {m:.3f} s of it"
    )
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"machine load (1, 5, 15 min): {load} on {os.cpu_count()} cores (loaded: not final)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
