"""`cytogate batch` end to end: planted effects recovered, failure modes, exit codes, determinism.

The oracle for each measure (tests/oracle.py) is computed from the simulator's per-event
ground-truth labels (true blasts, true leukocytes) with its own compensation, independently of
the gating engine, and the batch's per-patient fold changes must come within
RECOVERY_TOLERANCE of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cytogate.cli import cli
from cytogate.io.fcs import read_fcs
from cytogate.io.fcs_writer import write_fcs
from cytogate.study.batch import run_batch
from tests.oracle import BLAST, RECOVERY_TOLERANCE, oracle_measures
from tests.run_copies import copy_run

RUN42: Path  # the two-tube SIMULATED study (tests/conftest.py two_tube_run42), set below


@pytest.fixture(scope="module", autouse=True)
def _two_tube_run42(two_tube_run42: Path) -> None:
    """This module's tests need the two-tube design; the bundled run42 is multi-tube."""
    global RUN42
    RUN42 = two_tube_run42


@pytest.fixture(scope="module")
def study():
    return run_batch(RUN42, jobs=1)


@pytest.fixture(scope="module")
def typical_patients():
    table = pd.read_csv(RUN42 / "ground_truth" / "patients.csv")
    return sorted(table.loc[table["kind"] == "typical", "patient"])


@pytest.fixture(scope="module")
def oracle():
    return oracle_measures(RUN42)


@pytest.mark.parametrize("measure", list(RECOVERY_TOLERANCE))
def test_fold_changes_match_the_ground_truth_oracle(study, oracle, typical_patients, measure):
    ours = study.timecourse[study.timecourse["measure"] == measure]
    theirs = oracle[oracle["measure"] == measure]
    merged = ours.merge(theirs, on=["patient", "timepoint"], suffixes=("", "_oracle"))
    merged = merged[merged["patient"].isin(typical_patients)]
    assert len(merged) == len(typical_patients) * 6
    assert np.allclose(
        merged["fold_change"],
        merged["fold_change_oracle"],
        rtol=RECOVERY_TOLERANCE[measure],
        atol=0,
    )


# (measure, comparison, direction): every effect reported in docs/architecture.md §5.
PLANTED = [
    ("leukocytes_per_ul", "day3 vs baseline", "up"),
    ("blasts_per_ul", "day3 vs baseline", "up"),
    ("leukocytes_per_ul", "6h vs day3", "up"),
    ("blasts_per_ul", "6h vs day3", "up"),
    ("blasts_CXCR4_12G5_rmfi_median", "6h vs day3", "down"),
    ("blasts_CXCR4_12G5_rmfi_median", "24h vs 6h", "up"),
    ("blasts_CXCR4_1D9_rmfi_median", "2h vs day3", "up"),
    ("blasts_CD114_rmfi_median", "day3 vs baseline", "down"),
    ("blasts_CD49f_rmfi_median", "day3 vs baseline", "down"),
    ("blasts_Ki67_pct_positive", "day3 vs baseline", "up"),
]
SMALL_EFFECTS = {"blasts_Ki67_pct_positive"}  # "rises slightly": direction only


@pytest.mark.parametrize(("measure", "comparison", "direction"), PLANTED)
def test_direction_and_significance_of_planted_effects(study, measure, comparison, direction):
    stats = study.stats.set_index(["measure", "comparison"])
    if (measure, comparison) not in stats.index:  # consecutive comparisons: compute by hand
        tp, ref = comparison.split(" vs ")
        tc = study.timecourse[study.timecourse["measure"] == measure].pivot(
            index="patient", columns="timepoint", values="value"
        )
        fc = tc[tp] / tc[ref]
        mean_fc, p = fc.mean(), None
    else:
        row = stats.loc[(measure, comparison)]
        mean_fc, p = row["mean_fc"], row["p"]
        assert row["n_pairs"] == 6
    assert (mean_fc > 1) if direction == "up" else (mean_fc < 1)
    if p is not None and measure not in SMALL_EFFECTS:
        assert p < 0.05


def test_tables_follow_the_output_contract(study):
    assert set(study.samples.columns) >= {
        "file",
        "sha256",
        "patient",
        "timepoint",
        "tube",
        "events",
        "status",
        "error",
    }
    assert set(study.populations.columns) >= {"count", "pct_parent", "pct_total", "per_ul"}
    assert set(study.markers.columns) >= {
        "mfi_mean",
        "mfi_median",
        "mfi_geomean",
        "rmfi",
        "pct_positive",
        "threshold",
    }
    assert set(study.timecourse.columns) >= {
        "patient",
        "measure",
        "timepoint",
        "value",
        "fold_change",
    }
    assert set(study.stats.columns) >= {
        "measure",
        "comparison",
        "n_pairs",
        "mean_fc",
        "sem_fc",
        "median_fc",
        "test",
        "statistic",
        "p",
        "p_adj",
        "stars",
    }
    assert len(study.samples) == 72 and (study.samples["status"] == "ok").all()
    assert study.exit_status == 0 and study.out is None and study.written == []
    assert study.run["template"]["name"] == "aml_blasts_cd45_ssc"
    assert len(study.run["template"]["sha256"]) == 64


# --------------------------------------------------------------------------- small runs


def _small_run(
    tmp_path: Path, patients=("P02", "P03", "P04"), timepoints=("baseline", "day3", "6h")
) -> Path:
    return copy_run(RUN42, tmp_path / "run", patients, timepoints)


def _drop(run: Path, *names: str) -> None:
    manifest = pd.read_csv(run / "manifest.csv")
    manifest[~manifest["file"].isin(names)].to_csv(run / "manifest.csv", index=False)
    for name in names:
        (run / name).unlink()


def test_missing_timepoint_drops_that_patient_from_that_comparison_only(tmp_path):
    run = _small_run(tmp_path)
    _drop(run, "P03_6h_stained.fcs", "P03_6h_isotype.fcs")
    stats = run_batch(run, jobs=1).stats.set_index(["measure", "comparison"])
    assert stats.loc[("blasts_per_ul", "day3 vs baseline"), "n_pairs"] == 3
    assert stats.loc[("blasts_per_ul", "6h vs baseline"), "n_pairs"] == 2
    assert stats.loc[("blasts_per_ul", "6h vs baseline"), "patients"] == "P02;P04"


def test_missing_isotype_tube_gives_nan_rmfi_with_reason(tmp_path):
    run = _small_run(tmp_path)
    _drop(run, "P02_baseline_isotype.fcs")
    result = run_batch(run, jobs=1)
    assert result.exit_status == 0
    assert any(
        "P02_baseline_stained.fcs: stained tube without its isotype" in w
        for w in result.run["warnings"]
    )
    m = result.markers
    row = m[(m["file"] == "P02_baseline_stained.fcs") & (m["marker"] == "CXCR4_12G5")].iloc[0]
    assert np.isnan(row["rmfi"]) and row["reason"] == "no matched control tube"
    tc = result.timecourse.set_index(["patient", "measure", "timepoint"])
    assert np.isnan(tc.loc[("P02", "blasts_CXCR4_12G5_rmfi_median", "day3"), "fold_change"])
    assert np.isfinite(tc.loc[("P02", "blasts_per_ul", "day3"), "fold_change"])
    stats = result.stats.set_index(["measure", "comparison"])
    assert stats.loc[("blasts_CXCR4_12G5_rmfi_median", "day3 vs baseline"), "n_pairs"] == 2


def test_corrupt_file_fails_alone_and_exits_1(tmp_path):
    run = _small_run(tmp_path)
    corrupt = run / "P03_day3_stained.fcs"
    corrupt.write_bytes(corrupt.read_bytes()[:5000])  # truncated inside DATA
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["batch", str(run), "--out", str(out), "--jobs", "1", "--no-plots"]
    )
    assert result.exit_code == 1, result.output
    assert "failed: P03_day3_stained.fcs" in result.stderr
    samples = pd.read_csv(out / "samples.csv")
    bad = samples[samples["status"] == "failed"]
    assert list(bad["file"]) == ["P03_day3_stained.fcs"]
    assert "P03_day3_stained.fcs" in bad["error"].iloc[0]
    assert (samples["status"] == "ok").sum() == len(samples) - 1
    import json

    run_json = json.loads((out / "run.json").read_text())
    assert [f["file"] for f in run_json["failures"]] == ["P03_day3_stained.fcs"]
    assert run_json["exit_status"] == 1


def test_manifest_naming_a_missing_file_exits_2_with_the_line(tmp_path):
    run = _small_run(tmp_path)
    with open(run / "manifest.csv", "a") as fh:
        fh.write("ghost.fcs,P09,baseline,stained,5000,simulated\n")
    n_lines = len((run / "manifest.csv").read_text().splitlines())
    result = CliRunner().invoke(cli, ["batch", str(run), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert f"line {n_lines}: file ghost.fcs does not exist" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert not (tmp_path / "o").exists()


def test_zero_blasts_in_a_sample(tmp_path):
    run = _small_run(tmp_path)
    name = "P04_day3_stained.fcs"
    sample = read_fcs(run / name)
    labels = np.load(RUN42 / "ground_truth" / "labels.npz")[name]
    keep = labels != BLAST
    (run / name).unlink()
    write_fcs(
        run / name,
        sample.events[keep],
        list(sample.channels["pnn"]),
        list(sample.channels["pns"]),
        262144,
        spillover=sample.spillover,
    )
    result = run_batch(run, jobs=1)
    pops = result.populations.set_index(["file", "population"])
    assert pops.loc[(name, "blasts"), "count"] <= 2  # a stray non-blast at most
    m = result.markers
    row = m[(m["file"] == name) & (m["marker"] == "CXCR4_12G5")].iloc[0]
    assert np.isnan(row["rmfi"]) and "blasts events in stained tube (< 50)" in row["reason"]
    assert result.exit_status == 0
    assert np.isfinite(result.stats["mean_fc"]).any()


def test_second_run_writes_identical_tables_and_parallel_equals_serial(tmp_path):
    run = _small_run(tmp_path, patients=("P02", "P03"), timepoints=("baseline", "day3"))
    first, second = tmp_path / "a", tmp_path / "b"
    for out, jobs in ((first, "1"), (second, "2")):  # tables only: plots are tested elsewhere
        args = ["batch", str(run), "-o", str(out), "-j", jobs, "--no-plots"]
        assert CliRunner().invoke(cli, args).exit_code == 0
    for table in ("samples", "populations", "markers", "timecourse", "stats"):
        assert (first / f"{table}.csv").read_bytes() == (second / f"{table}.csv").read_bytes()
    assert not list(first.glob(".*.tmp"))  # no temporary files left behind
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert before == {p.name: p.read_bytes() for p in run.iterdir()}  # inputs untouched


def test_parquet_output(tmp_path):
    run = _small_run(tmp_path, patients=("P02",), timepoints=("baseline", "day3"))
    result = run_batch(run, jobs=1, out=tmp_path / "o", output_format="parquet")
    assert {p.name for p in result.written} >= {"stats.parquet", "markers.parquet", "run.json"}
    back = pd.read_parquet(tmp_path / "o" / "markers.parquet")
    assert len(back) == len(result.markers)


def test_outputs_honour_the_umask(tmp_path):
    import os

    run = _small_run(tmp_path, patients=("P02",), timepoints=("baseline",))
    old = os.umask(0o022)
    try:
        result = run_batch(run, jobs=1, out=tmp_path / "o")
    finally:
        os.umask(old)
    assert {p.stat().st_mode & 0o777 for p in result.written} == {0o644}
