"""Adaptive (fitted) gates on constructed data with a known answer, QC flags, determinism.

Scales are linear with top 1, so the scaled space equals the raw values and every expected cut
can be computed here independently of the fitting code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytogate.analysis.quantify import population_rows
from cytogate.errors import TemplateError
from cytogate.gating.adaptive import MAD_TO_SD
from cytogate.gating.engine import gate
from cytogate.gating.gates import Polygon, Rectangle
from cytogate.gating.template import parse_template
from tests.conftest import make_sample

HEAD = """
name: unit
panel: {X: '^X$', Y: '^Y$', H: '^H$'}
compensation: none
scales: {default: {kind: linear, top: 1}}
gates:
"""


def _tmpl(gates: str):
    return parse_template(HEAD + gates, Path("unit.yaml"))


def _sample(*columns: np.ndarray, names=("X", "Y", "H")):
    return make_sample(np.column_stack(columns), list(names[: len(columns)]))


def _f1(mask: np.ndarray, truth: np.ndarray) -> float:
    tp = np.sum(mask & truth)
    return 2 * tp / (2 * tp + np.sum(mask & ~truth) + np.sum(~mask & truth))


# --------------------------------------------------------------------------- thresholds


def test_valley_between_two_gaussians_is_the_density_minimum():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0.3, 0.04, 8000), rng.normal(0.7, 0.05, 12000)])
    result = gate(
        _sample(x),
        _tmpl("  - {name: hi, kind: threshold, dims: [X], method: valley, search: [0.35, 0.65]}"),
    )
    grid = np.linspace(0.35, 0.65, 3001)
    pdf = 0.4 / 0.04 * np.exp(-0.5 * ((grid - 0.3) / 0.04) ** 2) + 0.6 / 0.05 * np.exp(
        -0.5 * ((grid - 0.7) / 0.05) ** 2
    )
    truth = grid[np.argmin(pdf)]
    g = result.gate_of("hi")
    cut = g.geometry.min[0]
    assert isinstance(g.geometry, Rectangle) and g.kind == "threshold"
    assert abs(cut - truth) < 0.02, (cut, truth)
    assert np.array_equal(result.mask("hi"), x >= cut)
    assert g.diagnostics["method_used"] == "valley" and not g.diagnostics["fallback"]
    assert g.qc == () and not result.table().set_index("population").loc["hi", "qc_flag"]


def test_quantile_cut_is_exact():
    x = np.arange(1000) / 1000.0
    gates = """
  - {name: top, kind: threshold, dims: [X], method: quantile, q: 0.1, keep: above}
  - {name: mid, kind: threshold, dims: [X], method: quantile, q: [0.25, 0.75], keep: between}
"""
    result = gate(_sample(x), _tmpl(gates))
    assert result.gate_of("top").geometry.min == (np.quantile(x, 0.1),)
    assert result.count("top") == 900
    mid = result.gate_of("mid").geometry
    assert (mid.min[0], mid.max[0]) == tuple(np.quantile(x, [0.25, 0.75]))
    assert np.array_equal(result.mask("mid"), (x >= mid.min[0]) & (x < mid.max[0]))
    # with two dims and an axis, the cut is on that axis and the other dim stays open
    y = x[::-1].copy()
    two = gate(
        _sample(x, y),
        _tmpl("  - {name: hi_y, kind: threshold, dims: [X, Y], axis: Y, method: quantile, q: 0.5}"),
    )
    assert two.gate_of("hi_y").geometry == Rectangle(
        ("X", "Y"), (None, np.quantile(y, 0.5)), (None, None)
    )
    assert np.array_equal(two.mask("hi_y"), y >= np.quantile(y, 0.5))


def test_n_mad_and_n_sd_cuts_are_exact():
    x = np.array([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100])  # median 6, MAD 3
    gates = """
  - {name: low, kind: threshold, dims: [X], method: mad, n: 2, keep: below}
  - {name: ref, kind: range, dims: [Y], max: 0.5}
  - {name: by_ref, kind: threshold, dims: [X], method: sd, n: 1.5, keep: above, of: ref}
"""
    y = np.array([0.1, 0.2, 0.3, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    result = gate(_sample(x, y), _tmpl(gates))
    assert result.gate_of("low").geometry.max == (6.0 + 2 * MAD_TO_SD * 3.0,)
    assert result.count("low") == 10
    ref = x[y < 0.5]  # 1, 2, 3: mean 2, SD 1
    assert result.gate_of("by_ref").geometry.min == (ref.mean() - 1.5 * ref.std(ddof=1),)


def test_ratio_threshold_is_a_wedge_polygon_around_singlets():
    rng = np.random.default_rng(2)
    area = rng.uniform(0.2, 0.9, 6000)
    ratio = np.where(rng.random(6000) < 0.9, 0.85, 0.55) * (1 + 0.03 * rng.normal(size=6000))
    gates = """
  - {name: singlets, kind: threshold, dims: [X, H], ratio: true, method: mad, n: 5, keep: above}
"""
    height = area * ratio
    result = gate(_sample(area, height, area * 0, names=("X", "H", "Y")), _tmpl(gates))
    g = result.gate_of("singlets")
    r = g.diagnostics["threshold"][0]
    seen = height / area
    assert r == np.median(seen) - 5 * MAD_TO_SD * np.median(np.abs(seen - np.median(seen)))
    assert isinstance(g.geometry, Polygon)
    assert 0.7 < r < 0.8  # between the doublets (0.55) and the singlets (0.85)
    on_edge = np.isclose(seen, r, rtol=1e-12, atol=0)
    assert np.array_equal(result.mask("singlets")[~on_edge], (seen >= r)[~on_edge])


def test_mixture_cut_when_the_low_peak_is_a_shoulder():
    # a small low population (5 %) on the flank of a dominant one: no valley, so the valley
    # method fails and the 1-D mixture's boundary between the two lowest components is used
    rng = np.random.default_rng(3)
    low = rng.normal(0.25, 0.04, 1000)
    big = rng.normal(0.39, 0.035, 16000)
    high = rng.normal(0.75, 0.03, 3000)
    x = np.concatenate([low, big, high])
    gates = """
  - name: pos
    kind: threshold
    dims: [X]
    method: [valley, mixture]
    search: [0.1, 0.6]
    valley: first
    max_excluded: 0.3
    fallback: 0.40
"""
    result = gate(_sample(x), _tmpl(gates))
    g = result.gate_of("pos")
    cut = g.geometry.min[0]
    grid = np.linspace(0.25, 0.39, 2001)
    d_low = 0.05 / 0.04 * np.exp(-0.5 * ((grid - 0.25) / 0.04) ** 2)
    d_big = 0.8 / 0.035 * np.exp(-0.5 * ((grid - 0.39) / 0.035) ** 2)
    bayes = grid[np.argmax(d_big > d_low)]
    assert abs(cut - bayes) < 0.02, (cut, bayes)
    assert g.diagnostics["method_used"] == "mixture" and g.diagnostics["fallback"]
    assert any("mixture cut used" in r for r in g.qc)


def test_valley_choice_skips_cuts_that_keep_too_little():
    # three peaks; the last valley would keep only the 1 % on top (saturated events, doublets)
    rng = np.random.default_rng(12)
    x = np.concatenate(
        [rng.normal(0.2, 0.04, 9000), rng.normal(0.6, 0.05, 10800), rng.normal(0.95, 0.01, 200)]
    )
    gate_text = "  - {name: top, kind: threshold, dims: [X], method: valley, valley: last%s}\n"
    last = gate(_sample(x), _tmpl(gate_text % ""))
    assert last.gate_of("top").geometry.min[0] > 0.8  # the valley under the small top peak
    kept = gate(_sample(x), _tmpl(gate_text % ", min_kept: 0.03"))
    assert 0.35 < kept.gate_of("top").geometry.min[0] < 0.45
    assert kept.gate_of("top").diagnostics["n_valleys"] == 2 and not kept.qc("top")
    none = gate(_sample(x), _tmpl(gate_text % ", min_kept: 0.6, fallback: 0.5"))
    assert "no plausible valley" in none.qc("top")[0] and none.gate_of("top").geometry.min == (0.5,)


# --------------------------------------------------------------------------- clusters

FOUR = """
  - name: d
    kind: cluster
    dims: [X, Y]
    mixture: &m {components: [3, 6], subsample: 4000}
    select: [{highest: Y}]
  - name: a
    kind: cluster
    dims: [X, Y]
    mixture: *m
    select: [{exclude: [d]}, {lowest: X}]
  - name: c
    kind: cluster
    dims: [X, Y]
    mixture: *m
    select: [{exclude: [a, d]}, {where: {Y: {above: 0.5}}}, largest]
  - name: b
    kind: cluster
    dims: [X, Y]
    mixture: *m
    select: [{exclude: [a, c, d]}, largest]
    qc: {min_fraction: 0.01}
"""
CENTRES = {"a": (0.2, 0.2), "b": (0.75, 0.25), "c": (0.3, 0.75), "d": (0.8, 0.85)}


def _four_clusters(weights=(0.4, 0.3, 0.2, 0.1), n=20000, seed=4):
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, weights)
    labels = np.repeat(np.arange(4), counts)
    centres = np.array(list(CENTRES.values()))
    pts = centres[labels] + rng.normal(0, 0.045, (n, 2))
    return pts, labels


def test_mixture_picks_each_cluster_by_position():
    pts, labels = _four_clusters()
    result = gate(_sample(pts[:, 0], pts[:, 1]), _tmpl(FOUR))
    for k, name in enumerate(CENTRES):
        g = result.gate_of(name)
        assert isinstance(g.geometry, Polygon) and g.kind == "cluster"
        assert _f1(result.mask(name), labels == k) > 0.98, name
        assert g.diagnostics["components"] >= 4 and not g.diagnostics["fallback"]
    masks = [result.mask(n) for n in CENTRES]
    assert not np.any(np.sum(masks, axis=0) > 1)  # regions of different clusters are disjoint
    # the stored polygon is the population: re-evaluating it gives the same events
    b = result.gate_of("b").geometry
    assert np.array_equal(b.contains(pts), result.mask("b"))


def test_a_small_cluster_is_flagged_by_min_fraction():
    pts, _ = _four_clusters(weights=(0.5, 0.004, 0.296, 0.2), n=30000)
    result = gate(_sample(pts[:, 0], pts[:, 1]), _tmpl(FOUR))
    reasons = result.qc("b")
    assert reasons and all(r.startswith("b: ") for r in reasons), reasons
    assert "of root (< 1%)" in reasons[-1]
    assert not result.qc("c")


def test_merged_clusters_are_flagged_with_the_population_that_took_them():
    # "lymphocytes" and "blasts" closer than the merge threshold allows: one cluster
    rng = np.random.default_rng(5)
    lym = rng.normal((0.78, 0.08), (0.03, 0.015), (6000, 2))
    bla = rng.normal((0.70, 0.09), (0.03, 0.015), (3000, 2))
    gra = rng.normal((0.62, 0.45), (0.035, 0.06), (9000, 2))
    pts = np.concatenate([lym, bla, gra])
    gates = """
  - name: granulocytes
    kind: cluster
    dims: [X, Y]
    mixture: &m {components: [2, 5], merge: 0.2}
    select: [{highest: Y}]
  - name: lymphocytes
    kind: cluster
    dims: [X, Y]
    mixture: *m
    select: [{exclude: [granulocytes]}, {highest: X}]
  - name: blasts
    kind: cluster
    dims: [X, Y]
    mixture: *m
    select: [{exclude: [granulocytes, lymphocytes]}, largest]
"""
    result = gate(_sample(pts[:, 0], pts[:, 1]), _tmpl(gates))
    assert result.count("blasts") == 0
    assert any("merged with lymphocytes" in r for r in result.qc("blasts")), result.qc("blasts")
    rows = {r["population"]: r for r in population_rows(result, None, None)}
    assert (
        rows["blasts"]["qc_flag"] is True
        and "merged with lymphocytes" in rows["blasts"]["qc_reason"]
    )
    assert rows["lymphocytes"]["qc_flag"] is False and rows["lymphocytes"]["qc_reason"] == ""


# --------------------------------------------------------------------------- relative, QC


def test_relative_gate_bounds_are_the_reference_populations_statistics():
    rng = np.random.default_rng(6)
    x, y = rng.normal(0.5, 0.1, 5000), rng.uniform(0, 1, 5000)
    gates = """
  - {name: ref, kind: range, dims: [Y], min: 0.5}
  - name: rel
    kind: relative
    dims: [X, Y]
    min: [{of: ref, stat: median, n: -2, spread: sd}, 0.1]
    max: [{of: ref, stat: quantile, q: 0.9}, {of: ref, dim: X, stat: mean}]
"""
    result = gate(_sample(x, y), _tmpl(gates))
    ref = y >= 0.5
    geometry = result.gate_of("rel").geometry
    assert geometry.min == (np.median(x[ref]) - 2 * x[ref].std(ddof=1), 0.1)
    assert geometry.max == (np.quantile(x[ref], 0.9), x[ref].mean())
    assert isinstance(geometry, Rectangle) and result.gate_of("rel").kind == "relative"


def test_no_valley_falls_back_and_flags_the_gate_and_its_children():
    x = np.random.default_rng(7).normal(0.5, 0.1, 5000)  # one peak: no valley
    gates = """
  - {name: pos, kind: threshold, dims: [X], method: valley, search: [0.2, 0.8], fallback: 0.45}
  - {name: child, parent: pos, kind: range, dims: [X], min: 0.6}
  - {name: other, kind: range, dims: [X], max: 0.3}
  - {name: watcher, kind: range, dims: [X], max: 0.2, qc: {flag_with: [pos]}}
"""
    result = gate(_sample(x), _tmpl(gates))
    g = result.gate_of("pos")
    assert g.geometry.min == (0.45,) and g.diagnostics["fallback"]
    assert g.qc and "no valley in [0.2, 0.8]" in g.qc[0] and "fallback 0.45 used" in g.qc[0]
    table = result.table().set_index("population")
    assert table.loc["pos", "qc_flag"] and table.loc["child", "qc_flag"]
    assert table.loc["child", "qc_reason"].startswith("pos: no valley")
    assert not table.loc["other", "qc_flag"]
    assert table.loc["watcher", "qc_flag"]  # flag_with shares the flag


def test_fraction_rules_apply_to_fixed_gates_too():
    x = np.linspace(0, 1, 1000, endpoint=False)
    gates = """
  - {name: few, kind: range, dims: [X], min: 0.99, qc: {min_fraction: 0.05, reason: too few}}
  - {name: many, kind: range, dims: [X], min: 0.01, qc: {max_fraction: 0.9}}
"""
    result = gate(_sample(x), _tmpl(gates))
    assert result.qc("few") == ("few: 1.00% of root (< 5%): too few",)
    assert result.qc("many") == ("many: 99.00% of root (> 90%)",)


# --------------------------------------------------------------------------- determinism, pins


def test_same_input_gives_the_same_gates_to_the_last_vertex():
    from cytogate.sim.simulate import StudyConfig, make_patients, simulate_sample

    config = StudyConfig(n_patients=1, events_per_file=20000, seed=11)
    patient = make_patients(config)[0]
    sim = simulate_sample(config, patient, "baseline", "stained", 20000, np.random.default_rng(3))
    first = make_sample(sim.events, sim.pnn, sim.pns, spillover=sim.spillover)
    second = make_sample(sim.events.copy(), sim.pnn, sim.pns, spillover=sim.spillover.copy())
    a, b = gate(first), gate(second)
    fitted = [g for g in a.gates if g.fitted]
    assert {g.name for g in fitted} >= {"cells", "singlets", "leukocytes", "blasts"}
    for ga, gb in zip(a.gates, b.gates, strict=True):
        assert ga.geometry == gb.geometry, ga.name  # dataclass equality: every float identical
        if isinstance(ga.geometry, Polygon):
            assert (
                np.asarray(ga.geometry.vertices).tobytes()
                == np.asarray(gb.geometry.vertices).tobytes()
            )
    for pop in a.populations:
        assert np.array_equal(a.mask(pop), b.mask(pop))


def test_pinned_geometry_is_used_instead_of_fitting():
    x = np.random.default_rng(8).normal(0.5, 0.1, 2000)
    gates = "  - {name: q, kind: threshold, dims: [X], method: quantile, q: 0.5, pin: baseline}\n"
    tmpl = _tmpl(gates)
    pinned = {"q": Rectangle(("X",), (0.7,), (None,))}
    result = gate(_sample(x), tmpl, pinned=pinned)
    g = result.gate_of("q")
    assert g.geometry == pinned["q"] and g.diagnostics["pinned"] == "baseline"
    assert np.array_equal(result.mask("q"), x >= 0.7) and g.qc == ()
    missing = gate(_sample(x), tmpl, pinned={})  # batch mode, no baseline fit available
    assert "no baseline fit is available" in missing.gate_of("q").qc[0]
    alone = gate(_sample(x), tmpl)  # single file: fitted, not flagged
    assert alone.gate_of("q").geometry.min == (np.quantile(x, 0.5),) and not alone.qc("q")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("gate_text", "message"),
    [
        ("{name: g, kind: threshold, dims: [X], method: valey}", "field 'method'"),
        ("{name: g, kind: threshold, dims: [X], method: quantile}", "field 'q'"),
        (
            "{name: g, kind: threshold, dims: [X], method: valley, keep: between}",
            "field 'keep'",
        ),
        ("{name: g, kind: threshold, dims: [X], method: mad, n: -1}", "field 'n'"),
        ("{name: g, kind: cluster, dims: [X, Y], select: [{bigest: X}]}", "field 'select'"),
        ("{name: g, kind: cluster, dims: [X, Y], select: [{lowest: Z}]}", "field 'select'"),
        (
            "{name: g, kind: cluster, dims: [X, Y], mixture: {components: [5, 2]}}",
            "field 'mixture.components'",
        ),
        ("{name: g, kind: range, dims: [X], min: 0.1, pin: baseline}", "field 'pin'"),
        (
            "{name: g, kind: threshold, dims: [X], method: mad, pin: always}",
            "field 'pin'",
        ),
        (
            "{name: g, kind: range, dims: [X], min: 0.1, qc: {min_frac: 0.1}}",
            "field 'qc.min_frac' (did you mean 'qc.min_fraction'?)",
        ),
        ("{name: g, kind: relative, dims: [X], min: [{of: nowhere}]}", "no population"),
        (
            "{name: g, kind: relative, dims: [X], min: [{of: root, stat: mode}]}",
            "field 'stat'",
        ),
    ],
)
def test_adaptive_validation_errors_name_file_gate_and_field(gate_text, message):
    with pytest.raises(TemplateError) as info:
        _tmpl(f"  - {gate_text}\n")
    text = str(info.value)
    # file:line of the gate's entry (line 7 of HEAD + gate), then the gate and the field
    assert text.startswith("unit.yaml:7: gate 'g'") and message in text, text
    assert "\n" not in text


def test_exclude_must_name_a_cluster_gate_on_the_same_mixture():
    gates = """
  - {name: a, kind: range, dims: [X], min: 0.1}
  - {name: b, kind: cluster, dims: [X, Y], select: [{exclude: [a]}, largest]}
"""
    with pytest.raises(TemplateError, match="gate 'b': field 'select': 'exclude' population 'a'"):
        _tmpl(gates)


def test_scale_alternatives_need_a_default_last():
    bad = HEAD.replace(
        "scales: {default: {kind: linear, top: 1}}",
        "scales:\n  default:\n    - {when: {log_amplified: true}, kind: log, T: pne, M: pne}",
    )
    with pytest.raises(TemplateError, match="last alternative must have no 'when'"):
        parse_template(bad + "  - {name: g, kind: range, dims: [X], min: 0.1}\n", Path("u.yaml"))


# --------------------------------------------------------------------------- older instruments


@pytest.mark.parametrize("pne_log", ["4,0", "0,0"])
def test_default_template_gates_an_fc500_style_fcs2_file(tmp_path, pne_log):
    """FCS 2.0, FS Lin / SS Log / CD45 on FL3 ECD, 10-bit log channels, no FSC-H/W: the
    singlet gate is skipped (and says so), the log channels are read back to their channel
    fraction whether or not $PnE declares the log amplifier, and the blasts are found."""
    from cytogate.io.fcs import read_fcs
    from cytogate.sim.simulate import StudyConfig, make_patients, simulate_sample
    from tests.fc500 import fc500_bytes

    config = StudyConfig(n_patients=2, events_per_file=20000, seed=5, atypical_patients=0)
    patient = make_patients(config)[0]
    sim = simulate_sample(config, patient, "baseline", "stained", 20000, np.random.default_rng(9))
    path = tmp_path / "FC500_0001.LMD"
    path.write_bytes(fc500_bytes(sim, pne_log=pne_log))
    sample = read_fcs(path)
    assert sample.version == "2.0" and "FSC-H" not in list(sample.channels["pnn"])
    result = gate(sample)
    singlets = result.gate_of("singlets")
    assert singlets.status == "skipped" and "FSC-H" in singlets.note
    assert np.array_equal(result.mask("singlets"), result.mask("cells"))
    assert result.gate_of("leukocytes").channels == ("FL3 Log", "SS Log")  # the CD45/SSC map
    scale = result.scale_for("CD45")
    if pne_log == "4,0":  # read_fcs gave 10**(4 x / 1024); log(T=10^4, M=4) maps it back to x
        assert scale.kind == "log" and scale.params["T"] == 1e4 and scale.params["M"] == 4.0
    else:  # log channel numbers: linear over $PnR
        assert scale.kind == "linear" and scale.params["top"] == "range"
    channel = np.round(result.scaled_values("CD45") * 1024)
    assert np.allclose(result.scaled_values("CD45") * 1024, channel, atol=1e-6)
    table = result.table().set_index("population")
    assert table.loc["singlets", "gate_status"] == "skipped"
    assert _f1(result.mask("blasts"), sim.labels == 6) > 0.95
    assert not result.qc("blasts"), result.qc("blasts")
