"""Fold changes and paired statistics: agreement with scipy, planted effects, missing data."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from cytogate.analysis.stats import (
    STATS_COLUMNS,
    Comparison,
    adjust_pvalues,
    default_comparisons,
    fold_changes,
    paired_statistics,
    stars_for,
)
from cytogate.errors import DesignError

TPS = ["baseline", "day3", "2h", "4h", "6h", "24h"]
DAY3 = [Comparison("day3", "baseline")]


def _long(wide: dict[str, dict[str, float]], measure: str = "m") -> pd.DataFrame:
    """{patient: {timepoint: value}} -> long values table (absent keys give no row)."""
    rows = [
        {"patient": p, "timepoint": tp, "measure": measure, "value": v}
        for p, by_tp in wide.items()
        for tp, v in by_tp.items()
    ]
    return pd.DataFrame(rows)


def _study(rng: np.random.Generator, n: int = 8, fold: float = 2.4, sd: float = 0.2, **kw):
    """n patients at all six timepoints; every post-baseline value = baseline × fold × noise."""
    wide = {}
    for i in range(n):
        base = rng.lognormal(np.log(3000), 0.6)
        wide[f"P{i + 1:02d}"] = {
            tp: base if tp == "baseline" else base * fold * rng.lognormal(0, sd) for tp in TPS
        }
    return _long(wide, **kw)


def _row(stats: pd.DataFrame, label: str, measure: str = "m") -> pd.Series:
    hit = stats[(stats["measure"] == measure) & (stats["comparison"] == label)]
    assert len(hit) == 1
    return hit.iloc[0]


def _no_inf(df: pd.DataFrame) -> bool:
    num = df.select_dtypes("number").to_numpy(dtype=np.float64)
    return not np.isinf(num).any()


# --------------------------------------------------------------------------- comparisons
def test_default_comparisons_for_the_study_timepoints():
    comps = default_comparisons(TPS)
    assert [c.label for c in comps] == [
        "day3 vs baseline",
        "2h vs baseline",
        "4h vs baseline",
        "6h vs baseline",
        "24h vs baseline",
        "2h vs day3",
        "4h vs 2h",
        "6h vs 4h",
        "24h vs 6h",
    ]
    assert len({(c.timepoint, c.reference) for c in comps}) == 9
    assert comps[6] == Comparison(timepoint="4h", reference="2h")


def test_default_comparisons_needs_the_baseline_and_distinct_timepoints():
    with pytest.raises(ValueError, match="baseline"):
        default_comparisons(["pre", "day3"])
    assert [c.label for c in default_comparisons(["pre", "post"], baseline="pre")] == [
        "post vs pre"
    ]
    with pytest.raises(ValueError, match="twice"):
        default_comparisons(["baseline", "2h", "2h"])
    with pytest.raises(ValueError):
        Comparison("2h", "2h")


# --------------------------------------------------------------------------- agreement with scipy
def _hand_pairs():
    """8 patients with day3 and 6h; P03 has no 6h row, P05 a NaN day3: assembled by hand."""
    rng = np.random.default_rng(7)
    wide = {
        f"P{i:02d}": {"day3": rng.normal(50, 10), "6h": rng.normal(60, 12)} for i in range(1, 9)
    }
    del wide["P03"]["6h"]
    wide["P05"]["day3"] = np.nan
    used = [p for p in sorted(wide) if p not in ("P03", "P05")]
    ref = np.array([wide[p]["day3"] for p in used])
    val = np.array([wide[p]["6h"] for p in used])
    return _long(wide), used, val, ref


def test_paired_t_equals_ttest_rel_on_hand_assembled_pairs():
    values, used, val, ref = _hand_pairs()
    row = paired_statistics(values, [Comparison("6h", "day3")]).iloc[0]
    expected = scipy.stats.ttest_rel(val, ref)
    assert row["n_pairs"] == 6 and row["patients"] == ";".join(used)
    assert row["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert row["p"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert row["p_adj"] == row["p"] and row["correction"] == "none"
    assert row["mean_fc"] == pytest.approx(np.mean(val / ref), rel=1e-12)
    assert row["sem_fc"] == pytest.approx(scipy.stats.sem(val / ref), rel=1e-12)
    assert row["median_fc"] == pytest.approx(np.median(val / ref), rel=1e-12)
    assert row["mean_reference"] == pytest.approx(ref.mean())
    assert row["mean_value"] == pytest.approx(val.mean())
    assert "P03" in row["note"] and "P05" in row["note"]


def test_ratio_t_equals_ttest_rel_on_logs_and_excludes_non_positive_pairs():
    values, used, val, ref = _hand_pairs()
    values.loc[(values["patient"] == "P07") & (values["timepoint"] == "6h"), "value"] = -1.0
    keep = [i for i, p in enumerate(used) if p != "P07"]
    row = paired_statistics(values, [Comparison("6h", "day3")], test="ratio_t").iloc[0]
    expected = scipy.stats.ttest_rel(np.log(val[keep]), np.log(ref[keep]))
    assert row["n_pairs"] == 5 and "P07" not in row["patients"].split(";")
    assert "P07" in row["note"] and "<= 0" in row["note"]
    assert row["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert row["p"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert row["test"] == "ratio_t"


def test_wilcoxon_equals_scipy_including_a_zero_difference():
    values, used, val, ref = _hand_pairs()
    # a zero difference for P08: scipy's default (zero_method="wilcox") drops it from the ranks
    p08 = values["patient"] == "P08"
    day3 = values.loc[p08 & (values["timepoint"] == "day3"), "value"].iloc[0]
    values.loc[p08 & (values["timepoint"] == "6h"), "value"] = day3
    val = val.copy()
    val[used.index("P08")] = day3
    row = paired_statistics(values, [Comparison("6h", "day3")], test="wilcoxon").iloc[0]
    expected = scipy.stats.wilcoxon(val, ref)
    assert row["n_pairs"] == 6
    assert row["statistic"] == pytest.approx(expected.statistic)
    assert row["p"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert "1 zero difference" in row["note"]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.5, 1e4, allow_nan=False), st.floats(0.5, 1e4, allow_nan=False)),
        min_size=3,
        max_size=7,  # tied Wilcoxon pairs run scipy's 2**n permutation test: keep n small
    )
)
def test_all_three_tests_match_scipy_on_random_pairs(pairs):
    ref = np.array([a for a, _ in pairs])
    val = np.array([b for _, b in pairs])
    d, logd = val - ref, np.log(val) - np.log(ref)
    values = _long({f"P{i:02d}": {"baseline": a, "day3": b} for i, (a, b) in enumerate(pairs)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cases = {
            "paired_t": (scipy.stats.ttest_rel(val, ref), d),
            "ratio_t": (scipy.stats.ttest_rel(np.log(val), np.log(ref)), logd),
            "wilcoxon": (scipy.stats.wilcoxon(val, ref), d),
        }
    for test, (expected, diffs) in cases.items():
        row = paired_statistics(values, DAY3, test=test).iloc[0]
        assert row["n_pairs"] == len(pairs)
        degenerate = np.ptp(diffs) <= 1e-12 * np.abs(diffs).max() if test != "wilcoxon" else False
        if degenerate or (test == "wilcoxon" and not np.any(d != 0)):
            assert np.isnan(row["p"]) and row["note"]
        else:
            assert row["statistic"] == pytest.approx(expected.statistic, rel=1e-9, abs=1e-12)
            assert row["p"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


# --------------------------------------------------------------------------- planted effects
def test_planted_fold_change_is_recovered():
    values = _study(np.random.default_rng(2024), fold=2.4, sd=0.2)
    stats = paired_statistics(values, default_comparisons(TPS))
    day3 = _row(stats, "day3 vs baseline")
    # 8 lognormal(0, 0.2) factors: the mean of 2.4 × noise has a standard error of ~0.17
    assert day3["n_pairs"] == 8
    assert day3["mean_fc"] == pytest.approx(2.4, abs=0.35)
    assert day3["median_fc"] == pytest.approx(2.4, abs=0.4)
    assert 0 < day3["sem_fc"] < 0.35
    assert day3["p"] < 0.05 and day3["stars"] != "ns"
    # between post-baseline timepoints nothing was planted: fold changes near 1
    assert _row(stats, "4h vs 2h")["mean_fc"] == pytest.approx(1.0, abs=0.25)


def test_null_measures_are_significant_about_5_percent_of_the_time():
    """300 null datasets as 300 measures of one table: p < 0.05 should be ~5%, not ~all."""
    rng = np.random.default_rng(11)
    n_sets, n = 300, 8
    base = rng.lognormal(np.log(1000), 0.5, size=(n_sets, n))
    additive = base + rng.normal(0, 100, size=base.shape)  # null for the paired t on values
    multiplicative = base * rng.lognormal(0, 0.3, size=base.shape)  # null for the ratio t

    def table(after: np.ndarray) -> pd.DataFrame:
        k, i = np.meshgrid(np.arange(n_sets), np.arange(n), indexing="ij")
        patients = np.char.add("P", i.ravel().astype(str))
        measures = np.char.add("null", k.ravel().astype(str))
        return pd.DataFrame(
            {
                "patient": np.concatenate([patients, patients]),
                "timepoint": ["baseline"] * base.size + ["day3"] * base.size,
                "measure": np.concatenate([measures, measures]),
                "value": np.concatenate([base.ravel(), after.ravel()]),
            }
        )

    for test, after in [
        ("paired_t", additive),
        ("ratio_t", multiplicative),
        ("wilcoxon", additive),
    ]:
        stats = paired_statistics(table(after), DAY3, test=test)
        assert len(stats) == n_sets and (stats["n_pairs"] == n).all()
        rate = float((stats["p"] < 0.05).mean())
        # binomial sd at 5% over 300 sets is 1.3%; Wilcoxon at n=8 is exact and discrete (3.9%)
        assert 0.02 <= rate <= 0.09, (test, rate)


# --------------------------------------------------------------------------- missing data
def test_patient_missing_a_timepoint_drops_out_of_those_comparisons_only():
    values = _study(np.random.default_rng(5))
    values = values[~((values["patient"] == "P03") & (values["timepoint"] == "2h"))]
    stats = paired_statistics(values, default_comparisons(TPS))
    needs_2h = {"2h vs baseline", "2h vs day3", "4h vs 2h"}
    everyone = ";".join(f"P{i:02d}" for i in range(1, 9))
    for _, row in stats.iterrows():
        if row["comparison"] in needs_2h:
            assert row["n_pairs"] == 7, row["comparison"]
            assert row["patients"] == everyone.replace("P03;", "")
            assert "P03" in row["note"]
        else:
            assert row["n_pairs"] == 8, row["comparison"]
            assert row["patients"] == everyone
    # a NaN value (row present, e.g. a failed sample) is missing just the same
    values2 = _study(np.random.default_rng(5))
    hit = (values2["patient"] == "P03") & (values2["timepoint"] == "2h")
    values2.loc[hit, "value"] = np.nan
    stats2 = paired_statistics(values2, default_comparisons(TPS))
    pd.testing.assert_frame_equal(stats, stats2)


def test_zero_or_missing_baseline_gives_nan_fold_change_with_reason():
    values = _long(
        {
            "P01": {"baseline": 100.0, "day3": 250.0},
            "P02": {"baseline": 0.0, "day3": 40.0},
            "P03": {"day3": 30.0},
            "P04": {"baseline": np.nan, "day3": 20.0},
            "P05": {"baseline": -5.0, "day3": 20.0},
            "P06": {"baseline": 10.0, "day3": np.nan},
            "P07": {"baseline": 10.0, "day3": np.inf},
        }
    )
    values["reason"] = ""
    values.loc[(values["patient"] == "P04") & (values["timepoint"] == "baseline"), "reason"] = (
        "tube clotted"
    )
    values.loc[(values["patient"] == "P06") & (values["timepoint"] == "day3"), "reason"] = (
        "too few events"
    )
    fc = fold_changes(values, TPS).set_index(["patient", "timepoint"])
    assert fc.loc[("P01", "day3"), "fold_change"] == pytest.approx(2.5)
    assert fc.loc[("P01", "baseline"), "fold_change"] == 1.0
    assert fc.loc[("P01", "day3"), "reason"] == ""
    expected = {
        ("P02", "day3"): "baseline is 0",
        ("P02", "baseline"): "baseline is 0",
        ("P03", "day3"): "no baseline",
        ("P04", "day3"): "baseline missing: tube clotted",
        ("P04", "baseline"): "value missing: tube clotted",
        ("P05", "day3"): "baseline is negative",
        ("P06", "day3"): "value missing: too few events",
        ("P07", "day3"): "value missing: infinite value",
    }
    for key, reason in expected.items():
        assert np.isnan(fc.loc[key, "fold_change"]), key
        assert fc.loc[key, "reason"] == reason, key
    assert _no_inf(fc)
    stats = paired_statistics(values, DAY3)
    row = stats.iloc[0]
    # P01, P02, P05 are complete pairs for the t test; only P01 has a defined fold change
    assert row["n_pairs"] == 3 and row["patients"] == "P01;P02;P05"
    assert row["n_fc"] == 1 and row["mean_fc"] == pytest.approx(2.5)
    assert np.isnan(row["sem_fc"])
    assert "P02, P05" in row["note"]
    assert _no_inf(stats)


def test_timecourse_columns_order_and_cohort():
    values = _study(np.random.default_rng(3), n=3)
    values["cohort"] = values["patient"].map({"P01": "A", "P02": "B", "P03": "A"})
    other = values.assign(measure="leukocytes_per_ul", value=values["value"] * 3)
    shuffled = pd.concat([values, other]).sample(frac=1.0, random_state=1)
    fc = fold_changes(shuffled, TPS)
    assert list(fc.columns) == [
        "patient",
        "cohort",
        "measure",
        "timepoint",
        "value",
        "baseline_value",
        "fold_change",
        "reason",
    ]
    assert fc["measure"].tolist() == ["leukocytes_per_ul"] * 18 + ["m"] * 18
    assert fc["timepoint"].tolist()[:6] == TPS  # timepoint order, not alphabetical
    assert fc["patient"].tolist()[:7] == ["P01"] * 6 + ["P02"]
    assert fc.loc[fc["patient"] == "P02", "cohort"].eq("B").all()
    assert "cohort" not in fold_changes(values.drop(columns="cohort"), TPS).columns
    assert len(fc) == len(shuffled)
    # shuffling the input rows changes nothing
    pd.testing.assert_frame_equal(fc, fold_changes(pd.concat([values, other]), TPS))
    stats = paired_statistics(shuffled, default_comparisons(TPS))
    pd.testing.assert_frame_equal(
        stats, paired_statistics(pd.concat([values, other]), default_comparisons(TPS))
    )
    assert list(stats.columns) == list(STATS_COLUMNS)
    assert stats["measure"].tolist() == ["leukocytes_per_ul"] * 9 + ["m"] * 9


def test_fold_changes_rejects_unknown_timepoints_and_duplicate_rows():
    values = _long({"P01": {"baseline": 1.0, "day3": 2.0, "7d": 3.0}})
    with pytest.raises(DesignError, match="7d"):
        fold_changes(values, TPS)
    dup = pd.concat([values, values.iloc[[0]]])
    with pytest.raises(DesignError, match="P01 / baseline / m"):
        paired_statistics(dup, DAY3)
    with pytest.raises(DesignError, match="value"):
        paired_statistics(values.drop(columns="value"), DAY3)
    with pytest.raises(ValueError, match="test"):
        paired_statistics(values, DAY3, test="t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="twice"):
        paired_statistics(values, DAY3 * 2)


def test_empty_values_give_empty_tables_with_the_columns():
    empty = pd.DataFrame(columns=["patient", "timepoint", "measure", "value"])
    stats = paired_statistics(empty, default_comparisons(TPS), correction="holm")
    assert stats.empty and list(stats.columns) == list(STATS_COLUMNS)
    fc = fold_changes(empty, TPS)
    assert fc.empty and "fold_change" in fc.columns


# --------------------------------------------------------------------------- undefined tests
@pytest.mark.parametrize("test", ["paired_t", "ratio_t", "wilcoxon"])
def test_one_pair_or_none_gives_nan_with_a_note(test):
    values = _long({"P01": {"baseline": 10.0, "day3": 30.0}, "P02": {"baseline": 12.0}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = paired_statistics(values, [*DAY3, Comparison("6h", "baseline")], test=test)
    one, none = stats.iloc[0], stats.iloc[1]
    assert one["n_pairs"] == 1 and one["patients"] == "P01"
    assert np.isnan(one["statistic"]) and np.isnan(one["p"]) and np.isnan(one["p_adj"])
    assert "n_pairs = 1 < 2" in one["note"] and one["stars"] == ""
    assert one["mean_fc"] == pytest.approx(3.0) and np.isnan(one["sem_fc"])
    assert none["n_pairs"] == 0 and none["patients"] == ""
    assert np.isnan(none["mean_fc"]) and np.isnan(none["mean_value"])
    assert "no complete pairs" in none["note"]


@pytest.mark.parametrize(
    ("test", "after", "note"),
    [
        ("paired_t", [11.0, 21.0, 31.0], "constant"),  # identical differences: t = d/0
        ("paired_t", [10.0, 20.0, 30.0], "zero"),
        ("ratio_t", [24.0, 48.0, 72.0], "constant"),  # exact ×2.4: log differences equal
        ("wilcoxon", [10.0, 20.0, 30.0], "zero"),
    ],
)
def test_degenerate_differences_give_nan_not_inf(test, after, note):
    values = _long(
        {
            f"P{i}": {"baseline": b, "day3": a}
            for i, (b, a) in enumerate(zip([10.0, 20.0, 30.0], after, strict=True))
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = paired_statistics(values, DAY3, test=test).iloc[0]
    assert row["n_pairs"] == 3
    assert np.isnan(row["statistic"]) and np.isnan(row["p"]) and row["stars"] == ""
    assert note in row["note"]


# --------------------------------------------------------------------------- corrections, stars
def test_holm_hand_example():
    assert adjust_pvalues([0.01, 0.04, 0.03], "holm") == pytest.approx([0.03, 0.06, 0.06])
    # NaN is left out of the family: m = 3 here, not 4 (which would give 0.04 first)
    out = adjust_pvalues([0.01, np.nan, 0.4, 0.03], "holm")
    assert out[[0, 2, 3]] == pytest.approx([0.03, 0.4, 0.06])
    assert np.isnan(out[1])
    # step-down with the running maximum, capped at 1
    assert adjust_pvalues([0.6, 0.7], "holm") == pytest.approx([1.0, 1.0])
    assert adjust_pvalues([0.01, 0.02, 0.04, 0.2], "holm") == pytest.approx([0.04, 0.06, 0.08, 0.2])
    assert adjust_pvalues([0.2, 0.04], "none") == pytest.approx([0.2, 0.04])


def _holm_by_definition(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    step = [min(1.0, (m - k) * p[order[k]]) for k in range(m)]
    adj = [0.0] * m
    for k, i in enumerate(order):
        adj[i] = max(step[: k + 1])
    return adj


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=15))
def test_holm_and_bh_properties(p):
    holm = adjust_pvalues(p, "holm")
    assert holm == pytest.approx(_holm_by_definition(p))
    assert np.all(holm >= np.asarray(p)) and np.all(holm <= 1.0)
    order = np.argsort(p, kind="mergesort")
    assert np.all(np.diff(holm[order]) >= 0)
    bh = adjust_pvalues(p, "bh")
    assert bh == pytest.approx(scipy.stats.false_discovery_control(p, method="bh"))
    assert np.all(bh <= holm + 1e-15)  # FDR control is never stricter than FWER control


def test_bh_hand_example():
    assert adjust_pvalues([0.01, 0.04, 0.03], "bh") == pytest.approx([0.03, 0.04, 0.04])
    got = adjust_pvalues([0.04, 0.005, 0.2, 0.03, 0.01], "bh")
    assert got == pytest.approx([0.05, 0.025, 0.2, 0.05, 0.025])


def test_correction_family_is_one_measure():
    rng = np.random.default_rng(9)
    values = pd.concat(
        [
            _study(rng, fold=1.3, sd=0.3, measure="blasts_per_ul"),
            _study(rng, fold=1.0, sd=0.3, measure="Ki67_pct_positive"),
        ]
    )
    comps = default_comparisons(TPS)
    raw = paired_statistics(values, comps)
    for method in ("holm", "bh"):
        stats = paired_statistics(values, comps, correction=method)
        assert (stats["correction"] == method).all()
        pd.testing.assert_series_equal(stats["p"], raw["p"])
        for measure, group in stats.groupby("measure"):
            assert len(group) == 9
            expected = adjust_pvalues(group["p"].to_numpy(), method)
            assert group["p_adj"].to_numpy() == pytest.approx(expected), measure
        # over all 18 p-values at once the result would differ: the family really is per measure
        pooled = adjust_pvalues(stats["p"].to_numpy(), method)
        assert not np.allclose(pooled, stats["p_adj"].to_numpy())
        assert stats["stars"].tolist() == [stars_for(p) for p in stats["p_adj"]]


def test_stars():
    assert [stars_for(p) for p in (0.0009, 0.001, 0.0099, 0.01, 0.049, 0.05, 0.7)] == [
        "***",
        "**",
        "**",
        "*",
        "*",
        "ns",
        "ns",
    ]
    assert stars_for(np.nan) == ""
    assert stars_for(0.04, alpha_stars=(0.1,)) == "*"


def test_measure_names_and_labels_do_not_depend_on_underscores_in_names():
    from cytogate.model.measure import Measure

    m = Measure.rmfi("cd45_negative", "CXCR4_12G5", "median")
    assert m.name == "cd45_negative_CXCR4_12G5_rmfi_median"
    assert m.label == "CXCR4 (12G5) RMFI on cd45_negative"
    assert Measure.per_ul("cd45_negative").label == "Cd45_negative /µL"
    assert Measure.pct_positive("cd45_negative", "Ki67").name == "cd45_negative_Ki67_pct_positive"
    with pytest.raises(ValueError, match="needs a marker"):
        Measure(kind="rmfi", population="blasts", statistic="median")


def test_n_patients_is_per_measure_under_partial_panels():
    """A measure some patients' panels lack has its own n; each comparison uses its pairs."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(6):
        for tp in ("baseline", "day3"):
            rows.append(
                {"patient": f"P{i}", "timepoint": tp, "measure": "full", "value": 1 + rng.random()}
            )
            # 'partial' exists only for P0-P3; P3 has only its baseline value
            if i < 3 or (i == 3 and tp == "baseline"):
                rows.append(
                    {
                        "patient": f"P{i}",
                        "timepoint": tp,
                        "measure": "partial",
                        "value": 1 + rng.random(),
                    }
                )
            elif i == 4:  # a row with a NaN value counts as missing, not measured
                rows.append(
                    {"patient": f"P{i}", "timepoint": tp, "measure": "partial", "value": np.nan}
                )
    out = paired_statistics(pd.DataFrame(rows), [Comparison("day3", "baseline")])
    by = out.set_index("measure")
    assert by.loc["full", "n_patients"] == 6 and by.loc["full", "n_pairs"] == 6
    assert by.loc["partial", "n_patients"] == 4 and by.loc["partial", "n_pairs"] == 3
    assert list(out.columns)[-1] == "n_patients"
