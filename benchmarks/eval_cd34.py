"""ISHAGE CD34+ enumeration on SIMULATED cohorts: counts, yields and gates vs the planted truth.

Why: tests/test_cd34.py checks one cohort; this runs several seeds and larger cohorts and
prints, per seed: tubes countable (>= 100 CD34+ events, beads not doublet-rich), the largest
and median relative error of CD34+/µL and of yield per kg against the planted values, the
smallest and median F1 of the ``cd34`` and ``viable_cd34`` gates against the per-event labels,
how many tubes were flagged and whether every uncountable tube was, the group medians and the
Kruskal-Wallis p of peak blood CD34+/µL, and seconds per tube with the machine load.

    python benchmarks/eval_cd34.py [--seeds 1 2 3] [--per-regimen 10] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--per-regimen", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    from cytogate.gating.engine import gate
    from cytogate.gating.template import load_template
    from cytogate.io.fcs import read_fcs
    from cytogate.sim.cd34 import CD34_LABEL_CODES, CD34Config, simulate_cd34_study
    from cytogate.study.batch import run_batch

    template = load_template("ishage_cd34")
    codes = {
        "cd34": [CD34_LABEL_CODES["cd34_viable"], CD34_LABEL_CODES["cd34_dead"]],
        "viable_cd34": [CD34_LABEL_CODES["cd34_viable"]],
    }
    for seed in args.seeds:
        config = CD34Config(
            patients_per_regimen=args.per_regimen,
            blood_leukocyte_events=40000,
            apheresis_leukocyte_events=16000,
            seed=seed,
        )
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            study = simulate_cd34_study(run, config)
            start = time.perf_counter()
            result = run_batch(run, out=None, jobs=args.jobs)
            seconds = time.perf_counter() - start
            load = os.getloadavg()
            t = (
                result.extra["cd34"]
                .set_index("file")
                .join(study.tubes.set_index("file"), rsuffix="_planted")
            )
            rich = t["bead_doublet_fraction"] > 0.05
            countable = t[(t["events_cd34"] >= 100) & ~rich]
            err = (countable["cd34_per_ul"] / countable["cd34_per_ul_planted"] - 1).abs()
            aph = countable[countable["specimen"] == "apheresis"]
            y_err = (aph["cd34_e6_per_kg"] / aph["yield_e6_per_kg"] - 1).abs()
            f1 = {k: [] for k in codes}
            for name in countable.index:
                res = gate(read_fcs(run / name), template)
                for pop, c in codes.items():
                    m, truth = res.mask(pop), np.isin(study.labels[name], c)
                    f1[pop].append(2 * (m & truth).sum() / (m.sum() + truth.sum()))
            uncountable = t[(t["events_cd34"] < 100) | rich]
            flagged = uncountable["count_qc"].fillna("").str.len() > 0
            groups = result.extra["groups"]
            med = groups[
                (groups["section"] == "summary") & (groups["measure"] == "peak_blood_cd34_per_ul")
            ].set_index("group")["median"]
            kw = groups[
                (groups["test"] == "kruskal_wallis")
                & (groups["measure"] == "peak_blood_cd34_per_ul")
            ]["p_value"].iloc[0]
            print(
                f"seed {seed}: {len(t)} tubes, {len(countable)} countable; CD34+/µL error "
                f"median {100 * err.median():.1f}% max {100 * err.max():.1f}%; yield error "
                f"median {100 * y_err.median():.1f}% max {100 * y_err.max():.1f}% "
                f"({len(aph)} products)"
            )
            print(
                "  F1 "
                + ", ".join(
                    f"{k} min {min(v):.3f} median {np.median(v):.3f}" for k, v in f1.items()
                )
                + f"; uncountable {len(uncountable)}, flagged {int(flagged.sum())}"
            )
            print(
                "  peak blood CD34+/µL medians "
                + ", ".join(f"{g} {v:.1f}" for g, v in med.items())
                + f"; Kruskal-Wallis p {kw:.2g}"
            )
            print(
                f"  batch {seconds:.1f} s = {seconds / len(t):.2f} s/tube with {args.jobs} jobs; "
                f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
