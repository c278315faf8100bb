"""Template loading and validation: errors name the file, the gate and the field."""

from pathlib import Path

import pytest

from cytogate.errors import TemplateError
from cytogate.gating.template import list_templates, load_template, parse_template

BASE = """
name: t
panel: {FSC-A: '^FSC-A$', SSC-A: '^SSC-A$', CD45: 'CD45'}
scales: {default: logicle, FSC-A: linear, SSC-A: linear}
gates:
"""


def _parse(gates: str, path: str = "my_template.yaml"):
    return parse_template(BASE + gates, Path(path))


def test_bundled_default_template_loads_by_name():
    assert "aml_blasts_cd45_ssc" in list_templates()
    tmpl = load_template("aml_blasts_cd45_ssc")
    assert tmpl.population_names() == [
        "cells",
        "singlets",
        "leukocytes",
        "granulocytes",
        "lymphocytes",
        "monocytes",
        "blasts",
        "cd45_negative",
        "cd45neg_blastlike",
    ]
    parents = tmpl.parents()
    assert parents["blasts"] == "leukocytes" and parents["leukocytes"] == "singlets"
    assert tmpl.roles == {"leukocytes": "leukocytes", "blasts": "blasts"}
    assert len(tmpl.sha256) == 64
    assert [v.dims for v in tmpl.gates[1].variants] == [("FSC-A", "FSC-H"), ("FSC-W",)]
    kinds = {g.name: g.kind for g in tmpl.gates}
    assert kinds["cells"] == kinds["singlets"] == kinds["leukocytes"] == "threshold"
    assert kinds["blasts"] == kinds["lymphocytes"] == "cluster"
    assert tmpl.gates[1].optional  # FS Lin only (FC500 era): skipped


def test_bundled_fixed_template_keeps_the_fixed_gates():
    assert "aml_blasts_cd45_ssc_fixed" in list_templates()
    tmpl = load_template("aml_blasts_cd45_ssc_fixed")
    assert tmpl.population_names() == [
        "cells",
        "singlets",
        "leukocytes",
        "blasts",
        "lymphocytes",
        "monocytes",
        "granulocytes",
    ]
    assert not any(g.adaptive for g in tmpl.gates)
    assert [v.dims for v in tmpl.gates[1].variants] == [("FSC-A", "FSC-H"), ("FSC-A", "FSC-W")]


def test_gates_are_ordered_parents_first_whatever_the_file_order():
    tmpl = _parse("""
  - {name: child, parent: top, kind: range, dims: [CD45], min: 0.5}
  - {name: top, kind: rectangle, dims: [FSC-A, SSC-A], min: [0.1, null], max: [null, 0.9]}
  - {name: not_child, parent: top, kind: boolean, op: not, of: [child]}
""")
    assert [g.name for g in tmpl.gates] == ["top", "child", "not_child"]


def test_unknown_name_and_path_lists_bundled_templates():
    with pytest.raises(TemplateError, match="aml_blasts_cd45_ssc"):
        load_template("no_such_template")


@pytest.mark.parametrize(
    ("gates", "fragments"),
    [
        (
            "  - {name: g, kind: polygon, dims: [FSC-A, SSC-A], vertices: [[0, 0], [1, 1]]}",
            ["gate 'g'", "'vertices'", "at least 3"],
        ),
        (
            "  - {name: g, kind: polygon, dims: [FSC-A, SSC-A], vertice: [[0, 0]]}",
            ["gate 'g'", "'vertice'"],
        ),
        ("  - {name: g, kind: hexagon, dims: [FSC-A]}", ["gate 'g'", "'kind'", "hexagon"]),
        ("  - {name: g, kind: range, dims: [CD45], min: 0.5, max: 0.2}", ["gate 'g'", "'min'"]),
        (
            "  - {name: g, kind: range, dims: [CD99], min: 0.5}",
            ["gate 'g'", "'dims'", "'CD99'", "not in the panel"],
        ),
        (
            "  - {name: g, parent: nowhere, kind: range, dims: [CD45], min: 0.5}",
            ["gate 'g'", "'parent'", "'nowhere'"],
        ),
        ("  - {name: g, kind: range, dims: [CD45, FSC-A], min: 0.5}", ["gate 'g'", "'dims'"]),
        (
            "  - {name: g, kind: ellipse, dims: [FSC-A, SSC-A], center: [0, 0], half_axes: [1, 0]}",
            ["gate 'g'", "'half_axes'"],
        ),
        (
            "  - {name: g, kind: quadrant, dims: [FSC-A, SSC-A], at: [0, 0], "
            "populations: {a: '++', b: '++'}}",
            ["gate 'g'", "'populations'", "distinct"],
        ),
        ("  - {name: g, kind: boolean, op: xor, of: [a, b]}", ["gate 'g'", "'op'"]),
        (
            "  - {name: g, kind: boolean, op: not, of: [g2]}\n"
            "  - {name: g2, kind: boolean, op: not, of: [g]}",
            ["cycle"],
        ),
        (
            "  - {name: g, kind: range, dims: [CD45], min: 0.5}\n"
            "  - {name: g, kind: range, dims: [CD45], max: 0.5}",
            ["'g' defined twice"],
        ),
        ("  - {name: g, kind: range, dims: [CD45], min: 'high'}", ["gate 'g'", "not a number"]),
    ],
)
def test_validation_errors_name_file_gate_and_field(gates, fragments):
    with pytest.raises(TemplateError) as info:
        _parse(gates)
    message = str(info.value)
    assert message.startswith("my_template.yaml")
    for fragment in fragments:
        assert fragment in message


def test_bad_yaml_and_bad_panel_pattern():
    with pytest.raises(TemplateError, match="not valid YAML"):
        parse_template("gates: [\n", Path("broken.yaml"))
    with pytest.raises(TemplateError, match="bad pattern"):
        parse_template(
            "panel: {CD45: 'CD45('}\ngates: [{name: g, kind: range, dims: [CD45], min: 0}]",
            Path("p.yaml"),
        )


def test_missing_scale_without_default():
    with pytest.raises(TemplateError, match="'CD45' has no scale"):
        parse_template(
            "panel: {CD45: 'CD45'}\nscales: {}\n"
            "gates: [{name: g, kind: range, dims: [CD45], min: 0}]",
            Path("s.yaml"),
        )


def test_template_from_a_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(BASE + "  - {name: g, kind: range, dims: [CD45], min: 0.5}\n")
    tmpl = load_template(path)
    assert tmpl.name == "t" and tmpl.path == path
