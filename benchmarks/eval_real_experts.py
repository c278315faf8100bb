"""Score cytogate's gates on real instruments' files against expert ground truth (issue 9).

Usage::

    python benchmarks/eval_real_experts.py [--real ../shared/data/real] [--template NAME]
        [--plots DIR]

The samples live outside the repository (GPL-licensed ones must never be copied into
``tests/data``), so this is an evaluation script, not a test. Per sample it prints the F1 of each
population that the expert labelled (event level) and, beside the blast F1, the *ceiling*: the F1
that a cross-validated k-nearest-neighbour classifier on the same CD45, SSC and FSC values reaches
(5-fold, k = 15, on the expert's parent population). A CD45/SSC gate cannot use the CD19/CD10/CD34
information the experts used, so "F1 ÷ ceiling" says how close to the possible the gate is.

Samples (see the folder's README for instruments and licences):
- ``marrow_canto_508``: BD FACSCanto B-ALL marrow, per-event expert gates (blast, singlets, ...).
- ``aml_lyric``: BD FACSLyric AML training set, 17 expert populations (1,000 events each, values
  compensated linear): written to a temporary FCS per patient and gated; per-population shares
  landing in each cytogate population are reported (proportions are not natural).
- ``fc500_flowcap2_type``: Beckman FC 500 tube, no truth: gated and, with ``--plots``, drawn so a
  cytometrist can look at where the populations fall on log axes.
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cytogate.analysis.draw_agreement import draw_disagreement
from cytogate.gating.engine import GatingResult, gate
from cytogate.gating.template import load_template
from cytogate.io.fcs import read_fcs
from cytogate.io.fcs_writer import write_fcs

HERE = Path(__file__).resolve().parent
DEFAULT_REAL = next(
    (
        p
        for p in (HERE.parent.parent / "shared" / "data" / "real", Path("/work/shared/data/real"))
        if p.is_dir()
    ),
    HERE.parent.parent / "shared" / "data" / "real",
)


def f1(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Event-level F1, precision, recall of a predicted membership against the expert's."""
    tp = float(np.sum(pred & truth))
    precision = tp / max(float(pred.sum()), 1.0)
    recall = tp / max(float(truth.sum()), 1.0)
    score = 2 * precision * recall / max(precision + recall, 1e-12)
    return score, precision, recall


def ceiling_f1(features: np.ndarray, truth: np.ndarray, seed: int = 0) -> float:
    """Best F1 a CD45/SSC/FSC gate could plausibly reach: 5-fold cross-validated kNN (k = 15)."""
    from sklearn.model_selection import cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(features)
    rng = np.random.default_rng(seed)
    take = rng.permutation(len(x))[: min(len(x), 40_000)]
    pred = cross_val_predict(KNeighborsClassifier(n_neighbors=15), x[take], truth[take], cv=5)
    return f1(pred.astype(bool), truth[take].astype(bool))[0]


def scatter_cd45(result: GatingResult) -> np.ndarray:
    """CD45, SSC and FSC of every event on the template's own (display) scales."""
    cols = [result.scaled_values(m) for m in ("CD45", "SSC-A", "FSC-A")]
    return np.column_stack(cols)


def eval_canto(
    real: Path, template: str, compensation: str | None = None
) -> list[dict[str, object]]:
    """Blast and singlet F1 on the Canto marrow. ``compensation="none"`` gates the raw values:
    with the file's $SPILLOVER (PE -> PerCP 0.196) half of the expert's B-ALL blasts (CD10 PE
    bright) fall to CD45-negative, which a CD45/SSC gate excludes by definition."""
    folder = real / "marrow_canto_508"
    sample = read_fcs(folder / "tube1_001.fcs")
    with gzip.open(folder / "expert_gates.csv.gz", "rt") as fh:
        expert = pd.read_csv(fh).astype(bool)
    started = time.perf_counter()
    result = gate(sample, load_template(template), compensation=compensation)
    seconds = time.perf_counter() - started
    label = "marrow_canto_508" + (f" (compensation {compensation})" if compensation else "")
    intact = expert["intact"].to_numpy()
    blasts_truth = expert["blast"].to_numpy() & intact
    rows = []
    pred = result.mask("blasts")
    score, precision, recall = f1(pred, blasts_truth)
    features = scatter_cd45(result)
    finite = np.all(np.isfinite(features), axis=1) & intact
    ceiling = ceiling_f1(features[finite], blasts_truth[finite])
    rows.append(
        {
            "sample": label,
            "population": "blasts",
            "expert_events": int(blasts_truth.sum()),
            "cytogate_events": int(pred.sum()),
            "f1": score,
            "precision": precision,
            "recall": recall,
            "ceiling_f1": ceiling,
            "f1_over_ceiling": score / ceiling if ceiling else np.nan,
            "gate_s": seconds,
            "expert_blasts_cd45neg": float(np.mean(~result.mask("leukocytes")[blasts_truth])),
            "qc": "; ".join(result.qc("blasts")),
        }
    )
    if "cd45neg_blastlike" in result.populations:
        # the B-ALL reading: CD45-negative events as large as lymphocytes counted as blasts too
        both = pred | result.mask("cd45neg_blastlike")
        s, p, r = f1(both, blasts_truth)
        rows.append(
            {
                "sample": label,
                "population": "blasts + cd45neg_blastlike",
                "expert_events": int(blasts_truth.sum()),
                "cytogate_events": int(both.sum()),
                "f1": s,
                "precision": p,
                "recall": r,
                "ceiling_f1": ceiling,
                "f1_over_ceiling": s / ceiling if ceiling else np.nan,
                "gate_s": seconds,
            }
        )
    singlets = expert["singlets"].to_numpy()
    if "singlets" in result.populations:
        s, p, r = f1(result.mask("singlets"), singlets)
        rows.append(
            {
                "sample": label,
                "population": "singlets",
                "expert_events": int(singlets.sum()),
                "cytogate_events": int(result.mask("singlets").sum()),
                "f1": s,
                "precision": p,
                "recall": r,
                "gate_s": seconds,
            }
        )
    return rows


LYRIC_CHANNELS = {
    # $PnN in the training CSV -> $PnS (the marker), as on the FACSLyric tube
    "FSC-A": "",
    "FSC-H": "",
    "SSC-A": "",
    "FITC-A": "CD38 FITC",
    "PE-A": "CD13 PE",
    "PerCP-Cy5.5-A": "CD34 PerCP-Cy5.5",
    "PE-Cy7-A": "CD117 PE-Cy7",
    "APC-A": "CD33 APC",
    "APC-R700-A": "CD56 APC-R700",
    "APC-Cy7-A": "CD19 APC-Cy7",
    "V450-A": "HLA-DR V450",
    "V500-C-A": "CD45 V500-C",
}
LYRIC_EXPECTED = {
    # expert population -> the cytogate population a CD45/SSC gate should put it in
    "Residual Leukemic Cells": "blasts",
    "Normal Myeloid Precursors": "blasts",
    "Monoblasts and Promonocytes": "monocytes",
    "Mature Monocytes": "monocytes",
    "Segmented Neutrophils": "granulocytes",
    "T and NK Cells": "lymphocytes",
    "Mature B Cells": "lymphocytes",
}


def eval_lyric(real: Path, template: str) -> pd.DataFrame:
    """Where each expert population lands, per patient, as % of that population's events."""
    data = pd.read_csv(real / "aml_lyric" / "Sample_training_dataset.csv")
    tmpl = load_template(template)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch, part in data.groupby("Batch"):
            events = part[list(LYRIC_CHANNELS)].to_numpy(dtype=np.float32)
            path = Path(tmp) / f"lyric_{batch}.fcs"
            write_fcs(
                path,
                events,
                list(LYRIC_CHANNELS),
                pns=list(LYRIC_CHANNELS.values()),
                pnr=262144,
                keywords={"$CYT": "FACSLyric", "$COM": "AML training events (Infinicyt labels)"},
            )
            result = gate(read_fcs(path), tmpl)
            labels = part["Population"].to_numpy()
            for pop in sorted(set(labels)):
                truth = labels == pop
                row: dict[str, object] = {"batch": batch, "expert": pop, "events": truth.sum()}
                for mine in ("leukocytes", "blasts", "lymphocytes", "monocytes", "granulocytes"):
                    if mine in result.populations:
                        row[mine] = 100.0 * float(np.mean(result.mask(mine)[truth]))
                expected = LYRIC_EXPECTED.get(pop)
                if expected and expected in result.populations:
                    row["expected"] = expected
                    row["f1_expected"] = f1(
                        result.mask(expected), np.isin(labels, _same_target(expected))
                    )[0]
                out.append(row)
    return pd.DataFrame(out)


def _same_target(target: str) -> list[str]:
    return [k for k, v in LYRIC_EXPECTED.items() if v == target]


def eval_fc500(real: Path, template: str, plots: Path | None) -> pd.DataFrame:
    path = next((real / "fc500_flowcap2_type").glob("*.FCS"))
    sample = read_fcs(path)
    result = gate(sample, load_template(template))
    table = result.table()
    if plots is not None:  # `cytogate plot`, the user's way to look at one file's gates
        import subprocess
        import sys

        plots.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "cytogate", "plot", str(path), "--template", template]
        subprocess.run([*cmd, "--out", str(plots / "fc500_gates.png")], check=True)
    return table


UMAPFLOW_LABELS = {2: "monocytes", 3: "granulocytes", 8: "blasts", 9: "blasts"}


def eval_umapflow(real: Path) -> pd.DataFrame:
    """The leukocyte map on the CC0 AML marrow arrays (already transformed, 0..4.5, and
    pre-filtered to the experts' leukocyte gate; classes 8 + 9 are blasts). No FCS and no
    template scale: the map is fitted on CD45 and SSC as given, scored per population with
    the CD45/SSC/FSC kNN ceiling beside it."""
    from cytogate.gating.leukomap import MapSpec, codes_of, fit_map

    folder = real / "aml_mrd_umapflow"
    x = np.load(next(folder.glob("*_X.npy")))
    y = np.load(next(folder.glob("*_y.npy")))
    fsc, ssc, cd45 = x[:, 0], x[:, 1], x[:, 11]
    started = time.perf_counter()
    # the map's CD45 rules are stated on the template's 0..1 logicle scale (4.5 decades); on
    # these 0..4.5 arrays the same distances are 4.5 times larger
    fitted = fit_map(cd45, ssc, MapSpec.from_settings({"merge": 0.9, "negative_gap": 0.44 * 4.5}))
    seconds = time.perf_counter() - started
    codes = fitted.assign(cd45, ssc)
    rows = []
    for pop in ("blasts",):  # monocytes (30) and granulocytes (45) are too few to score
        truth = np.isin(y, [k for k, v in UMAPFLOW_LABELS.items() if v == pop])
        pred = np.isin(codes, codes_of(pop))
        score, precision, recall = f1(pred, truth)
        ceiling = ceiling_f1(np.column_stack([cd45, ssc, fsc]), truth)
        rows.append(
            {
                "sample": "aml_mrd_umapflow",
                "population": pop,
                "expert_events": int(truth.sum()),
                "cytogate_events": int(pred.sum()),
                "f1": score,
                "precision": precision,
                "recall": recall,
                "ceiling_f1": ceiling,
                "f1_over_ceiling": score / ceiling if ceiling else np.nan,
                "fit_s": seconds,
                "qc": "; ".join(fitted.qc.get(pop, [])),
            }
        )
    return pd.DataFrame(rows)


SIM_BLAST, SIM_LEUKOCYTES = 6, (3, 4, 5, 6)  # the simulator's label codes
DRAW_TOLERANCE = 0.10  # stained vs isotype blast count of one draw: relative difference


def eval_study(run: Path, template: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per file of a SIMULATED study (planted labels in ground_truth/): blast F1 and QC; per
    draw: stained vs isotype blast counts. Gateable: >= 2 % blasts of leukocytes and the
    patient's blasts not planted CD45-negative."""
    labels = np.load(run / "ground_truth" / "labels.npz")
    manifest = pd.read_csv(run / "manifest.csv")
    patients = pd.read_csv(run / "ground_truth" / "patients.csv").set_index("patient")
    tmpl = load_template(template)
    rows = []
    results: dict[tuple[str, str, str], GatingResult] = {}
    for rec in manifest.itertuples():
        result = gate(read_fcs(run / rec.file), tmpl)
        results[(rec.patient, rec.timepoint, rec.tube)] = result
        truth = labels[rec.file] == SIM_BLAST
        pred = result.mask("blasts")
        share = truth.sum() / max(np.isin(labels[rec.file], SIM_LEUKOCYTES).sum(), 1)
        cd45neg = patients.loc[rec.patient, "kind"] == "cd45_negative"
        rows.append(
            {
                "file": rec.file,
                "patient": rec.patient,
                "timepoint": rec.timepoint,
                "tube": rec.tube,
                "blast_share": share,
                "gateable": bool(share >= 0.02 and not cd45neg),
                "f1": f1(pred, truth)[0],
                "blasts": int(pred.sum()),
                "flagged": bool(result.qc("blasts")),
                "qc": "; ".join(result.qc("blasts")),
            }
        )
    table = pd.DataFrame(rows)
    wide = table.pivot_table(index=["patient", "timepoint"], columns="tube", values="blasts")
    draws = wide.reset_index()
    draws["rel_diff"] = (draws["stained"] - draws["isotype"]).abs() / draws[
        ["stained", "isotype"]
    ].max(axis=1).clip(lower=1)
    # the batch's own rule (analysis/draw_agreement.py): 10 % or 3 SD of counting noise
    draws["stated"] = [
        draw_disagreement(results[(p, t, "stained")], results[(p, t, "isotype")], f"{p} {t}")
        for p, t in zip(draws["patient"], draws["timepoint"], strict=True)
    ]
    return table, draws


def print_study(name: str, table: pd.DataFrame, draws: pd.DataFrame) -> None:
    g = table[table["gateable"]]
    ok = (g["f1"] >= 0.9) | g["flagged"]
    print(
        f"{name}: {len(table)} files, {len(g)} gateable; blast F1 >= 0.9: "
        f"{100 * np.mean(g['f1'] >= 0.9):.1f}%; F1 >= 0.9 or blast QC flag: {100 * ok.mean():.1f}%;"
        f" median F1 {g['f1'].median():.3f}; files flagged {int(table['flagged'].sum())}"
    )
    bad = g[~ok]
    if len(bad):
        print(bad[["file", "blast_share", "f1", "qc"]].round(3).to_string(index=False))
    low = g[(g["f1"] < 0.9) & g["flagged"]]
    if len(low):
        print("  F1 < 0.9 and flagged:")
        print(low[["file", "blast_share", "f1", "qc"]].round(3).to_string(index=False))
    within = draws["rel_diff"] <= DRAW_TOLERANCE
    print(
        f"  stained vs isotype blast count of one draw: median |diff| "
        f"{100 * draws['rel_diff'].median():.1f}%, within {100 * DRAW_TOLERANCE:g}%: "
        f"{int(within.sum())}/{len(draws)}"
    )
    stated = draws["stated"] == ""
    print(
        f"  within the batch's stated tolerance (10% or 3 SD of counting noise; "
        f"analysis/draw_agreement.py): {int(stated.sum())}/{len(draws)}"
    )
    if (~within).any():
        print(draws[~within].drop(columns="stated").round(3).to_string(index=False))
    for reason in draws.loc[~stated, "stated"]:
        print(f"    {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL)
    parser.add_argument("--template", default="aml_blasts_cd45_ssc")
    parser.add_argument("--plots", type=Path, default=None)
    parser.add_argument(
        "--study",
        type=Path,
        action="append",
        default=[],
        help="a SIMULATED study folder (with ground_truth/) to score as well; repeatable",
    )
    parser.add_argument("--only-studies", action="store_true", help="skip the real samples")
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"machine load (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"cores {os.cpu_count()}"
    )
    print(f"template: {args.template}\n")
    for run in args.study:
        print_study(str(run), *eval_study(run, args.template))
    if args.only_studies:
        return
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print("== BD FACSCanto B-ALL marrow (marrow_canto_508): expert per-event gates")
    canto = eval_canto(args.real, args.template) + eval_canto(args.real, args.template, "none")
    print(pd.DataFrame(canto).round(3).to_string(index=False))
    print("\n== AML marrow arrays (aml_mrd_umapflow, CC0): leukocyte map on CD45/SSC as given")
    print(eval_umapflow(args.real).round(3).to_string(index=False))
    print(
        "\n== BD FACSLyric AML training set (aml_lyric): "
        "% of each expert population per cytogate population"
    )
    lyric = eval_lyric(args.real, args.template)
    print(lyric.round(1).to_string(index=False))
    print("\n== Beckman FC 500 tube (fc500_flowcap2_type): no truth; population table")
    try:
        print(eval_fc500(args.real, args.template, args.plots).to_string(index=False))
    except Exception as exc:  # an evaluation reports, it does not stop
        print(f"failed: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
