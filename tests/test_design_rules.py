"""Design inference: rules from the run config, presets against real exports, `cytogate design`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cytogate.cli import cli
from cytogate.errors import DesignError
from cytogate.io.fcs import read_fcs, read_keywords
from cytogate.io.fcs_writer import write_fcs
from cytogate.sim.config import StudyConfig
from cytogate.sim.multitube import MultiTubeConfig, simulate_multitube_study
from cytogate.study.design import (
    STUDY_TIMEPOINTS,
    RunConfig,
    infer_design,
    load_config,
    read_design,
    read_manifest,
)
from cytogate.study.design_rules import default_rules, detect_preset, evaluate, rules_from_section

CORPUS = Path(__file__).parent / "data" / "fcs_corpus"
KEYS = ["file", "patient", "timepoint", "tube", "role", "control_for", "fmo_marker"]


@pytest.fixture(scope="module")
def diva_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A simulated FACSDiva-style multi-tube run; its manifest kept aside, not in the folder."""
    out = tmp_path_factory.mktemp("diva")
    study = StudyConfig(n_patients=4, events_per_file=300, seed=3, atypical_patients=0)
    truth = simulate_multitube_study(
        out, MultiTubeConfig(study=study, without_cd114=1, without_cd49f=2, without_ki67=1)
    )
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False, dtype=str)
    (out / "manifest.csv").unlink()
    assert len(truth.files) == 4 * 6 * 4 - 6 * 2
    return out, manifest


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.glob("*.fcs"):
        shutil.copy(f, dst / f.name)
    return dst


def _table(rows) -> pd.DataFrame:
    t = pd.DataFrame([{k: (r.name if k == "file" else getattr(r, k)) for k in KEYS} for r in rows])
    return t.sort_values("file").reset_index(drop=True)


def test_infers_exactly_the_manifest_design(diva_run) -> None:
    run, manifest = diva_run
    inference = infer_design(run, RunConfig())
    assert inference.ok, (inference.unplaced, inference.problems)
    got = _table(inference.rows)
    want = manifest[KEYS].sort_values("file").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    # every field says where it came from
    p = next(p for p in inference.placed if p.row.tube == "CXCR4 isotype")
    assert p.sources["tube"] == "keyword TUBE NAME"
    assert p.sources["patient"] == "keyword $SRC regex"
    assert p.sources["role"].startswith("tube name rule")
    d3 = next(p for p in inference.placed if p.row.timepoint == "day3")
    assert d3.sources["timepoint"].endswith("normalised D3→day3")
    # and batch's read_design takes the same design when there is no manifest
    design = read_design(run, RunConfig())
    pd.testing.assert_frame_equal(_table(design.rows), want)
    assert "facsdiva" in design.source


def test_cli_design_prints_and_writes_a_manifest(diva_run, tmp_path: Path) -> None:
    run = _copy_run(diva_run[0], tmp_path / "run")
    res = CliRunner().invoke(cli, ["design", str(run)])
    assert res.exit_code == 0, res.output
    assert "P01_D3_CXCR4 isotype_" in res.output and "keyword TUBE NAME" in res.output
    assert "84 file(s) without wbc_per_ul" in res.output  # Diva writes no blood count
    res = CliRunner().invoke(cli, ["design", str(run), "--write"])
    assert res.exit_code == 0, res.output
    written = read_manifest(run / "manifest.csv", run, RunConfig())
    pd.testing.assert_frame_equal(
        _table(written.rows), diva_run[1][KEYS].sort_values("file").reset_index(drop=True)
    )
    before = (run / "manifest.csv").read_bytes()
    res = CliRunner().invoke(cli, ["design", str(run), "--write"])
    assert res.exit_code != 0 and "--force" in res.output
    assert (run / "manifest.csv").read_bytes() == before
    assert "agrees on 84 of 84" in res.output
    res = CliRunner().invoke(cli, ["design", str(run), "--write", "--force"])
    assert res.exit_code == 0 and (run / "manifest.csv").read_bytes() == before
    assert not list(run.glob(".*.tmp"))


def _rewrite(src: Path, dst: Path, **keywords: str) -> None:
    """``src`` written again as ``dst`` with some keywords changed."""
    sample = read_fcs(src)
    kw = {k: v for k, v in read_keywords(src).items() if k.startswith(("$SRC", "TUBE", "EXP"))}
    kw.update({k.replace("_", " "): v for k, v in keywords.items()})
    kw["CREATOR"] = "BD FACSDiva Software Version 8.0.1 (SIMULATED by cytogate)"
    write_fcs(dst, sample.events, pnn=list(sample.channels["pnn"]), keywords=kw)


def test_files_that_cannot_be_placed_are_named_with_the_reason(diva_run, tmp_path: Path) -> None:
    run = _copy_run(diva_run[0], tmp_path / "run")
    first = sorted(run.glob("P01_BL_CXCR4_*.fcs"))[0]
    _rewrite(first, run / "P01_D5_CXCR4_099.fcs", **{"$SRC": "P01_D5"})
    _rewrite(first, run / "P02_BL_CXCR4_098.fcs", **{"$SRC": "P02_BL", "TUBE_NAME": "CXCR4"})
    shutil.copy(CORPUS / "Fortessa" / "FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs", run)
    (run / "broken.fcs").write_bytes(b"FCS3.1   not really")
    inference = infer_design(run, RunConfig())
    why = {p.name: reason for p, reason in inference.unplaced}
    assert "timepoint 'D5'" in why["P01_D5_CXCR4_099.fcs"]
    assert "a second 'CXCR4' tube for patient P02 at baseline" in why["P02_BL_CXCR4_098.fcs"]
    fortessa = why["FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs"]
    assert fortessa.startswith("no timepoint (") and "'Specimen_001'" in fortessa
    assert [p.name for p, _ in inference.unreadable] == ["broken.fcs"]
    assert len(inference.placed) == 84 and not inference.ok
    res = CliRunner().invoke(cli, ["design", str(run)])
    assert res.exit_code == 1
    assert "3 file(s) cannot be placed" in res.output and "P01_D5_CXCR4_099.fcs:" in res.output
    with pytest.raises(DesignError, match=r"3 file\(s\) cannot be placed"):
        read_design(run, RunConfig())


def test_config_rules_regex_map_and_file_names(diva_run, tmp_path: Path) -> None:
    """The brief's scheme: AML_P03_D3_CXCR4 isotype_012.fcs, patient and timepoint from the
    file name, the specimen keyword blank."""
    run = tmp_path / "run"
    run.mkdir()
    for f in sorted(diva_run[0].glob("*.fcs")):
        _rewrite(f, run / f"AML_{f.name}", **{"$SRC": " "})
    (run / "cytogate.yaml").write_text(
        "design:\n"
        "  preset: facsdiva\n"
        "  patient: {filename: true, regex: '^AML_(P\\d+)_'}\n"
        "  timepoint:\n"
        "    - {filename: true, regex: '_(BL|D3|\\d+h)_', map: {BL: baseline, D3: day3}}\n",
        encoding="utf-8",
    )
    config = load_config(run)
    inference = infer_design(run, config)
    assert inference.ok, inference.unplaced[:3]
    got = _table(inference.rows)
    want = diva_run[1][KEYS].copy()
    want["file"] = "AML_" + want["file"]
    pd.testing.assert_frame_equal(got, want.sort_values("file").reset_index(drop=True))
    bl = next(p for p in inference.placed if p.row.timepoint == "baseline")
    assert bl.sources["timepoint"] == "file name regex, map BL→baseline"
    assert bl.sources["patient"] == "file name regex"
    assert "cytogate.yaml" in inference.source


def test_config_errors_name_the_file_and_field(tmp_path: Path) -> None:
    cases = {
        "design:\n  timepoint: {keyword: X, regex: '('}\n": "design.timepoint[0].regex",
        "design:\n  tube: {keywrd: X}\n": "design.tube.0.keywrd",
        "design:\n  tube: {keyword: X, filename: true}\n": "exactly one of keyword, filename",
        "design:\n  preset: diva\n": "design.preset",
        "design:\n  controls: [{pattern: 'x', role: iso}]\n": "design.controls.0.role",
        "design:\n  patient: {keyword: $SRC, regex: '(a)\\1'}\n": "design.patient[0].regex",
    }
    for text, field in cases.items():
        path = tmp_path / "cytogate.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(DesignError) as err:
            load_config(tmp_path)
        message = str(err.value)
        assert str(path) in message and field in message and "\n" not in message, message


# ------------------------------------------------------------------ presets vs real exports


def _place(keywords: dict[str, str], name: str, section: dict | None = None):
    rules = rules_from_section(section or {}, "test") if section else default_rules()
    preset = detect_preset(keywords)
    return preset, evaluate(rules.for_preset(preset), keywords, name, STUDY_TIMEPOINTS)


@pytest.mark.parametrize(
    ("path", "specimen", "tube"),
    [
        ("Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs", "Specimen_001", "A1"),
        ("HTS_BD_LSR-II/HTS_BD_LSR_II_Mixed_Specimen_001_D6_D06.fcs", "Specimen_001", "D6"),
        ("FACS_Diva/facs_diva_test.fcs", "xxxxxxxxxx15", "KM1"),
    ],
)
def test_facsdiva_preset_on_real_diva_files(path: str, specimen: str, tube: str) -> None:
    kw = read_keywords(CORPUS / path)
    preset, found = _place(kw, Path(path).name)
    assert preset == "facsdiva"
    assert found.values["patient"] == specimen and found.values["tube"] == tube
    assert found.values["role"] == "stained"
    # these experiments are not time courses: no timepoint, and the reason says where it looked
    assert len(found.problems) == 1 and found.problems[0].startswith("no timepoint (")
    assert "keyword EXPERIMENT NAME" in found.problems[0]
    # a constant timepoint in the config places them
    _, fixed = _place(kw, Path(path).name, {"timepoint": [{"value": "baseline"}]})
    assert not fixed.problems and fixed.values["timepoint"] == "baseline"


def test_spectroflo_preset_on_a_real_aurora_file() -> None:
    kw = read_keywords(CORPUS / "cytek-nl-2000" / "sample_header.fcs")
    preset, found = _place(kw, "sample_header.fcs")
    assert preset == "spectroflo"
    assert found.values["patient"] == "20200722" and found.values["tube"] == "input"
    assert found.sources["tube"] == "keyword TUBENAME"
    assert [p.split(" (")[0] for p in found.problems] == ["no timepoint"]


#: keywords of a real Beckman Coulter FC 500 (CXP) export: FlowCAP-II AML tube, MIT licence
#: (CytoPy's test asset; /work/shared/data/real/fc500_flowcap2_type)
FC500_KEYWORDS = {
    "$SYS": "CXP     ",
    "$CYT": "Cytomics FC 500",
    "$SMNO": "00016825",
    "$SRC": " ",
    "@TUBENO": "1",
    "@PANEL": "L-L Comprehensive",
    "@SAMPLEID1": "UP00_000399",
    "@SAMPLEID2": "112905",
    "TESTNAME": "CVSN 5C LOG",
    "$FIL": "UP00_000399_001.LMD",
}


def test_kaluza_preset_on_real_fc500_keywords() -> None:
    preset, found = _place(FC500_KEYWORDS, "UP00_000399_001.LMD")
    assert preset == "kaluza"
    assert found.values["patient"] == "UP00_000399" and found.sources["patient"].startswith(
        "keyword @SAMPLEID1"
    )
    assert found.values["tube"] == "CVSN 5C LOG"
    assert found.problems[0].startswith("no timepoint (keyword @SAMPLEID2 '112905' does not")


def test_unknown_software_says_so() -> None:
    kw = read_keywords(CORPUS / "GuavaMuse" / "Guava Muse.fcs")
    assert detect_preset(kw) is None
    run = CORPUS / "GuavaMuse"
    inference = infer_design(run, RunConfig())
    ((_, why),) = inference.unplaced
    assert "acquisition software not recognised" in why and "no patient" in why


# ------------------------------------------------------------------ the rules themselves


@pytest.mark.parametrize(
    ("tube", "role", "control_for", "fmo_marker"),
    [
        ("CXCR4", "stained", "", ""),
        ("CXCR4 isotype", "isotype", "CXCR4", ""),
        ("Ki67_iso", "isotype", "Ki67", ""),
        ("Isotype CXCR4", "isotype", "CXCR4", ""),
        ("isotype", "isotype", "", ""),
        ("CXCR4 FMO CD114", "fmo", "CXCR4", "CD114"),
        ("FMO CD49f", "fmo", "", "CD49f"),
        ("Unstained", "unstained", "", ""),
        ("stained", "stained", "", ""),
    ],
)
def test_roles_from_tube_names(tube: str, role: str, control_for: str, fmo_marker: str) -> None:
    _, found = _place({"CYTOGATE_PATIENT": "P1", "CYTOGATE_TIMEPOINT": "2h",
                       "CYTOGATE_TUBE": tube}, "x.fcs")  # fmt: skip
    assert (found.values["role"], found.values["control_for"], found.values["fmo_marker"]) == (
        role, control_for, fmo_marker)  # fmt: skip


@pytest.mark.parametrize(
    ("typed", "known"),
    [("D3", "day3"), ("Day 3", "day3"), ("BL", "baseline"), ("pre", "baseline"),
     ("24 h", "24h"), ("6hrs", "6h"), ("2H", "2h"), ("4h", "4h")],
)  # fmt: skip
def test_timepoints_as_labs_type_them(typed: str, known: str) -> None:
    _, found = _place({"$SRC": f"P07 {typed}", "TUBE NAME": "CXCR4", "CREATOR": "BD FACSDiva"},
                      "a.fcs")  # fmt: skip
    assert found.values["timepoint"] == known and found.values["patient"] == "P07"
    assert not found.problems


def test_own_control_rules_and_role_keyword() -> None:
    section = {
        "tube": [{"keyword": "TUBE NAME"}],
        "controls": [{"pattern": r"^(?P<control_for>\w+)-neg$", "role": "isotype"}],
    }
    kw = {"$SRC": "P1_BL", "TUBE NAME": "CXCR4-neg", "CREATOR": "BD FACSDiva"}
    _, found = _place(kw, "a.fcs", section)
    assert (found.values["role"], found.values["control_for"]) == ("isotype", "CXCR4")
    # the built-in " isotype" rule is replaced, not added to
    _, found = _place({**kw, "TUBE NAME": "CXCR4 isotype"}, "a.fcs", section)
    assert found.values["role"] == "stained"
    section["role"] = [{"keyword": "ROLE"}]
    _, found = _place({**kw, "ROLE": "fmo"}, "a.fcs", section)
    assert found.values["role"] == "fmo" and found.sources["role"] == "keyword ROLE"
    _, found = _place({**kw, "ROLE": "negative"}, "a.fcs", section)
    assert any("role 'negative'" in p for p in found.problems)


def test_batch_without_a_manifest_uses_the_inferred_design(tmp_path: Path) -> None:
    """The same run with the simulator's manifest and without it: the same measures."""
    from cytogate.study.batch import run_batch

    study = StudyConfig(
        n_patients=2, events_per_file=2000, seed=11, atypical_patients=0,
        timepoints=("baseline", "2h"),
    )  # fmt: skip
    with_manifest = tmp_path / "with"
    simulate_multitube_study(
        with_manifest,
        MultiTubeConfig(study=study, without_cd114=1, without_cd49f=1, without_ki67=0),
    )
    without = _copy_run(with_manifest, tmp_path / "without")
    config = RunConfig(timepoints=("baseline", "2h"))
    a, b = (
        run_batch(with_manifest, config=config, jobs=1),
        run_batch(without, config=config, jobs=1),
    )
    keys = ["file", "marker", "tube", "mfi_median", "rmfi", "pct_positive", "control_file"]
    ma = a.markers[keys].sort_values(["file", "marker"]).reset_index(drop=True)
    mb = b.markers[keys].sort_values(["file", "marker"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(ma, mb)
    ma = ma[ma["tube"].isin(["CXCR4", "Ki67"])]  # the stained tubes' rows
    cxcr4 = ma[ma["marker"] == "CXCR4_12G5"]
    assert len(cxcr4) == 4 and cxcr4["rmfi"].notna().all()
    assert (cxcr4["control_file"].str.contains("_CXCR4 isotype_")).all()
    ki67 = ma[ma["marker"] == "Ki67"]
    assert len(ki67) == 4 and (ki67["control_file"].str.contains("_Ki67 isotype_")).all()
    # one patient lacks CD114: its value is missing data, not a failure
    assert ma[ma["marker"] == "CD114"]["rmfi"].notna().sum() == 2


def test_wbc_from_a_custom_keyword(diva_run, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    a, b = sorted(diva_run[0].glob("P01_BL_CXCR4*.fcs"))  # the isotype tube, then the stained
    _rewrite(a, run / a.name, WBC="5400")
    _rewrite(b, run / b.name, WBC="5,4 x10^3")
    (run / "cytogate.yaml").write_text("design:\n  wbc_per_ul: WBC\n", encoding="utf-8")
    inference = infer_design(run, load_config(run))
    (placed,) = inference.placed
    assert placed.row.wbc_per_ul == 5400.0 and placed.sources["wbc_per_ul"] == "keyword WBC"
    ((path, why),) = inference.unplaced
    assert path.name == b.name and "'5,4 x10^3' is not a number" in why
