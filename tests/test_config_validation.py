"""Fail early, in one line: configs, manifests and user patterns that used to crash or hang.

Each case was a traceback, a hang, a silent coercion or an ``inf`` before; now it is one
``DesignError`` line naming the file and the field or line, raised before any file is gated.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cytogate.cli import cli
from cytogate.errors import CytogateError, DesignError
from cytogate.study.batch import run_batch
from cytogate.study.design import RunConfig, load_config, read_manifest
from cytogate.study.spreadsheet import neutralise_formulas
from cytogate.userregex import compile_user_regex

RUN42: Path  # the two-tube SIMULATED study (tests/conftest.py two_tube_run42), set below


@pytest.fixture(scope="module", autouse=True)
def _two_tube_run42(two_tube_run42: Path) -> None:
    """This module's tests need the two-tube design; the bundled run42 is multi-tube."""
    global RUN42
    RUN42 = two_tube_run42


FILES = ["P02_baseline_stained.fcs", "P02_baseline_isotype.fcs"]


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("timepoints: [baseline, day3, day3]\n", "field 'timepoints': 'day3' is listed twice"),
        ("timepoints: baseline, day3\n", "field 'timepoints': Input should be a valid list"),
        ("comparisons: ['day3 vs day3']\n", "field 'comparisons': compares timepoint 'day3'"),
        ("comparisons: [[day3, baseline], [day3, baseline]]\n", "listed twice"),
        ("comparisons: [[day3]]\n", "field 'comparisons': ['day3'] is not"),
        ("min_events: '50'\n", "field 'min_events': Input should be a valid integer"),
        ("min_events: true\n", "field 'min_events'"),
        ("min_events: 0\n", "field 'min_events': Input should be greater than or equal to 1"),
        ("positivity_percentile: [99]\n", "field 'positivity_percentile'"),
        ("rmfi_markers: CD45\n", "field 'rmfi_markers': Input should be a valid list"),
        ("rmfi_markers: [12]\n", "field 'rmfi_markers.0': Input should be a valid string"),
        ("design_keywords: {colour: X}\n", "field 'design_keywords.colour"),
        ("design: {source: psychic}\n", "field 'design.source'"),
        ("file_time_limit_s: -1\n", "field 'file_time_limit_s'"),
        ("control_tube: stained\n", "field 'control_tube'"),
        ("timepoints: []\n", "field 'timepoints'"),
        ("1: x\n", "field names are text"),
        ("filename_pattern: '(?P<patient>a)(?P<timepoint>b)(?P<tube>c)(?=x)'\n", "look-around"),
        ("filename_pattern: '(?P<patient>[a'\n", "bad regular expression"),
    ],
)
def test_bad_config_value_is_one_line_naming_the_field(tmp_path, text, fragment):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(DesignError) as info:
        load_config(tmp_path, path)
    message = str(info.value)
    assert message.startswith(str(path)) and fragment in message and "\n" not in message


def test_good_config_still_loads_with_the_documented_forms(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "timepoints: [baseline, day3]\ncomparisons: ['day3 vs baseline']\n"
        "positivity_percentile: 95\nmin_events: 20\nfile_time_limit_s: 30\n"
        "design: {source: filename, keywords: {patient: PID}}\n"
    )
    cfg = load_config(tmp_path, path)
    assert cfg.timepoints == ("baseline", "day3") and cfg.comparisons == (("day3", "baseline"),)
    assert cfg.positivity_percentile == 95 and cfg.file_time_limit_s == 30
    assert dict(cfg.design_keywords)["patient"] == "PID"
    assert dict(cfg.design_keywords)["tube"] == "CYTOGATE_TUBE"  # the others keep defaults


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        name = chr(ord("a") + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    lines.append("rmfi_markers: *i")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    with pytest.raises(DesignError, match=r"bomb\.yaml: aliases expand to more than 1,000,000"):
        load_config(tmp_path, path)
    assert time.monotonic() - start < 2


def test_catastrophic_pattern_runs_in_linear_time():
    pattern = compile_user_regex(r"^(a+)+$", "test")
    start = time.monotonic()
    assert pattern.search("a" * 5000 + "b") is None  # Python's re: hours
    assert time.monotonic() - start < 1
    with pytest.raises(CytogateError, match=r"test: .*backreference"):
        compile_user_regex(r"(a)\1", "test")


def test_csv_formula_cells_are_neutralised_numbers_are_not():
    table = pd.DataFrame(
        {
            "patient": ['=HYPERLINK("http://x")', "+1+2", "-x", "@SUM(A1)", "P01", "-1.5"],
            "value": [-1.0, 2.0, np.nan, 3.0, 4.0, 5.0],
        }
    )
    safe = neutralise_formulas(table)
    assert list(safe["patient"]) == [
        '\'=HYPERLINK("http://x")',
        "'+1+2",
        "'-x",
        "'@SUM(A1)",
        "P01",
        "-1.5",
    ]
    assert safe["value"].equals(table["value"]) and table["patient"][0].startswith("=")


# --------------------------------------------------------------------------- manifests


def _run(tmp_path: Path, rows: list[str], header="file,patient,timepoint,tube,wbc_per_ul") -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    for name in FILES:
        shutil.copy(RUN42 / name, run / name)
    (run / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")
    return run


def _manifest_error(run: Path) -> str:
    with pytest.raises(DesignError) as info:
        read_manifest(run / "manifest.csv", run, RunConfig())
    return str(info.value)


def test_manifest_paths_must_stay_inside_the_run_folder(tmp_path):
    outside = tmp_path / "secret.fcs"
    shutil.copy(RUN42 / FILES[0], outside)
    run = _run(tmp_path, [])
    os.symlink(outside, run / "link.fcs")
    rows = [
        "../secret.fcs,P02,baseline,stained,",
        f"{outside},P03,baseline,stained,",
        "link.fcs,P04,baseline,stained,",
    ]
    (run / "manifest.csv").write_text("file,patient,timepoint,tube\n" + "\n".join(rows) + "\n")
    message = _manifest_error(run)
    assert "line 2: file ../secret.fcs points outside the run folder" in message
    assert f"line 3: file {outside} is an absolute path" in message
    assert "line 4: file link.fcs is a link to" in message


def test_samples_csv_records_the_path_relative_to_the_run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "plate1").mkdir(parents=True)
    for name in FILES:
        shutil.copy(RUN42 / name, run / "plate1" / name)
    (run / "manifest.csv").write_text(
        "file,patient,timepoint,tube\n"
        f"plate1/{FILES[0]},P02,baseline,stained\nplate1/{FILES[1]},P02,baseline,isotype\n"
    )
    result = run_batch(run, jobs=1)
    assert sorted(result.samples["file"]) == sorted(f"plate1/{n}" for n in FILES)
    assert set(result.populations["file"]) == {f"plate1/{n}" for n in FILES}


def test_manifest_encodings_utf16_decoded_latin1_refused_with_the_line(tmp_path):
    run = _run(tmp_path, [])
    text = "file,patient,timepoint,tube,cohort\n"
    text += f"{FILES[0]},P02,baseline,stained,Müller\n{FILES[1]},P02,baseline,isotype,Müller\n"
    (run / "manifest.csv").write_bytes(text.encode("utf-16"))
    design = read_manifest(run / "manifest.csv", run, RunConfig())
    assert [r.cohort for r in design.rows] == ["Müller", "Müller"]
    (run / "manifest.csv").write_bytes(text.encode("latin-1"))
    message = _manifest_error(run)
    assert "line 2: not UTF-8 (byte 0xfc" in message and "\n" not in message


def test_manifest_row_with_extra_fields_names_its_line(tmp_path):
    run = _run(
        tmp_path,
        [f"{FILES[0]},P02,baseline,stained,5000,oops", f"{FILES[1]},P02,baseline,isotype,5000"],
    )
    assert "line 2: 6 fields, the header has 5" in _manifest_error(run)


def test_huge_wbc_is_refused_so_no_inf_reaches_the_tables(tmp_path):
    run = _run(tmp_path, [f"{FILES[0]},P02,baseline,stained,1e308"])
    assert "line 2: 'wbc_per_ul': '1e308' must be a number from 0 to 1e+09" in _manifest_error(run)


def test_formula_in_a_manifest_cohort_is_neutralised_in_the_csv(tmp_path):
    run = _run(
        tmp_path,
        [f"{FILES[0]},P02,baseline,stained,,=1+1", f"{FILES[1]},P02,baseline,isotype,,=1+1"],
        header="file,patient,timepoint,tube,wbc_per_ul,cohort",
    )
    result = run_batch(run, jobs=1, out=tmp_path / "out")
    assert set(result.samples["cohort"]) == {"=1+1"}  # the value itself is kept
    assert "'=1+1" in (tmp_path / "out" / "samples.csv").read_text()


# --------------------------------------------------------------------------- early failures


def test_no_manifest_one_truncated_file_fails_alone_with_exit_1(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in FILES:
        shutil.copy(RUN42 / name, run / name)
    data = (RUN42 / "P02_day3_stained.fcs").read_bytes()
    (run / "P02_day3_stained.fcs").write_bytes(data[:300])
    result = CliRunner().invoke(
        cli, ["batch", str(run), "--out", str(tmp_path / "o"), "--no-plots", "-q", "-j", "1"]
    )
    assert result.exit_code == 1, result.output
    samples = pd.read_csv(tmp_path / "o" / "samples.csv")
    assert dict(zip(samples["file"], samples["status"], strict=True)) == {
        FILES[0]: "ok",
        FILES[1]: "ok",
        "P02_day3_stained.fcs": "failed",
    }


def test_marker_resolving_to_no_channel_fails_early_with_exit_2(tmp_path):
    run = _run(tmp_path, [f"{FILES[0]},P02,baseline,stained,", f"{FILES[1]},P02,baseline,isotype,"])
    import yaml

    from cytogate.gating.template import list_templates

    (run / "cytogate.yaml").write_text("rmfi_markers: [CD1l4]\n")
    # a misspelt marker (l for 1) whose pattern matches no channel: the typo case
    template = tmp_path / "typo.yaml"
    doc = yaml.safe_load(Path(list_templates()["aml_blasts_cd45_ssc"]).read_text())
    doc["panel"]["CD1l4"] = ["^CD1l4$"]
    template.write_text(yaml.safe_dump(doc))
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["batch", str(run), "-t", str(template), "--out", str(out)])
    assert result.exit_code == 2
    assert "marker 'CD1l4' matches no channel" in result.output
    assert not out.exists()


def test_unwritable_output_location_fails_before_gating(tmp_path):
    run = _run(tmp_path, [f"{FILES[0]},P02,baseline,stained,", f"{FILES[1]},P02,baseline,isotype,"])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    start = time.monotonic()
    result = CliRunner().invoke(cli, ["batch", str(run), "--out", str(blocker / "out")])
    assert result.exit_code == 2 and "cytogate: error:" in result.output
    assert time.monotonic() - start < 30


def test_mixture_grid_is_bounded_in_the_template(tmp_path):
    import yaml

    from cytogate.errors import TemplateError
    from cytogate.gating.template import list_templates, load_template

    doc = yaml.safe_load(Path(list_templates()["aml_blasts_cd45_ssc"]).read_text())
    # the default template has no cluster gate any more (leukomap): add one
    gate = {"name": "c", "parent": "leukocytes", "kind": "cluster", "dims": ["CD45", "SSC-A"]}
    doc["gates"].append(gate)
    gate["grid"] = 30_000  # 6.7 GiB of grid before the bound
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(TemplateError, match="field 'grid': an integer from 16 to 2048"):
        load_template(path)


def test_template_alias_bomb_is_one_line(tmp_path):
    from cytogate.errors import TemplateError
    from cytogate.gating.template import load_template

    lines = ["x0: &x0 [a, a, a, a, a, a, a, a, a]"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, 9)]
    lines.append("gates: *x8")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    with pytest.raises(TemplateError, match=r"bomb\.yaml: aliases expand to more than"):
        load_template(path)
    assert time.monotonic() - start < 2
