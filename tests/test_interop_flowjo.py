"""FlowJo 10 workspaces as templates: FlowKit's memberships event for event, FlowJo's counts.

Data: tests/data/flowjo_examples, the FlowKit project's example workspaces and FCS files
(BSD-3, see its LICENSE file). The reference is FlowKit's own ``Workspace.analyze_samples``
(an independent path through FlowKit: the workspace gated with the files it loads itself) and
the counts FlowJo recorded in the workspace.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from cytogate.errors import GatingError, TemplateError
from cytogate.gating.engine import gate
from cytogate.gating.template import load_template
from cytogate.interop.flowjo import check_files, load_workspace, recorded_counts
from cytogate.io.fcs import read_fcs

fk = pytest.importorskip("flowkit")
EXAMPLES = Path(__file__).parent / "data" / "flowjo_examples"
WORKSPACES = sorted(p.name for p in EXAMPLES.glob("*.wsp"))


@pytest.mark.parametrize("workspace", WORKSPACES)
def test_workspace_as_template_gives_flowkits_memberships(workspace):
    path = EXAMPLES / workspace
    template = load_template(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = fk.Workspace(str(path), fcs_samples=str(EXAMPLES))
    flowjo = recorded_counts(path)
    checked = 0
    for sid in reference.get_sample_ids():
        reference.analyze_samples(sample_id=sid, use_mp=False)
        result = gate(read_fcs(EXAMPLES / sid), template)
        assert result.populations == template.population_names()
        for ref in template.refs:
            theirs = reference.get_gate_membership(sid, *ref.gate_id)
            np.testing.assert_array_equal(result.mask(ref.name), theirs, err_msg=ref.name)
            recorded = flowjo.get((sid, "/".join([*ref.gate_id[1][1:], ref.gate_id[0]])))
            if recorded is not None and recorded >= 0:  # -1: FlowJo did not compute it
                # these small examples have no binned/ellipse subtleties: FlowJo's count exactly
                assert result.count(ref.name) == recorded, ref.name
            checked += 1
    assert checked >= 1


def test_quadrant_workspace_counts_are_flowjos():
    result = gate(
        read_fcs(EXAMPLES / "test_data_diamond_01.fcs"),
        EXAMPLES / "simple_diamond_example_quad_gate.wsp",
    )
    counts = {p: result.count(p) for p in result.populations}
    assert counts == {
        "Q1: channel_A- , channel_B+": 49671,
        "Q2: channel_A+ , channel_B+": 50596,
        "Q3: channel_A+ , channel_B-": 50330,
        "Q4: channel_A- , channel_B-": 49403,
    }
    assert sum(counts.values()) == result.n_events  # quadrants partition the events


def test_group_choice_and_errors(tmp_path):
    path = EXAMPLES / "simple_poly_and_rect.wsp"
    assert load_workspace(path, group="my_group").origin == "FlowJo workspace, group 'my_group'"
    with pytest.raises(
        TemplateError, match=r"no sample group 'nope' \(groups: All Samples, my_group\)"
    ):
        load_workspace(path, group="nope")
    template = load_workspace(path)
    # a file that is not a sample of the workspace: both sides listed
    other = tmp_path / "other.fcs"
    shutil.copy(EXAMPLES / "data_set_simple_line_100.fcs", other)
    with pytest.raises(
        GatingError, match=r"other\.fcs: not a sample of .*data_set_simple_line_100\.fcs"
    ):
        gate(read_fcs(other), template)
    with pytest.raises(TemplateError, match=r"other\.fcs have no sample.*without a file: data_set"):
        check_files(template, [other])
    check_files(template, [EXAMPLES / "data_set_simple_line_100.fcs"])


def test_unsupported_gate_type_is_named(tmp_path):
    text = (EXAMPLES / "simple_poly_and_rect.wsp").read_text()
    assert "gating:PolygonGate" in text
    bad = tmp_path / "curly.wsp"
    bad.write_text(text.replace("gating:PolygonGate", "gating:CurlyQuadGate"))
    with pytest.raises(TemplateError, match=r"unsupported gate type\(s\): poly1 \(CurlyQuadGate\)"):
        load_workspace(bad)
    not_wsp = tmp_path / "x.wsp"
    not_wsp.write_text("<Gating-ML/>")
    with pytest.raises(TemplateError, match="not a FlowJo workspace"):
        load_workspace(not_wsp)


@pytest.mark.parametrize("workspace", WORKSPACES)
def test_drawn_geometries_select_the_memberships(workspace):
    """Plots draw the gates in the values they show (FlowJo biex divided by 4096 on both)."""
    template = load_template(EXAMPLES / workspace)
    (sample_name,) = {ref for ref in _sample_names(template)}
    result = gate(read_fcs(EXAMPLES / sample_name), template)
    for applied in result.gates:
        points = np.column_stack([result.scaled_values(d) for d in applied.dims])
        inside = applied.geometry.contains(points) & result.mask(applied.parent)
        np.testing.assert_array_equal(inside, result.mask(applied.name), err_msg=applied.name)
        assert np.nanmax(points) < 50  # unit-range axes, not FlowJo's 0..4096 channels


def _sample_names(template):
    from cytogate.interop.flowjo import workspace_samples

    return workspace_samples(template)
