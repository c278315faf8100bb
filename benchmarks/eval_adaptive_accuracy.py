"""Accuracy of the blast gate against simulated ground truth: adaptive vs fixed template.

Why: the default template's gates are fitted per file (``aml_blasts_cd45_ssc``); this measures
how well its blast gate recovers the simulator's per-event blast labels under conditions a fixed
gate cannot follow, and prints the same figures for the fixed-gate template
(``aml_blasts_cd45_ssc_fixed``) on the same files.

Conditions (each a simulated study, stained tubes of every patient x timepoint; written as FCS
files and read back with ``read_fcs``, as in production):

* ``typical``        the default simulation (blasts CD45 0.50-0.58, SSC 0.08-0.12, 8-30 %);
* ``hard``           ``cytogate simulate --hard`` (CD45 0.38-0.66, SSC 0.05-0.20, share
                     0.5-90 %, scatter gain 0.7-1.4 per patient, one CD45-negative-blast patient);
* ``low_share``      hard positions, baseline blast share 0.5-3 %;
* ``very_low_share`` hard positions, baseline blast share 0.1-0.5 % (must be flagged);
* ``near_negative``  blast CD45 0.38-0.45 (CD45-negative cells at 0.25), share 0.5-90 %;
* ``near_monocyte``  blast CD45 0.60-0.66 and SSC 0.14-0.20 (monocytes at 0.72 / 0.22);
* ``scatter_gain``   typical blasts, scatter gain 0.7-1.4 drawn per file;
* ``cd45_bv421``     hard, with CD45 on BV421 instead of PerCP-Cy5.5;
* ``fc500``          hard, written as Beckman FC500-era FCS 2.0 files (FS Lin, SS Log, CD45
                     on FL3 ECD, log-amplified 10-bit channels, no FSC-H/W, no spillover);
* ``cd45_negative``  every patient's blasts CD45-negative (must be flagged).

Per file: F1 of the ``blasts`` population against label "blast" (all events), relative error of
the blast count, and whether the blast population carries a QC flag. Printed per condition and
overall: F1 percentiles, the share of files with F1 >= 0.90 among files with >= 2 % blasts (of
CD45+ leukocytes, from the labels), the median |relative error|, and every flagged file with its
reason. Nothing is asserted; ``--csv`` writes the per-file table.

    python benchmarks/eval_adaptive_accuracy.py [--patients 5] [--events 30000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BLAST, LEUKOCYTES = 6, (3, 4, 5, 6)
TEMPLATES = {"adaptive": "aml_blasts_cd45_ssc", "fixed": "aml_blasts_cd45_ssc_fixed"}


def conditions(patients: int, events: int, seed: int) -> dict[str, tuple[Any, str]]:
    """name -> (StudyConfig, file format)."""
    from cytogate.sim.simulate import StudyConfig, hard_config

    def hard(offset: int = 0, **kw: Any) -> Any:
        return hard_config(patients, events, seed + offset, **kw)

    typical = StudyConfig(
        n_patients=patients, events_per_file=events, seed=seed, atypical_patients=0
    )
    gain = dataclasses.replace(
        typical.geometry, scatter_gain_range=(0.7, 1.4), scatter_gain_level="file"
    )
    return {
        "typical": (typical, "fcs3"),
        "hard": (hard(), "fcs3"),
        "low_share": (hard(1, blast_share=(0.005, 0.03)), "fcs3"),
        "very_low_share": (
            hard(8, blast_share=(0.001, 0.005), cd45_negative_blast_patients=0),
            "fcs3",
        ),
        "near_negative": (
            hard(2, blast_cd45=(0.38, 0.45), cd45_negative_blast_patients=0),
            "fcs3",
        ),
        "near_monocyte": (
            hard(
                3,
                blast_cd45=(0.60, 0.66),
                blast_ssc=(0.14, 0.20),
                cd45_negative_blast_patients=0,
            ),
            "fcs3",
        ),
        "scatter_gain": (dataclasses.replace(typical, seed=seed + 4, geometry=gain), "fcs3"),
        "cd45_bv421": (hard(5, cd45_channel="BV421-A"), "fcs3"),
        "fc500": (hard(6), "fc500"),
        "cd45_negative": (_all_cd45_negative(hard(7), min(patients, 2)), "fcs3"),
    }


def _all_cd45_negative(config: Any, n: int) -> Any:
    return dataclasses.replace(
        config, n_patients=n, cd45_negative_blast_patients=n, atypical_patients=0
    )


def _file_jobs(name: str, config: Any, fmt: str) -> list[tuple[str, Any, str, int, int]]:
    return [
        (name, config, fmt, p, k)
        for p in range(config.n_patients)
        for k in range(len(config.timepoints))
    ]


def evaluate_file(job: tuple[str, Any, str, int, int]) -> dict[str, Any]:
    """Simulate one stained file, write it, read it back, gate it with both templates."""
    from cytogate.errors import CytogateError
    from cytogate.gating.engine import gate
    from cytogate.io.fcs import read_fcs
    from cytogate.sim.simulate import file_rng, make_patients, simulate_sample, write_sample

    name, config, fmt, p, k = job
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # capped blast shares
        patient = make_patients(config)[p]
    timepoint = config.timepoints[k]
    sim = simulate_sample(
        config, patient, timepoint, "stained", config.events_per_file, file_rng(config, p, k, 0)
    )
    labels = sim.labels
    truth = labels == BLAST
    n_true = int(truth.sum())
    share = n_true / max(int(np.isin(labels, LEUKOCYTES).sum()), 1)
    row: dict[str, Any] = {
        "condition": name,
        "file": f"{patient.patient}_{timepoint}",
        "kind": patient.kind,
        "blast_cd45": round(patient.blast_cd45, 3),
        "blast_ssc": round(patient.blast_ssc * patient.scatter_gain, 3),
        "share": share,
        "n_true": n_true,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{row['file']}.fcs"
        if fmt == "fc500":
            sys.path.insert(0, str(ROOT))
            from tests.fc500 import fc500_bytes

            path.write_bytes(fc500_bytes(sim))
        else:
            write_sample(path, sim, config, patient)
        sample = read_fcs(path)
    for label, template in TEMPLATES.items():
        start = time.perf_counter()
        try:
            result = gate(sample, template)
        except Exception as exc:  # a template that cannot gate the file (or a bug): recorded
            kind = "error" if isinstance(exc, CytogateError) else "UNEXPECTED"
            row.update(
                {
                    f"{label}_f1": 0.0,
                    f"{label}_err": -1.0,
                    f"{label}_flag": True,
                    f"{label}_reason": f"{kind} {type(exc).__name__}: {exc}",
                }
            )
            continue
        row[f"{label}_s"] = time.perf_counter() - start
        mask = result.mask("blasts")
        tp = int(np.count_nonzero(mask & truth))
        fp = int(np.count_nonzero(mask & ~truth))
        fn = n_true - tp
        row[f"{label}_f1"] = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 1.0
        row[f"{label}_err"] = (int(mask.sum()) - n_true) / n_true if n_true else float("nan")
        reasons = result.qc("blasts")
        row[f"{label}_flag"] = bool(reasons)
        row[f"{label}_reason"] = "; ".join(reasons)
    return row


def _pct(values: np.ndarray, q: float) -> str:
    return f"{np.percentile(values, q):.3f}" if values.size else "  -  "


def summarise(table: Any, label: str) -> None:
    f1, err, flag = f"{label}_f1", f"{label}_err", f"{label}_flag"
    print(f"\n=== {label} template ({TEMPLATES[label]}) ===")
    header = (
        f"{'condition':<15}{'files':>6}{'>=2%':>6}{'min':>7}{'p5':>7}{'p25':>7}{'median':>7}"
        f"{'F1>=.9':>8}{'med|err|':>9}{'flagged':>8}"
    )
    print("F1 and |relative error of the blast count| over files with >= 2% blasts, without the")
    print("CD45-negative-blast files (their own row); 'flagged': files with a QC flag on blasts")
    print(header)
    print("-" * len(header))
    negative = table["kind"] == "cd45_negative"
    groups = [
        (c, table[(table["condition"] == c) & ~negative])
        for c in table["condition"].unique()
        if c != "cd45_negative"
    ]
    groups += [
        ("CD45-neg blasts", table[negative]),
        ("ALL", table),
        ("ALL w/o CD45-", table[~negative]),
    ]
    for cond, sub in groups:
        big = sub[sub["share"] >= 0.02]
        f = big[f1].to_numpy()
        ok = f"{np.mean(f >= 0.90):.3f}" if f.size else "  -  "
        med_err = np.nanmedian(np.abs(big[err])) if len(big) else np.nan
        print(
            f"{cond:<15}{len(sub):>6}{len(big):>6}{_pct(f, 0):>7}{_pct(f, 5):>7}{_pct(f, 25):>7}"
            f"{_pct(f, 50):>7}{ok:>8}{med_err:>9.4f}{int(sub[flag].sum()):>8}"
        )
    big = table[table["share"] >= 0.02]
    print(
        f"\nfiles with >= 2% blasts: {len(big)}; F1 >= 0.90 in {np.mean(big[f1] >= 0.9):.1%}; "
        f"median |relative error of blast count| {np.median(np.abs(big[err])):.2%}"
    )
    gb = big[big["kind"] != "cd45_negative"]
    print(
        f"  excluding CD45-negative-blast files ({len(big) - len(gb)}): F1 >= 0.90 in "
        f"{np.mean(gb[f1] >= 0.9):.1%}; median |rel. error| {np.median(np.abs(gb[err])):.2%}"
    )
    deciles = np.percentile(big[f1], [0, 1, 2, 5, 10, 25, 50, 75, 100])
    print("  F1 percentiles (0,1,2,5,10,25,50,75,100): " + " ".join(f"{v:.3f}" for v in deciles))
    neg = table[table["kind"] == "cd45_negative"]
    tiny = table[(table["share"] < 0.005) & (table["kind"] != "cd45_negative")]
    print(
        f"CD45-negative-blast files flagged: {int(neg[flag].sum())}/{len(neg)}; "
        f"files with < 0.5% blasts flagged: {int(tiny[flag].sum())}/{len(tiny)}"
    )
    bad = big[(big[f1] < 0.9) & ~big[flag]]
    print(f"files with >= 2% blasts, F1 < 0.90 and NOT flagged: {len(bad)}")
    for r in bad.head(12).itertuples():
        print(
            f"  {r.condition}/{r.file} ({r.kind}) blasts at CD45 {r.blast_cd45}, SSC "
            f"{r.blast_ssc}, share {r.share:.3f}: F1 {getattr(r, f1):.3f}"
        )
    if len(bad) > 12:
        print(f"  ... and {len(bad) - 12} more")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=5, help="patients per condition")
    parser.add_argument("--events", type=int, default=30000, help="events per file")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--only", nargs="*", help="conditions to run (default: all)")
    parser.add_argument("--csv", type=Path, help="write the per-file table here")
    parser.add_argument("--list-flags", action="store_true", help="print every flagged file")
    args = parser.parse_args()

    import pandas as pd

    conds = conditions(args.patients, args.events, args.seed)
    jobs = [
        j
        for name, (cfg, fmt) in conds.items()
        if not args.only or name in args.only
        for j in _file_jobs(name, cfg, fmt)
    ]
    print(
        f"{len(jobs)} simulated files ({args.events} events each), {len(conds)} conditions, "
        f"seed {args.seed}, {args.jobs} worker(s)"
    )
    start = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(evaluate_file, jobs, chunksize=4))
    else:
        rows = [evaluate_file(j) for j in jobs]
    table = pd.DataFrame(rows)
    print(f"done in {time.perf_counter() - start:.0f} s")
    for label in TEMPLATES:
        summarise(table, label)
    for label in TEMPLATES:
        unexpected = table[table[f"{label}_reason"].astype(str).str.startswith("UNEXPECTED")]
        if len(unexpected):
            print(f"\n{label}: {len(unexpected)} files raised an unexpected error:")
            for r in unexpected.itertuples():
                print(f"  {r.condition}/{r.file}: {getattr(r, f'{label}_reason')}")
    if args.list_flags:
        print("\nflagged files (adaptive):")
        for r in table[table["adaptive_flag"]].itertuples():
            print(f"  {r.condition}/{r.file} ({r.kind}, share {r.share:.4f}): {r.adaptive_reason}")
    if "adaptive_s" in table:
        print(
            f"\nadaptive gating time per file: median {table['adaptive_s'].median():.3f} s "
            f"({args.events} events); fixed: {table['fixed_s'].median():.3f} s"
        )
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
