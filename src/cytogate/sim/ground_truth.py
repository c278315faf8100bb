"""Ground-truth tables of a simulated study: planted values per patient and timepoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cytogate.sim.common import MFI_MARKERS
from cytogate.sim.config import StudyConfig
from cytogate.sim.patients import PatientParams


@dataclass(frozen=True)
class StudyTruth:
    """What :func:`simulate_study` wrote and planted.

    ``manifest``: one row per file; ``planted``: long table (patient, timepoint, measure, value,
    multiplier_vs_baseline, cohort_multiplier); ``patient_table``: one row per patient;
    ``labels``: file name -> per-event labels.
    """

    outdir: Path
    config: StudyConfig
    patients: tuple[PatientParams, ...]
    files: tuple[Path, ...]
    manifest: pd.DataFrame
    planted: pd.DataFrame
    patient_table: pd.DataFrame
    labels: dict[str, np.ndarray]


def planted_table(config: StudyConfig, patients: list[PatientParams]) -> pd.DataFrame:
    """The planted truth per patient × timepoint × measure, absolute and vs baseline.

    Measures: ``wbc_per_ul``, ``blast_share`` (of CD45+ leukocytes), ``blasts_per_ul``,
    ``ki67_fraction`` (Ki67+ blasts), ``blast_mfi_stained_<M>`` / ``blast_mfi_isotype_<M>``
    (medians, linear, before spillover) and ``blast_rmfi_<M>`` (their ratio) for M in
    CXCR4_12G5, CXCR4_1D9, CD114, CD49f. ``multiplier_vs_baseline`` is the realised planted
    ratio (after rounding WBC and capping blast share); ``cohort_multiplier`` is the config's
    cohort value it scatters around.
    """
    eff = config.effects.multipliers
    base_t = config.timepoints[0]
    rows = []
    for pt in patients:

        def values(t: str, pt: PatientParams = pt) -> dict[str, float]:
            out = {
                "wbc_per_ul": pt.wbc_per_ul(t),
                "blast_share": pt.blast_share(t),
                "blasts_per_ul": pt.blasts_per_ul(t),
                "ki67_fraction": pt.ki67_fraction(t),
            }
            for m in MFI_MARKERS:
                s, i = pt.blast_mfi(m, t, "stained"), pt.blast_mfi(m, t, "isotype")
                out[f"blast_mfi_stained_{m}"] = s
                out[f"blast_mfi_isotype_{m}"] = i
                out[f"blast_rmfi_{m}"] = s / i
            return out

        base = values(base_t)
        for t in config.timepoints:
            cohort = {
                "wbc_per_ul": eff["wbc_per_ul"][t],
                "blasts_per_ul": eff["blasts_per_ul"][t],
                "blast_share": eff["blasts_per_ul"][t] / eff["wbc_per_ul"][t],
                "ki67_fraction": eff["ki67_fraction"][t],
            }
            for m in MFI_MARKERS:
                cohort[f"blast_mfi_stained_{m}"] = eff[f"mfi_{m}"][t]
                cohort[f"blast_mfi_isotype_{m}"] = 1.0
                cohort[f"blast_rmfi_{m}"] = eff[f"mfi_{m}"][t]
            for measure, value in values(t).items():
                rows.append(
                    {
                        "patient": pt.patient,
                        "timepoint": t,
                        "measure": measure,
                        "value": value,
                        "multiplier_vs_baseline": value / base[measure],
                        "cohort_multiplier": cohort[measure],
                    }
                )
    return pd.DataFrame(rows)


def patient_table(patients: list[PatientParams]) -> pd.DataFrame:
    """One row per patient: blast geometry (scaled space), kind and baseline planted values."""
    rows = []
    for pt in patients:
        row: dict[str, Any] = {
            "patient": pt.patient,
            "kind": pt.kind,
            "atypical": pt.kind != "typical",
            "blast_cd45_scaled": pt.blast_cd45,
            "blast_ssc_scaled": pt.blast_ssc,
            "blast_fsc_scaled": pt.blast_fsc,
            "blast_share_baseline": pt.blast_share_baseline,
            "wbc_baseline_per_ul": float(round(pt.wbc_baseline)),
            "ki67_fraction_baseline": pt.ki67_fraction_baseline,
            "cd45_negative_fraction": pt.cd45_negative_fraction,
            "lymphocyte_share_of_non_blasts": pt.non_blast_mix[0],
            "monocyte_share_of_non_blasts": pt.non_blast_mix[1],
            "granulocyte_share_of_non_blasts": pt.non_blast_mix[2],
            "scatter_gain": pt.scatter_gain,
        }
        for m, v in pt.blast_mfi_baseline.items():
            row[f"blast_mfi_baseline_{m}"] = v
        for ch, v in pt.isotype_background.items():
            row[f"background_{ch}"] = v
        rows.append(row)
    return pd.DataFrame(rows)
