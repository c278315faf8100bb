"""`kind: auto` scales: fitted to each file's data when gating, and recorded as fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytogate.errors import TemplateError
from cytogate.gating.engine import gate
from cytogate.gating.template import parse_template
from cytogate.io.fcs import read_fcs
from cytogate.io.fcs_writer import write_fcs
from cytogate.model.scale_estimation import estimate_scale
from cytogate.model.transforms import Scale

FC500 = next((Path(__file__).parent / "data" / "real_fc500").glob("*.FCS"))

TEMPLATE = """
name: auto_scales
panel:
  SSC: ['^SS']
  CD45: ['\\\\bCD45\\\\b', 'FL3']
compensation: none
scales:
  default: {kind: auto}
gates:
  - name: all
    kind: rectangle
    dims: [SSC, CD45]
    min: [-10, -10]
    max: [10, 10]
"""


def test_auto_scale_on_a_real_fc500_tube_is_fitted_and_recorded() -> None:
    sample = read_fcs(FC500)
    result = gate(sample, parse_template(TEMPLATE, Path("auto.yaml")))
    index = result.resolve("CD45").index
    expected = estimate_scale(sample, index).to_scale()
    assert result.scales["CD45"] == expected  # the fitted scale is what the result records
    assert result.scales["CD45"].kind != "auto"
    scaled = result.scaled_values("CD45")
    inside = np.mean((scaled >= -0.05) & (scaled <= 1.0))
    assert inside >= 0.999  # the fitted scale covers the data, as a header-only one did not


def test_auto_logicle_width_follows_the_negative_tail(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    narrow = rng.normal(0, 20, 20_000)  # little spread below zero
    wide = rng.normal(0, 2_000, 20_000)  # compensated data spread far below zero
    events = np.column_stack([rng.uniform(1e4, 2e5, 20_000), narrow, wide])
    path = write_fcs(tmp_path / "t.fcs", events, ["SSC-A", "N-A", "W-A"], ["", "CD45", "CD3"])
    sample = read_fcs(path)
    w_narrow = estimate_scale(sample, 1).to_scale().params["W"]
    w_wide = estimate_scale(sample, 2).to_scale().params["W"]
    assert float(w_wide) > float(w_narrow)


def test_an_unresolved_auto_scale_refuses_to_apply() -> None:
    with pytest.raises(TemplateError, match="auto"):
        Scale.from_spec({"kind": "auto"}, "t").apply(np.zeros(3))
