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
    assert kinds["cells"] == kinds["singlets"] == "threshold"
    # one CD45/SSC leukocyte map per file names leukocytes and the four populations
    assert kinds["leukocytes"] == kinds["blasts"] == kinds["lymphocytes"] == "leukomap"
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


# --------------------------------------------------------------------------- lines, hints, kinds


BLOCK = """
name: t
panel: {FSC-A: '^FSC-A$', SSC-A: '^SSC-A$', CD45: 'CD45'}
scales: {default: logicle}
gates:
  - name: cells
    kind: rectangle
    dims: [FSC-A, SSC-A]
    min: [0.1, 0.1]
  - name: blasts
    parent: cells
    kind: cluster
    dims: [CD45, SSC-A]
    mixture:
      components: [2, 4]
      subsampel: 3000
"""


def test_error_gives_the_yaml_line_of_the_misspelt_field_and_a_suggestion():
    with pytest.raises(TemplateError) as info:
        parse_template(BLOCK, Path("block.yaml"))
    message = str(info.value)
    # line 16 holds `subsampel:` (BLOCK starts with an empty line 1)
    assert message.startswith("block.yaml:16: gate 'blasts': unknown field 'mixture.subsampel'")
    assert "did you mean 'mixture.subsample'?" in message
    assert "\n" not in message


def test_error_line_points_at_the_bad_value_not_the_gate():
    text = BLOCK.replace("      subsampel: 3000\n", "").replace("min: [0.1, 0.1]", "min: [0.1, x]")
    with pytest.raises(TemplateError) as info:
        parse_template(text, Path("block.yaml"))
    message = str(info.value)
    assert message.startswith("block.yaml:9: gate 'cells': field 'min': 'x' is not a number")


def test_misspelt_gate_field_kind_and_population_get_suggestions():
    cases = [
        ("  - {name: g, kind: range, dims: [CD45], mn: 0.5}", "did you mean 'min'?"),
        ("  - {name: g, kind: rectangel, dims: [CD45], min: 0.5}", "did you mean 'rectangle'?"),
        (
            "  - {name: g, kind: range, dims: [CD45], min: 0.5}\n"
            "  - {name: h, parent: gg, kind: range, dims: [CD45], min: 0.6}",
            "did you mean 'g'?",
        ),
    ]
    for gates, hint in cases:
        with pytest.raises(TemplateError) as info:
            _parse(gates)
        assert hint in str(info.value), str(info.value)


def test_every_kind_is_registered_once_with_its_fields_documented():
    from cytogate.gating.kinds import KINDS, kinds_markdown

    assert list(KINDS) == [
        "rectangle",
        "range",
        "polygon",
        "ellipse",
        "quadrant",
        "boolean",
        "leukomap",
        "cluster",
        "relative",
        "threshold",
    ]
    table = kinds_markdown()
    for kind in KINDS.values():
        assert f"### `{kind.name}`" in table
        for f in kind.fields:
            assert f"| `{f.name}` |" in table
    # a default is written once: the parsed gate carries the declared default
    tmpl = _parse("  - {name: g, kind: threshold, dims: [CD45], method: valley}")
    assert tmpl.gates[0].variants[0].min_depth == KINDS["threshold"].field_map["min_depth"].default


def test_a_new_kind_is_one_registration(monkeypatch):
    """A kind declared and registered outside the package validates, parses and fits."""
    import numpy as np

    from cytogate.gating import kinds
    from cytogate.gating.engine import gate
    from cytogate.gating.fields import REQUIRED, Field, fraction
    from cytogate.gating.fitting.base import Fit
    from cytogate.gating.gates import Rectangle
    from tests.conftest import make_sample

    class Top:  # keep the top share of the parent's events on one dimension
        kind = "top_share"

        def __init__(self, dims, share):
            self.dims, self.share = dims, share

    def fit(spec, name, parent, points, ctx):
        cut = float(np.quantile(points[:, 0], 1 - spec.share))
        return Fit(Rectangle(spec.dims, (cut,), (None,)), {"cut": cut})

    monkeypatch.delitem(kinds.KINDS, "top_share", raising=False)
    kinds.register(
        kinds.Kind(
            name="top_share",
            summary="the top share of events",
            fields=(Field("dims", "one marker", REQUIRED), Field("share", "0..1", 0.1, fraction)),
            parse=lambda e: Top(tuple(e.raw("dims")), e.get("share")),
            fit=fit,
        )
    )
    try:
        text = BASE + "  - {name: hi, kind: top_share, dims: [CD45], share: 0.25}\n"
        tmpl = parse_template(text, Path("k.yaml"))
        x = np.random.default_rng(1).normal(1000, 300, 4000)
        result = gate(make_sample(np.column_stack([x, x, x]), ["FSC-A", "SSC-A", "CD45"]), tmpl)
        assert result.count("hi") == pytest.approx(1000, abs=2)
        assert result.gate_of("hi").fitted
        with pytest.raises(TemplateError, match="field 'share': between 0 and 1"):
            parse_template(text.replace("0.25", "2"), Path("k.yaml"))
    finally:
        kinds.KINDS.pop("top_share", None)


def test_docs_field_reference_is_generated_from_the_declarations():
    from cytogate.gating.loader import reference_markdown

    docs = Path(__file__).resolve().parents[1] / "docs" / "gate_kinds.md"
    assert docs.read_text() == reference_markdown(), "regenerate docs/gate_kinds.md"
