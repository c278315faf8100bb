"""Test oracle: measures from a simulated study's ground truth, independent of the gating engine.

The recovery tests and ``benchmarks/eval_batch_recovery.py`` compare ``cytogate batch`` with
this oracle. It uses the simulator's per-event labels instead of gates, and its own
compensation (``numpy.linalg.solve``) instead of :mod:`cytogate.model.transforms`, so a bug in
gating, compensation or quantification cannot hide by being repeated here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from cytogate.io.fcs import read_fcs
from cytogate.sim.simulate import LABEL_CODES, Instrument

BLAST = LABEL_CODES["blast"]
LEUKOCYTES = tuple(LABEL_CODES[n] for n in ("lymphocyte", "monocyte", "granulocyte", "blast"))
RMFI_MARKERS = ("CXCR4_12G5", "CXCR4_1D9", "CD114", "CD49f")

#: How far (relative) a batch fold change may sit from the oracle's. Counts and medians move
#: little when a gate differs from the truth by a few events; % positive of a few hundred blasts
#: moves more. Leukocytes/µL equals the WBC count in dual-platform counting, hence exact.
RECOVERY_TOLERANCE: dict[str, float] = {
    "blasts_per_ul": 0.03,
    "leukocytes_per_ul": 1e-9,
    **{f"blasts_{m}_rmfi_median": 0.05 for m in RMFI_MARKERS},
    "blasts_Ki67_pct_positive": 0.10,
}


def _compensated(path: Path) -> tuple[np.ndarray, list[str]]:
    sample = read_fcs(path)
    names = list(sample.channels["pnn"])
    spill = sample.spillover
    cols = [names.index(c) for c in spill.columns]
    events = sample.events.copy()
    events[:, cols] = np.linalg.solve(spill.to_numpy().T, events[:, cols].T).T
    return events, names


def oracle_measures(run: Path, panel: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per patient × timepoint: value and fold change of each measure, from the true labels.

    ``panel`` maps marker -> $PnN as the study was simulated (default: the simulator's).
    Measures and definitions are those of ``cytogate batch``: blasts and leukocytes per µL
    (dual-platform), median RMFI of the four markers on the blasts, and Ki67 % positive above
    the isotype tube's 99th percentile.
    """
    channels = dict(panel or Instrument().panel)
    labels = np.load(run / "ground_truth" / "labels.npz")
    manifest = pd.read_csv(run / "manifest.csv")
    rows = []
    for rec in manifest[manifest["tube"] == "stained"].itertuples():
        iso = rec.file.replace("_stained", "_isotype")
        s_events, names = _compensated(run / rec.file)
        i_events, _ = _compensated(run / iso)
        s_blast, i_blast = labels[rec.file] == BLAST, labels[iso] == BLAST
        leukocytes = np.isin(labels[rec.file], LEUKOCYTES).sum()
        values = {
            "blasts_per_ul": rec.wbc_per_ul * s_blast.sum() / leukocytes,
            "leukocytes_per_ul": float(rec.wbc_per_ul),
        }
        for marker in RMFI_MARKERS:
            j = names.index(channels[marker])
            values[f"blasts_{marker}_rmfi_median"] = np.median(s_events[s_blast, j]) / np.median(
                i_events[i_blast, j]
            )
        k = names.index(channels["Ki67"])
        threshold = np.percentile(i_events[i_blast, k], 99)
        values["blasts_Ki67_pct_positive"] = 100 * np.mean(s_events[s_blast, k] > threshold)
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
