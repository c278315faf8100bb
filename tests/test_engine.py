"""The gating engine on constructed samples with known memberships."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cytogate.errors import GatingError
from cytogate.gating.engine import gate
from cytogate.gating.template import parse_template
from tests.conftest import make_sample

# Linear scales with top 1 so the scaled space equals the raw values.
TEMPLATE = """
name: unit
panel: {X: '^X$', Y: '^Y$', H: '^H$', W: '^W$'}
compensation: none
scales:
  X: {kind: linear, top: 1}
  Y: {kind: linear, top: 1}
  H: {kind: linear, top: 1}
  W: {kind: linear, top: 1}
gates:
  - {name: box, kind: rectangle, dims: [X, Y], min: [0.0, 0.0], max: [0.5, 0.5]}
  - {name: tri, parent: box, kind: polygon, dims: [X, Y], vertices: [[0, 0], [1, 0], [0, 1]]}
  - {name: right, parent: box, kind: range, dims: [X], min: 0.25}
  - {name: tri_and_right, parent: box, kind: boolean, op: and, of: [tri, right]}
  - {name: not_tri, parent: box, kind: boolean, op: not, of: [tri]}
  - name: q
    parent: box
    kind: quadrant
    dims: [X, Y]
    at: [0.25, 0.25]
    populations: {hi_hi: '++', lo_lo: '--'}
"""


def _grid_sample():
    xs, ys = np.meshgrid(np.linspace(0, 1, 41), np.linspace(0, 1, 41))
    x, y = xs.ravel(), ys.ravel()
    return make_sample(np.column_stack([x, y]), ["X", "Y"]), x, y


def test_masks_equal_hand_computed_membership():
    sample, x, y = _grid_sample()
    result = gate(sample, parse_template(TEMPLATE, Path("unit.yaml")))
    box = (x >= 0) & (x < 0.5) & (y >= 0) & (y < 0.5)
    tri = box & (x + y < 1.0)  # every box point is inside the triangle
    right = box & (x >= 0.25)
    assert np.array_equal(result.mask("box"), box)
    assert np.array_equal(result.mask("tri"), tri)
    assert np.array_equal(result.mask("right"), right)
    assert np.array_equal(result.mask("tri_and_right"), tri & right)
    assert np.array_equal(result.mask("not_tri"), box & ~tri)
    assert np.array_equal(result.mask("hi_hi"), box & (x >= 0.25) & (y >= 0.25))
    assert np.array_equal(result.mask("lo_lo"), box & (x < 0.25) & (y < 0.25))
    assert result.count("box") == int(box.sum())
    assert result.pct_parent("right") == pytest.approx(100 * right.sum() / box.sum())
    assert result.pct_total("box") == pytest.approx(100 * box.sum() / x.size)


def test_children_only_see_their_parents_events():
    # The triangle covers points outside the box; none of them may enter the population.
    sample, x, y = _grid_sample()
    result = gate(sample, parse_template(TEMPLATE, Path("unit.yaml")))
    assert not np.any(result.mask("tri") & ~result.mask("box"))
    assert ((x + y < 1) & ~result.mask("box")).sum() > 0


def test_table_columns_and_rows():
    sample, _, _ = _grid_sample()
    table = gate(sample, parse_template(TEMPLATE, Path("unit.yaml"))).table()
    assert list(table.population) == [
        "box",
        "tri",
        "right",
        "tri_and_right",
        "not_tri",
        "hi_hi",
        "lo_lo",
    ]
    row = table.set_index("population").loc["right"]
    assert row["parent"] == "box" and row["gate_kind"] == "range"
    assert row["count"] == 10 * 20  # x in {0.25, ..., 0.475} (10 values) x y in [0, 0.5) (20)


SINGLETS = """
name: s
panel: {X: '^X$', H: '^H$', W: '^W$'}
compensation: none
scales: {default: {kind: linear, top: 1}}
gates:
  - name: singlets
    optional: {optional}
    variants:
      - {kind: polygon, dims: [X, H], vertices: [[0, 0], [1, 0.7], [1, 1], [0, 0.1]]}
      - {kind: range, dims: [W], max: 0.3}
  - {name: big, parent: singlets, kind: range, dims: [X], min: 0.5}
"""


def test_variant_falls_back_to_width_when_height_is_missing():
    x = np.array([0.2, 0.6, 0.8, 0.9])
    w = np.array([0.1, 0.2, 0.5, 0.25])
    result = gate(
        make_sample(np.column_stack([x, w]), ["X", "W"]),
        parse_template(SINGLETS.replace("{optional}", "false"), Path("s.yaml")),
    )
    assert result.mask("singlets").tolist() == [True, True, False, True]
    assert result.mask("big").tolist() == [False, True, False, True]
    assert result.gates[0].dims == ("W",) and result.gates[0].channels == ("W",)


def test_missing_dimensions_name_the_gate_and_the_channels():
    sample = make_sample(np.zeros((2, 2)), ["X", "Z"], ["", "CD3"])
    with pytest.raises(GatingError) as info:
        gate(sample, parse_template(SINGLETS.replace("{optional}", "false"), Path("s.yaml")))
    assert "gate 'singlets'" in str(info.value)
    assert "X, Z (CD3)" in str(info.value)


def test_optional_gate_is_skipped_and_passes_events_through():
    x = np.array([0.2, 0.6])
    result = gate(
        make_sample(np.column_stack([x]), ["X"]),
        parse_template(SINGLETS.replace("{optional}", "true"), Path("s.yaml")),
    )
    assert result.gates[0].status == "skipped"
    assert result.mask("singlets").tolist() == [True, True]
    assert result.mask("big").tolist() == [False, True]
    assert result.table().set_index("population").loc["singlets", "gate_status"] == "skipped"


COMP = """
name: c
panel: {A: 'CD1', B: 'CD2'}
scales: {default: {kind: linear, top: 1}}
gates:
  - {name: a_pos, kind: range, dims: [A], min: 50}
"""


def test_gates_see_compensated_values():
    spill = pd.DataFrame([[1.0, 0.5], [0.0, 1.0]], index=["FL1", "FL2"], columns=["FL1", "FL2"])
    true = np.array([[0.0, 100.0], [80.0, 0.0], [0.0, 0.0]])
    observed = true @ spill.to_numpy()  # dye 1 spills half of itself into FL2
    sample = make_sample(observed, ["FL1", "FL2"], ["CD1", "CD2"], spillover=spill)
    tmpl = parse_template(
        COMP.replace(
            "a_pos, kind: range, dims: [A], min: 50", "b_pos, kind: range, dims: [B], min: 20"
        ),
        Path("c.yaml"),
    )
    result = gate(sample, tmpl)
    # observed FL2 of event 1 is 40 (spill) -> compensated 0, so only event 0 is B-positive
    assert result.mask("b_pos").tolist() == [True, False, False]
    assert np.allclose(result.values("B"), [100.0, 0.0, 0.0])
    uncompensated = gate(sample, tmpl, compensation="none")
    assert uncompensated.mask("b_pos").tolist() == [True, True, False]


def test_spillover_naming_an_absent_channel_is_an_error():
    spill = pd.DataFrame(np.eye(2), index=["FL1", "FL9"], columns=["FL1", "FL9"])
    sample = make_sample(np.zeros((2, 2)), ["FL1", "FL2"], ["CD1", "CD2"], spillover=spill)
    with pytest.raises(GatingError, match="FL9"):
        gate(sample, parse_template(COMP, Path("c.yaml")))


def test_result_carries_what_was_applied_and_is_built_by_keyword_only():
    from cytogate.gating.engine import GatingResult
    from cytogate.model.transforms import Scale

    sample, x, _ = _grid_sample()
    text = TEMPLATE.replace("X: {kind: linear, top: 1}", "X: {kind: linear, top: 2}")
    result = gate(sample, parse_template(text, Path("unit.yaml")))
    # the scale applied per gated marker, as used (X's top is 2: scaled X = x / 2)
    assert result.scales == {
        "X": Scale("linear", {"top": 2.0, "bottom": 0.0}),
        "Y": result.scales["Y"],
    }
    assert result.scale_for("X") is result.scales["X"]
    assert np.allclose(result.scaled_values("X"), x / 2)
    assert result.channel_map() == {"X": "X", "Y": "Y"}
    assert result.gate_of("box").geometry.max == (0.5, 0.5)
    with pytest.raises(TypeError):
        GatingResult(sample, result.template)  # positional construction is refused


def test_polygon_bounding_box_prefilter_keeps_flowutils_membership():
    """The crossing test runs only on events inside the vertices' bounding box; events on
    edges, on vertices and just outside the box keep flowutils' answer."""
    from flowutils.gating import points_in_polygon

    from cytogate.gating.gates import Polygon

    verts = ((0.2, 0.2), (0.5, 0.25), (0.45, 0.6), (0.25, 0.5))
    rng = np.random.default_rng(5)
    grid = np.linspace(0, 1, 101)  # hits vertices and edges exactly
    gx, gy = np.meshgrid(grid, grid)
    points = np.vstack(
        [np.column_stack([gx.ravel(), gy.ravel()]), rng.random((50_000, 2)), np.array(verts)]
    )
    expected = np.asarray(points_in_polygon(np.array(verts), points), dtype=bool)
    assert np.array_equal(Polygon(("X", "Y"), verts).contains(points), expected)
    assert np.array_equal(Polygon(("X", "Y"), verts).contains(np.asfortranarray(points)), expected)
    assert 0 < expected.sum() < 0.3 * len(points)  # the prefilter path was taken


def test_a_fit_sees_a_bounded_even_subsample_and_its_gate_applies_to_every_event(monkeypatch):
    """A data-driven gate on a large parent is fitted on FIT_EVENTS evenly spaced events (run to
    run the same), recorded in its diagnostics; the fitted cut is applied to all events."""
    import cytogate.gating.engine as engine

    rng = np.random.default_rng(11)
    n = 60_000
    low = rng.normal(0.25, 0.04, n // 2)  # ground truth: two populations, valley near 0.5
    high = rng.normal(0.75, 0.04, n - n // 2)
    x = rng.permutation(np.concatenate([low, high]))
    sample = make_sample(np.column_stack([x, rng.uniform(0, 1, n)]), ["X", "Y"])
    template = parse_template(
        """
name: fitted
panel: {X: '^X$', Y: '^Y$'}
compensation: none
scales: {X: {kind: linear, top: 1}, Y: {kind: linear, top: 1}}
gates:
  - {name: hi, kind: threshold, dims: [X], method: valley, keep: above, search: [0.05, 0.95]}
""",
        Path("fitted.yaml"),
    )
    full = gate(sample, template)
    monkeypatch.setattr(engine, "FIT_EVENTS", 3_000)
    bounded = gate(sample, template)
    again = gate(sample, template)
    applied = bounded.gate_of("hi")
    assert applied.diagnostics["fit_events"] == f"3000 of {n} (evenly spaced)"
    assert "fit_events" not in full.gate_of("hi").diagnostics
    cut = applied.geometry.min[0]
    assert 0.4 < cut < 0.6  # the valley between the populations, from 3,000 events
    assert again.gate_of("hi").geometry == applied.geometry  # deterministic
    np.testing.assert_array_equal(bounded.mask("hi"), x >= cut)  # every event, not the 3,000
    assert abs(bounded.count("hi") - n // 2) < 0.01 * n
    assert engine.evenly_spaced(10, 20) is None
    np.testing.assert_array_equal(engine.evenly_spaced(10, 4), [0, 2, 5, 7])


def test_polygons_on_large_parents_match_the_crossing_test_event_for_event():
    """Large parents take the grid paths (every event's cell on one grid per pair of
    dimensions, or the parent's own points' grid when the parent is a small share): each must
    give flowutils' crossing-test membership within the parent, event for event."""
    from flowutils.gating import points_in_polygon

    rng = np.random.default_rng(5)
    n = 80_000
    xy = np.column_stack([rng.normal(0.5, 0.2, n), rng.normal(0.5, 0.2, n)])
    xy[:50] = [[0.3, 0.3]] * 50  # events exactly on a vertex of both polygons
    sample = make_sample(xy, ["X", "Y"])
    star = [
        (float(0.5 + r * np.cos(a)), float(0.5 + r * np.sin(a)))
        for a, r in zip(
            np.linspace(0, 2 * np.pi, 60, endpoint=False), rng.uniform(0.15, 0.35, 60), strict=True
        )
    ]
    star[0] = (0.3, 0.3)
    template = parse_template(
        f"""
name: polys
panel: {{X: '^X$', Y: '^Y$'}}
compensation: none
scales: {{X: {{kind: linear, top: 1}}, Y: {{kind: linear, top: 1}}}}
gates:
  - {{name: big, kind: rectangle, dims: [X, Y], min: [0.1, null], max: [null, null]}}
  - {{name: star, parent: big, kind: polygon, dims: [X, Y], vertices: {[list(v) for v in star]}}}
  - {{name: corner, kind: rectangle, dims: [X, Y], min: [0.6, 0.6], max: [null, null]}}
  - name: tri
    parent: corner
    kind: polygon
    dims: [X, Y]
    vertices: [[0.3, 0.3], [1.2, 0.6], [0.6, 1.2]]
""",
        Path("polys.yaml"),
    )
    result = gate(sample, template)
    for name, parent in (("star", "big"), ("tri", "corner")):
        verts = np.array(result.gate_of(name).geometry.vertices)
        expected = np.asarray(points_in_polygon(verts, np.ascontiguousarray(xy)), dtype=bool)
        expected &= result.mask(parent)
        assert 1_000 < expected.sum() < result.count(parent)  # both answers occur
        np.testing.assert_array_equal(result.mask(name), expected)
    assert 4 * result.count("big") >= n > 4 * result.count("corner")  # both paths were taken
