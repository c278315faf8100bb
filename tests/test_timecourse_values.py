"""Time courses of the measure itself: points, error bars, stars, brackets, phases, n per measure.

The tables are made here with planted effects: a 12G5-like RMFI that falls to 6h and recovers
at 24h in 6 patients, and a CD114-like RMFI measured in 4 of them only (a partial panel). The
statistics come from the project's own ``paired_statistics`` on those values, so the stars the
figure must show are real test results; every check reads the figure's artists and compares
them with numpy on the same table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cytogate.analysis.stats import default_comparisons, fold_changes, paired_statistics
from cytogate.model.measure import Measure
from cytogate.viz.figure import SIMULATED_TEXT, save_figure
from cytogate.viz.phases import Phase, study_phases
from cytogate.viz.significance import Bracket, place_brackets, significance_marks
from cytogate.viz.timecourse_values import value_summary, values_figure

TPS = ("baseline", "day3", "2h", "4h", "6h", "24h")
R12G5 = Measure.rmfi("blasts", "CXCR4_12G5", "median")
RCD114 = Measure.rmfi("blasts", "CD114", "median")
#: planted means per timepoint: 12G5 falls after plerixafor and recovers at 24h
PLANTED = {R12G5.name: (30, 29, 16, 12, 11, 26), RCD114.name: (15, 9, 9, 9, 9.5, 11)}


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(7)
    rows = []
    for measure, means in PLANTED.items():
        patients = [f"P{i:02d}" for i in range(1, 7 if measure == R12G5.name else 5)]
        for p in patients:
            level = rng.normal(1.0, 0.05)  # a patient's own level, carried over time
            for tp, mean in zip(TPS, means, strict=True):
                rows.append(
                    {
                        "patient": p,
                        "timepoint": tp,
                        "measure": measure,
                        "value": mean * level * rng.normal(1.0, 0.03),
                    }
                )
    values = pd.DataFrame(rows)
    values = values[
        ~((values["patient"] == "P02") & (values["timepoint"] == "4h"))
    ]  # one draw lost
    tc = fold_changes(values, TPS)
    stats = paired_statistics(values, default_comparisons(TPS))
    return tc, stats


@pytest.fixture(scope="module")
def figure(tables):
    tc, stats = tables
    return values_figure(tc, stats, [R12G5, RCD114], TPS, simulated=True, title="CXCR4")


def _panel(fig, measure):
    return next(ax for ax in fig.axes if ax.get_title(loc="left") == measure.label)


def test_points_and_error_bars_are_the_mean_and_sem_of_the_per_patient_values(tables, figure):
    tc, _ = tables
    for measure in (R12G5, RCD114):
        ax = _panel(figure, measure)
        line = next(x for x in ax.lines if x.get_gid() == f"mean:{measure.name}")
        rows = tc[tc["measure"] == measure.name]
        by_tp = [rows.loc[rows["timepoint"] == tp, "value"].to_numpy() for tp in TPS]
        assert np.allclose(line.get_ydata(), [v.mean() for v in by_tp])
        bars = ax.containers[0].lines[2][0].get_segments()
        half = [abs(s[1, 1] - s[0, 1]) / 2 for s in bars]
        assert np.allclose(half, [v.std(ddof=1) / np.sqrt(v.size) for v in by_tp])
    _, _, n, patients = value_summary(tc, R12G5.name, TPS)
    assert list(n) == [6, 6, 6, 5, 6, 6] and patients == 6  # P02's lost 4h draw


def test_legend_gives_n_patients_per_measure_and_stays_off_the_data(figure):
    renderer = figure.canvas.get_renderer()
    for measure, n in ((R12G5, 6), (RCD114, 4)):
        ax = _panel(figure, measure)
        (text,) = ax.get_legend().get_texts()
        assert text.get_text() == f"{measure.label}, n = {n} patients"
        legend_box = ax.get_legend().get_window_extent(renderer)
        assert not legend_box.overlaps(ax.get_window_extent(renderer))
        assert "mean ± SEM of per-patient values" in ax.get_ylabel()
        assert "stained ÷ isotype tube" in ax.get_ylabel()
    assert "simulated data" in next(t for t in figure.texts if t.get_gid() == "title").get_text()
    assert any(t.get_text() == SIMULATED_TEXT for t in figure.texts)


def test_every_significant_comparison_is_marked_where_it_belongs(tables, figure):
    _, stats = tables
    for measure in (R12G5, RCD114):
        ax = _panel(figure, measure)
        rows = stats[stats["measure"] == measure.name]
        sig = rows[rows["stars"].str.startswith("*")]
        line = next(x for x in ax.lines if x.get_gid() == f"mean:{measure.name}")
        y = np.asarray(line.get_ydata(), dtype=float)
        half = [abs(s[1, 1] - s[0, 1]) / 2 for s in ax.containers[0].lines[2][0].get_segments()]
        tops = y + np.asarray(half)
        vs_base = sig[sig["reference"] == "baseline"]
        stars = [t for t in ax.texts if t.get_gid() == f"stars:{measure.name}"]
        assert sorted((TPS[round(t.get_position()[0])], t.get_text()) for t in stars) == sorted(
            zip(vs_base["timepoint"], vs_base["stars"], strict=True)
        )
        for t in stars:  # each star stands above its own point's error bar
            i = round(t.get_position()[0])
            assert t.get_position()[1] > tops[i]
        others = sig[sig["reference"] != "baseline"]
        brackets = {
            line.get_gid().split(":", 2)[2]: line
            for line in ax.lines
            if (line.get_gid() or "").startswith("bracket:")
        }
        assert sorted(brackets) == sorted(others["comparison"])
        for r in others.itertuples():
            xs, ys = (np.asarray(v, dtype=float) for v in brackets[r.comparison].get_data())
            i0, i1 = sorted((TPS.index(r.timepoint), TPS.index(r.reference)))
            assert i0 < xs.min() < xs.max() < i1  # between its two timepoints
            assert ys.max() > tops[i0 : i1 + 1].max()  # above every point it spans
            label = next(
                t for t in ax.texts if t.get_gid() == f"bracket-stars:{measure.name}:{r.comparison}"
            )
            assert label.get_text() == r.stars
            assert label.get_position() == pytest.approx(((xs.min() + xs.max()) / 2, ys.max()))
        assert ax.get_ylim()[1] > max([tops.max()] + [b.get_ydata()[1] for b in brackets.values()])
    # the planted 24h recovery of 12G5 is a consecutive comparison the test finds
    assert (
        "24h vs 6h"
        in stats.loc[
            (stats["measure"] == R12G5.name) & stats["stars"].str.startswith("*"), "comparison"
        ].tolist()
    )


def test_overlapping_brackets_are_stacked_not_crossed():
    tps = ("a", "b", "c", "d")
    brackets = [Bracket("c", "a", "*"), Bracket("b", "a", "**"), Bracket("c", "b", "*")]
    placed = place_brackets(brackets, tps, np.array([1.0, 2.0, 1.5, 1.0]), step=0.5)
    by = {p.bracket.label: p for p in placed}
    assert by["b vs a"].y == by["c vs b"].y  # consecutive: side by side, not touching
    assert by["b vs a"].x1 < by["c vs b"].x0
    assert by["c vs a"].y >= by["b vs a"].y + 0.5  # the wide one arches over both
    stats = pd.DataFrame(
        {
            "measure": ["m"] * 3,
            "timepoint": ["b", "c", "d"],
            "reference": ["a", "b", "x"],
            "stars": ["**", "ns", "*"],
        }
    )
    stars, others = significance_marks(stats, "m", tps, "a")
    assert stars == {"b": "**"} and others == []  # 'ns' and off-axis rows are not drawn


def test_phases_follow_the_study_timepoints_and_are_absent_for_other_designs(tables, figure):
    labels = {t.get_text() for ax in figure.axes for t in ax.texts if "phase" in str(t.get_gid())}
    assert labels == {"G-CSF", "plerixafor (after the day-3 draw)"}
    ax = _panel(figure, R12G5)
    spans = {p.get_gid(): p for p in ax.patches if str(p.get_gid()).startswith("phase-strip:")}
    gcsf = spans["phase-strip:G-CSF"]
    assert (gcsf.get_x(), gcsf.get_x() + gcsf.get_width()) == (0, 1)  # baseline -> day3
    assert study_phases(("baseline", "day3", "6h")) == (
        Phase("G-CSF", "baseline", "day3"),
        Phase("plerixafor (after the day-3 draw)", "day3", "6h"),
    )
    assert study_phases(("week0", "week4", "week8"), "week0") == ()
    assert study_phases(("baseline", "2h", "day3")) == ()  # not in the study's order
    tc, stats = tables
    other = tc.assign(timepoint=tc["timepoint"].map(dict(zip(TPS, "ABCDEF", strict=True))))
    fig = values_figure(other, stats.iloc[0:0], [R12G5], list("ABCDEF"), "A")
    assert not [t for ax in fig.axes for t in ax.texts if "phase" in str(t.get_gid())]


def test_values_figure_saves(tmp_path, figure):
    (png,) = save_figure(figure, tmp_path / "values.png", dpi=80)
    assert png.stat().st_size > 10_000


def test_an_rmfi_axis_names_the_control_its_marker_is_divided_by(tables):
    tc, stats = tables
    fig = values_figure(tc, stats, [R12G5, RCD114], TPS, controls={"CD114": "fmo"})
    assert "stained ÷ isotype tube" in _panel(fig, R12G5).get_ylabel()
    assert "stained ÷ FMO tube" in _panel(fig, RCD114).get_ylabel()
