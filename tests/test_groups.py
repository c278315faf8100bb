"""Group comparisons: every number checked against numpy/scipy called on the same values."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cytogate.analysis.groups import compare_groups, fisher_exact_2xk, summarise

A = [128.0, 95.5, 160.2, 140.0, 88.1]
B = [62.8, 40.1, 75.3, 51.0]
C = [24.9, 18.2, 30.5, 12.0, 27.7, 22.0]


def _patients(groups: dict[str, list[float]], failures: dict[str, list[bool]]) -> pd.DataFrame:
    rows = []
    for g, values in groups.items():
        for i, v in enumerate(values):
            rows.append({"patient": f"{g}{i}", "cohort": g, "blood": v,
                         "collection_failure": failures[g][i]})  # fmt: skip
    return pd.DataFrame(rows)


def test_summary_matches_numpy():
    s = summarise(np.array([*A, np.nan]))
    assert s["n"] == 5
    assert s["mean"] == pytest.approx(np.mean(A))
    assert s["sd"] == pytest.approx(np.std(A, ddof=1))
    assert s["median"] == pytest.approx(np.median(A))
    assert (s["q1"], s["q3"]) == pytest.approx(tuple(np.percentile(A, [25, 75])))


def test_two_groups_welch_and_mann_whitney_as_scipy():
    fails = {"A": [False] * 5, "B": [True, False, True, False]}
    table = compare_groups(_patients({"A": A, "B": B}, fails), ["blood"])
    tests = table[table["section"] == "test"].set_index("test")
    t = stats.ttest_ind(A, B, equal_var=False)
    u = stats.mannwhitneyu(A, B, alternative="two-sided")
    assert tests.loc["welch_t", "statistic"] == pytest.approx(t.statistic)
    assert tests.loc["welch_t", "p_value"] == pytest.approx(t.pvalue)
    assert tests.loc["mann_whitney", "p_value"] == pytest.approx(u.pvalue)
    assert t.statistic > 0  # A higher than B: the direction is kept (A listed first)
    failure = table[table["section"] == "failure"].set_index("group")
    assert failure.loc["B", "failures"] == 2 and failure.loc["B", "failure_rate"] == 0.5
    f = table[table["section"] == "failure_test"].iloc[0]
    assert f["test"] == "fisher_exact"
    assert f["p_value"] == pytest.approx(stats.fisher_exact([[0, 5], [2, 2]]).pvalue)


def test_three_groups_kruskal_and_holm_pairwise():
    fails = {"A": [False] * 5, "B": [True, False, False, False], "C": [True] * 3 + [False] * 3}
    table = compare_groups(_patients({"A": A, "B": B, "C": C}, fails), ["blood"])
    tests = table[table["section"] == "test"]
    kw = tests[tests["test"] == "kruskal_wallis"].iloc[0]
    h = stats.kruskal(A, B, C)
    assert kw["statistic"] == pytest.approx(h.statistic)
    assert kw["p_value"] == pytest.approx(h.pvalue)
    pairs = tests[tests["test"] == "mann_whitney"]
    raw = [stats.mannwhitneyu(x, y, alternative="two-sided").pvalue
           for x, y in itertools.combinations([A, B, C], 2)]  # fmt: skip
    assert list(pairs["p_value"]) == pytest.approx(raw)
    # Holm by hand: sort ascending, multiply by (m - rank), running max, cap at 1
    order = np.argsort(raw)
    holm = np.empty(3)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[i]))
        holm[i] = running
    assert list(pairs["p_holm"]) == pytest.approx(list(holm))
    f = table[table["section"] == "failure_test"].iloc[0]
    assert f["test"] == "fisher_freeman_halton"
    assert f["p_value"] == pytest.approx(_brute_force_2xk([0, 1, 3], [5, 4, 6]))


def _brute_force_2xk(failures: list[int], totals: list[int]) -> float:
    """Freeman–Halton by scipy's multivariate hypergeometric pmf over every table."""
    total = sum(failures)
    p_obs = stats.multivariate_hypergeom.pmf(failures, totals, total)
    p = 0.0
    for t in itertools.product(*[range(n + 1) for n in totals]):
        if sum(t) == total:
            q = stats.multivariate_hypergeom.pmf(list(t), totals, total)
            if q <= p_obs * (1 + 1e-7):
                p += q
    return p


@pytest.mark.parametrize(
    ("failures", "totals"), [([1, 5], [10, 10]), ([0, 3], [8, 4]), ([2, 2], [5, 9])]
)
def test_fisher_2xk_is_scipy_fisher_for_two_groups(failures, totals):
    table = [[failures[0], totals[0] - failures[0]], [failures[1], totals[1] - failures[1]]]
    assert fisher_exact_2xk(failures, totals) == pytest.approx(stats.fisher_exact(table).pvalue)


def test_fisher_2xk_against_brute_force_for_three_and_four_groups():
    for failures, totals in (([1, 3, 6], [10, 10, 10]), ([0, 2, 1, 4], [5, 6, 4, 7])):
        assert fisher_exact_2xk(failures, totals) == pytest.approx(
            _brute_force_2xk(failures, totals)
        )


def test_a_group_too_small_for_a_test_is_said():
    fails = {"A": [False] * 5, "B": [False]}
    table = compare_groups(_patients({"A": A, "B": [50.0]}, fails), ["blood"])
    tests = table[table["section"] == "test"]
    assert tests["p_value"].isna().all()
    assert (tests["note"] == "fewer than 2 values in B").all()
