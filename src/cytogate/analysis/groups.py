"""Comparisons between patient groups (e.g. induction regimens): summaries and unpaired tests.

Per group and measure: n, mean, SD (ddof 1), median and IQR (numpy's linear quantiles). Two
groups: Welch's t-test and the two-sided Mann–Whitney U test (scipy). More groups:
Kruskal–Wallis, then pairwise Mann–Whitney with Holm's correction. Collection failure per
group: the rate and Fisher's exact test — scipy's for 2 groups, the Freeman–Halton extension
(exact, by enumerating every 2×k table with the same margins) for more, since scipy has no r×c
exact test. Paired (within-patient) statistics are in :mod:`cytogate.analysis.stats`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from cytogate.analysis.stats import adjust_pvalues

NAN = float("nan")
#: groups.csv columns, in order
GROUP_COLUMNS = [
    "section", "measure", "group", "group_b", "n", "mean", "sd", "median", "q1", "q3",
    "failures", "failure_rate", "test", "statistic", "p_value", "p_holm", "note",
]  # fmt: skip
#: enumeration limit of the exact 2×k test (number of candidate tables)
MAX_TABLES = 5_000_000


def summarise(values: np.ndarray) -> dict[str, float]:
    """n, mean, SD, median, quartiles of the finite values."""
    v = values[np.isfinite(values)]
    if not v.size:
        return {"n": 0, "mean": NAN, "sd": NAN, "median": NAN, "q1": NAN, "q3": NAN}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else NAN,
        "median": float(med),
        "q1": float(q1),
        "q3": float(q3),
    }


def fisher_exact_2xk(failures: Sequence[int], totals: Sequence[int]) -> float:
    """Two-sided exact p of a 2×k table (Freeman–Halton): failures vs the rest per group.

    Sums the probabilities (multivariate hypergeometric, margins fixed) of every table no more
    probable than the observed one, with scipy's relative tolerance 1e-7; for k = 2 this is
    ``scipy.stats.fisher_exact``.
    """
    x = np.asarray(failures, dtype=int)
    n = np.asarray(totals, dtype=int)
    if np.any(x < 0) or np.any(x > n):
        raise ValueError("failures must lie between 0 and the group sizes")
    if math.prod(int(k) + 1 for k in n) > MAX_TABLES:
        raise ValueError(f"2×k exact test: more than {MAX_TABLES:,} tables to enumerate")
    total_f = int(x.sum())
    grids = np.meshgrid(*[np.arange(k + 1) for k in n], indexing="ij")
    tables = np.stack([g.ravel() for g in grids], axis=1)
    tables = tables[tables.sum(axis=1) == total_f]

    def logp(t: np.ndarray) -> np.ndarray:
        return (special.gammaln(n + 1) - special.gammaln(t + 1) - special.gammaln(n - t + 1)).sum(
            axis=-1
        )

    log_all = logp(tables)
    log_obs = logp(x)
    norm = special.logsumexp(log_all)
    keep = log_all <= log_obs + math.log1p(1e-7)
    return float(min(1.0, np.exp(special.logsumexp(log_all[keep]) - norm)))


def _test_rows(measure: str, data: dict[str, np.ndarray]) -> list[dict[str, object]]:
    names = [g for g, v in data.items() if v.size]
    rows: list[dict[str, object]] = []

    def row(test: str, a: str, b: str, stat: float, p: float, note: str = "") -> dict[str, object]:
        return {
            "section": "test",
            "measure": measure,
            "group": a,
            "group_b": b,
            "test": test,
            "statistic": stat,
            "p_value": p,
            "note": note,
        }

    if len(names) < 2:
        return rows
    small = [g for g in names if data[g].size < 2]
    note = f"fewer than 2 values in {', '.join(small)}" if small else ""
    if len(names) == 2:
        a, b = names
        x, y = data[a], data[b]
        if small:
            return [row(t, a, b, NAN, NAN, note) for t in ("welch_t", "mann_whitney")]
        t = stats.ttest_ind(x, y, equal_var=False)
        u = stats.mannwhitneyu(x, y, alternative="two-sided")
        return [
            row("welch_t", a, b, float(t.statistic), float(t.pvalue)),
            row("mann_whitney", a, b, float(u.statistic), float(u.pvalue)),
        ]
    h = stats.kruskal(*[data[g] for g in names])
    rows.append(row("kruskal_wallis", "all", "", float(h.statistic), float(h.pvalue)))
    pairs = []
    for a, b in itertools.combinations(names, 2):
        u = stats.mannwhitneyu(data[a], data[b], alternative="two-sided")
        pairs.append(row("mann_whitney", a, b, float(u.statistic), float(u.pvalue)))
    adjusted = adjust_pvalues([float(r["p_value"]) for r in pairs], "holm")  # type: ignore[arg-type]
    for r, p in zip(pairs, adjusted, strict=True):
        r["p_holm"] = float(p)
    return rows + pairs


def compare_groups(
    patients: pd.DataFrame,
    measures: Sequence[str],
    group_column: str = "cohort",
    failure_column: str | None = "collection_failure",
) -> pd.DataFrame:
    """The groups table (columns :data:`GROUP_COLUMNS`), one patient per row of ``patients``.

    Rows: ``summary`` per group and measure; ``test`` per measure (see the module doc);
    ``failure`` per group (failures, rate; patients with an undecided outcome left out) and one
    ``failure_test`` row (``fisher_exact`` for 2 groups, ``fisher_freeman_halton`` for more).
    """
    groups = sorted(str(g) for g in patients[group_column].dropna().unique())
    rows: list[dict[str, object]] = []
    for measure in measures:
        data = {
            g: patients.loc[patients[group_column] == g, measure].to_numpy(dtype=float)
            for g in groups
        }
        data = {g: v[np.isfinite(v)] for g, v in data.items()}
        for g in groups:
            rows.append(
                {"section": "summary", "measure": measure, "group": g, **summarise(data[g])}
            )
        rows += _test_rows(measure, data)
    if failure_column is not None and failure_column in patients:
        decided = patients[patients[failure_column].notna()]
        fails, totals = [], []
        for g in groups:
            outcome = decided.loc[decided[group_column] == g, failure_column].astype(bool)
            fails.append(int(outcome.sum()))
            totals.append(int(outcome.size))
            rate = fails[-1] / totals[-1] if totals[-1] else NAN
            rows.append(
                {
                    "section": "failure",
                    "measure": failure_column,
                    "group": g,
                    "n": totals[-1],
                    "failures": fails[-1],
                    "failure_rate": rate,
                }
            )
        used = [i for i, t in enumerate(totals) if t]
        if len(used) >= 2:
            f, t = [fails[i] for i in used], [totals[i] for i in used]
            if len(used) == 2:
                table = [[f[0], t[0] - f[0]], [f[1], t[1] - f[1]]]
                test, p = "fisher_exact", float(stats.fisher_exact(table).pvalue)
                a, b = groups[used[0]], groups[used[1]]
            else:
                test, p, a, b = "fisher_freeman_halton", fisher_exact_2xk(f, t), "all", ""
            rows.append(
                {
                    "section": "failure_test",
                    "measure": failure_column,
                    "group": a,
                    "group_b": b,
                    "test": test,
                    "p_value": p,
                }
            )
    table = pd.DataFrame(rows, columns=GROUP_COLUMNS)
    return table.astype({"n": "Int64", "failures": "Int64"})
