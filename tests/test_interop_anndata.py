"""AnnData export: the .h5ad reads back in anndata with the documented fields and values.

Data: the two-tube simulated run (tests/conftest.py, simulated by cytogate.sim) and the
GatingML compliance file (BSD-3) for a FlowKit-evaluated template.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cytogate.cli import cli
from cytogate.gating.engine import gate
from cytogate.interop.anndata_export import write_h5ad
from cytogate.io.fcs import read_fcs

ad = pytest.importorskip("anndata")
RUN42: Path  # the two-tube SIMULATED study (tests/conftest.py two_tube_run42), set below


@pytest.fixture(scope="module", autouse=True)
def _two_tube_run42(two_tube_run42: Path) -> None:
    """This module's tests need the two-tube design; the bundled run42 is multi-tube."""
    global RUN42
    RUN42 = two_tube_run42


SUITE = Path(__file__).parent / "data" / "gatingml_compliance"


def test_h5ad_round_trip_has_the_documented_fields(tmp_path):
    path = RUN42 / "P01_baseline_stained.fcs"
    sample = read_fcs(path)
    result = gate(sample)
    written = write_h5ad(result, tmp_path / "x.h5ad", {"patient": "P01"})
    adata = ad.read_h5ad(written)
    assert adata.shape == sample.events.shape
    assert list(adata.var_names) == list(sample.channels["pnn"])
    np.testing.assert_array_equal(adata.layers["raw"], sample.events.astype(np.float32))
    np.testing.assert_allclose(adata.X, result.compensated.astype(np.float32))
    cd45 = result.markers["CD45"]
    assert adata.var["marker"].iloc[cd45.index] == "CD45"
    np.testing.assert_allclose(
        adata.layers["transformed"][:, cd45.index], result.scaled_values("CD45"), rtol=1e-6
    )
    assert adata.var.loc["Time", "transform"] == "none"
    for pop in result.populations:
        assert adata.obs[pop].dtype == bool
        np.testing.assert_array_equal(adata.obs[pop].to_numpy(), result.mask(pop))
    assert set(adata.obs["patient"]) == {"P01"} and set(adata.obs["file"]) == {path.name}
    uns = adata.uns["cytogate"]
    assert uns["template"]["name"] == "aml_blasts_cd45_ssc"
    gates = json.loads(uns["template"]["gates_json"])
    assert [g["name"] for g in gates] == [g.name for g in result.gates]
    assert uns["scales"]["CD45"]["kind"] == "logicle"
    assert uns["parents"]["blasts"] == result.parent("blasts")
    assert list(uns["spillover"]["channels"]) == [str(c) for c in result.spillover.columns]


def test_export_command_on_a_run_carries_the_design(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("P01_baseline_stained.fcs", "P01_baseline_isotype.fcs"):
        (run / name).write_bytes((RUN42 / name).read_bytes())
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["export", str(run), "--format", "anndata", "-o", str(out)])
    assert res.exit_code == 0, res.output
    adata = ad.read_h5ad(out / "P01_baseline_isotype.h5ad")
    assert set(adata.obs["tube"]) == {"isotype"} and set(adata.obs["timepoint"]) == {"baseline"}


def test_flowkit_template_exports_flowkits_values(tmp_path):
    sample = read_fcs(SUITE / "data1.fcs")
    result = gate(sample, SUITE / "gml" / "gml_matrix_transform_logicle_rect1_gate.xml")
    adata = ad.read_h5ad(write_h5ad(result, tmp_path / "g.h5ad"))
    (dim, *_) = result.gate_of("ScaleRect1").dims
    j = result.markers[dim].index
    np.testing.assert_allclose(
        adata.layers["transformed"][:, j], result.scaled_values(dim), rtol=1e-6
    )
    np.testing.assert_array_equal(adata.obs["ScaleRect1"].to_numpy(), result.mask("ScaleRect1"))
