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


RUN42: Path  # the two-tube SIMULATED study (tests/conftest.py two_tube_run42), set below


@pytest.fixture(scope="module", autouse=True)
def _two_tube_run42(two_tube_run42: Path) -> None:
    """This module's tests need the two-tube design; the bundled run42 is multi-tube."""
    global RUN42
    RUN42 = two_tube_run42


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


# --------------------------------------------------------------------------- multi-tube manifests
MULTI = "file,patient,timepoint,tube,role,control_for,fmo_marker\n"


def test_multitube_manifest_links_each_control_to_its_stained_tube(tmp_path):
    files = ["c.fcs", "ci.fcs", "k.fcs", "ki.fcs", "f.fcs", "c2.fcs"]
    run = _run(
        tmp_path,
        MULTI + "c.fcs,P1,baseline,CXCR4,stained,,\n"
        "ci.fcs,P1,baseline,CXCR4 isotype,isotype,CXCR4,\n"
        "k.fcs,P1,baseline,Ki67,,,\n"  # empty role: a stained tube
        "ki.fcs,P1,baseline,Ki67 isotype,isotype,Ki67,\n"
        "f.fcs,P1,baseline,CXCR4 FMO CD49f,fmo,CXCR4,CD49f\n"
        "c2.fcs,P1,day3,CXCR4,stained,,\n",
        files,
    )
    design = read_design(run, RunConfig())
    roles = {r.file.name: (r.tube, r.role, r.control_for, r.fmo_marker) for r in design.rows}
    assert roles["k.fcs"] == ("Ki67", "stained", "", "")
    assert roles["f.fcs"] == ("CXCR4 FMO CD49f", "fmo", "CXCR4", "CD49f")
    base, day3 = design.groups(RunConfig())
    assert [t.stained.file.name for t in base.tubes] == ["c.fcs", "k.fcs"]  # by tube name
    cxcr4, ki67 = base.tubes
    assert [c.file.name for c in cxcr4.controls] == ["ci.fcs", "f.fcs"]
    assert cxcr4.control("isotype").file.name == "ci.fcs"
    assert cxcr4.control("fmo", "CD49f").file.name == "f.fcs"
    assert cxcr4.control("fmo", "CD114") is None
    assert [c.file.name for c in ki67.controls] == ["ki.fcs"]
    assert [r.file.name for r in day3.rows] == ["c2.fcs"]
    assert any(
        "c2.fcs: stained tube 'CXCR4' without its control tube" in w for w in design.warnings
    )
    order = design.tube_order()
    assert order["CXCR4"] < order["CXCR4 isotype"] < order["CXCR4 FMO CD49f"] < order["Ki67"]


def test_two_tube_manifest_reads_as_before_with_roles_derived(tmp_path):
    run = _run(
        tmp_path,
        HEADER + "a.fcs,P1,baseline,stained,5000,A\nb.fcs,P1,baseline,isotype,5000,A\n",
        ["a.fcs", "b.fcs"],
    )
    a, b = read_design(run, RunConfig()).rows
    assert (a.role, a.control_for) == ("stained", "")
    assert (b.role, b.control_for, b.fmo_marker) == ("isotype", "stained", "")
    (tmp_path / "custom").mkdir()
    run2 = _run(
        tmp_path / "custom",
        HEADER + "a.fcs,P1,baseline,stained,,\nb.fcs,P1,baseline,iso,,\n",
        ["a.fcs", "b.fcs"],
    )
    _, iso = read_design(run2, RunConfig(control_tube="iso")).rows
    assert iso.role == "isotype" and iso.control_for == "stained"


def test_multitube_manifest_problems_all_at_once_with_line_numbers(tmp_path):
    files = [f"{i}.fcs" for i in range(2, 12)]
    run = _run(
        tmp_path,
        MULTI + "2.fcs,P1,baseline,CXCR4,stained,,\n"  # fine
        "3.fcs,P1,baseline,Ki67,stained,,\n"  # fine
        "4.fcs,P1,baseline,CXCR4 iso,isotype,CXCR5,\n"  # names no stained tube
        "5.fcs,P1,baseline,CXCR4 FMO,fmo,CXCR4,\n"  # fmo without its marker
        "6.fcs,P1,baseline,CXCR4 isotype,isotype,CXCR4,\n"  # fine
        "7.fcs,P1,baseline,CXCR4 isotype 2,isotype,CXCR4,\n"  # second isotype of CXCR4
        "8.fcs,P1,baseline,CXCR4,stained,,\n"  # stained tube listed twice
        "9.fcs,P1,baseline,Ki67 iso,control,Ki67,\n"  # unknown role
        "10.fcs,P1,baseline,Ki67 x,stained,Ki67,\n"  # control_for on a stained tube
        "11.fcs,P1,baseline,loose iso,isotype,,\n",  # which of CXCR4, Ki67?
        files,
    )
    with pytest.raises(DesignError) as info:
        read_design(run, RunConfig())
    message = str(info.value)
    for expected in [
        "manifest.csv: line 4: control_for 'CXCR5' names no stained tube of patient P1 at baseline",
        "manifest.csv: line 5: fmo tube 'CXCR4 FMO' without 'fmo_marker'",
        "manifest.csv: line 7: a second isotype control for tube 'CXCR4' of patient P1 at "
        "baseline (first: manifest.csv: line 6)",
        "manifest.csv: line 8: a second CXCR4 tube for patient P1 at baseline (first on line 2)",
        "manifest.csv: line 9: unknown role 'control'",
        "manifest.csv: line 10: control_for 'Ki67' on stained tube 'Ki67 x'",
        "manifest.csv: line 11: isotype tube 'loose iso' of patient P1 at baseline: which "
        "stained tube does it control?",
    ]:
        assert expected in message, (expected, message)
    for fine in ("line 2:", "line 3:", "line 6:"):
        assert f"manifest.csv: {fine}" not in message


def test_control_of_a_tube_this_draw_lacks_is_a_warning_not_an_error(tmp_path):
    run = _run(
        tmp_path,
        MULTI + "a.fcs,P1,baseline,Ki67,stained,,\nb.fcs,P1,day3,Ki67 isotype,isotype,Ki67,\n",
        ["a.fcs", "b.fcs"],
    )
    design = read_design(run, RunConfig())
    (day3,) = [g for g in design.groups(RunConfig()) if g.timepoint == "day3"]
    assert day3.tubes == () and [r.file.name for r in day3.orphans] == ["b.fcs"]
    assert any(
        "line 3: isotype tube 'Ki67 isotype' controls 'Ki67', but patient P1 at day3 has no" in w
        for w in design.warnings
    )


def test_per_marker_control_kind_and_tube_in_the_run_config(tmp_path):
    path = tmp_path / "cytogate.yaml"
    path.write_text(
        "marker_controls: {CD49f: fmo, Ki67: isotype}\nmarker_tubes: {CXCR4_12G5: CXCR4}\n"
    )
    config = load_config(tmp_path)
    assert dict(config.marker_controls) == {"CD49f": "fmo", "Ki67": "isotype"}
    assert dict(config.marker_tubes) == {"CXCR4_12G5": "CXCR4"}
    assert config.to_dict()["marker_controls"] == {"CD49f": "fmo", "Ki67": "isotype"}
    path.write_text("marker_controls: {CD49f: fmoo}\n")
    with pytest.raises(DesignError, match=r"field 'marker_controls.CD49f'"):
        load_config(tmp_path)
    path.write_text("marker_tubes: [CXCR4]\n")
    with pytest.raises(DesignError, match=r"field 'marker_tubes'"):
        load_config(tmp_path)


def test_per_marker_fields_must_name_configured_markers(tmp_path):
    from cytogate.study.batch import run_batch

    run = _run(tmp_path, HEADER + "a.fcs,P1,baseline,stained,,\n", ["a.fcs"])
    config = RunConfig(marker_controls=(("CD34", "fmo"),), marker_tubes=(("Ki67", "Ki67"),))
    with pytest.raises(DesignError) as info:
        run_batch(run, config=config)
    assert "marker_controls: 'CD34' is not a configured marker" in str(info.value)
    config = RunConfig(marker_tubes=(("Ki67", "Ki67"),))
    with pytest.raises(DesignError, match="marker_tubes: Ki67: no stained tube 'Ki67' in the"):
        run_batch(run, config=config)
