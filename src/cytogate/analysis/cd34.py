"""ISHAGE CD34+ arithmetic: counts per µL from beads, yields per kg, and their flags.

Pure functions on DataFrames, one row per tube; every column is named by what it is:

* ``cd34_per_ul`` = CD34+ events ÷ bead (singlet) events × beads per µL of sample, where beads
  per µL of sample is the manifest's ``beads_per_ul`` or ``beads_per_tube`` ÷ ``sample_ul``
  (single-platform counting); ``viable_cd34_per_ul`` likewise with 7-AAD-negative CD34+ events;
* ``cd34_pct_of_cd45`` = 100 × CD34+ events ÷ CD45+ events;
* apheresis products (``product_ml``, ``weight_kg``): ``cd34_e6_per_kg`` = CD34+/µL × product
  mL × 1,000 (µL per mL) ÷ 10⁶ ÷ kg, ``viable_cd34_e6_per_kg`` likewise, and their cumulative
  sums over the patient's collection days (``cumulative_*``).

Flags (thresholds in :class:`CD34Thresholds`): fewer than 100 CD34+ events (the ISHAGE
precision floor) or doublet-rich beads make a count unreliable (``count_qc``); blood below
20 CD34+/µL is poor mobilisation, a final cumulative yield below 2 ×10⁶/kg is below the
minimum for one transplant, and reaching 4 ×10⁶/kg is the collection target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

NAN = float("nan")
BLOOD, APHERESIS = "blood", "apheresis"
POOR_MOBILISATION = "poor mobilisation: consider plerixafor"
BELOW_MINIMUM = "below the minimum for one transplant"
TARGET_REACHED = "collection target reached"

#: cd34.csv columns, in order
CD34_COLUMNS = [
    "file", "patient", "timepoint", "cohort", "specimen", "collection_day",
    "cd45_events", "cd34_events", "viable_cd34_events", "bead_events", "beads_per_ul_of_sample",
    "cd34_per_ul", "viable_cd34_per_ul", "cd34_pct_of_cd45",
    "product_ml", "weight_kg", "cd34_e6_per_kg", "viable_cd34_e6_per_kg",
    "cumulative_cd34_e6_per_kg", "cumulative_viable_cd34_e6_per_kg",
    "too_few_cd34_events", "count_qc", "poor_mobilisation", "below_minimum_yield",
    "target_reached", "flags", "reason",
]  # fmt: skip


@dataclass(frozen=True)
class CD34Thresholds:
    """Where the flags trip (defaults: ISHAGE and common mobilisation practice)."""

    min_cd34_events: int = 100
    poor_mobilisation_per_ul: float = 20.0
    minimum_e6_per_kg: float = 2.0
    target_e6_per_kg: float = 4.0


def beads_per_ul_of_sample(
    beads_per_ul: Sequence[float] | pd.Series,
    beads_per_tube: Sequence[float] | pd.Series,
    sample_ul: Sequence[float] | pd.Series,
) -> np.ndarray:
    """Beads per µL of the sample: ``beads_per_ul`` where given, else tube ÷ sample volume."""
    direct = np.asarray(beads_per_ul, dtype=float)
    tube = np.asarray(beads_per_tube, dtype=float)
    volume = np.asarray(sample_ul, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = np.where(volume > 0, tube / volume, NAN)
    return np.where(np.isfinite(direct), direct, derived)


def cells_per_ul(
    events: Sequence[float] | pd.Series,
    bead_events: Sequence[float] | pd.Series,
    beads_per_ul: Sequence[float] | pd.Series,
) -> np.ndarray:
    """Single-platform count: events ÷ bead events × beads per µL (NaN without beads)."""
    ev = np.asarray(events, dtype=float)
    beads = np.asarray(bead_events, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(beads > 0, ev / beads * np.asarray(beads_per_ul, dtype=float), NAN)


def e6_per_kg(
    per_ul: Sequence[float] | pd.Series,
    product_ml: Sequence[float] | pd.Series,
    weight_kg: Sequence[float] | pd.Series,
) -> np.ndarray:
    """Cells ×10⁶ per kg body weight in a product: per µL × mL × 1,000 ÷ 10⁶ ÷ kg."""
    kg = np.asarray(weight_kg, dtype=float)
    total = np.asarray(per_ul, dtype=float) * np.asarray(product_ml, dtype=float) * 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(kg > 0, total / 1e6 / kg, NAN)


def cd34_table(tubes: pd.DataFrame, thresholds: CD34Thresholds | None = None) -> pd.DataFrame:
    """Counts, yields and flags per tube (columns :data:`CD34_COLUMNS`).

    ``tubes``: one row per tube with ``file``, ``patient``, ``timepoint``, ``cohort``,
    ``specimen`` (blood | apheresis), ``collection_day``, the event counts ``cd45_events``,
    ``cd34_events``, ``viable_cd34_events``, ``bead_events``, ``bead_qc`` and ``cd34_qc`` (the
    bead and CD34+ gates' QC text, empty when fine) and the manifest's ``beads_per_ul``,
    ``beads_per_tube``, ``sample_ul``, ``product_ml``, ``weight_kg`` (NaN where not given).
    """
    th = thresholds or CD34Thresholds()
    t = tubes.copy()
    t["beads_per_ul_of_sample"] = beads_per_ul_of_sample(
        t["beads_per_ul"], t["beads_per_tube"], t["sample_ul"]
    )
    t["cd34_per_ul"] = cells_per_ul(t["cd34_events"], t["bead_events"], t["beads_per_ul_of_sample"])
    t["viable_cd34_per_ul"] = cells_per_ul(
        t["viable_cd34_events"], t["bead_events"], t["beads_per_ul_of_sample"]
    )
    cd45 = t["cd45_events"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t["cd34_pct_of_cd45"] = np.where(cd45 > 0, 100.0 * t["cd34_events"] / cd45, NAN)
    apheresis = (t["specimen"] == APHERESIS).to_numpy()
    for src, dst in (
        ("cd34_per_ul", "cd34_e6_per_kg"),
        ("viable_cd34_per_ul", "viable_cd34_e6_per_kg"),
    ):
        t[dst] = np.where(apheresis, e6_per_kg(t[src], t["product_ml"], t["weight_kg"]), NAN)
    t = t.sort_values(["patient", "collection_day", "file"], kind="stable").reset_index(drop=True)
    aph = apheresis_mask(t)
    for col in ("cd34_e6_per_kg", "viable_cd34_e6_per_kg"):
        # a day whose yield is unknown leaves the running total unknown from there on
        days = t.loc[aph, col]
        unknown = days.isna().groupby(t.loc[aph, "patient"]).cummax()
        running = days.fillna(0.0).groupby(t.loc[aph, "patient"]).cumsum().mask(unknown)
        t[f"cumulative_{col}"] = running.reindex(t.index)
    counts = ["collection_day", "cd45_events", "cd34_events", "viable_cd34_events", "bead_events"]
    return _flag(t, th)[CD34_COLUMNS].astype({c: "Int64" for c in counts})


def apheresis_mask(t: pd.DataFrame) -> pd.Series:
    return t["specimen"] == APHERESIS


def _flag(t: pd.DataFrame, th: CD34Thresholds) -> pd.DataFrame:
    blood, aph = t["specimen"] == BLOOD, apheresis_mask(t)
    last_day = aph & (
        t["collection_day"] == t["collection_day"].where(aph).groupby(t["patient"]).transform("max")
    )
    t["too_few_cd34_events"] = t["cd34_events"] < th.min_cd34_events
    t["poor_mobilisation"] = blood & (t["cd34_per_ul"] < th.poor_mobilisation_per_ul)
    cumulative = t["cumulative_cd34_e6_per_kg"]
    t["below_minimum_yield"] = last_day & (cumulative < th.minimum_e6_per_kg)
    t["target_reached"] = aph & (cumulative >= th.target_e6_per_kg)
    reasons = np.where(
        ~np.isfinite(t["beads_per_ul_of_sample"].to_numpy(dtype=float)),
        "no beads_per_ul, or beads_per_tube and sample_ul, in the manifest",
        np.where(t["bead_events"] <= 0, "no bead events", ""),
    )
    t["reason"] = reasons
    qc, flags = [], []
    for r in t.itertuples(index=False):  # one row per tube, not per event
        q = []
        if r.too_few_cd34_events:
            q.append(f"{r.cd34_events} CD34+ events (< {th.min_cd34_events}): imprecise count")
        if r.bead_qc:
            q.append(f"beads: {r.bead_qc}")
        if r.cd34_qc:
            q.append(f"gating: {r.cd34_qc}")
        f = list(q)
        if r.poor_mobilisation:
            f.append(
                f"{r.cd34_per_ul:.1f} CD34+/µL (< {th.poor_mobilisation_per_ul:g}): "
                f"{POOR_MOBILISATION}"
            )
        if r.below_minimum_yield:
            f.append(
                f"cumulative {r.cumulative_cd34_e6_per_kg:.2f} ×10⁶/kg "
                f"(< {th.minimum_e6_per_kg:g}): {BELOW_MINIMUM}"
            )
        if r.target_reached:
            f.append(f"{TARGET_REACHED} ({th.target_e6_per_kg:g} ×10⁶/kg)")
        qc.append("; ".join(q))
        flags.append("; ".join(f))
    t["count_qc"], t["flags"] = qc, flags
    return t


def patient_table(cd34: pd.DataFrame, thresholds: CD34Thresholds | None = None) -> pd.DataFrame:
    """Per patient: cohort, peak blood CD34+/µL, collection days, cumulative yields, outcome.

    The yields are the cumulative ones after the last collection day (NaN when a day's yield
    is unknown, rather than a partial sum that would look like a failure).

    ``collection_failure``: the cumulative yield (all collection days) is below the minimum
    for one transplant; NaN yields (no apheresis tube) leave it undecided (``<NA>``).
    """
    th = thresholds or CD34Thresholds()
    blood = cd34[cd34["specimen"] == BLOOD].groupby("patient")["cd34_per_ul"].max()
    aph = cd34[cd34["specimen"] == APHERESIS].groupby("patient")
    out = pd.DataFrame({"patient": sorted(cd34["patient"].unique())}).set_index("patient")
    out["cohort"] = cd34.groupby("patient")["cohort"].first()
    out["peak_blood_cd34_per_ul"] = blood
    out["collection_days"] = aph["collection_day"].nunique()
    last = (
        cd34[cd34["specimen"] == APHERESIS].sort_values("collection_day").groupby("patient").tail(1)
    )
    last = last.set_index("patient")
    out["cd34_e6_per_kg"] = last["cumulative_cd34_e6_per_kg"]
    out["viable_cd34_e6_per_kg"] = last["cumulative_viable_cd34_e6_per_kg"]
    out["collection_days"] = out["collection_days"].fillna(0).astype(int)
    y = out["cd34_e6_per_kg"]
    out["collection_failure"] = (y < th.minimum_e6_per_kg).astype("boolean").mask(y.isna())
    out["target_reached"] = (y >= th.target_e6_per_kg).astype("boolean").mask(y.isna())
    return out.reset_index()
