"""Quantification formulas against hand-computed values, and NaN-with-reason edge cases."""

import math
from pathlib import Path

import numpy as np
import pytest

from cytogate.analysis.quantify import MarkerPlan, marker_rows, mfi_statistics, population_rows
from cytogate.gating.engine import gate
from cytogate.gating.template import parse_template
from tests.conftest import make_sample

TEMPLATE = """
name: q
panel: {SSC-A: '^SSC-A$', CD45: 'CD45', M1: 'CD114', KI: 'Ki67'}
compensation: none
scales: {default: {kind: linear, top: 1}}
roles: {leukocytes: leuko, blasts: blasts}
gates:
  - {name: leuko, kind: range, dims: [CD45], min: 10}
  - {name: blasts, parent: leuko, kind: range, dims: [CD45], max: 100}
"""
PLAN = MarkerPlan(("blasts",), ("M1",), ("KI",), "median", 99.0, 3)


def _tube(cd45, m1, ki, stained=True):
    pns = [
        "",
        "CD45 PerCP",
        "CD114 FITC" if stained else "IgG1 FITC",
        "Ki67 BV421" if stained else "IgG1 BV421",
    ]
    events = np.column_stack([np.zeros(len(cd45)), cd45, m1, ki])
    return make_sample(events, ["SSC-A", "PerCP-A", "FITC-A", "BV421-A"], pns)


def _gate(sample, reference=None):
    return gate(sample, parse_template(TEMPLATE, Path("q.yaml")), reference=reference)


def test_mfi_statistics_by_hand():
    stats = mfi_statistics(np.array([-10.0, 10.0, 100.0, 1000.0]))
    assert stats["mfi_mean"] == pytest.approx(275.0)
    assert stats["mfi_median"] == pytest.approx(55.0)
    assert stats["mfi_geomean"] == pytest.approx(100.0)  # (10*100*1000)^(1/3), positives only
    assert stats["n_positive_values"] == 3 and stats["n_events"] == 4


def test_dual_platform_absolute_counts():
    # 6 leukocytes (CD45 >= 10), 4 of them blasts (CD45 < 100); WBC 3000/uL -> 2000 blasts/uL
    s = _tube([1, 20, 30, 40, 50, 500, 600], [0] * 7, [0] * 7)
    rows = {r["population"]: r for r in population_rows(_gate(s), 3000.0, None)}
    assert rows["blasts"]["count"] == 4 and rows["leuko"]["count"] == 6
    assert rows["blasts"]["per_ul"] == pytest.approx(3000 * 4 / 6)
    assert rows["leuko"]["per_ul"] == pytest.approx(3000.0)
    assert rows["blasts"]["per_ul_method"] == "dual-platform"
    no_wbc = population_rows(_gate(s), None, None)
    assert math.isnan(no_wbc[0]["per_ul"]) and "wbc_per_ul" in no_wbc[0]["reason"]


def test_no_leukocytes_gives_nan_not_a_crash():
    s = _tube([1, 2, 3], [0] * 3, [0] * 3)
    rows = population_rows(_gate(s), 3000.0, None)
    assert all(math.isnan(r["per_ul"]) for r in rows)
    assert rows[0]["reason"] == "no leuko events"


def test_rmfi_and_pct_positive_by_hand():
    stained = _gate(_tube([50] * 5, [100, 200, 300, 400, 500], [1, 2, 3, 50, 60]))
    control = _gate(
        _tube([50] * 5, [10, 20, 30, 40, 50], [1, 2, 3, 4, 5], stained=False),
        reference=stained.channel_map() | {"M1": "FITC-A", "KI": "BV421-A"},
    )
    s_rows, c_rows = marker_rows(stained, control, PLAN)
    m1 = next(r for r in s_rows if r["marker"] == "M1")
    assert m1["rmfi"] == pytest.approx(300 / 30)  # medians
    assert m1["control_mfi"] == pytest.approx(30.0) and m1["mfi_statistic"] == "median"
    ki = next(r for r in s_rows if r["marker"] == "KI")
    threshold = np.percentile([1, 2, 3, 4, 5], 99)  # 4.96
    assert ki["threshold"] == pytest.approx(threshold)
    assert ki["pct_positive"] == pytest.approx(40.0)  # 50 and 60 of 5 events
    assert math.isnan(ki["rmfi"])
    assert {r["marker"] for r in c_rows} == {"M1", "KI"}


def test_missing_control_and_zero_denominator_and_too_few_events():
    stained = _gate(_tube([50] * 5, [100] * 5, [1] * 5))
    rows, _ = marker_rows(stained, None, PLAN)
    assert all(math.isnan(r["rmfi"]) for r in rows if r["marker"] == "M1")
    assert rows[0]["reason"] == "no matched control tube"

    control = _gate(
        _tube([50] * 5, [-5, 0, 0, 0, 5], [1] * 5, stained=False),
        reference={"M1": "FITC-A", "KI": "BV421-A"},
    )
    rows, _ = marker_rows(stained, control, PLAN)
    m1 = rows[0]
    assert math.isnan(m1["rmfi"]) and "control median MFI is 0 (not > 0)" in m1["reason"]

    few = MarkerPlan(("blasts",), ("M1",), ("KI",), "median", 99.0, 50)
    rows, _ = marker_rows(stained, control, few)
    assert all(math.isnan(r["rmfi"]) and math.isnan(r["pct_positive"]) for r in rows)
    assert "only 5 blasts events in stained tube (< 50)" in rows[0]["reason"]


def test_marker_absent_from_file_is_a_reason():
    s = make_sample(np.array([[0.0, 50.0]] * 4), ["SSC-A", "PerCP-A"], ["", "CD45"])
    rows, _ = marker_rows(_gate(s), None, PLAN)
    assert math.isnan(rows[0]["mfi_median"]) and "matches no channel" in rows[0]["reason"]
