"""The leukocyte map on over-compensated CD45 (a spillover into CD45's channel set too high).

Correctly compensated CD45-negative events scatter around zero; a whole cluster below zero is
what an over-estimated spillover coefficient makes of cells bright in the spilling dye (the
BD Canto B-ALL marrow of benchmarks/eval_real_experts.py: CD10-PE-bright blasts, PE -> PerCP
0.196). Synthetic plots and a synthetic FCS file plant the truth; the tests recover it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytogate.gating.engine import gate
from cytogate.gating.leukomap import MapSpec, codes_of, fit_map
from cytogate.gating.template import load_template
from cytogate.io.fcs import read_fcs
from cytogate.io.fcs_writer import write_fcs

ZERO = 0.111  # where 0 lies on the template's logicle (W 0.5, M 4.5): W / M
SPEC = MapSpec(merge=0.9)


def plot(
    n: int, blast_cd45: float, negative_cd45: float | None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CD45 (scaled), SSC (fraction of range) and planted population: 0 CD45-negative,
    1 lymphocytes, 3 granulocytes, 4 blasts."""
    rng = np.random.default_rng(seed)
    centres = {
        0: (negative_cd45 or 0.0, 0.05),
        1: (0.80, 0.07),
        3: (0.62, 0.50),
        4: (blast_cd45, 0.07),
    }
    weights = {0: 0.10 if negative_cd45 is not None else 0.0, 1: 0.30, 3: 0.30, 4: 0.30}
    keys = np.array(list(centres))
    p = np.array([weights[k] for k in keys])
    truth = rng.choice(keys, size=n, p=p / p.sum())
    x = np.array([centres[k][0] for k in keys])[np.searchsorted(keys, truth)]
    y = np.array([centres[k][1] for k in keys])[np.searchsorted(keys, truth)]
    return x + rng.normal(0, 0.03, n), y * np.exp(rng.normal(0, 0.16, n)), truth


def f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = np.sum(pred & truth)
    return float(2 * tp / max(pred.sum() + truth.sum(), 1))


def test_a_cluster_below_zero_is_gated_by_its_ssc_and_flagged() -> None:
    # blasts pushed to -0.15 (below zero), a genuine CD45-negative cluster around zero
    x, y, truth = plot(40_000, blast_cd45=-0.15, negative_cd45=ZERO, seed=1)
    fitted = fit_map(x, y, SPEC, zero=ZERO)
    codes = fitted.assign(x, y)
    assert f1(np.isin(codes, codes_of("blasts")), truth == 4) >= 0.95
    assert f1(np.isin(codes, codes_of("cd45_negative")), truth == 0) >= 0.9
    assert any("below zero" in r and "compensation" in r for r in fitted.qc["blasts"])


def test_without_the_scale_zero_the_cluster_stays_cd45_negative() -> None:
    x, y, truth = plot(40_000, blast_cd45=-0.15, negative_cd45=None, seed=2)
    codes = fit_map(x, y, SPEC).assign(x, y)
    assert f1(np.isin(codes, codes_of("cd45_negative")), truth == 4) >= 0.9
    assert not np.any(np.isin(codes, codes_of("blasts")))


def test_negatives_around_zero_are_not_called_over_compensated() -> None:
    x, y, truth = plot(40_000, blast_cd45=0.5, negative_cd45=ZERO, seed=3)
    fitted = fit_map(x, y, SPEC, zero=ZERO)
    codes = fitted.assign(x, y)
    assert f1(np.isin(codes, codes_of("cd45_negative")), truth == 0) >= 0.9
    assert f1(np.isin(codes, codes_of("blasts")), truth == 4) >= 0.9
    assert not any("below zero" in r for r in fitted.qc.get("blasts", []))


def test_granulocytes_do_not_make_the_only_cd45_low_cluster_negative() -> None:
    # blasts 0.40 below the lymphocytes (just under the negative gap), no CD45-negative
    # events: the granulocytes' lower CD45 is no reason to call the blasts negative
    x, y, truth = plot(40_000, blast_cd45=0.40, negative_cd45=None, seed=4)
    codes = fit_map(x, y, SPEC, zero=ZERO).assign(x, y)
    assert f1(np.isin(codes, codes_of("blasts")), truth == 4) >= 0.9


def test_over_compensated_file_end_to_end(tmp_path) -> None:
    """An FCS file whose $SPILLOVER says PE -> PerCP 0.30 where the truth is 0.10: the
    PE-bright CD45dim blasts land below zero after compensation; the default template
    still gates them as blasts and says why."""
    rng = np.random.default_rng(7)
    n = {"lymph": 12_000, "gran": 12_000, "blast": 12_000, "neg": 4_000, "debris": 3_000}
    cd45 = {"lymph": 20_000, "gran": 5_000, "blast": 800, "neg": 0, "debris": 0}
    ssc = {"lymph": 12_000, "gran": 120_000, "blast": 16_000, "neg": 9_000, "debris": 3_000}
    fsc = {"lymph": 60_000, "gran": 90_000, "blast": 75_000, "neg": 55_000, "debris": 9_000}
    pe = {"lymph": 100, "gran": 300, "blast": 60_000, "neg": 100, "debris": 100}
    rows, truth = [], []
    for k, m in n.items():
        f = fsc[k] * np.exp(rng.normal(0, 0.15, m))
        true_cd45 = cd45[k] * np.exp(rng.normal(0, 0.25, m)) + rng.normal(0, 120, m)
        true_pe = pe[k] * np.exp(rng.normal(0, 0.3, m)) + rng.normal(0, 120, m)
        rows.append(
            np.column_stack(
                [
                    f,
                    f * 0.8,
                    ssc[k] * np.exp(rng.normal(0, 0.15, m)),
                    true_pe,
                    true_cd45 + 0.10 * true_pe,  # PerCP detector: CD45 + the real PE spill
                ]
            )
        )
        truth += [k] * m
    events = np.vstack(rows)
    names = ["FSC-A", "FSC-H", "SSC-A", "PE-A", "PerCP-A"]
    spill = pd.DataFrame(np.eye(2), index=["PE-A", "PerCP-A"], columns=["PE-A", "PerCP-A"])
    spill.loc["PE-A", "PerCP-A"] = 0.30  # over-estimated: three times the truth
    path = write_fcs(
        tmp_path / "overcomp.fcs",
        events,
        names,
        pns=["", "", "", "CD10", "CD45"],
        spillover=spill,
        keywords={"$COM": "SIMULATED over-compensated CD45"},
    )
    result = gate(read_fcs(path), load_template("aml_blasts_cd45_ssc"))
    labels = np.array(truth)
    assert f1(result.mask("blasts"), labels == "blast") >= 0.9
    assert f1(result.mask("lymphocytes"), labels == "lymph") >= 0.9
    assert any("below zero" in r for r in result.qc("blasts"))


def marrow_plot(
    n: int, maturing: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A marrow-like CD45/SSC plot: compact SSC-low CD45dim blasts (4), lymphocytes (1),
    granulocytes (3) and a share ``maturing`` of myeloid maturation between blasts and
    granulocytes (5): SSC rising continuously from above the blasts to the granulocytes, CD45
    rising with it."""
    rng = np.random.default_rng(seed)
    rest = 1.0 - maturing
    p = [0.2 * rest, 0.45 * rest, 0.35 * rest, maturing]
    truth = rng.choice([1, 3, 4, 5], size=n, p=p)
    x = np.select([truth == 1, truth == 3, truth == 4], [0.80, 0.62, 0.45], 0.0)
    y = np.select([truth == 1, truth == 3, truth == 4], [0.07, 0.50, 0.07], 0.0)
    t = rng.uniform(0, 1, n)
    mature = truth == 5
    x[mature] = 0.47 + 0.15 * t[mature]
    y[mature] = 0.12 * (0.45 / 0.12) ** t[mature]
    return x + rng.normal(0, 0.03, n), y * np.exp(rng.normal(0, 0.16, n)), truth


def blast_f1(x: np.ndarray, y: np.ndarray, truth: np.ndarray, **settings: float) -> float:
    fitted = fit_map(x, y, MapSpec.from_settings({"merge": 0.9, **settings}), ZERO)
    return f1(np.isin(fitted.assign(x, y), codes_of("blasts")), truth == 4)


def test_a_maturation_cluster_above_the_blasts_goes_to_the_granulocytes() -> None:
    x, y, truth = marrow_plot(60_000, maturing=0.25, seed=8)
    fitted = fit_map(x, y, SPEC, zero=ZERO)
    assert fitted.diagnostics["myeloid_maturation"], fitted.diagnostics
    score = blast_f1(x, y, truth)
    off = blast_f1(x, y, truth, maturation_decades=99)
    assert score >= 0.95 and score > off + 0.05, (score, off)


def test_a_thin_continuum_above_the_blasts_is_not_counted_as_blasts() -> None:
    # 10 % maturation: the continuum barely forms a cluster of its own
    x, y, truth = marrow_plot(60_000, maturing=0.10, seed=9)
    score = blast_f1(x, y, truth)
    off = blast_f1(x, y, truth, blast_ssc_sd=99, maturation_decades=99)
    assert score >= 0.93 and score > off + 0.02, (score, off)


def test_sscint_blasts_alone_stay_blasts() -> None:
    # one CD45dim cluster at intermediate SSC (monoblast-like), no SSC-low blasts: not maturation
    x, y, truth = plot(40_000, blast_cd45=0.5, negative_cd45=ZERO, seed=10)
    y = np.where(truth == 4, y * 2.5, y)
    fitted = fit_map(x, y, SPEC, zero=ZERO)
    assert f1(np.isin(fitted.assign(x, y), codes_of("blasts")), truth == 4) >= 0.9


def blood_plot(
    n: int, with_monocytes: bool, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blood: lymphocytes (1), granulocytes (3), CD45dim blasts (4) at SSC 0.26 and, if asked,
    monocytes (2) just 0.07 brighter and at SSC 0.31 — one density cluster with the blasts
    (the --hard simulation's patient P03)."""
    rng = np.random.default_rng(seed)
    keys = np.array([1, 2, 3, 4])
    p = np.array([0.22, 0.08 if with_monocytes else 0.0, 0.5, 0.12])
    truth = rng.choice(keys, size=n, p=p / p.sum())
    cx = {1: 0.78, 2: 0.72, 3: 0.62, 4: 0.65}
    cy = {1: 0.10, 2: 0.31, 3: 0.63, 4: 0.26}
    x = np.vectorize(cx.get)(truth) + rng.normal(0, 0.028, n)
    y = np.vectorize(cy.get)(truth) * np.exp(rng.normal(0, 0.16, n))
    return x, y, truth


def test_blasts_and_monocytes_in_one_cluster_are_split_and_flagged() -> None:
    x, y, truth = blood_plot(8_000, with_monocytes=True, seed=11)
    fitted = fit_map(x, y, SPEC, zero=ZERO)
    codes = fitted.assign(x, y)
    unsplit = fit_map(x, y, MapSpec.from_settings({"merge": 0.9, "split_d": 99}), ZERO)
    before = f1(np.isin(unsplit.assign(x, y), codes_of("blasts")), truth == 4)
    score = f1(np.isin(codes, codes_of("blasts")), truth == 4)
    assert "monocyte_split" in fitted.diagnostics, fitted.diagnostics
    assert score >= 0.85 and score > before + 0.05, (score, before)
    assert f1(np.isin(codes, codes_of("monocytes")), truth == 2) >= 0.7
    assert any("split by a two-Gaussian mixture" in r for r in fitted.qc["blasts"])


def test_blasts_without_monocytes_are_not_split() -> None:
    x, y, truth = blood_plot(8_000, with_monocytes=False, seed=12)
    fitted = fit_map(x, y, SPEC, zero=ZERO)
    assert "monocyte_split" not in fitted.diagnostics
    assert f1(np.isin(fitted.assign(x, y), codes_of("blasts")), truth == 4) >= 0.95
