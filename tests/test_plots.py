"""Gate, marker and time-course figures: what a panel shows must be what the gating computed.

Each check reads the figure objects themselves (artists' data, tick positions, text) and
compares them with an independent computation: the template's vertices through
``Scale.inverse``, ``GatingResult.count``, the quantification rows, the stats table.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cytogate.analysis.quantify import MarkerPlan
from cytogate.cli import cli
from cytogate.gating.engine import gate
from cytogate.gating.gates import Boolean, Polygon, Rectangle
from cytogate.gating.template import load_template, parse_template
from cytogate.io.fcs import read_fcs
from cytogate.model.measure import Measure
from cytogate.study.batch import process_group
from cytogate.study.design import RunConfig, read_design
from cytogate.viz.plots import (
    SIMULATED_TEXT,
    gate_figure,
    marker_figure,
    save_figure,
    timecourse_figure,
)

from .conftest import make_sample

RUN42: Path  # the two-tube SIMULATED study (tests/conftest.py two_tube_run42), set below


@pytest.fixture(scope="module", autouse=True)
def _two_tube_run42(two_tube_run42: Path) -> None:
    """This module's tests need the two-tube design; the bundled run42 is multi-tube."""
    global RUN42
    RUN42 = two_tube_run42


# a typical patient, and the atypical one whose blasts straddle the fixed gates
FILES = ("P02_baseline_stained.fcs", "P01_6h_stained.fcs", "P05_24h_isotype.fcs")
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


@pytest.fixture(scope="module")
def gated():
    return {name: gate(read_fcs(RUN42 / name)) for name in FILES}


@pytest.fixture(scope="module")
def drawn(gated):
    return {name: gate_figure(result) for name, result in gated.items()}


@pytest.fixture(scope="module")
def figures(drawn):
    return {name: d.figure for name, d in drawn.items()}


@pytest.fixture(scope="module")
def panels(drawn):
    """Axes -> what the panel shows (returned by gate_figure, not stored on the Axes)."""
    return {p.ax: p for d in drawn.values() for p in d.panels}


def scale_of(result, dim):
    return result.scale_for(dim)


def _gate_lines(fig):
    return {
        line.get_gid()[len("gate:") :]: line
        for ax in fig.axes
        for line in ax.lines
        if (line.get_gid() or "").startswith("gate:")
    }


def _texts(fig, prefix):
    return {
        t.get_gid()[len(prefix) :]: t
        for ax in fig.axes
        for t in ax.texts
        if (t.get_gid() or "").startswith(prefix)
    }


def _drawn(result):
    """Applied gates with an outline (boolean gates have none; they are listed in the footer)."""
    return [
        g for g in result.gates if g.status == "applied" and not isinstance(g.geometry, Boolean)
    ]


def _pnr(result, dim):
    return float(result.sample.channels["pnr"].iloc[result.resolve(dim).index])


def _tick_value(label: str) -> float:
    """'0', '50K', '1.5M', '10³', '−10²' -> the data value."""
    text = label.replace("\N{MINUS SIGN}", "-")
    m = re.fullmatch(r"(-?)10([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)", text)
    if m:
        return float(f"{m[1]}1e{m[2].translate(_SUPERSCRIPTS)}")
    m = re.fullmatch(r"(-?[\d.]+)([KM]?)", text)
    assert m, f"tick label {label!r} is not a data value"
    return float(m[1]) * {"": 1, "K": 1e3, "M": 1e6}[m[2]]


def test_import_cytogate_does_not_load_matplotlib():
    code = (
        "import sys, cytogate, cytogate.viz.plots, cytogate.viz.report, cytogate.cli;"
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", FILES)
def test_gate_outlines_in_data_units_are_the_templates(gated, figures, panels, name):
    result, fig = gated[name], figures[name]
    lines = _gate_lines(fig)
    assert set(lines) == {g.name for g in _drawn(result)}
    for g in _drawn(result):
        line, geometry = lines[g.name], g.geometry
        ax = line.axes
        xy = line.get_xydata()
        if panels[ax].y is None:  # a range gate on a histogram: its bounds as vertical lines
            finite = [b for b in (geometry.min[0], geometry.max[0]) if b is not None]
            assert set(np.round(finite, 12)) <= set(np.round(xy[:, 0], 12))
            continue
        assert np.allclose(xy[0], xy[-1])  # closed
        if isinstance(geometry, Polygon):
            vertices = np.asarray(geometry.vertices)
            assert np.allclose(xy[:-1], vertices)  # same vertices, same order, same axes
            for j, dim in enumerate(geometry.dims):
                axis = panels[ax].x if j == 0 else panels[ax].y
                assert axis.dim == dim
                expected = scale_of(result, dim).inverse(vertices[:, j], _pnr(result, dim))
                assert np.allclose(axis.to_data(xy[:-1, j]), expected, rtol=1e-9, atol=1e-6)
        elif isinstance(geometry, Rectangle) and len(geometry.dims) == 1:
            # a range gate drawn as a band on a plane (CD45+ on the singlets' CD45/SSC-A)
            dim = geometry.dims[0]
            j = 0 if panels[ax].x.dim == dim else 1
            axis = panels[ax].x if j == 0 else panels[ax].y
            edges = set(np.round(xy[:, j], 12))
            for bound in (geometry.min[0], geometry.max[0]):
                if bound is not None:
                    assert round(bound, 12) in edges
            lo, hi = axis.limits
            other = xy[:, 1 - j]
            other_lim = (panels[ax].y if j == 0 else panels[ax].x).limits
            # the open sides end just outside the axes (clipped, not at ±1e9)
            assert xy[:, j].max() <= hi + 0.011 * (hi - lo)
            assert other.min() >= other_lim[0] - 0.011 * (other_lim[1] - other_lim[0])
            assert other.max() <= other_lim[1] + 0.011 * (other_lim[1] - other_lim[0])
            bounds = [b for b in (geometry.min[0], geometry.max[0]) if b is not None]
            expected = scale_of(result, dim).inverse(np.array(bounds), _pnr(result, dim))
            assert np.allclose(axis.to_data(bounds), expected)


@pytest.mark.parametrize("name", FILES)
def test_each_panel_holds_every_parent_event_and_gates_sit_on_their_populations(
    gated, figures, panels, name
):
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm
    from matplotlib.path import Path as MplPath

    result, fig = gated[name], figures[name]
    lines = _gate_lines(fig)
    for ax in fig.axes:
        info = panels[ax]
        hist = info.histogram
        assert info.n_events == result.count(info.parent)
        assert hist.sum() == info.n_events  # nothing subsampled or dropped
        # the image drawn is the histogram coloured: turbo on log counts, empty bins white
        image = next(im for im in ax.images if im.get_gid() == "density")
        rgba = np.asarray(image.get_array())
        assert rgba.shape[:2] == hist.T.shape
        norm = LogNorm(vmin=1, vmax=max(hist.max(), 2))
        want = colormaps["turbo"](norm(np.maximum(hist.T, 1)), bytes=True)
        filled = hist.T > 0
        assert np.all(rgba[~filled] == 255)
        assert np.abs(rgba[filled].astype(int) - want[filled]).max() <= 1
        assert tuple(image.get_extent()) == (*info.x.limits, *info.y.limits)
        n = hist.shape[0]
        (x0, x1), (y0, y1) = info.x.limits, info.y.limits
        xc = x0 + (np.arange(n) + 0.5) * (x1 - x0) / n
        yc = y0 + (np.arange(hist.shape[1]) + 0.5) * (y1 - y0) / hist.shape[1]
        centres = np.column_stack([g.ravel() for g in np.meshgrid(xc, yc, indexing="ij")])
        for pop in info.populations:
            inside = MplPath(lines[pop].get_xydata()).contains_points(centres)
            drawn = hist.ravel()[inside].sum()
            # bins straddling an edge count wholly in or out: allow 1.5 % of the panel
            assert abs(drawn - result.count(pop)) <= 0.015 * info.n_events, (pop, drawn)


@pytest.mark.parametrize("name", FILES)
def test_counts_written_on_panels_equal_the_gating_result(gated, figures, panels, name):
    result, fig = gated[name], figures[name]
    labels = _texts(fig, "label:")
    booleans = [g.name for g in result.gates if isinstance(g.geometry, Boolean)]
    assert set(labels) == set(result.populations) - set(booleans)
    footer = "\n".join(t.get_text() for t in fig.texts)
    for name in booleans:  # no outline: stated under the panels, with its count
        assert f"within {result.parent(name)}: {result.count(name):,} events" in footer
    for pop, text in labels.items():
        m = re.fullmatch(r"(\S+)(?: \(QC\))?\n([\d,]+) · ([\d.]+)%", text.get_text())
        assert m, text.get_text()
        assert m[1] == pop
        assert int(m[2].replace(",", "")) == result.count(pop)
        assert float(m[3]) == pytest.approx(round(result.pct_parent(pop), 1))
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    for ax, title in zip(fig.axes, titles, strict=True):
        assert f"{result.count(panels[ax].parent):,} events, all shown" in title


@pytest.mark.parametrize("name", FILES)
def test_tick_labels_are_data_values_at_their_scaled_positions(gated, figures, panels, name):
    result, fig = gated[name], figures[name]
    for ax in fig.axes:
        for axis, ticks, labels in (
            (panels[ax].x, ax.get_xticks(), ax.get_xticklabels()),
            (panels[ax].y, ax.get_yticks(), ax.get_yticklabels()),
        ):
            values = [_tick_value(t.get_text()) for t in labels]
            assert len(values) >= 4, (axis.dim, values)
            expected = scale_of(result, axis.dim).apply(np.array(values), _pnr(result, axis.dim))
            assert np.allclose(ticks, expected)
            if axis.scale.kind == "logicle":
                assert {0.0, 1e3, 1e4, 1e5} <= set(values)
            if axis.scale.kind == "linear":
                assert {0.0, 1e5, 2e5} <= set(values)


@pytest.mark.parametrize("name", FILES)
def test_labels_stay_inside_their_axes_and_do_not_overlap(figures, panels, name):
    fig = figures[name]
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        label_boxes = [
            t.get_window_extent(renderer)
            for t in ax.texts
            if (t.get_gid() or "").startswith("label:")
        ]
        for b in label_boxes:
            assert box.x0 - 2 <= b.x0 and b.x1 <= box.x1 + 2
            assert box.y0 - 2 <= b.y0 and b.y1 <= box.y1 + 2
        for i, a in enumerate(label_boxes):
            for b in label_boxes[i + 1 :]:
                assert not a.overlaps(b)
        # each label sits at its own gate: touching its (clipped) outline's extent, or close
        lines = {ln.get_gid(): ln for ln in ax.lines}
        for t in ax.texts:
            pop = (t.get_gid() or "").removeprefix("label:")
            line = lines.get(f"gate:{pop}")
            if line is None or panels[ax].y is None or "\n0 ·" in t.get_text():
                continue  # an empty gate has no place to sit at (a leader line points there)
            pts = ax.transData.transform(line.get_xydata())
            pts = np.clip(pts, [box.x0, box.y0], [box.x1, box.y1])
            b = t.get_window_extent(renderer)
            dx = max(pts[:, 0].min() - b.x1, b.x0 - pts[:, 0].max(), 0) / box.width
            dy = max(pts[:, 1].min() - b.y1, b.y0 - pts[:, 1].max(), 0) / box.height
            assert np.hypot(dx, dy) < 0.08, (pop, dx, dy)
    # the figure title, the SIMULATED banner and the panel titles do not collide either
    top = [t for t in fig.texts if t.get_gid() in ("title", "subtitle", "simulated-banner")]
    top_boxes = [t.get_window_extent(renderer) for t in top]
    panel_titles = [ax.title if ax.title.get_text() else ax._left_title for ax in fig.axes]
    panel_boxes = [t.get_window_extent(renderer) for t in panel_titles]
    for i, a in enumerate(top_boxes):
        for b in top_boxes[i + 1 :] + panel_boxes:
            assert not a.overlaps(b)


def test_simulated_files_carry_the_banner_and_real_ones_do_not(gated):
    result = gated["P02_baseline_stained.fcs"]
    assert any(t.get_text() == SIMULATED_TEXT for t in gate_figure(result).figure.texts)
    result.sample.keywords.pop("CYTOGATE_SIMULATED")
    try:
        assert not any(t.get_text() == SIMULATED_TEXT for t in gate_figure(result).figure.texts)
    finally:
        result.sample.keywords["CYTOGATE_SIMULATED"] = "TRUE"


_RAW_TEMPLATE = """
name: crafted
panel: {FSC-A: ['^FSC-A$'], SSC-A: ['^SSC-A$'], CD45: ['CD45'], Ki67: ['Ki67']}
compensation: none
scales:
  default: {kind: arcsinh, cofactor: 150}
  FSC-A: {kind: linear, top: range}
  SSC-A: {kind: linear, top: range}
gates:
  - {name: cells, kind: rectangle, dims: [FSC-A, SSC-A], min: [0.1, null], max: [null, 0.5]}
  - {name: q, parent: cells, kind: quadrant, dims: [CD45, Ki67], at: [3.0, 2.0],
     populations: {hi_hi: '++', hi_lo: '+-', lo_hi: '-+', lo_lo: '--'}}
  - {name: not_hi_hi, parent: cells, kind: boolean, op: not, of: [hi_hi]}
"""


def test_open_rectangles_are_clipped_quadrants_labelled_and_large_samples_all_drawn():
    rng = np.random.default_rng(3)
    n = 200_000
    events = np.column_stack(
        [
            rng.uniform(-0.05, 1.1, n) * 262144,  # some beyond the axes on both sides
            rng.uniform(0, 1, n) * 262144,
            rng.lognormal(7, 1.5, n),
            rng.normal(0, 800, n),
        ]
    )
    sample = make_sample(
        events, ["FSC-A", "SSC-A", "CD45 PerCP", "Ki67 BV421"], pns=["", "", "CD45", "Ki67"]
    )
    result = gate(sample, parse_template(_RAW_TEMPLATE))
    drawn = gate_figure(result)
    fig = drawn.figure
    cells_ax, quad_ax = fig.axes
    info = drawn.panels[0]
    assert info.ax is cells_ax
    assert info.n_events == n and info.histogram.sum() == n
    assert info.off_scale > 0 and f"\n{info.off_scale:,} beyond the axes" in cells_ax.get_title(
        loc="left"
    )
    xy = _gate_lines(fig)["cells"].get_xydata()
    assert np.abs(xy).max() < 1.1  # ±1e9 clipped to the axes
    assert set(np.round(xy[:, 0], 9)) >= {0.1} and set(np.round(xy[:, 1], 9)) >= {0.5}
    labels = _texts(fig, "label:")
    assert set(labels) == {"cells", "hi_hi", "hi_lo", "lo_hi", "lo_lo"}
    for pop in ("hi_hi", "hi_lo", "lo_hi", "lo_lo"):
        assert f"\n{result.count(pop):,} · " in labels[pop].get_text()
    lines = {line.get_gid() for line in quad_ax.lines}
    assert {"gate:q:x", "gate:q:y"} <= lines
    footer = "\n".join(t.get_text() for t in fig.texts)
    assert f"not_hi_hi = not hi_hi within cells: {result.count('not_hi_hi'):,} events" in footer
    # arcsinh axes are labelled in data units too
    assert all(_tick_value(t.get_text()) is not None for t in quad_ax.get_xticklabels())


@pytest.fixture(scope="module")
def group_rows():
    cfg = RunConfig()
    tmpl = load_template(cfg.template)
    groups = {(g.patient, g.timepoint): g for g in read_design(RUN42, cfg).groups(cfg)}
    return cfg, tmpl, groups


@pytest.mark.parametrize("key", [("P02", "baseline"), ("P01", "6h")])
def test_marker_plot_states_the_rmfi_and_threshold_of_markers_csv(group_rows, key):
    cfg, tmpl, groups = group_rows
    group = groups[key]
    output = process_group(group, tmpl, cfg)
    stained_rows = [r for r in output.markers if r["tube"] == "stained"]
    rows = {r["marker"]: r for r in stained_rows}  # exactly what batch writes to markers.csv
    stained, control = output.outcomes  # drawn from what the batch recorded, not re-gated
    fig = marker_figure(stained, control, MarkerPlan.from_config(cfg), stained_rows)
    stats = _texts(fig, "stats:")
    assert set(stats) == set(cfg.rmfi_markers) | set(cfg.positivity_markers)
    for marker in cfg.rmfi_markers:
        text = stats[marker].get_text()
        rmfi = float(re.search(r"RMFI ([\d.,]+)", text)[1].replace(",", ""))
        assert rmfi == pytest.approx(rows[marker]["rmfi"], rel=5e-3)  # 3 significant digits
        median = float(re.search(r"median stained ([\d.,]+)", text)[1].replace(",", ""))
        assert median == pytest.approx(rows[marker]["mfi_median"], rel=5e-4)
    ki67 = rows["Ki67"]
    text = stats["Ki67"].get_text()
    assert float(re.search(r"positive ([\d.]+)%", text)[1]) == pytest.approx(
        ki67["pct_positive"], abs=0.05
    )
    line = next(line for ax in fig.axes for line in ax.lines if line.get_gid() == "threshold:Ki67")
    axis = line.axes
    assert line.get_xdata()[0] == pytest.approx(
        tmpl.scale_for("Ki67").apply(np.array([ki67["threshold"]]), 262144.0)[0]
    )
    assert {h.get_gid() for h in axis.patches} >= {"hist:stained", "hist:control"}
    # the stats box and the legend do not overlap
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        box = next(t for t in ax.texts if (t.get_gid() or "").startswith("stats:"))
        assert not box.get_window_extent(renderer).overlaps(
            ax.get_legend().get_window_extent(renderer)
        )


def _toy_tables():
    tps = ["baseline", "day3", "6h"]
    tc_rows, stats_rows = [], []
    fc = {"P1": [1, 2.0, 4.0], "P2": [1, 3.0, 5.0], "P3": [1, 2.5, 6.0]}
    for patient, values in fc.items():
        for tp, v in zip(tps, values, strict=True):
            tc_rows.append(
                {
                    "patient": patient,
                    "measure": "blasts_per_ul",
                    "timepoint": tp,
                    "value": 100 * v,
                    "baseline_value": 100,
                    "fold_change": v,
                }
            )
    for tp, stars in (("day3", "*"), ("6h", "ns")):
        vals = np.array([fc[p][tps.index(tp)] for p in fc])
        stats_rows.append(
            {
                "measure": "blasts_per_ul",
                "comparison": f"{tp} vs baseline",
                "timepoint": tp,
                "reference": "baseline",
                "n_pairs": 3,
                "n_fc": 3,
                "mean_fc": vals.mean(),
                "sem_fc": vals.std(ddof=1) / np.sqrt(3),
                "test": "paired_t",
                "correction": "none",
                "p_adj": 0.03,
                "stars": stars,
            }
        )
    return pd.DataFrame(tc_rows), pd.DataFrame(stats_rows), tps


def test_timecourse_points_error_bars_and_stars_come_from_the_stats_table():
    tc, stats, tps = _toy_tables()
    blasts = Measure.per_ul("blasts")
    fig = timecourse_figure(tc, stats, [blasts], tps, per_patient=True, simulated=True)
    (ax,) = fig.axes
    mean = next(line for line in ax.lines if line.get_gid() == "mean:blasts_per_ul")
    assert list(mean.get_xdata()) == [0, 1, 2]
    assert np.allclose(mean.get_ydata(), [1.0, *stats["mean_fc"]])
    container = ax.containers[0]
    segments = container.lines[2][0].get_segments()
    half = [abs(s[1, 1] - s[0, 1]) / 2 for s in segments]
    assert np.allclose(half, [0.0, *stats["sem_fc"]])
    stars = [t for t in ax.texts if t.get_gid() == "stars:blasts_per_ul"]
    assert [(t.xy[0], t.get_text()) for t in stars] == [(1, "*")]  # 'ns' is not starred
    patients = [line for line in ax.lines if (line.get_gid() or "").startswith("patient:")]
    assert len(patients) == 3
    assert [t.get_text() for t in ax.get_xticklabels()] == tps
    assert any(t.get_text() == SIMULATED_TEXT for t in fig.texts)
    assert Measure.rmfi("blasts", "CXCR4_12G5", "median").label == "CXCR4 (12G5) RMFI on blasts"
    assert Measure.pct_positive("blasts", "Ki67").label == "Ki67+ % of blasts"


def test_save_figure_writes_png_svg_pdf_and_a_thumbnail(tmp_path, figures):
    from PIL import Image

    fig = figures["P02_baseline_stained.fcs"]
    png, thumb = save_figure(fig, tmp_path / "g.png", dpi=100, thumbnail=tmp_path / "t.png")
    with Image.open(png) as im, Image.open(thumb) as th:
        assert im.size[0] == round(fig.get_figwidth() * 100)
        assert th.size[0] == 520 and im.info.get("dpi", (0,))[0] == pytest.approx(100, abs=1)
    (svg,) = save_figure(fig, tmp_path / "g.svg")
    assert "<svg" in svg.read_text()[:500]
    (pdf,) = save_figure(fig, tmp_path / "g.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    with pytest.raises(ValueError, match="png, svg, pdf"):
        save_figure(fig, tmp_path / "g.jpg")


def test_plot_command(tmp_path):
    stained, control = RUN42 / "P03_4h_stained.fcs", RUN42 / "P03_4h_isotype.fcs"
    out = tmp_path / "sub" / "p03_gates.svg"
    res = CliRunner().invoke(cli, ["plot", str(stained), "--control", str(control), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.exists() and (tmp_path / "sub" / "p03_markers.svg").exists()
    res = CliRunner().invoke(cli, ["plot", str(stained), "-o", str(tmp_path / "x.jpg")])
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0 and "must end in .png, .svg, .pdf" in res.stderr
    res = CliRunner().invoke(cli, ["plot", str(tmp_path / "missing.fcs")])
    assert res.exit_code == 2 and res.stderr.startswith("cytogate: error:")


def test_a_label_placed_away_from_its_gate_gets_a_leader_line_to_that_gate():
    import numpy as np

    import cytogate
    from cytogate.viz.plots import gate_figure

    run42 = RUN42
    # P01 2h: the monocytes merge with the blasts next to them, so their gate is empty (a point
    # at the panel's corner, where the label cannot sit): the label goes elsewhere, with a line
    result = cytogate.gate(cytogate.read_fcs(run42 / "P01_2h_stained.fcs"))
    fig = gate_figure(result).figure
    fig.canvas.draw()
    leaders = [
        (ax, ln) for ax in fig.axes for ln in ax.lines if (ln.get_gid() or "") == "leader:monocytes"
    ]
    assert len(leaders) == 1
    ax, leader = leaders[0]
    gate_line = next(ln for ln in ax.lines if ln.get_gid() == "gate:monocytes")
    end_display = ax.transAxes.transform(np.column_stack(leader.get_data())[1])
    outline_display = ax.transData.transform(np.column_stack(gate_line.get_data()))
    gap = np.min(np.hypot(*(outline_display - end_display).T))
    assert gap < 6  # pixels: the line ends on the monocyte gate's outline


def test_figures_drawn_on_a_reused_layout_match_a_full_draw(group_rows, tmp_path):
    """The batch draws each file over its layout's cached axes and ticks; the pixels must be
    those of drawing the whole figure for that file. Labels are measured at one resolution
    (labels.MEASURE_DPI) whatever the output's, so both draws put them in the same spot (P05
    24h's blasts label took another spot in each when measured at 100 and 80 dpi)."""
    from PIL import Image

    from cytogate.viz.render import PlotJob, plot_group

    cfg, tmpl, groups = group_rows
    plan = MarkerPlan.from_config(cfg)
    for key in (("P02", "baseline"), ("P05", "24h"), ("P01", "6h")):
        output = process_group(groups[key], tmpl, cfg)
        stained, control = output.outcomes
        rows = tuple(r for r in output.markers if r["tube"] == "stained")
        job = PlotJob(
            patient=key[0], timepoint=key[1], stained=stained, control=control, marker_rows=rows
        )
        result = plot_group(job, plan, str(tmp_path / "plots"), "png", 80)
        assert all(not e.error for e in result.entries) and len(result.entries) == 3
        full = {
            f"gates/{stained.file.stem}": gate_figure(stained).figure,
            f"gates/{control.file.stem}": gate_figure(control).figure,
            f"markers/{stained.file.stem}_markers": marker_figure(stained, control, plan, rows),
        }
        for stem, fig in full.items():
            save_figure(fig, tmp_path / "full" / f"{stem}.png", dpi=80)
            with (
                Image.open(tmp_path / "plots" / f"{stem}.png") as a,
                Image.open(tmp_path / "full" / f"{stem}.png") as b,
            ):
                pa, pb = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))
            assert pa.shape == pb.shape
            differ = np.any(pa != pb, axis=2).mean()
            assert differ < 0.002, (stem, differ)  # nothing of the previous file is left


def test_plot_of_one_multitube_tube_draws_the_markers_that_tube_carries(tmp_path):
    """`cytogate plot` of a tube of the bundled multi-tube run (SIMULATED): the marker figure
    has the markers the patient's panel put in that tube (ground_truth/panels.csv), not the
    run's whole list with 'not found' panels for the other tube's markers."""
    from cytogate.viz.render import tube_marker_plan

    bundled = Path(__file__).resolve().parents[1] / "sample_fcs" / "run42"
    manifest = pd.read_csv(bundled / "manifest.csv", keep_default_na=False)
    panels = pd.read_csv(bundled / "ground_truth" / "panels.csv").set_index("patient")
    plan = MarkerPlan.from_config(RunConfig())
    in_tube = {"CXCR4": ["CXCR4_12G5", "CXCR4_1D9", "CD114", "CD49f"], "Ki67": ["Ki67"]}
    baseline = manifest[(manifest["timepoint"] == "baseline") & (manifest["role"] == "stained")]
    assert set(baseline["tube"]) == set(in_tube)
    for rec in baseline.itertuples():
        result = gate(read_fcs(bundled / rec.file))
        want = [m for m in in_tube[rec.tube] if panels.loc[rec.patient, f"has_{m}"]]
        assert tube_marker_plan(result, plan).markers == want, rec.file
    ki67 = baseline[baseline["tube"] == "Ki67"].iloc[0]
    control = manifest[
        (manifest["patient"] == ki67["patient"])
        & (manifest["timepoint"] == "baseline")
        & (manifest["control_for"] == "Ki67")
    ]["file"]
    res = CliRunner().invoke(
        cli,
        ["plot", str(bundled / ki67["file"]), "--control", str(bundled / control.item()),
         "--out", str(tmp_path / "ki67.png")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert res.output.split() == [str(tmp_path / "ki67.png"), str(tmp_path / "ki67_markers.png")]


def test_the_footnote_of_a_file_with_many_qc_reasons_stays_below_the_panels():
    import cytogate
    from cytogate.viz.plots import gate_figure

    # P01 2h: monocytes and blasts both carry QC reasons, so the footnote runs to several lines
    result = cytogate.gate(cytogate.read_fcs(RUN42 / "P01_2h_stained.fcs"))
    fig = gate_figure(result).figure
    renderer = fig.canvas.get_renderer()
    foot = next(t for t in fig.texts if t.get_text().startswith("Density:"))
    assert foot.get_text().count("\n") >= 3  # the case that used to run into the axis labels
    top = foot.get_window_extent(renderer).y1
    lowest_axis = min(ax.get_tightbbox(renderer).y0 for ax in fig.axes)
    assert top < lowest_axis
