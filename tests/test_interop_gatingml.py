"""GatingML 2.0 documents as templates: the ISAC compliance suite through load_template + gate.

Data: tests/data/gatingml_compliance (the ISAC GatingML 2.0 compliance suite as distributed
with FlowKit, BSD-3; see its LICENSE file). Each document is loaded with cytogate's
``load_template`` and evaluated with ``gate``; every population that has an expected result in
``truth/`` must match it event for event.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytogate.errors import GatingError, TemplateError
from cytogate.gating.engine import gate
from cytogate.gating.external import ExternalGeometry
from cytogate.gating.gates import Boolean
from cytogate.gating.template import load_template
from cytogate.io.fcs import read_fcs

SUITE = Path(__file__).parent / "data" / "gatingml_compliance"
DOCUMENTS = sorted(p.name for p in (SUITE / "gml").glob("*.xml"))
INVALID = {"gml_range_gate_attr_testing.xml"}  # a <sample> wrapper: not schema-valid
ALIASES = {"ParRectangle1": "ParQuadRect"}  # gate id -> truth file name
NO_TRUTH = {"myEllipse2"}  # the suite has no expected result for gml_ellipse2_gate.xml


@pytest.fixture(scope="module")
def data1():
    return read_fcs(SUITE / "data1.fcs")


def _truth(population: str) -> np.ndarray | None:
    path = SUITE / "truth" / f"Results_{ALIASES.get(population, population)}.txt"
    return np.loadtxt(path, dtype=bool) if path.is_file() else None


@pytest.mark.parametrize("document", sorted(set(DOCUMENTS) - INVALID))
def test_compliance_document_reproduces_expected_memberships(document, data1):
    template = load_template(SUITE / "gml" / document)
    result = gate(data1, template)
    compared = 0
    for pop in result.populations:
        expected = _truth(pop)
        if expected is None:
            assert pop in NO_TRUTH or pop.startswith("FL"), f"{document}: no truth for {pop}"
            continue
        assert expected.shape == (data1.n_events,)
        np.testing.assert_array_equal(result.mask(pop), expected, err_msg=f"{document}: {pop}")
        compared += 1
    assert compared >= 1 or set(result.populations) <= NO_TRUTH
    # the drawn geometries (cytogate's own evaluation, in FlowKit's scaled values) agree
    for applied in result.gates:
        if isinstance(applied.geometry, Boolean | ExternalGeometry):
            continue
        points = np.column_stack([result.scaled_values(d) for d in applied.dims])
        inside = applied.geometry.contains(points) & result.mask(applied.parent)
        np.testing.assert_array_equal(inside, result.mask(applied.name), err_msg=applied.name)


def test_every_truth_file_is_checked_by_some_document(data1):
    checked = set()
    for document in sorted(set(DOCUMENTS) - INVALID):
        for pop in load_template(SUITE / "gml" / document).population_names():
            checked.add(ALIASES.get(pop, pop))
    truths = {p.stem.removeprefix("Results_") for p in (SUITE / "truth").glob("*.txt")}
    assert truths <= checked, sorted(truths - checked)


def test_ellipse2_without_expected_result_agrees_with_cytogates_own_ellipse(data1):
    result = gate(data1, SUITE / "gml" / "gml_ellipse2_gate.xml")
    g = result.gate_of("myEllipse2")
    points = np.column_stack([result.scaled_values(d) for d in g.dims])
    assert 0 < result.count("myEllipse2") < data1.n_events
    np.testing.assert_array_equal(g.geometry.contains(points), result.mask("myEllipse2"))


def test_template_describes_the_tree(data1):
    template = load_template(SUITE / "gml" / "gml_parent_quadrant_rect_gate.xml")
    assert template.parents()["ParRectangle1"] == "FL2P-FL4P"
    assert template.parents()["FL2P-FL4P"] == "root"  # a quadrant's parent: its gate's parent
    result = gate(data1, template)
    assert result.parent("ParRectangle1") == "FL2P-FL4P"
    assert result.pct_parent("ParRectangle1") == pytest.approx(100 * 3 / 620)
    table = result.table()
    assert list(table["population"]) == result.populations
    # the 3-D ellipsoid has no cytogate geometry: named, not evaluated by cytogate
    ell = gate(data1, SUITE / "gml" / "gml_ellipsoid3d_gate.xml").gate_of("Ellipsoid3D")
    assert isinstance(ell.geometry, ExternalGeometry) and len(ell.dims) == 3


def test_invalid_document_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(TemplateError, match=r"gml_range_gate_attr_testing\.xml: not a GatingML"):
        load_template(SUITE / "gml" / "gml_range_gate_attr_testing.xml")
    bad = tmp_path / "broken.xml"
    bad.write_text("<Gating-ML")
    with pytest.raises(TemplateError, match=r"broken\.xml") as info:
        load_template(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(TemplateError, match="no template file"):
        load_template(tmp_path / "missing.xml")


def test_entities_are_refused(tmp_path):
    doc = tmp_path / "xxe.xml"
    doc.write_text('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    with pytest.raises(TemplateError, match="DOCTYPE"):
        load_template(doc)


def test_compensation_override_is_refused(data1):
    with pytest.raises(GatingError, match="defines its own compensation"):
        gate(data1, SUITE / "gml" / "gml_rect1_gate.xml", compensation="none")


def test_batch_with_gatingml_export_of_a_template_gives_the_same_tables(tmp_path, two_tube_run42):
    """cytogate's fixed template exported as GatingML ('FCS' compensation) and run as a
    template through batch gives byte-identical tables (quantification, isotype tubes and
    statistics included) to the YAML template. Files: the two-tube simulated run (conftest)."""
    import shutil

    from cytogate.interop.flowkit_export import export_gatingml
    from cytogate.study.batch import run_batch

    run42 = two_tube_run42
    run = tmp_path / "run"
    run.mkdir()
    for name in ("P01_baseline", "P01_24h", "P02_baseline", "P02_24h"):
        for tube in ("stained", "isotype"):
            shutil.copy(run42 / f"{name}_{tube}.fcs", run)
    first = gate(read_fcs(run / "P01_baseline_stained.fcs"), "aml_blasts_cd45_ssc_fixed")
    doc = export_gatingml(first, tmp_path / "fixed.xml", fcs_compensation=True)
    outs = {}
    for label, template in (("yaml", "aml_blasts_cd45_ssc_fixed"), ("xml", str(doc))):
        outs[label] = tmp_path / label
        result = run_batch(run, template=template, out=outs[label], jobs=1)
        assert result.exit_status == 0
    for table in ("populations.csv", "markers.csv", "stats.csv"):
        yaml_bytes = (outs["yaml"] / table).read_bytes()
        assert len(yaml_bytes) > 200
        assert (outs["xml"] / table).read_bytes() == yaml_bytes, table
