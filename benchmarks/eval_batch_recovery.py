"""`cytogate batch` on a hard simulated study: fold changes vs the ground-truth oracle.

Why: the batch recovery tests (tests/test_batch.py) check, on the two-tube simulated run42, that the
per-patient fold changes of blasts/µL, the four RMFIs and Ki67 % positive come within a stated
tolerance of an oracle computed from the simulator's per-event labels. This applies the same
oracle and tolerances to a study simulated under the ``--hard`` conditions (blast CD45 0.38-0.66,
SSC 0.05-0.20, blast share 0.5-90 %, scatter gain 0.7-1.4 per patient, one CD45-negative-blast
patient), gated with the adaptive default template and with the fixed template.

Printed per template and measure: patients x timepoints compared, the share within tolerance,
and the median and largest relative deviation of the fold change from the oracle's, over the
gateable patients (CD45-negative-blast patients are reported separately: they must be flagged).

    python benchmarks/eval_batch_recovery.py [--patients 8] [--events 20000] [--seed 11]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ("aml_blasts_cd45_ssc", "aml_blasts_cd45_ssc_fixed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    from cytogate.sim.simulate import hard_config, simulate_study
    from cytogate.study.batch import run_batch

    sys.path.insert(0, str(ROOT))  # the oracle is test code, not part of the package
    from tests.oracle import RECOVERY_TOLERANCE, oracle_measures

    config = hard_config(args.patients, args.events, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "hard"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # capped blast shares
            truth = simulate_study(run, config)
        kinds = dict(zip(truth.patient_table["patient"], truth.patient_table["kind"], strict=True))
        negative = sorted(p for p, k in kinds.items() if k == "cd45_negative")
        print(
            f"hard study: {args.patients} patients x {len(config.timepoints)} timepoints x 2 "
            f"tubes, {args.events} events per file, seed {args.seed}; CD45-negative blasts: "
            f"{', '.join(negative) or 'none'}"
        )
        print(
            truth.patient_table[
                ["patient", "kind", "blast_cd45_scaled", "blast_ssc_scaled", "scatter_gain"]
            ]
            .assign(blast_share_baseline=truth.patient_table["blast_share_baseline"].round(3))
            .round(3)
            .to_string(index=False)
        )
        expected = oracle_measures(run, config.instrument.panel)
        for template in TEMPLATES:
            result = run_batch(run, template=template, jobs=args.jobs)
            merged = result.timecourse.merge(
                expected, on=["patient", "timepoint", "measure"], suffixes=("", "_oracle")
            )
            merged = merged[merged["timepoint"] != "baseline"]
            merged["dev"] = (merged["fold_change"] / merged["fold_change_oracle"] - 1).abs()
            print(f"\n=== {template} ===")
            header = f"{'measure':<32}{'n':>4}{'within':>8}{'median':>9}{'max':>9}{'tol':>6}"
            print(header)
            print("-" * len(header))
            ok = merged[~merged["patient"].isin(negative)]
            for measure, tol in RECOVERY_TOLERANCE.items():
                sub = ok[ok["measure"] == measure]
                dev = sub["dev"].to_numpy()
                within = np.mean(dev <= tol + 1e-12) if dev.size else float("nan")
                print(
                    f"{measure:<32}{dev.size:>4}{within:>8.0%}{np.nanmedian(dev):>9.4f}"
                    f"{np.nanmax(dev):>9.4f}{tol:>6g}"
                )
            pops = result.populations
            blasts = pops["population"] == "blasts"
            flagged = pops[blasts & pops["qc_flag"]]
            print(
                f"blast rows flagged: {len(flagged)} of {int(blasts.sum())}"
                f"; of the CD45-negative-blast patients' files: "
                f"{int(flagged['patient'].isin(negative).sum())} of "
                f"{int((blasts & pops['patient'].isin(negative)).sum())}"
            )
            worst = ok.sort_values("dev", ascending=False).head(5)
            print("largest deviations (gateable patients):")
            for r in worst.itertuples():
                print(
                    f"  {r.patient} {r.timepoint} {r.measure}: {r.fold_change:.4g} vs oracle "
                    f"{r.fold_change_oracle:.4g} ({r.dev:.2%})"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
