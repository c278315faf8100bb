"""cytogate's masks against FlowKit 1.3's gate membership, event for event.

FlowKit is the reference our users trust, so this is the strongest correctness check we have.
Each test writes a real FCS file (FlowKit reads files), gates it with cytogate and with FlowKit
(the strategy from :mod:`cytogate.interop.flowkit_export`) and requires *identical* membership
for every population.

Why identical, not "close": both tools run the same flowutils code for compensation (same
matrix, same channel order), logicle and log scales and the polygon test, and the bridge maps
linear and arcsinh scales exactly. Only two computations round differently: the ellipse's
quadratic form (numpy einsum here, dot-then-sum in flowutils) and arcsinh (``x / c`` here,
``x * (sinh(1) / T)`` in flowutils). ``test_rounding_differences_are_bounded`` measures both at
a few units in the last place, so only an event within ~1e-15 (relative) of such an edge could
fall differently; random data never get that close (p ~ 1e-15 per event) and the on-edge test
uses dyadic coordinates, on which both compute exactly. The one designed difference
(non-positive values on a log scale) has its own test, which bounds the mismatches to exactly
those events.

The constructed samples are built in memory with ``make_sample`` (what cytogate gates) and the
same float32-exact events are written with ``write_fcs`` (what FlowKit reads); the simulated
file goes through ``read_fcs`` as in production.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cytogate.errors import CytogateError
from cytogate.gating.engine import GatingResult, gate
from cytogate.gating.template import parse_template
from cytogate.interop.flowkit_export import (
    FlowKitAgreementWarning,
    export_gatingml,
    flowkit_memberships,
    to_flowkit_strategy,
)
from cytogate.io.fcs import read_fcs
from cytogate.io.fcs_writer import write_fcs
from tests.conftest import make_sample

fk = pytest.importorskip("flowkit")

# Every gate kind and every scale kind, compensation from the file's spillover; a quadrant
# population with a child, booleans over plain gates and over quadrants.
ALL_KINDS = """
name: all_kinds
panel: {X: '^X$', Y: '^Y$', C: 'CD3', D: 'CD4'}
compensation: file
scales:
  X: {kind: linear, top: 1000, bottom: -100}
  Y: {kind: log, T: 1000, M: 3}
  C: {kind: logicle, T: range, W: 0.5, M: 4.5, A: 0}
  D: {kind: arcsinh, cofactor: 150}
gates:
  - {name: box, kind: rectangle, dims: [X, Y], min: [0.1, 0.2], max: [0.9, null]}
  - {name: c_range, parent: box, kind: range, dims: [C], min: 0.3, max: 0.8}
  - {name: tri, parent: box, kind: polygon, dims: [X, C], vertices: [[0, 0], [1, 0], [0, 1]]}
  - name: ell
    parent: box
    kind: ellipse
    dims: [C, D]
    center: [0.5, 3]
    half_axes: [0.2, 2]
    angle: 30
  - name: ell_cov
    kind: ellipse
    dims: [X, D]
    center: [0.5, 1.0]
    covariance: [[0.04, 0.05], [0.05, 1.5]]
    distance_square: 2.5
  - {name: both, parent: box, kind: boolean, op: and, of: [tri, ell]}
  - {name: not_tri, parent: box, kind: boolean, op: not, of: [tri]}
  - name: q
    parent: box
    kind: quadrant
    dims: [C, D]
    at: [0.4, 2.5]
    populations: {pp: '++', mm: '--', pm: '+-'}
  - {name: pp_right, parent: pp, kind: range, dims: [X], min: 0.5}
  - {name: pm_or_mm, parent: box, kind: boolean, op: or, of: [pm, mm]}
"""
SPILL = pd.DataFrame([[1.0, 0.1], [0.05, 1.0]], index=["FL1", "FL2"], columns=["FL1", "FL2"])


def _files(tmp_path: Path, events: np.ndarray, pnn, pns=None, spillover=None, pnr=262144.0):
    """(in-memory Sample for cytogate, FCS path for FlowKit) holding the same float32 values."""
    events = np.asarray(events, dtype=np.float32).astype(np.float64)
    path = write_fcs(tmp_path / "constructed.fcs", events, pnn, pns, pnr=pnr, spillover=spillover)
    return make_sample(events, pnn, pns, pnr=pnr, spillover=spillover), path


def _flowkit_masks(result: GatingResult, path: Path, **options) -> dict[str, np.ndarray]:
    strategy = to_flowkit_strategy(result, **options)
    with np.errstate(invalid="ignore", divide="ignore"):  # flog of x <= 0 (outside our gates)
        return flowkit_memberships(strategy.gate_sample(fk.Sample(str(path))), result)


def _assert_same(result: GatingResult, fk_masks: dict[str, np.ndarray]) -> None:
    assert list(fk_masks) == result.populations
    for pop in result.populations:
        ours, theirs = result.mask(pop), fk_masks[pop]
        diff = np.flatnonzero(ours != theirs)
        assert diff.size == 0, (
            f"{pop}: cytogate {ours.sum()} vs FlowKit {theirs.sum()} events; "
            f"{diff.size} differ, e.g. events {diff[:5].tolist()}"
        )


def _random_events(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.uniform(-100, 1100, n),  # X, linear with bottom -100
            rng.uniform(-10, 1000, n),  # Y, log: some non-positive, all below the box's Y min
            rng.normal(2000, 3000, n),  # FL1 (CD3), logicle; compensated
            rng.normal(1000, 2000, n),  # FL2 (CD4), arcsinh; compensated
        ]
    )


# QC populations of the default template that are empty in a sample without the problem
QC_POPULATIONS = {"cd45neg_blastlike"}


def _nontrivial(result: GatingResult) -> None:
    """Every population holds some but not all of its parent's events (tests can fail).

    A fitted gate that found nothing must say so (QC flag); a QC population may be empty.
    """
    for pop in result.populations:
        parent = result.parent(pop)
        if result.count(pop) == 0 and (pop in QC_POPULATIONS or result.qc(pop)):
            continue
        assert 0 < result.count(pop) < result.count(parent), (pop, result.count(pop))


# --------------------------------------------------------------------------- agreement


def test_every_gate_kind_and_scale_agrees_event_for_event(tmp_path):
    sample, path = _files(
        tmp_path, _random_events(20_000, 1), ["X", "Y", "FL1", "FL2"], ["", "", "CD3", "CD4"], SPILL
    )
    result = gate(sample, parse_template(ALL_KINDS, Path("all_kinds.yaml")))
    _nontrivial(result)
    assert result.compensation.startswith("file spillover keyword")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlowKitAgreementWarning)  # no gate reaches the log floor
        fk_masks = _flowkit_masks(result, path)
    _assert_same(result, fk_masks)


def test_points_exactly_on_edges_agree(tmp_path):
    # A dyadic grid (step 1/32) in a space where scaled = raw, so gate edges, polygon vertices
    # and edges, quadrant dividers and the circle's boundary carry events exactly.
    step = 1 / 32
    xs, ys = np.meshgrid(np.arange(-8, 41) * step, np.arange(-8, 41) * step)
    x, y = xs.ravel(), ys.ravel()
    sample, path = _files(tmp_path, np.column_stack([x, y]), ["X", "Y"])
    template = parse_template(
        """
name: edges
panel: {X: '^X$', Y: '^Y$'}
compensation: none
scales: {default: {kind: linear, top: 1}}
gates:
  - {name: box, kind: rectangle, dims: [X, Y], min: [0.0, 0.0], max: [1.0, 1.0]}
  - {name: band, parent: box, kind: range, dims: [X], min: 0.25, max: 0.75}
  - {name: tri, parent: box, kind: polygon, dims: [X, Y], vertices: [[0, 0], [1, 0], [0, 1]]}
  - name: diamond
    parent: box
    kind: polygon
    dims: [X, Y]
    vertices: [[0.5, 0.125], [0.875, 0.5], [0.5, 0.875], [0.125, 0.5]]
  - name: circle
    parent: box
    kind: ellipse
    dims: [X, Y]
    center: [0.5, 0.5]
    covariance: [[0.0625, 0.0], [0.0, 0.0625]]
  - name: q
    parent: box
    kind: quadrant
    dims: [X, Y]
    at: [0.5, 0.5]
    populations: {hi_hi: '++', lo_hi: '-+', hi_lo: '+-', lo_lo: '--'}
""",
        Path("edges.yaml"),
    )
    result = gate(sample, template)
    # the grid really has events on the edges: min edge in, max edge out, circle edge in
    box = result.mask("box")
    assert box[(x == 0.0) & (y == 0.5)].all() and not box[(x == 1.0) & (y == 0.5)].any()
    assert result.mask("circle")[(x == 0.75) & (y == 0.5)].all()
    assert result.mask("hi_hi")[(x == 0.5) & (y == 0.5)].all()
    assert result.mask("band")[(x == 0.25) & (y == 0.5)].all()
    assert not result.mask("band")[(x == 0.75) & (y == 0.5)].any()
    on_diagonal = box & np.isclose(x + y, 1.0, rtol=0, atol=0)
    assert on_diagonal.sum() > 20  # the triangle's hypotenuse passes through grid points
    _assert_same(result, _flowkit_masks(result, path))


@pytest.mark.parametrize("template", ["aml_blasts_cd45_ssc", "aml_blasts_cd45_ssc_fixed"])
def test_default_template_on_a_simulated_file(tmp_path, template):
    from cytogate.gating.gates import Polygon
    from cytogate.sim.simulate import write_benchmark_file

    path = write_benchmark_file(tmp_path / "sim.fcs", n_events=30_000)
    result = gate(read_fcs(path), template)
    assert result.template.name == template
    assert result.gates[1].dims == ("FSC-A", "FSC-H")  # the height variant of singlets
    _nontrivial(result)
    assert result.count("blasts") > 500
    if template == "aml_blasts_cd45_ssc":  # fitted gates are ordinary geometries FlowKit gets
        assert result.gate_of("blasts").kind == "leukomap"
        assert isinstance(result.gate_of("blasts").geometry, Polygon)
    _assert_same(result, _flowkit_masks(result, path))
    # FlowKit's own reading of the file's $SPILLOVER ("FCS" reference) agrees as well
    _assert_same(result, _flowkit_masks(result, path, fcs_compensation=True))


RUN42: Path  # the two-tube SIMULATED study (tests/conftest.py two_tube_run42), set below


@pytest.fixture(scope="module", autouse=True)
def _two_tube_run42(two_tube_run42: Path) -> None:
    """This module's tests need the two-tube design; the bundled run42 is multi-tube."""
    global RUN42
    RUN42 = two_tube_run42


@pytest.mark.parametrize("template", ["aml_blasts_cd45_ssc", "aml_blasts_cd45_ssc_fixed"])
@pytest.mark.parametrize("name", ["P01_baseline_stained.fcs", "P03_6h_isotype.fcs"])
def test_default_template_on_the_bundled_run(name, template):
    path = RUN42 / name
    if not path.is_file():
        pytest.skip(f"{path} not in this checkout")
    result = gate(read_fcs(path), template)
    _nontrivial(result)
    _assert_same(result, _flowkit_masks(result, path))


def test_width_variant_is_used_when_the_file_has_no_height(tmp_path):
    from cytogate.sim.simulate import write_benchmark_file

    sim = read_fcs(write_benchmark_file(tmp_path / "sim.fcs", n_events=20_000))
    events = sim.events
    pnn = list(sim.channels["pnn"])
    area, height = events[:, pnn.index("FSC-A")], events[:, pnn.index("FSC-H")]
    # a width that grows with area/height (doublets wide), in the 0.1..0.34 singlet window
    ratio = np.clip(height, 1.0, None) / np.clip(area, 1.0, None)
    width = 262144 * 0.2 * (0.85 / np.clip(ratio, 0.05, None)) ** 2
    events = events.copy()
    events[:, pnn.index("FSC-H")] = width
    pnn[pnn.index("FSC-H")] = "FSC-W"
    path = write_fcs(
        tmp_path / "width.fcs",
        events.astype(np.float32),
        pnn,
        list(sim.channels["pns"]),
        spillover=sim.spillover,
    )
    result = gate(read_fcs(path), "aml_blasts_cd45_ssc_fixed")
    assert result.gates[1].dims == ("FSC-A", "FSC-W") and result.gates[1].kind == "rectangle"
    assert 0 < result.count("singlets") < result.count("cells")
    strategy = to_flowkit_strategy(result)
    assert isinstance(strategy.get_gate("singlets"), fk.gates.RectangleGate)
    _assert_same(result, _flowkit_masks(result, path))
    # the default template's width variant: a fitted upper bound on FSC-W (a range gate)
    fitted = gate(read_fcs(path))
    assert fitted.gates[1].dims == ("FSC-W",) and fitted.gates[1].kind == "threshold"
    assert 0 < fitted.count("singlets") < fitted.count("cells")
    assert isinstance(to_flowkit_strategy(fitted).get_gate("singlets"), fk.gates.RectangleGate)
    _assert_same(fitted, _flowkit_masks(fitted, path))


def test_a_skipped_optional_gate_passes_its_parents_events_in_both(tmp_path):
    sample, path = _files(tmp_path, _random_events(5_000, 2)[:, :2], ["X", "Y"])
    template = parse_template(
        """
name: skip
panel: {X: '^X$', Y: '^Y$', Z: '^Z$'}
compensation: none
scales: {default: {kind: linear, top: 1000}}
gates:
  - {name: low, kind: range, dims: [Y], max: 0.5}
  - {name: z_pos, parent: low, optional: true, kind: range, dims: [Z], min: 0.1}
  - {name: right, parent: z_pos, kind: range, dims: [X], min: 0.5}
""",
        Path("skip.yaml"),
    )
    result = gate(sample, template)
    assert result.gates[1].status == "skipped"
    assert np.array_equal(result.mask("z_pos"), result.mask("low"))
    _assert_same(result, _flowkit_masks(result, path))


def test_template_and_result_give_the_same_strategy(tmp_path):
    sample, path = _files(
        tmp_path, _random_events(5_000, 3), ["X", "Y", "FL1", "FL2"], ["", "", "CD3", "CD4"], SPILL
    )
    template = parse_template(ALL_KINDS, Path("all_kinds.yaml"))
    result = gate(sample, template)
    from_template = to_flowkit_strategy(template, sample)
    with np.errstate(invalid="ignore", divide="ignore"):
        masks = flowkit_memberships(from_template.gate_sample(fk.Sample(str(path))), template)
    _assert_same(result, masks)


def test_exported_gatingml_is_valid_and_gates_the_same(tmp_path):
    from lxml import etree

    # quadrant dividers at 0 and below 0: FlowKit 1.3's writer places such quadrant positions
    # on the wrong side of the divider, which export_gatingml repairs
    template = parse_template(
        ALL_KINDS.replace("at: [0.4, 2.5]", "at: [0.0, -0.5]"), Path("all_kinds.yaml")
    )
    sample, path = _files(
        tmp_path, _random_events(10_000, 4), ["X", "Y", "FL1", "FL2"], ["", "", "CD3", "CD4"], SPILL
    )
    result = gate(sample, template)
    _nontrivial(result)
    doc = export_gatingml(result, tmp_path / "gates.xml")
    schema_dir = Path(fk.__file__).parent / "_resources"
    schema = etree.XMLSchema(etree.parse(str(schema_dir / "Gating-ML.v2.0.xsd")))
    assert schema.validate(etree.parse(str(doc))), schema.error_log
    strategy = fk.parse_gating_xml(str(doc))
    with np.errstate(invalid="ignore", divide="ignore"):
        masks = flowkit_memberships(strategy.gate_sample(fk.Sample(str(path))), result)
    _assert_same(result, masks)


# --------------------------------------------------------------------------- known differences


def test_log_floor_difference_is_warned_and_limited_to_negative_events(tmp_path):
    # cytogate puts x <= 0 at -1/M on a log scale; FlowKit's flog gives -inf for 0 and NaN
    # for x < 0. A gate open below therefore differs on exactly the negative events.
    rng = np.random.default_rng(5)
    y = np.concatenate([rng.uniform(-50, 0, 300), np.zeros(50), rng.uniform(0.01, 1000, 2000)])
    sample, path = _files(tmp_path, np.column_stack([y]), ["Y"])
    template = parse_template(
        """
name: logfloor
panel: {Y: '^Y$'}
compensation: none
scales: {Y: {kind: log, T: 1000, M: 3}}
gates:
  - {name: dim, kind: range, dims: [Y], max: 0.5}
""",
        Path("logfloor.yaml"),
    )
    result = gate(sample, template)
    with pytest.warns(FlowKitAgreementWarning, match="gate 'dim'.*log scale"):
        strategy = to_flowkit_strategy(result)
    with np.errstate(invalid="ignore", divide="ignore"):
        theirs = flowkit_memberships(strategy.gate_sample(fk.Sample(str(path))), result)["dim"]
    differ = result.mask("dim") != theirs
    assert np.array_equal(differ, y < 0)  # zeros (-inf) and positives agree
    assert result.mask("dim")[y <= 0].all()


def test_channels_flowkit_reads_differently_are_warned(tmp_path):
    # cytogate does not apply $PnG to float channels (fcs.py); FlowKit divides by it, so a gate
    # on such a channel sees other values in FlowKit. The bridge must say so.
    events = np.random.default_rng(8).uniform(0, 1000, (2_000, 2)).astype(np.float32)
    path = write_fcs(tmp_path / "gain.fcs", events, ["X", "Y"], keywords={"$P1G": "2"})
    template = parse_template(
        """
name: gain
panel: {X: '^X$', Y: '^Y$'}
compensation: none
scales: {default: {kind: linear, top: 1000}}
gates:
  - {name: x_hi, kind: range, dims: [X], min: 0.4}
  - {name: y_hi, kind: range, dims: [Y], min: 0.4}
""",
        Path("gain.yaml"),
    )
    result = gate(read_fcs(path), template)
    with pytest.warns(FlowKitAgreementWarning, match=r"channel X .*\$PnG \(2\)") as record:
        masks = _flowkit_masks(result, path)
    assert not any("channel Y" in str(w.message) for w in record)  # Y has no gain: no warning
    assert not np.array_equal(result.mask("x_hi"), masks["x_hi"])  # the warning was warranted
    assert np.array_equal(result.mask("y_hi"), masks["y_hi"])


def test_skipped_gate_and_non_xml_names_in_gatingml(tmp_path):
    from lxml import etree

    sample, path = _files(tmp_path, _random_events(2_000, 9)[:, :2], ["X", "Y"])
    text = """
name: skip
panel: {X: '^X$', Y: '^Y$', Z: '^Z$'}
compensation: none
scales: {default: {kind: linear, top: 1000}}
gates:
  - {name: low, kind: range, dims: [Y], max: 0.5}
  - {name: z_pos, parent: low, optional: true, kind: range, dims: [Z], min: 0.1}
  - {name: right, parent: z_pos, kind: range, dims: [X], min: 0.5}
"""
    schema_dir = Path(fk.__file__).parent / "_resources"
    schema = etree.XMLSchema(etree.parse(str(schema_dir / "Gating-ML.v2.0.xsd")))
    result = gate(sample, parse_template(text, Path("skip.yaml")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlowKitAgreementWarning)
        doc = export_gatingml(result, tmp_path / "skip.xml")
    assert schema.validate(etree.parse(str(doc))), schema.error_log
    strategy = fk.parse_gating_xml(str(doc))
    _assert_same(result, flowkit_memberships(strategy.gate_sample(fk.Sample(str(path))), result))

    renamed = gate(sample, parse_template(text.replace("right", "2 right"), Path("skip.yaml")))
    with pytest.warns(FlowKitAgreementWarning, match="'2 right'"):
        doc = export_gatingml(renamed, tmp_path / "renamed.xml")
    assert not schema.validate(etree.parse(str(doc)))


def test_rounding_differences_are_bounded():
    from flowutils.gating import points_in_ellipsoid

    from cytogate.gating.gates import Ellipse
    from cytogate.model.transforms import Scale

    # arcsinh: ours asinh(x / c) vs FlowKit's fasinh with the bridge's T, M, A
    x = np.concatenate([-np.logspace(-3, 7, 5000), [0.0], np.logspace(-3, 7, 5000)])
    for cofactor in (5.0, 150.0, 1234.5):
        ours = Scale.from_spec({"kind": "arcsinh", "cofactor": cofactor}, "t").apply(x)
        sample = make_sample(np.column_stack([x]), ["D"])
        template = parse_template(
            f"name: a\npanel: {{D: '^D$'}}\ncompensation: none\n"
            f"scales: {{D: {{kind: arcsinh, cofactor: {cofactor}}}}}\n"
            "gates: [{name: g, kind: range, dims: [D], min: 0.5}]\n",
            Path("a.yaml"),
        )
        strategy = to_flowkit_strategy(template, sample)
        theirs = strategy.transformations["arcsinh_D"].apply(x)
        ulps = np.abs(ours - theirs) / np.spacing(np.maximum(np.abs(ours), 1e-300))
        assert ulps.max() <= 4, (cofactor, ulps.max())
    # ellipse: our quadratic form vs flowutils' on random points
    rng = np.random.default_rng(6)
    ell = Ellipse.from_axes(("a", "b"), (0.3, -0.2), (0.7, 0.2), 35.0)
    pts = rng.normal(0, 1, (50_000, 2))
    d = pts - np.asarray(ell.center)
    inv = np.linalg.inv(np.asarray(ell.covariance))
    ours_d2 = np.einsum("ij,jk,ik->i", d, inv, d)
    theirs_d2 = (np.dot(d, inv) * d).sum(axis=1)
    assert np.max(np.abs(ours_d2 - theirs_d2) / np.maximum(ours_d2, 1.0)) < 1e-13
    inside = points_in_ellipsoid(np.asarray(ell.covariance), np.asarray(ell.center), 1.0, pts)
    assert np.array_equal(ell.contains(pts), inside)


# --------------------------------------------------------------------------- errors, import


def test_errors_name_the_problem(tmp_path):
    template = parse_template(ALL_KINDS, Path("all_kinds.yaml"))
    with pytest.raises(CytogateError, match="needs the sample"):
        to_flowkit_strategy(template)
    sample = make_sample(
        _random_events(100, 7), ["X", "Y", "FL1", "FL2"], ["", "", "CD3", "CD4"], spillover=SPILL
    )
    result = gate(sample, template, compensation=SPILL * 1.0)
    # the result carries the caller's matrix, so the strategy needs nothing more
    carried = to_flowkit_strategy(result).comp_matrices["spillover"]
    assert np.array_equal(carried.matrix, SPILL.to_numpy())
    assert to_flowkit_strategy(result, compensation=SPILL).comp_matrices["spillover"] is not None
    with pytest.raises(CytogateError, match="fcs_compensation"):
        to_flowkit_strategy(result, compensation=SPILL, fcs_compensation=True)


def test_importing_the_bridge_does_not_import_flowkit():
    code = (
        "import sys, cytogate, cytogate.interop.flowkit_export\n"
        "assert 'flowkit' not in sys.modules, 'flowkit imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
