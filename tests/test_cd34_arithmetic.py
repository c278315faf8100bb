"""ISHAGE CD34+ arithmetic against hand-computed examples (beads, volumes, weights, units)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cytogate.analysis.cd34 import (
    BELOW_MINIMUM,
    POOR_MOBILISATION,
    CD34Thresholds,
    beads_per_ul_of_sample,
    cd34_table,
    cells_per_ul,
    e6_per_kg,
    patient_table,
)

NAN = math.nan


def test_beads_per_ul_direct_or_from_tube_and_volume():
    got = beads_per_ul_of_sample([500.0, NAN, NAN, NAN], [NAN, 50000.0, 50000.0, NAN],
                                 [NAN, 10.0, 0.0, NAN])  # fmt: skip
    # 500 given; 50,000 beads in a tube with 10 µL of sample = 5,000 per µL; no volume: unknown
    assert got[0] == 500.0
    assert got[1] == 5000.0
    assert math.isnan(got[2]) and math.isnan(got[3])


def test_cells_per_ul_is_events_over_beads_times_bead_concentration():
    # 150 CD34+ events, 600 bead events, 500 beads/µL -> 150 / 600 × 500 = 125 /µL
    assert cells_per_ul([150], [600], [500.0])[0] == pytest.approx(125.0)
    assert math.isnan(cells_per_ul([150], [0], [500.0])[0])


def test_yield_per_kg_units():
    # 2,000 CD34+/µL × 250 mL × 1,000 µL/mL = 5×10⁸ cells; ÷ 10⁶ ÷ 80 kg = 6.25 ×10⁶/kg
    assert e6_per_kg([2000.0], [250.0], [80.0])[0] == pytest.approx(6.25)
    assert math.isnan(e6_per_kg([2000.0], [250.0], [0.0])[0])


def _tube(file, patient, specimen, day, cd34, viable, beads, cd45, **manifest):
    row = {
        "file": file, "patient": patient, "timepoint": "PB" if day == 0 else f"LP{day}",
        "cohort": "A", "specimen": specimen, "collection_day": day, "cd45_events": cd45,
        "cd34_events": cd34, "viable_cd34_events": viable, "bead_events": beads,
        "bead_qc": "", "cd34_qc": "", "beads_per_ul": NAN, "beads_per_tube": NAN,
        "sample_ul": NAN, "product_ml": NAN, "weight_kg": 80.0,
    }  # fmt: skip
    row.update(manifest)
    return row


@pytest.fixture
def tubes() -> pd.DataFrame:
    return pd.DataFrame(
        [
            # blood: 15 events / 500 beads × 500 /µL = 15 CD34+/µL: poor, and < 100 events
            _tube("a_pb", "A", "blood", 0, 15, 14, 500, 20000, beads_per_ul=500.0),
            # day 2 listed before day 1: the cumulative sum must follow collection_day
            # day 2: 120 / 600 × 5,000 = 1,000 /µL × 200 mL × 1,000 / 10⁶ / 80 kg = 2.5
            _tube(
                "a_lp2",
                "A",
                "apheresis",
                2,
                120,
                110,
                600,
                8000,
                beads_per_tube=50000.0,
                sample_ul=10.0,
                product_ml=200.0,
            ),
            # day 1: 240 / 600 × (50,000 / 10) = 2,000 /µL × 250 mL ... / 80 kg = 6.25
            _tube(
                "a_lp1",
                "A",
                "apheresis",
                1,
                240,
                228,
                600,
                8000,
                beads_per_tube=50000.0,
                sample_ul=10.0,
                product_ml=250.0,
            ),
            # patient B: one collection day of 1.0 ×10⁶/kg: below the minimum
            _tube(
                "b_lp1",
                "B",
                "apheresis",
                1,
                128,
                128,
                800,
                8000,
                beads_per_ul=5000.0,
                product_ml=100.0,
            ),
        ]
    )


def test_counts_and_yields_by_hand(tubes):
    t = cd34_table(tubes).set_index("file")
    assert t.loc["a_pb", "cd34_per_ul"] == pytest.approx(15.0)
    assert t.loc["a_pb", "viable_cd34_per_ul"] == pytest.approx(14.0)
    assert t.loc["a_pb", "cd34_pct_of_cd45"] == pytest.approx(100 * 15 / 20000)
    assert math.isnan(t.loc["a_pb", "cd34_e6_per_kg"])  # blood has no yield
    assert t.loc["a_lp1", "beads_per_ul_of_sample"] == 5000.0
    assert t.loc["a_lp1", "cd34_per_ul"] == pytest.approx(2000.0)
    assert t.loc["a_lp1", "cd34_pct_of_cd45"] == pytest.approx(3.0)
    assert t.loc["a_lp1", "cd34_e6_per_kg"] == pytest.approx(6.25)
    # viable: 228 / 600 × 5,000 = 1,900 /µL -> 1,900 × 250 × 1,000 / 10⁶ / 80 = 5.9375
    assert t.loc["a_lp1", "viable_cd34_e6_per_kg"] == pytest.approx(5.9375)
    assert t.loc["a_lp2", "cd34_e6_per_kg"] == pytest.approx(2.5)
    assert t.loc["a_lp1", "cumulative_cd34_e6_per_kg"] == pytest.approx(6.25)
    assert t.loc["a_lp2", "cumulative_cd34_e6_per_kg"] == pytest.approx(8.75)
    # b: 128 / 800 × 5,000 = 800 /µL × 100 mL × 1,000 / 10⁶ / 80 kg = 1.0
    assert t.loc["b_lp1", "cd34_e6_per_kg"] == pytest.approx(1.0)


def test_flags_with_default_and_configured_thresholds(tubes):
    t = cd34_table(tubes).set_index("file")
    assert t.loc["a_pb", "poor_mobilisation"] and POOR_MOBILISATION in t.loc["a_pb", "flags"]
    assert t.loc["a_pb", "too_few_cd34_events"]
    assert "15 CD34+ events (< 100)" in t.loc["a_pb", "count_qc"]
    assert not t.loc["a_lp1", "too_few_cd34_events"] and t.loc["a_lp1", "count_qc"] == ""
    # the target (4) is reached on day 1 already; B's only day is its last: below 2
    assert t.loc["a_lp1", "target_reached"] and t.loc["a_lp2", "target_reached"]
    assert not t.loc["a_lp1", "below_minimum_yield"]
    assert t.loc["b_lp1", "below_minimum_yield"] and BELOW_MINIMUM in t.loc["b_lp1", "flags"]
    strict = cd34_table(
        tubes,
        CD34Thresholds(
            min_cd34_events=250,
            poor_mobilisation_per_ul=10,
            minimum_e6_per_kg=0.5,
            target_e6_per_kg=7.0,
        ),
    ).set_index("file")
    assert not strict.loc["a_pb", "poor_mobilisation"]
    assert strict.loc["a_lp1", "too_few_cd34_events"]  # 240 < 250
    assert not strict.loc["a_lp1", "target_reached"] and strict.loc["a_lp2", "target_reached"]
    assert not strict.loc["b_lp1", "below_minimum_yield"]


def test_bead_qc_and_missing_beads_are_reported(tubes):
    tubes.loc[2, "bead_qc"] = "bead_singlets: 80% of beads (< 90%)"
    tubes.loc[3, "bead_events"] = 0
    t = cd34_table(tubes).set_index("file")
    assert "beads: bead_singlets: 80%" in t.loc["a_lp1", "count_qc"]
    assert math.isnan(t.loc["b_lp1", "cd34_per_ul"])
    assert t.loc["b_lp1", "reason"] == "no bead events"


def test_unknown_day_leaves_the_cumulative_unknown(tubes):
    tubes.loc[2, "product_ml"] = NAN  # day 1 volume missing
    t = cd34_table(tubes).set_index("file")
    assert math.isnan(t.loc["a_lp1", "cumulative_cd34_e6_per_kg"])
    assert math.isnan(t.loc["a_lp2", "cumulative_cd34_e6_per_kg"])
    p = patient_table(cd34_table(tubes)).set_index("patient")
    assert math.isnan(p.loc["A", "cd34_e6_per_kg"])
    assert pd.isna(p.loc["A", "collection_failure"])  # undecided, not a failure


def test_patient_table(tubes):
    p = patient_table(cd34_table(tubes)).set_index("patient")
    assert p.loc["A", "peak_blood_cd34_per_ul"] == pytest.approx(15.0)
    assert p.loc["A", "cd34_e6_per_kg"] == pytest.approx(8.75)
    assert p.loc["A", "collection_days"] == 2
    assert not p.loc["A", "collection_failure"] and p.loc["A", "target_reached"]
    assert p.loc["B", "collection_failure"]
    assert np.isnan(p.loc["B", "peak_blood_cd34_per_ul"])  # no blood tube
