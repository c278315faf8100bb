"""`cytogate inspect --json` is strict JSON even when the file has NaN ($PnR missing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from cytogate.cli import cli
from tests.fcs_fixtures import build_fcs


def _strict(text: str) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_inspect_json_writes_null_for_nan_and_counts_nonfinite(tmp_path: Path):
    values = np.arange(12.0).reshape(4, 3)
    values[1, 2] = np.nan
    path = tmp_path / "nan.fcs"
    path.write_bytes(build_fcs(values, pnn=["A", "B", "C"], drop=["$P2R"]))
    result = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = _strict(result.output)
    assert isinstance(info, dict)
    assert info["channels"][1]["pnr"] is None
    assert info["channels"][0]["pnr"] == 262144
    assert info["nonfinite"] == {"C": 1}
