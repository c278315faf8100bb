"""Fold changes from baseline and paired statistics across timepoints (docs/architecture.md §5, §6).

Input is the long per-patient "values" table the aggregation step produces: columns
``patient``, ``timepoint``, ``measure``, ``value`` and optionally ``reason`` (why a value is NaN)
and ``cohort``; one row per patient × timepoint × measure. A patient may lack a timepoint
entirely (no row) or have a NaN value there; both count as *missing*.

Two tables come out:

* :func:`fold_changes` → ``timecourse.csv``: every value with its patient's baseline value and
  ``fold_change = value / baseline_value``. Where that ratio is undefined the fold change is NaN
  and ``reason`` says why — never ``inf``, because one infinite fold change turns every mean,
  plot axis and downstream test it touches into nonsense without an error.
* :func:`paired_statistics` → ``stats.csv``: per measure × :class:`Comparison`, the fold-change
  summary over complete pairs and a paired test (paired t on the raw values as in the study, a
  ratio t on log values, or Wilcoxon signed-rank), optionally corrected for multiple comparisons
  within each measure, with significance stars.

Choices made here, and why:

* **Per-measure n.** ``n_patients`` counts the patients with a value of the measure at any
  timepoint; with partial panels (a marker some patients' tubes lack) measures differ in n,
  and each comparison's ``n_pairs`` is at most that.
* **Complete pairs only.** A patient enters a comparison only when both of its values are present
  and finite, so each test is truly paired; ``n_pairs`` and ``patients`` say exactly who was used,
  and ``note`` names the patients that had only one of the two values. A patient missing one
  timepoint drops out of the comparisons that need that timepoint only.
* **Fold changes need a positive reference.** ``value / reference`` is a ratio only when the
  reference is > 0; a zero reference would give ``inf`` and a negative one a meaningless sign.
  For ``paired_t`` and ``wilcoxon`` (tests on raw values) a pair with a non-positive reference
  still enters the test but not the fold-change summary, so the row carries ``n_fc`` (pairs in
  ``mean_fc``/``sem_fc``/``median_fc``) next to ``n_pairs`` and the note names who was left out.
  ``ratio_t`` needs both values > 0 (it takes logs), so there the pairs are the same.
* **Undefined tests give NaN, never an exception or inf**: fewer than 2 pairs; all differences
  zero; or differences constant (zero variance, where the t statistic is ±inf or 0/0). Constant
  is judged to 12 significant digits (``ptp(d) <= 1e-12 * max|d|``) because an exact planted
  ratio, after floating-point logs, differs by rounding only and scipy would report an
  astronomically large t that is an artefact of that rounding.
* **Wilcoxon zero differences**: ``zero_method="wilcox"`` (scipy's default and the classical
  signed-rank test): pairs with a zero difference are dropped from the ranking; ``n_pairs``
  still counts them (they are complete pairs and enter the fold-change summary) and the note says
  how many were dropped. All differences zero → NaN. The statistic is scipy's two-sided one,
  min(W+, W−), with ``method="auto"``: the exact null distribution without ties or zeros; with
  ties or zeros and n <= 13, scipy's permutation test over all 2**n sign flips (deterministic,
  but ~1 s at n = 12); beyond that the normal approximation.
* **Correction family = one measure's comparisons** (those with a finite p). Each measure is its
  own question (do blasts mobilise? does 12G5 binding fall?) and is reported as its own figure
  panel; correcting across measures would make a measure's p-values depend on how many other
  measures the run happened to quantify. Holm (step-down, family-wise error) is implemented
  here; BH uses ``scipy.stats.false_discovery_control``.
* **Deterministic order**: measures and patients sorted (as strings), timepoints in the given
  order, comparisons in the given order. Sorting rather than first appearance makes the output
  independent of the order in which parallel workers delivered the per-sample rows.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from cytogate.errors import DesignError

Test = Literal["paired_t", "ratio_t", "wilcoxon"]
Correction = Literal["none", "holm", "bh"]

TESTS: tuple[str, ...] = get_args(Test)
CORRECTIONS: tuple[str, ...] = get_args(Correction)

KEYS = ("patient", "timepoint", "measure")

#: Columns of :func:`fold_changes` (``cohort`` only when the input has it).
TIMECOURSE_COLUMNS = (
    "patient",
    "cohort",
    "measure",
    "timepoint",
    "value",
    "baseline_value",
    "fold_change",
    "reason",
)

#: Columns of :func:`paired_statistics`, in order.
STATS_COLUMNS = (
    "measure",
    "comparison",
    "timepoint",
    "reference",
    "n_pairs",
    "patients",
    "n_fc",
    "mean_fc",
    "sem_fc",
    "median_fc",
    "mean_reference",
    "mean_value",
    "test",
    "statistic",
    "p",
    "correction",
    "p_adj",
    "stars",
    "note",
    "n_patients",
)

# Columns filled after the per-measure correction (or per measure), not by _compare.
_DERIVED = frozenset({"correction", "p_adj", "stars", "n_patients"})

# Relative spread below which paired differences count as constant (see module docstring).
_CONSTANT_RTOL = 1e-12


@dataclass(frozen=True)
class Comparison:
    """One paired comparison: values at ``timepoint`` against values at ``reference``.

    The fold change of a patient is value(timepoint) / value(reference), so ``reference`` is the
    denominator — ``baseline`` for "effect of treatment so far", the previous timepoint for
    "what changed since the last draw".
    """

    timepoint: str
    reference: str

    def __post_init__(self) -> None:
        if self.timepoint == self.reference:
            raise ValueError(f"a comparison needs two different timepoints, got {self.label!r}")

    @property
    def label(self) -> str:
        """``"6h vs baseline"``: the ``comparison`` column of the stats table."""
        return f"{self.timepoint} vs {self.reference}"


def default_comparisons(timepoints: Sequence[str], baseline: str = "baseline") -> list[Comparison]:
    """Every timepoint vs ``baseline``, then each consecutive pair, in timepoint order.

    These are the two questions of a mobilisation timecourse: how far has each timepoint moved
    from the untreated state, and what changed between consecutive draws. The first consecutive
    pair (``day3 vs baseline``) is already a vs-baseline comparison and is not repeated, so a
    correction family does not count it twice. For the study's six timepoints that is 5 + 4 = 9.
    """
    tps = _check_timepoints(timepoints, baseline)
    out = [Comparison(tp, baseline) for tp in tps if tp != baseline]
    seen = {frozenset((c.timepoint, c.reference)) for c in out}
    for prev, tp in itertools.pairwise(tps):
        if frozenset((tp, prev)) not in seen:
            out.append(Comparison(tp, prev))
            seen.add(frozenset((tp, prev)))
    return out


# --------------------------------------------------------------------------- input
def _check_timepoints(timepoints: Sequence[str], baseline: str) -> list[str]:
    if isinstance(timepoints, str):
        raise TypeError("timepoints must be a sequence of names, not one string")
    tps = [str(t) for t in timepoints]
    dupes = sorted({t for t in tps if tps.count(t) > 1})
    if dupes:
        raise ValueError(f"timepoints listed twice: {', '.join(dupes)}")
    if baseline not in tps:
        raise ValueError(f"baseline {baseline!r} is not among the timepoints {tps}")
    return tps


def _prepare(values: pd.DataFrame) -> pd.DataFrame:
    """Validate the values table; return a copy with string keys, float values and ``missing``.

    ``missing`` is "" for a finite value and otherwise the description used in reasons: the
    input ``reason`` if given, "infinite value" for ±inf (which is then stored as NaN so that no
    inf reaches an output), or "" for an unexplained NaN.
    """
    absent = [c for c in (*KEYS, "value") if c not in values.columns]
    if absent:
        raise DesignError(
            f"values table lacks column(s) {', '.join(absent)}; "
            f"it has {', '.join(map(str, values.columns))}"
        )
    df = values.copy()
    for key in KEYS:
        if df[key].isna().any():
            rows = df.index[df[key].isna()].tolist()[:5]
            raise DesignError(f"values table: empty {key!r} in row(s) {rows}")
        df[key] = df[key].astype(str)
    try:
        df["value"] = pd.to_numeric(df["value"], errors="raise").astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DesignError(f"values table: non-numeric 'value': {exc}") from exc
    dup = df.duplicated(list(KEYS), keep=False)
    if dup.any():
        first = df.loc[dup, list(KEYS)].drop_duplicates().head(5)
        listed = "; ".join(" / ".join(r) for r in first.itertuples(index=False, name=None))
        raise DesignError(f"values table: several rows for patient / timepoint / measure {listed}")

    if "reason" in df.columns:
        reason = df["reason"].astype(object).where(df["reason"].notna(), "").astype(str)
    else:
        reason = pd.Series("", index=df.index)
    v = df["value"].to_numpy()
    inf = np.isinf(v)
    missing = np.where(np.isfinite(v), "", reason.to_numpy(dtype=object))
    missing = np.where(inf & (reason.to_numpy(dtype=object) == ""), "infinite value", missing)
    df["missing"] = missing.astype(str)
    df.loc[inf, "value"] = np.nan
    return df


def _with_detail(what: str, detail: str) -> str:
    return f"{what}: {detail}" if detail else what


def _details(what: str, details: np.ndarray) -> np.ndarray:
    """``_with_detail`` over an array of details (a reason per row)."""
    text = details.astype(str)
    with_detail = np.char.add(f"{what}: ", text).astype(object)
    return np.where(text != "", with_detail, what).astype(object)


# --------------------------------------------------------------------------- fold changes
def fold_changes(
    values: pd.DataFrame, timepoints: Sequence[str], baseline: str = "baseline"
) -> pd.DataFrame:
    """The timecourse table: each value with its patient's baseline and the fold change.

    One row per patient × measure × timepoint present in ``values`` (rows are not invented for
    absent timepoints — absence is visible in the stats table's ``n_pairs``). Columns:
    ``patient``, ``cohort`` (if the input has it), ``measure``, ``timepoint``, ``value``,
    ``baseline_value``, ``fold_change``, ``reason``.

    ``fold_change = value / baseline_value`` for the same patient and measure (1 at baseline).
    When undefined it is NaN and ``reason`` says why, first cause first: ``"value missing"`` (or
    ``"value missing: <input reason>"``), ``"no baseline"`` (no baseline row),
    ``"baseline missing[: <reason>]"``, ``"baseline is 0"``, ``"baseline is negative"``.
    ``reason`` is "" where the fold change is defined. ±inf inputs are treated as missing, so no
    output column holds inf.

    Rows are sorted by measure, patient (both as strings) and the order of ``timepoints``; a
    timepoint in ``values`` that is not in ``timepoints`` is a :class:`DesignError`, because it
    could not be placed in the timecourse.
    """
    tps = _check_timepoints(timepoints, baseline)
    df = _prepare(values)
    unknown = sorted(set(df["timepoint"]) - set(tps))
    if unknown:
        raise DesignError(
            f"values table has timepoint(s) {', '.join(unknown)} not in the timepoints {tps}"
        )
    has_cohort = "cohort" in df.columns

    base = df.loc[df["timepoint"] == baseline, ["patient", "measure", "value", "missing"]]
    base = base.rename(columns={"value": "baseline_value", "missing": "baseline_missing"})
    base["has_baseline"] = True
    merged = df.merge(base, on=["patient", "measure"], how="left", validate="many_to_one")
    has_base = merged["has_baseline"].eq(True).to_numpy(dtype=bool)

    v = merged["value"].to_numpy(dtype=np.float64)
    b = merged["baseline_value"].to_numpy(dtype=np.float64)
    vmiss = merged["missing"].to_numpy(dtype=object)
    bmiss = merged["baseline_missing"].fillna("").to_numpy(dtype=object)

    # first cause first, as one vectorised choice over the rows
    no_value = ~np.isfinite(v)
    no_base = ~no_value & ~has_base
    base_missing = ~no_value & has_base & ~np.isfinite(b)
    usable = ~(no_value | no_base | base_missing)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.where(usable & (b > 0), v / np.where(usable & (b > 0), b, 1.0), np.nan)
    zero, negative = usable & (b == 0), usable & (b < 0)
    overflow = usable & (b > 0) & ~np.isfinite(ratio)  # a huge value over a tiny baseline
    fc = np.where(usable & (b > 0) & np.isfinite(ratio), ratio, np.nan)
    detail = [
        (no_value, _details("value missing", vmiss)),
        (no_base, "no baseline"),
        (base_missing, _details("baseline missing", bmiss)),
        (zero, "baseline is 0"),
        (negative, "baseline is negative"),
        (overflow, "fold change overflows"),
    ]
    reason = np.select(
        [mask for mask, _ in detail], [np.asarray(text, dtype=object) for _, text in detail], ""
    ).astype(object)

    cols = {"patient": merged["patient"]}
    if has_cohort:
        cols["cohort"] = merged["cohort"]
    out = pd.DataFrame(
        {
            **cols,
            "measure": merged["measure"],
            "timepoint": merged["timepoint"],
            "value": v,
            "baseline_value": b,
            "fold_change": fc,
            "reason": reason.astype(str),
        }
    )
    order = {tp: i for i, tp in enumerate(tps)}
    out["_tp"] = out["timepoint"].map(order)
    out = out.sort_values(["measure", "patient", "_tp"], kind="mergesort")
    return out.drop(columns="_tp").reset_index(drop=True)


# --------------------------------------------------------------------------- corrections
def adjust_pvalues(p: Sequence[float] | np.ndarray, method: Correction) -> np.ndarray:
    """Multiple-comparison adjusted p-values over the finite entries of ``p`` (one family).

    NaN entries (comparisons without a test) stay NaN and do not count towards the family size.

    * ``"none"``: ``p`` unchanged.
    * ``"holm"``: Holm–Bonferroni step-down. With the m finite p sorted ascending,
      ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) * p(j))`` (1-based) — the running maximum
      keeps the adjusted values in the order of the raw ones. Controls the family-wise error rate
      without Bonferroni's loss of power; scipy has no implementation.
    * ``"bh"``: Benjamini–Hochberg false-discovery-rate adjustment,
      ``scipy.stats.false_discovery_control(p, method="bh")``.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("p must be one-dimensional")
    out = arr.copy()
    finite = np.isfinite(arr)
    if np.any((arr[finite] < 0) | (arr[finite] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    out[~finite] = np.nan
    ps = arr[finite]
    if method == "none" or ps.size == 0:
        return out
    if method == "holm":
        m = ps.size
        order = np.argsort(ps, kind="mergesort")
        scaled = np.minimum(1.0, (m - np.arange(m)) * ps[order])
        adj = np.empty(m)
        adj[order] = np.maximum.accumulate(scaled)
    else:
        from scipy.stats import false_discovery_control

        adj = false_discovery_control(ps, method="bh")
    out[finite] = adj
    return out


def stars_for(p_adj: float, alpha_stars: Sequence[float] = (0.05, 0.01, 0.001)) -> str:
    """``"***"``/``"**"``/``"*"`` for each threshold ``p_adj`` is below, ``"ns"``, or "" for NaN."""
    if not np.isfinite(p_adj):
        return ""
    n = sum(p_adj < a for a in alpha_stars)
    return "*" * n if n else "ns"


# --------------------------------------------------------------------------- paired tests
def _is_constant(d: np.ndarray) -> bool:
    return bool(np.ptp(d) <= _CONSTANT_RTOL * np.max(np.abs(d)))


def _run_test(test: str, x: np.ndarray, ref: np.ndarray) -> tuple[float, float, list[str]]:
    """(statistic, p, notes) of ``test`` on complete pairs ``x`` (timepoint) vs ``ref``."""
    n = x.size
    if n < 2:
        return np.nan, np.nan, [f"n_pairs = {n} < 2: no test"]
    if test == "wilcoxon":
        from scipy.stats import wilcoxon

        d = x - ref
        zeros = int(np.count_nonzero(d == 0))
        if zeros == n:
            return np.nan, np.nan, ["all differences are zero: signed-rank test undefined"]
        notes = [f"{zeros} zero difference(s) dropped (zero_method='wilcox')"] if zeros else []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = wilcoxon(x, ref, zero_method="wilcox", alternative="two-sided")
    else:
        from scipy.stats import ttest_rel

        a, b = (np.log(x), np.log(ref)) if test == "ratio_t" else (x, ref)
        d = a - b
        if _is_constant(d):
            what = "log differences" if test == "ratio_t" else "differences"
            if np.all(d == 0):
                return np.nan, np.nan, [f"all {what} are zero: t undefined"]
            return np.nan, np.nan, [f"{what} are constant (zero variance): t undefined"]
        notes = []
        res = ttest_rel(a, b)
    stat, p = float(res.statistic), float(res.pvalue)
    if not (np.isfinite(stat) and np.isfinite(p)):
        return np.nan, np.nan, [*notes, "test gave a non-finite result"]
    return stat, p, notes


def _ids(patients: np.ndarray, mask: np.ndarray) -> str:
    return ", ".join(patients[mask])


def _compare(
    measure: str,
    patients: np.ndarray,
    by_timepoint: Mapping[str, np.ndarray],
    comp: Comparison,
    test: str,
) -> dict[str, object]:
    """One stats row. ``by_timepoint[tp]`` holds the measure's values aligned with ``patients``."""
    nan = np.full(len(patients), np.nan)
    x = by_timepoint.get(comp.timepoint, nan)
    r = by_timepoint.get(comp.reference, nan)
    has_x, has_r = np.isfinite(x), np.isfinite(r)
    notes: list[str] = []
    if np.any(has_x & ~has_r):
        notes.append(f"no {comp.reference} value: {_ids(patients, has_x & ~has_r)}")
    if np.any(has_r & ~has_x):
        notes.append(f"no {comp.timepoint} value: {_ids(patients, has_r & ~has_x)}")
    pair = has_x & has_r
    if test == "ratio_t":
        nonpos = pair & ((x <= 0) | (r <= 0))
        if nonpos.any():
            notes.append(f"excluded, value <= 0 (log undefined): {_ids(patients, nonpos)}")
        pair &= ~nonpos
    if not pair.any():
        notes.append("no complete pairs")

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = x / r
    fc_mask = pair & (r > 0) & np.isfinite(ratio)
    if np.any(pair & ~fc_mask):
        notes.append(
            f"fold change undefined ({comp.reference} <= 0), not in mean_fc: "
            f"{_ids(patients, pair & ~fc_mask)}"
        )
    fc = ratio[fc_mask]
    xs, rs = x[pair], r[pair]
    stat, p, test_notes = _run_test(test, xs, rs)
    notes.extend(test_notes)

    # scipy.stats.sem(fc, ddof=1), written out: the same formula without scipy's per-call cost
    sem_fc = float(np.std(fc, ddof=1) / np.sqrt(fc.size)) if fc.size >= 2 else np.nan
    return {
        "measure": measure,
        "comparison": comp.label,
        "timepoint": comp.timepoint,
        "reference": comp.reference,
        "n_pairs": int(pair.sum()),
        "patients": ";".join(patients[pair]),
        "n_fc": int(fc.size),
        "mean_fc": float(fc.mean()) if fc.size else np.nan,
        "sem_fc": sem_fc,
        "median_fc": float(np.median(fc)) if fc.size else np.nan,
        "mean_reference": float(rs.mean()) if rs.size else np.nan,
        "mean_value": float(xs.mean()) if xs.size else np.nan,
        "test": test,
        "statistic": stat,
        "p": p,
        "note": "; ".join(notes),
    }


def paired_statistics(
    values: pd.DataFrame,
    comparisons: Sequence[Comparison],
    test: Test = "paired_t",
    correction: Correction = "none",
    alpha_stars: Sequence[float] = (0.05, 0.01, 0.001),
) -> pd.DataFrame:
    """Paired statistics per measure × comparison over complete pairs (the ``stats.csv`` table).

    Columns (:data:`STATS_COLUMNS`): ``measure``, ``comparison`` (label), ``timepoint``,
    ``reference``, ``n_pairs``, ``patients`` (";"-joined ids of the pairs used), ``n_fc`` (pairs
    with a defined fold change, i.e. reference > 0), ``mean_fc``, ``sem_fc`` (standard error,
    ddof=1), ``median_fc`` of the per-patient value(timepoint)/value(reference),
    ``mean_reference``, ``mean_value`` (raw values over the ``n_pairs`` pairs), ``test``,
    ``statistic``, ``p``, ``correction``, ``p_adj``, ``stars``, ``note``, ``n_patients``
    (patients with a finite value of the measure at any timepoint: the measure's n, which
    differs between measures when panels are partial; figures label a measure with it).

    Tests: ``paired_t`` = ``scipy.stats.ttest_rel(value_t, value_ref)`` on the raw values (the
    study's test); ``ratio_t`` = the same on log values, for multiplicative effects (pairs with a
    value <= 0 excluded and named in ``note``); ``wilcoxon`` = ``scipy.stats.wilcoxon(value_t,
    value_ref)``, two-sided, zero differences dropped (see module docstring).

    ``p_adj`` corrects ``p`` within each measure's comparisons (see :func:`adjust_pvalues`);
    ``stars`` count the ``alpha_stars`` thresholds ``p_adj`` is below ("ns" if none, "" when there
    is no p). An undefined test gives NaN statistic and p with the reason in ``note``. Rows:
    measures sorted, comparisons in the given order. ``values`` may also be a
    :func:`fold_changes` table (only its key and ``value`` columns are read).
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    alphas = tuple(float(a) for a in alpha_stars)
    if not alphas or any(not 0 < a < 1 for a in alphas):
        raise ValueError(f"alpha_stars must be thresholds in (0, 1), got {alpha_stars!r}")
    comps = list(comparisons)
    if any(not isinstance(c, Comparison) for c in comps):
        raise TypeError("comparisons must be Comparison objects")
    labels = [c.label for c in comps]
    dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dupes:
        raise ValueError(
            f"comparison(s) listed twice: {', '.join(dupes)} (they would inflate the correction)"
        )

    df = _prepare(values)
    # One patients × timepoints block per measure, sliced out of a single sorted pivot as plain
    # arrays: a per-measure pandas selection would cost more than the tests themselves.
    wide = df.pivot(index=["measure", "patient"], columns="timepoint", values="value").sort_index()
    table = wide.to_numpy(dtype=np.float64)
    measure_of = wide.index.get_level_values("measure").to_numpy(dtype=str)
    patient_of = wide.index.get_level_values("patient").to_numpy(dtype=str)
    measures, starts = np.unique(measure_of, return_index=True)
    stops = [*starts[1:], len(measure_of)][: len(starts)]  # no measures: no blocks
    rows: list[dict[str, object]] = []
    measured: list[int] = []  # per row: patients with a value of its measure at any timepoint
    for measure, start, stop in zip(measures, starts, stops, strict=True):
        block = {tp: table[start:stop, j] for j, tp in enumerate(wide.columns)}
        patients = patient_of[start:stop]
        rows.extend(_compare(str(measure), patients, block, comp, test) for comp in comps)
        n_measured = int(np.isfinite(table[start:stop]).any(axis=1).sum())
        measured += [n_measured] * len(comps)

    out = pd.DataFrame(rows, columns=[c for c in STATS_COLUMNS if c not in _DERIVED])
    out["correction"] = correction
    p_adj = np.full(len(out), np.nan)
    for _, idx in out.groupby("measure", sort=False).indices.items():
        p_adj[idx] = adjust_pvalues(out["p"].to_numpy(dtype=np.float64)[idx], correction)
    out["p_adj"] = p_adj
    out["stars"] = [stars_for(p, alphas) for p in p_adj]
    out["n_patients"] = np.asarray(measured, dtype=np.int64)
    out = out[list(STATS_COLUMNS)]
    return out.astype({"n_pairs": np.int64, "n_fc": np.int64, "n_patients": np.int64})
