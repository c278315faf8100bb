"""Experimental design: manifest parsing with line numbers, run config, file-name patterns."""

from pathlib import Path

import pytest

from cytogate.errors import DesignError
from cytogate.study.design import RunConfig, load_config, read_design

HEADER = "file,patient,timepoint,tube,wbc_per_ul,cohort\n"


def _run(tmp_path: Path, manifest: str, files: list[str]) -> Path:
    for name in files:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "manifest.csv").write_text(manifest)
    return tmp_path


def test_manifest_rows_and_groups(tmp_path):
    run = _run(
        tmp_path,
        HEADER + "a.fcs,P1,baseline,stained,5000,A\n"
        "b.fcs,P1,baseline,isotype,5000,A\n"
        "c.fcs,P1,day3,stained,12000,A\n",
        ["a.fcs", "b.fcs", "c.fcs", "extra.fcs"],
    )
    design = read_design(run, RunConfig())
    assert [r.line for r in design.rows] == [2, 3, 4]
    assert design.rows[2].wbc_per_ul == 12000.0 and design.rows[0].cohort == "A"
    groups = design.groups(RunConfig())
    assert [(g.patient, g.timepoint) for g in groups] == [("P1", "baseline"), ("P1", "day3")]
    assert groups[0].control.file.name == "b.fcs" and groups[1].control is None
    warnings = "\n".join(design.warnings)
    assert "extra.fcs: in the run folder but not in manifest.csv" in warnings
    assert "c.fcs: stained tube without its isotype tube" in warnings


def test_every_manifest_problem_is_reported_with_its_line(tmp_path):
    run = _run(
        tmp_path,
        HEADER
        + "a.fcs,P1,baseline,stained,5000,\n"  # line 2 fine
        + "missing.fcs,P1,baseline,isotype,,\n"  # line 3 file missing
        + "a.fcs,P2,baseline,stained,,\n"  # line 4 duplicate file
        + "b.fcs,P1,week2,stained,,\n"  # line 5 unknown timepoint
        + "c.fcs,P1,day3,fmo,,\n"  # line 6 unknown tube
        + "d.fcs,P1,baseline,stained,,\n"  # line 7 second stained tube
        + "e.fcs,P3,day3,stained,lots,\n",  # line 8 bad number
        ["a.fcs", "b.fcs", "c.fcs", "d.fcs", "e.fcs"],
    )
    with pytest.raises(DesignError) as info:
        read_design(run, RunConfig())
    message = str(info.value)
    for expected in [
        "line 3: file missing.fcs does not exist",
        "line 4: duplicate row for file a.fcs (first on line 2)",
        "line 5: unknown timepoint 'week2'",
        "line 6: unknown tube 'fmo'",
        "line 7: a second stained tube for patient P1 at baseline (first on line 2)",
        "line 8: 'wbc_per_ul': 'lots' is not a number",
    ]:
        assert expected in message
    assert "manifest.csv: line 2:" not in message


def test_manifest_missing_required_column(tmp_path):
    run = _run(tmp_path, "file,patient,tube\na.fcs,P1,stained\n", ["a.fcs"])
    with pytest.raises(DesignError, match=r"line 1: missing column.*timepoint"):
        read_design(run, RunConfig())


def test_design_from_file_names_without_manifest(tmp_path):
    for name in ["P01_baseline_stained.fcs", "P01_baseline_isotype.fcs", "P02_6h_stained.fcs"]:
        (tmp_path / name).write_bytes(b"")
    design = read_design(tmp_path, RunConfig(design_source="filename"))
    assert {(r.patient, r.timepoint, r.tube) for r in design.rows} == {
        ("P01", "baseline", "stained"),
        ("P01", "baseline", "isotype"),
        ("P02", "6h", "stained"),
    }


def test_file_name_that_does_not_match_is_named(tmp_path):
    (tmp_path / "P01_baseline_stained.fcs").write_bytes(b"")
    (tmp_path / "random name.fcs").write_bytes(b"")
    with pytest.raises(DesignError, match=r"random name\.fcs: file name does not match"):
        read_design(tmp_path, RunConfig(design_source="filename"))


def test_run_config_overrides_and_validation(tmp_path):
    (tmp_path / "cytogate.yaml").write_text(
        "timepoints: [pre, post]\nbaseline: pre\nmfi_statistic: geomean\ncorrection: holm\n"
        "comparisons: ['post vs pre']\ndesign: {source: filename, pattern: "
        "'^(?P<patient>\\w+)-(?P<timepoint>\\w+)-(?P<tube>\\w+)\\.fcs$'}\n"
    )
    cfg = load_config(tmp_path)
    assert cfg.timepoints == ("pre", "post") and cfg.baseline == "pre"
    assert cfg.comparisons == (("post", "pre"),) and cfg.mfi_statistic == "geomean"
    assert cfg.design_source == "filename" and cfg.path.endswith("cytogate.yaml")
    assert load_config(tmp_path / "nowhere") == RunConfig()  # no config: study defaults


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("baseline: day0\n", "field 'baseline'"),
        ("mfi_statistic: mode\n", "field 'mfi_statistic'"),
        ("test: anova\n", "field 'test'"),
        ("colour: blue\n", "unknown field(s) colour"),
        ("comparisons: ['6h vs day99']\n", "field 'comparisons'"),
        ("filename_pattern: '(?P<patient>.*)'\n", "needs named groups timepoint, tube"),
        ("positivity_percentile: 100\n", "positivity_percentile"),
    ],
)
def test_bad_run_config_names_the_field(tmp_path, text, fragment):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(DesignError) as info:
        load_config(tmp_path, path)
    assert str(info.value).startswith(str(path)) and fragment in str(info.value)


RUN42 = Path(__file__).resolve().parents[1] / "sample_fcs" / "run42"


def test_design_from_fcs_keywords_matches_the_manifest(tmp_path):
    import pandas as pd

    manifest = pd.read_csv(RUN42 / "manifest.csv").head(6)
    for name in manifest["file"]:
        (tmp_path / name).write_bytes((RUN42 / name).read_bytes())
    design = read_design(tmp_path, RunConfig())  # no manifest: auto -> keywords
    assert design.source.startswith("FCS keywords")
    got = {(r.file.name, r.patient, r.timepoint, r.tube) for r in design.rows}
    want = {(r.file, r.patient, r.timepoint, r.tube) for r in manifest.itertuples()}
    assert got == want


def test_read_keywords_equals_read_fcs_keywords():
    from cytogate.io.fcs import read_fcs, read_keywords

    corpus = Path(__file__).parent / "data" / "fcs_corpus"
    files = [
        RUN42 / "P02_2h_isotype.fcs",
        corpus / "FACS_Diva" / "facs_diva_test.fcs",
        corpus / "fake_large_fcs" / "fake_large_fcs.fcs",
    ]
    for path in files:
        assert read_keywords(path) == read_fcs(path).keywords
