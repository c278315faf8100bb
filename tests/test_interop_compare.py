"""``cytogate compare``: event-level agreement with a reference gating.

Ground truth is made here: label files written from known masks with a known number of
events flipped, so precision/recall/F1 have exact expected values; GatingML documents from the
compliance suite (BSD-3) serve as template and reference.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cytogate.cli import cli
from cytogate.errors import CytogateError, TemplateError
from cytogate.gating.engine import gate
from cytogate.interop.agreement import (
    agreement_rows,
    compare_files,
    event_scores,
    load_reference,
    parse_map,
)
from cytogate.interop.agreement_plots import limits_of_agreement
from cytogate.io.fcs import read_fcs

SUITE = Path(__file__).parent / "data" / "gatingml_compliance"
DATA1 = SUITE / "data1.fcs"
QUAD = SUITE / "gml" / "gml_quadrant1_gate.xml"


def test_event_scores_on_known_overlap():
    ours = np.zeros(100, dtype=bool)
    theirs = np.zeros(100, dtype=bool)
    ours[:30] = True  # 30 predicted
    theirs[10:50] = True  # 40 true, 20 shared
    f1, precision, recall = event_scores(ours, theirs)
    assert precision == pytest.approx(20 / 30) and recall == pytest.approx(20 / 40)
    assert f1 == pytest.approx(2 * 20 / 70)
    assert event_scores(ours & False, theirs & False)[0] == 1.0  # both empty agree
    assert math.isnan(event_scores(ours & False, theirs)[1])  # nothing predicted


def test_same_document_on_both_sides_gives_f1_one():
    table = compare_files([DATA1], QUAD, load_reference(QUAD), {})
    assert len(table) == 4 and (table["f1"] == 1.0).all()
    assert (table["count_cytogate"] == table["count_reference"]).all()
    assert (table["pct_parent_diff"] == 0.0).all() and (table["count_ratio"] == 1.0).all()


def test_labels_with_flipped_events_give_exact_scores(tmp_path):
    result = gate(read_fcs(DATA1), QUAD)
    labels = np.full(result.n_events, "other", dtype=object)
    for pop in result.populations:
        labels[result.mask(pop)] = pop.lower()
    truth_pos = np.flatnonzero(result.mask("FL2P-FL4P"))
    labels[truth_pos[:20]] = "other"  # 20 of our events are not the reference's
    extra = np.flatnonzero(labels == "fl2n-fl4n")[:30]
    labels[extra] = "fl2p-fl4p"  # 30 reference events we do not have
    path = tmp_path / "labels.csv"
    pd.Series(labels).to_csv(path, index=False, header=False)
    rows = agreement_rows(result, load_reference(path), {"fl2p-fl4p": "FL2P-FL4P"})
    (row,) = rows
    n_ours = result.count("FL2P-FL4P")
    assert row["count_cytogate"] == n_ours and row["count_reference"] == n_ours - 20 + 30
    assert row["precision"] == pytest.approx((n_ours - 20) / n_ours)
    assert row["recall"] == pytest.approx((n_ours - 20) / (n_ours + 10))
    assert row["pct_basis"] == "total"
    # labels joined with '+' are one reference population
    joined = agreement_rows(result, load_reference(path), {"fl2p-fl4p+fl2n-fl4p": "FL2P-FL4P"})
    assert joined[0]["count_reference"] == n_ours + 10 + result.count("FL2N-FL4P")


def test_worst_first_and_flowjo_counts_kept_apart(tmp_path):
    ref = load_reference(SUITE / "gml" / "gml_rect1_gate.xml")
    table = compare_files(
        [DATA1], SUITE / "gml" / "gml_all_gates.xml", ref, {"Rectangle1": "Rectangle2"}
    )
    assert table["f1"].iloc[0] == 1.0  # Rectangle1 and Rectangle2 select the same events
    many = compare_files(
        [DATA1],
        SUITE / "gml" / "gml_all_gates.xml",
        load_reference(SUITE / "gml" / "gml_all_gates.xml"),
        {"Range1": "Range2", "Polygon1": "Polygon1", "Ellipse1": "Polygon1"},
    )
    assert list(many["f1"]) == sorted(many["f1"])  # worst first
    assert many["f1"].iloc[-1] == 1.0 and many["f1"].iloc[0] < 1.0


def test_map_errors_name_the_problem(tmp_path):
    assert parse_map(["Blasts=blasts", "A=b,C=d"]) == {"Blasts": "blasts", "A": "b", "C": "d"}
    with pytest.raises(CytogateError, match="REFERENCE=OURS"):
        parse_map(["Blasts"])
    with pytest.raises(TemplateError, match="no reference population Nope"):
        compare_files([DATA1], QUAD, load_reference(QUAD), {"Nope": "FL2P-FL4P"})
    with pytest.raises(TemplateError, match="no population 'nope'"):
        compare_files([DATA1], QUAD, load_reference(QUAD), {"FL2P-FL4P": "nope"})
    bad = tmp_path / "short.csv"
    bad.write_text("a\nb\n")
    with pytest.raises(CytogateError, match="2 labels for a file of 13367 events"):
        compare_files([DATA1], QUAD, load_reference(bad), {"a": "FL2P-FL4P"})


def test_limits_of_agreement():
    bias, low, high = limits_of_agreement(np.array([1.0, 2.0, 3.0, np.nan]))
    assert bias == 2.0 and high - bias == pytest.approx(1.96) and bias - low == pytest.approx(1.96)


def test_compare_command_writes_agreement_and_plot(tmp_path):
    out = tmp_path / "cmp"
    run = CliRunner().invoke(
        cli, ["compare", str(DATA1), "-r", str(QUAD), "-t", str(QUAD), "-o", str(out)]
    )
    assert run.exit_code == 0, run.output
    table = pd.read_csv(out / "agreement.csv")
    assert len(table) == 4 and (table["f1"] == 1.0).all()
    assert (out / "bland_altman.png").stat().st_size > 1000
    # the worst file's gate plots, cytogate's and the reference's
    assert (out / "worst" / "data1_cytogate.png").stat().st_size > 1000
    assert (out / "worst" / "data1_reference.png").stat().st_size > 1000
    bad = CliRunner().invoke(
        cli, ["compare", str(DATA1), "-r", str(QUAD), "-t", str(QUAD), "-m", "x=y"]
    )
    assert bad.exit_code == 2 and "no reference population x" in bad.output
