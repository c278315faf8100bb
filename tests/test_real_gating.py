"""The CD45/SSC leukocyte map (gate kind ``leukomap``): synthetic plots with planted truth,
and a real Beckman FC 500 tube (MIT) for how it reads a real instrument's file.

Synthetic events are drawn on the scaled axes (CD45 on a logicle-like 0..1 scale with
0.222 per decade, SSC as a fraction of range): the planted population of every event is the
ground truth.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from cytogate.errors import TemplateError
from cytogate.gating.engine import gate
from cytogate.gating.leukomap import MapSpec, codes_of, fit_map
from cytogate.gating.template import load_template
from cytogate.io.fcs import read_fcs
from tests.conftest import DATA

DECADE = 0.222
LYMPH_CD45 = 0.80
POPS = ("cd45_negative", "lymphocytes", "monocytes", "granulocytes", "blasts")


def plot_events(
    n: int,
    blast_cd45: float | None,
    blast_share: float,
    seed: int = 0,
    blast_ssc: float = 0.09,
    mono: tuple[float, float] = (0.74, 0.20),
    negative_cd45: float = 0.15,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(CD45, SSC, planted population index into POPS) of a simulated CD45/SSC plot."""
    rng = np.random.default_rng(seed)
    centres = {
        0: (negative_cd45, 0.05, 0.04),
        1: (LYMPH_CD45, 0.07, 0.7),
        2: (*mono, 0.12),
        3: (0.62, 0.50, 1.2),
        4: (blast_cd45 or 0.5, blast_ssc, 0.0),
    }
    weights = np.array([centres[k][2] for k in range(5)], dtype=float)
    weights[:4] /= weights[:4].sum()
    weights[:4] *= 1 - blast_share
    weights[4] = blast_share if blast_cd45 is not None else 0.0
    weights /= weights.sum()
    truth = rng.choice(5, size=n, p=weights)
    cx = np.array([centres[k][0] for k in range(5)])[truth]
    cy = np.array([centres[k][1] for k in range(5)])[truth]
    x = cx + rng.normal(0, 0.028, n)
    y = cy * np.exp(rng.normal(0, 0.16, n))  # SSC: a CV, not an SD
    return x, y, truth


SPEC = MapSpec(merge=0.9)  # the default template's setting


def assigned(x: np.ndarray, y: np.ndarray, spec: MapSpec = SPEC):
    fitted = fit_map(x, y, spec)
    return fitted, fitted.assign(x, y)


def f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = np.sum(pred & truth)
    return float(2 * tp / max(pred.sum() + truth.sum(), 1))


@pytest.mark.parametrize(
    ("blast_cd45", "share"),
    [
        (0.55, 0.30),  # typical AML blasts
        (0.55, 0.02),  # few blasts
        (0.55, 0.90),  # a marrow full of blasts
        (LYMPH_CD45 - np.log10(60) * DECADE, 0.20),  # very dim: 60x below the lymphocytes
        (0.66, 0.25),  # just below the monocytes' CD45
    ],
)
def test_blasts_are_found_wherever_they_sit(blast_cd45: float, share: float) -> None:
    x, y, truth = plot_events(40_000, blast_cd45, share, seed=3)
    fitted, codes = assigned(x, y)
    for k, pop in enumerate(POPS):
        score = f1(np.isin(codes, codes_of(pop)), truth == k)
        assert score >= 0.9, (pop, score, fitted.diagnostics["clusters"])


def test_very_dim_blasts_sit_between_negatives_and_lymphocytes() -> None:
    # 60x below the lymphocytes and 14x above the CD45-negative events
    blast = LYMPH_CD45 - np.log10(60) * DECADE
    x, y, truth = plot_events(
        30_000, blast, 0.3, seed=5, negative_cd45=blast - np.log10(14) * DECADE
    )
    _, codes = assigned(x, y)
    assert f1(np.isin(codes, codes_of("blasts")), truth == 4) >= 0.9
    assert f1(np.isin(codes, codes_of("cd45_negative")), truth == 0) >= 0.9


def test_no_blasts_gives_an_empty_gate_and_says_why() -> None:
    x, y, _ = plot_events(20_000, None, 0.0, seed=1)
    fitted, codes = assigned(x, y)
    assert not np.any(codes == codes_of("blasts")[0])
    assert any("no CD45dim cluster" in r for r in fitted.qc["blasts"])


def test_blasts_merged_with_monocytes_are_flagged_on_the_blasts() -> None:
    # blasts at the monocytes' own position: no valley can separate them
    x, y, _ = plot_events(20_000, 0.735, 0.2, seed=2, blast_ssc=0.19)
    fitted, _ = assigned(x, y)
    reasons = " ".join(fitted.qc.get("blasts", []))
    assert "monocyte" in reasons, fitted.qc


def test_fit_cost_does_not_grow_with_events() -> None:
    x, y, _ = plot_events(400_000, 0.55, 0.3, seed=4)
    spec = MapSpec(merge=0.9, subsample=50_000)
    fitted = fit_map(x, y, spec)
    assert fitted.diagnostics["n_fit"] == 50_000
    started = time.perf_counter()
    fitted.assign(x, y)  # every event: a bin lookup
    assert time.perf_counter() - started < 5.0


def test_map_is_deterministic() -> None:
    x, y, _ = plot_events(20_000, 0.55, 0.3, seed=6)
    a, b = fit_map(x, y, MapSpec(merge=0.9)), fit_map(x, y, MapSpec(merge=0.9))
    assert np.array_equal(a.codes, b.codes)


def test_unknown_map_setting_names_the_field(tmp_path) -> None:
    text = (DATA.parent.parent / "gating_templates" / "aml_blasts_cd45_ssc.yaml").read_text()
    bad = text.replace("map: &map {merge: 0.9}", "map: &map {merge: 0.9, smoth: 2}")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    with pytest.raises(TemplateError, match="smoth"):
        load_template(path)


# --------------------------------------------------------------------------- real FC 500 tube


@pytest.fixture(scope="module")
def fc500():
    return gate(read_fcs(DATA / "real_fc500" / "UP00_000399_001_tube1.FCS"))


def test_fc500_siblings_are_disjoint_and_tile_the_leukocytes(fc500) -> None:
    pops = ["lymphocytes", "monocytes", "granulocytes", "blasts"]
    masks = np.array([fc500.mask(p) for p in pops])
    assert masks.sum(axis=0).max() <= 1  # no event in two siblings
    covered = masks.any(axis=0)
    leukocytes = fc500.mask("leukocytes")
    assert np.mean(covered[leukocytes]) > 0.99


def test_fc500_populations_sit_where_a_cytometrist_puts_them(fc500) -> None:
    cd45, ssc = fc500.scaled_values("CD45"), fc500.scaled_values("SSC-A")
    med = {
        p: (np.median(cd45[fc500.mask(p)]), np.median(ssc[fc500.mask(p)]))
        for p in ("lymphocytes", "monocytes", "granulocytes")
    }
    lym, mon, gra = med["lymphocytes"], med["monocytes"], med["granulocytes"]
    assert lym[1] < mon[1] < gra[1]  # SSC: lymphocytes < monocytes < granulocytes
    assert gra[0] < lym[0] and gra[0] < mon[0]  # granulocytes dimmer CD45 than both
    counts = fc500.table().set_index("population")["pct_parent"]
    assert counts["granulocytes"] > counts["lymphocytes"] > counts["monocytes"] > 0.5
    assert counts["blasts"] < 5  # a blood tube, not a blast-crowded marrow
