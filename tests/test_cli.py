"""The command line: inspect and gate on every bundled file and the real Diva file; errors."""

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cytogate.cli import cli

ROOT = Path(__file__).resolve().parents[1]
RUN42 = ROOT / "sample_fcs" / "run42"
DIVA = ROOT / "tests" / "data" / "fcs_corpus" / "FACS_Diva" / "facs_diva_test.fcs"
RUN42_FILES = sorted(RUN42.glob("*.fcs"))


def _invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_run42_is_the_documented_size():
    # the README's bundled study: 8 patients x 6 timepoints x (CXCR4 tube + isotype), and the
    # Ki67 tube + isotype in 4 of the 8 patients (cytogate simulate --design multitube)
    assert len(RUN42_FILES) == 144
    manifest = pd.read_csv(RUN42 / "manifest.csv")
    assert sorted(manifest["file"]) == [p.name for p in RUN42_FILES]
    assert manifest["patient"].nunique() == 8 and manifest["timepoint"].nunique() == 6
    assert manifest.groupby("tube").size().to_dict() == {
        "CXCR4": 48, "CXCR4 isotype": 48, "Ki67": 24, "Ki67 isotype": 24}  # fmt: skip


@pytest.mark.parametrize("path", [*RUN42_FILES, DIVA], ids=lambda p: p.name)
def test_gate_and_inspect_every_bundled_file(path):
    # the real Diva file is bone marrow, not the simulated blood the default template's fitted
    # gates are built for: there the fixed template must find blasts, and the default template
    # must either find them or say it could not (QC flag), never silently report none
    template = "aml_blasts_cd45_ssc_fixed" if path == DIVA else "aml_blasts_cd45_ssc"
    result = _invoke("gate", path, "--format", "json", "--template", template)
    assert result.exit_code == 0, result.output
    table = {row["population"]: row for row in json.loads(result.stdout)}
    assert 0 < table["blasts"]["count"] < table["leukocytes"]["count"] <= table["cells"]["count"]
    if path == DIVA:
        default = _invoke("gate", path, "--format", "json")
        assert default.exit_code == 0, default.output
        blasts = {row["population"]: row for row in json.loads(default.stdout)}["blasts"]
        assert blasts["count"] > 0 or (blasts["qc_flag"] and blasts["qc_reason"])
    info = json.loads(_invoke("inspect", path, "--json").stdout)
    assert info["events"] == pytest.approx(
        table["cells"]["count"] * 100 / table["cells"]["pct_total"]
    )


def test_diva_singlets_use_fsc_w_and_spillover():
    result = _invoke("gate", DIVA, "--template", "aml_blasts_cd45_ssc_fixed")
    assert result.exit_code == 0
    assert "FSC-A/FSC-W" in result.stdout and "PerCP-A/SSC-A" in result.stdout
    assert "file spillover keyword (8 ch)" in result.stdout
    adaptive = _invoke("gate", DIVA, "--format", "json")  # the fitted width gate of the default
    rows = {row["population"]: row for row in json.loads(adaptive.stdout)}
    assert rows["singlets"]["gate_channels"] == "FSC-W"
    assert rows["blasts"]["gate_channels"] == "PerCP-A/SSC-A"


def test_inspect_text_shows_channels_and_simulated_keywords(two_tube_run42):
    result = _invoke("inspect", two_tube_run42 / "P02_baseline_isotype.fcs")
    assert result.exit_code == 0
    assert "IgG2a PE" in result.stdout and "CD45 PerCP-Cy5.5" in result.stdout
    assert "CYTOGATE_SIMULATED" in result.stdout and "SIMULATED DATA" in result.stdout
    assert "spillover:   6 x 6" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["gate", ROOT / "tests/data/fcs_corpus/corrupted/corrupted.fcs"],
            "corrupted.fcs: file is",
        ),
        (["gate", ROOT / "no_such.fcs"], "no_such.fcs: no such file"),
        (["gate", DIVA, "--template", "nonexistent"], "no bundled template"),
        (
            [
                "gate",
                ROOT
                / "tests/data/fcs_corpus/Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs",
            ],
            "marker 'CD45' matches no channel",
        ),
        (
            ["inspect", ROOT / "tests/data/fcs_corpus/cytek-nl-2000/sample_header.fcs"],
            "DATA offsets past end of file",
        ),
        (["batch", ROOT / "no_such_run"], "not a folder"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, fragment):
    result = _invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("cytogate: error: ") and fragment in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_templates_lists_the_default():
    result = _invoke("templates")
    assert result.exit_code == 0 and result.stdout.startswith("aml_blasts_cd45_ssc\t")


def test_simulate_writes_a_reproducible_study(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        result = _invoke("simulate", out, "--patients", "1", "--events", "500", "--seed", "7")
        assert result.exit_code == 0 and "SIMULATED" in result.stdout
    names = sorted(p.name for p in a.glob("*.fcs"))
    assert len(names) == 12
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    assert (a / "manifest.csv").is_file() and (a / "ground_truth" / "labels.npz").is_file()
