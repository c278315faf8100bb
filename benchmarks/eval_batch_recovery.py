"""`cytogate batch` on a hard simulated study: fold changes vs the ground-truth oracle.

Why: the batch recovery tests (tests/test_batch.py) check, on the bundled run42, that the
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

BLAST, LEUKOCYTES = 6, (3, 4, 5, 6)
# tests/test_batch.py TOLERANCE (relative, on the fold change vs the oracle's)
TOLERANCE = {
    "blasts_per_ul": 0.03,
    "leukocytes_per_ul": 1e-9,
    "blasts_CXCR4_12G5_rmfi_median": 0.05,
    "blasts_CXCR4_1D9_rmfi_median": 0.05,
    "blasts_CD114_rmfi_median": 0.05,
    "blasts_CD49f_rmfi_median": 0.05,
    "blasts_Ki67_pct_positive": 0.10,
}
TEMPLATES = ("aml_blasts_cd45_ssc", "aml_blasts_cd45_ssc_fixed")


def _compensated(path: Path) -> tuple[np.ndarray, list[str]]:
    from cytogate.fcs import read_fcs

    sample = read_fcs(path)
    names = list(sample.channels["pnn"])
    spill = sample.spillover
    cols = [names.index(c) for c in spill.columns]
    events = sample.events.copy()
    events[:, cols] = np.linalg.solve(spill.to_numpy().T, events[:, cols].T).T
    return events, names


def oracle(run: Path, panel: dict[str, str]):
    """Per patient x timepoint measures from the true labels (as tests/test_batch.py)."""
    import pandas as pd

    labels = np.load(run / "ground_truth" / "labels.npz")
    manifest = pd.read_csv(run / "manifest.csv")
    rows = []
    for rec in manifest[manifest["tube"] == "stained"].itertuples():
        iso = rec.file.replace("_stained", "_isotype")
        s_ev, names = _compensated(run / rec.file)
        i_ev, _ = _compensated(run / iso)
        s_b, i_b = labels[rec.file] == BLAST, labels[iso] == BLAST
        values = {
            "blasts_per_ul": rec.wbc_per_ul
            * s_b.sum()
            / np.isin(labels[rec.file], LEUKOCYTES).sum(),
            "leukocytes_per_ul": float(rec.wbc_per_ul),
        }
        for marker in ("CXCR4_12G5", "CXCR4_1D9", "CD114", "CD49f"):
            j = names.index(panel[marker])
            values[f"blasts_{marker}_rmfi_median"] = np.median(s_ev[s_b, j]) / np.median(
                i_ev[i_b, j]
            )
        k = names.index(panel["Ki67"])
        threshold = np.percentile(i_ev[i_b, k], 99)
        values["blasts_Ki67_pct_positive"] = 100 * np.mean(s_ev[s_b, k] > threshold)
        rows += [
            {"patient": rec.patient, "timepoint": rec.timepoint, "measure": m, "value": v}
            for m, v in values.items()
        ]
    table = pd.DataFrame(rows)
    base = table[table["timepoint"] == "baseline"].set_index(["patient", "measure"])["value"]
    table["fold_change"] = table["value"] / [
        base[(p, m)] for p, m in zip(table["patient"], table["measure"], strict=True)
    ]
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    from cytogate.batch import run_batch
    from cytogate.simulate import hard_config, simulate_study

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
        expected = oracle(run, config.instrument.panel)
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
            for measure, tol in TOLERANCE.items():
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
