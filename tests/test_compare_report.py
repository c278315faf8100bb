"""``cytogate compare``'s report: worst first, Bland–Altman numbers, both gates in one panel.

Data: FlowKit's diamond example file and its FlowJo quadrant workspace (BSD-3, in
tests/data/flowjo_examples) as the reference; cytogate's side is a template written here with
the quadrant dividers moved (channel_A at 0.17 and channel_B at 0.21 of the range, where the
workspace divides near 0.19 and 0.19), so each quadrant disagrees by a different, known amount.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cytogate.cli import cli
from cytogate.interop.agreement import compare_files_keeping, load_reference, parse_map
from cytogate.interop.compare import CompareResult
from cytogate.viz.agreement_figures import (
    REFERENCE_COLOUR,
    bland_altman_figure,
    bland_altman_numbers,
    both_gates_figure,
)
from cytogate.viz.agreement_report import write_agreement_report

EXAMPLES = Path(__file__).parent / "data" / "flowjo_examples"
FCS = EXAMPLES / "test_data_diamond_01.fcs"
WSP = EXAMPLES / "simple_diamond_example_quad_gate.wsp"
TEMPLATE = """
name: shifted_quadrants
version: 1
panel:
  channel_A: ['^channel_A$']
  channel_B: ['^channel_B$']
compensation: none
scales:
  default: {kind: linear, top: range}
gates:
"""
for _name, _lo, _hi in (
    ("A-B+", "[null, 0.21]", "[0.17, null]"),
    ("A+B+", "[0.17, 0.21]", "[null, null]"),
    ("A+B-", "[0.17, null]", "[null, 0.21]"),
    ("A-B-", "[null, null]", "[0.17, 0.21]"),
):
    TEMPLATE += (
        f"  - {{name: {_name}, kind: rectangle, dims: [channel_A, channel_B], "
        f"min: {_lo}, max: {_hi}}}\n"
    )
MAP = [
    "Q1: channel_A- , channel_B+=A-B+",
    "Q2: channel_A+ , channel_B+=A+B+",
    "Q3: channel_A+ , channel_B-=A+B-",
    "Q4: channel_A- , channel_B-=A-B-",
]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("tmpl") / "shifted.yaml"
    path.write_text(TEMPLATE)
    return path


@pytest.fixture(scope="module")
def compared(template, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    args = ["compare", str(FCS), "-r", str(WSP), "-t", str(template), "-o", str(out)]
    for item in MAP:
        args += ["-m", item]
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 0, run.output
    return out


class _Table(HTMLParser):
    """The text of every cell of the table with id ``agreement``, and a paragraph by id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.ids: dict[str, str] = {}
        self._in_table = False
        self._cell: list[str] | None = None
        self._id: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "agreement":
            self._in_table = True
        if self._in_table and tag == "tr":
            self.rows.append([])
        if self._in_table and tag in ("td", "th"):
            self._cell = []
        if tag == "p" and a.get("id"):
            self._id = a["id"]
            self.ids[self._id] = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        if tag == "p":
            self._id = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._id:
            self.ids[self._id] += data


def _page(out: Path) -> _Table:
    page = _Table()
    page.feed((out / "agreement.html").read_text(encoding="utf-8"))
    return page


def test_report_table_is_worst_first_and_equals_agreement_csv(compared):
    from .test_report import _parse

    html = _parse(compared / "agreement.html")
    assert html.problems == [] and html.stack == []  # well formed
    for target in [*html.links, *(img["src"] for img in html.images)]:
        if not target.startswith("#"):
            assert (compared / target).is_file(), target  # every link resolves beside the page
    assert len(html.images) == 2  # Bland–Altman and the worst file's panels
    table = pd.read_csv(compared / "agreement.csv")
    page = _page(compared)
    header, *rows = page.rows
    f1_col, pop_col = header.index("f1"), header.index("population")
    assert [r[pop_col] for r in rows] == list(table["population"])
    f1 = [float(r[f1_col]) for r in rows]
    assert f1 == sorted(f1) and len(set(f1)) == 4  # worst first, and all four differ
    assert np.allclose(f1, table["f1"], atol=5e-4)
    # the moved dividers make A-B+ the worst: its B divider moved up, A divider left
    assert table["population"].iloc[0] == "A-B+" and table["f1"].iloc[0] < 0.9


def test_bland_altman_numbers_are_numpys_on_the_table(compared):
    table = pd.read_csv(compared / "agreement.csv")
    diff = (table["pct_parent_cytogate"] - table["pct_parent_reference"]).to_numpy()
    bias, sd = diff.mean(), diff.std(ddof=1)
    numbers = bland_altman_numbers(table)
    assert numbers.bias == pytest.approx(bias, abs=1e-12)
    assert numbers.lower == pytest.approx(bias - 1.96 * sd) and numbers.n == 4
    assert numbers.upper == pytest.approx(bias + 1.96 * sd)
    stated = [float(v) for v in re.findall(r"[+-]\d+\.\d\d", _page(compared).ids["ba-numbers"])]
    assert stated == pytest.approx([bias, bias - 1.96 * sd, bias + 1.96 * sd], abs=0.006)
    fig = bland_altman_figure(table)
    (ax,) = fig.axes
    lines = {ln.get_gid(): ln.get_ydata()[0] for ln in ax.lines if ln.get_gid()}
    assert lines["line:bias"] == pytest.approx(bias)
    assert lines["line:upper limit"] == pytest.approx(bias + 1.96 * sd)
    points = np.vstack([c.get_offsets() for c in ax.collections])
    mean = (table["pct_parent_cytogate"] + table["pct_parent_reference"]) / 2
    expected = np.array(sorted(zip(mean, diff, strict=True)))
    assert np.allclose(np.array(sorted(map(tuple, points))), expected)
    assert (compared / "bland_altman.png").stat().st_size > 5_000


def test_the_worst_files_panels_draw_both_gates_in_one_panel(template):
    from matplotlib.collections import Collection
    from matplotlib.path import Path as MplPath

    reference = load_reference(WSP)
    table, kept = compare_files_keeping([FCS], template, reference, parse_map(MAP), keep=1)
    (item,) = kept
    rows = table.to_dict("records")
    fig = both_gates_figure(item, rows)
    panels = [ax for ax in fig.axes if ax.get_legend() is not None]
    assert len(panels) == 4
    for ax, row in zip(panels, rows, strict=True):
        ours = [ln for ln in ax.lines if str(ln.get_gid()).startswith("gate:cytogate:")]
        theirs = [
            c
            for c in ax.get_children()
            if isinstance(c, Collection) and str(c.get_gid()).startswith("gate:reference:")
        ]
        assert len(ours) == 1 and len(theirs) == 1  # two outlines, one of each side
        assert ours[0].get_gid() == f"gate:cytogate:{row['population']}"
        assert ours[0].get_color() != REFERENCE_COLOUR
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels[0].startswith(f"cytogate: {row['population']}, {row['count_cytogate']:,}")
        assert labels[1].startswith(f"reference: {row['reference_population']}")
        # cytogate's outline is its template's rectangle: the moved A divider at 0.17
        xs = np.asarray(ours[0].get_xdata(), dtype=float)
        assert np.isclose(xs, 0.17).any()
        # the reference's outline encloses its own events and few of the others
        mask = item.reference_masks[(row["population"], row["reference_population"])]
        view_x, view_y = _scaled(item)
        paths = [p for p in theirs[0].get_paths() if len(p.vertices) > 2]
        inside = np.zeros(mask.size, dtype=bool)
        points = np.column_stack([view_x, view_y])
        for p in paths:
            inside |= MplPath(p.vertices).contains_points(points)
        assert inside[mask].mean() > 0.9, row["population"]
        assert inside[~mask].mean() < 0.2, row["population"]


def _scaled(item):
    from cytogate.viz.events import EventView

    view = EventView.from_result(item.ours)
    return view.scaled_values("channel_A"), view.scaled_values("channel_B")


def test_flowjo_recorded_counts_are_compared_with_the_exact_evaluation(
    compared, template, monkeypatch
):
    """…and the report draws the kept results: with gating disabled it still writes."""
    import cytogate.gating.engine as engine

    page = _page(compared)
    assert "equals the exact evaluation" in page.ids["flowjo-equal"]  # FlowKit's example agrees
    reference = load_reference(WSP)
    table, kept = compare_files_keeping([FCS], template, reference, parse_map(MAP), keep=1)
    changed = table.copy()
    changed.loc[1, "count_flowjo"] = changed.loc[1, "count_reference"] - 13
    out = compared.parent / "flowjo_differs"
    out.mkdir()
    result = CompareResult(
        table=changed,
        worst=tuple(kept),
        out=out,
        run=FCS,
        reference=reference,
        template=str(template),
        mapping=parse_map(MAP),
    )

    def no_gating(*_args, **_kwargs):
        raise AssertionError("the report gated a file")

    monkeypatch.setattr(engine, "gate", no_gating)
    monkeypatch.setattr(engine, "_fit", no_gating)
    written = write_agreement_report(result)
    assert out / "worst" / f"{FCS.stem}_both_gates.png" in written
    assert written[-1] == out / "agreement.html"
    html = (out / "agreement.html").read_text()
    text = _page(out).ids["flowjo-differ"]
    assert "For 1 of 4" in text and "binned display data" in text
    assert changed.loc[1, "reference_population"] in html and "−13" not in html
    assert "-13" in html  # FlowJo recorded 13 fewer than the exact evaluation


@pytest.mark.parametrize(
    "workspace", ["test_data_diamond_biex_rect.wsp", "test_data_diamond_asinh_rect.wsp"]
)
def test_a_flowjo_templates_gate_plot_shows_the_events_in_the_gates_space(workspace):
    """The worst files' gate trees (and ``cytogate plot -t x.wsp``) draw FlowKit's transformed
    values, the space the workspace's gates live in; recomputing them from the recorded
    identity scale put every event beyond the axes."""
    from matplotlib.path import Path as MplPath

    from cytogate.gating.engine import gate
    from cytogate.io.fcs import read_fcs
    from cytogate.viz.gate_plots import gate_figure

    result = gate(read_fcs(FCS), EXAMPLES / workspace)
    (panel,) = gate_figure(result).panels
    assert panel.off_scale == 0 and panel.n_events == result.n_events
    (outline,) = [ln for ln in panel.ax.lines if ln.get_gid() == "gate:upper_right"]
    x = result.scaled_values(panel.x.dim)
    y = result.scaled_values(panel.y.dim)
    vertices = np.column_stack([outline.get_xdata(), outline.get_ydata()])
    inside = MplPath(vertices).contains_points(np.column_stack([x, y]))
    # the events inside the drawn outline are the gate's (to within events on its edge)
    assert abs(int(inside.sum()) - result.count("upper_right")) <= 0.002 * result.n_events
