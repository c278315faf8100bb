"""Pinned gates in `cytogate batch`: a patient's baseline fit reused for the patient's files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cytogate.gating.adaptive import geometry_to_dict
from cytogate.gating.engine import gate
from cytogate.gating.template import bundled_template_dir, parse_template
from cytogate.io.fcs import read_fcs
from cytogate.study.batch import run_batch

RUN42: Path  # the two-tube SIMULATED study (tests/conftest.py two_tube_run42), set below


@pytest.fixture(scope="module", autouse=True)
def _two_tube_run42(two_tube_run42: Path) -> None:
    """This module's tests need the two-tube design; the bundled run42 is multi-tube."""
    global RUN42
    RUN42 = two_tube_run42


def _pinned_template(tmp_path: Path) -> Path:
    """The default template with its blast gate pinned to the baseline."""
    text = (bundled_template_dir() / "aml_blasts_cd45_ssc.yaml").read_text()
    text = text.replace("name: aml_blasts_cd45_ssc\n", "name: pinned_blasts\n")
    text = text.replace(
        "    description: CD45dim, SSC below the granulocytes",
        "    pin: baseline\n    description: CD45dim, SSC below the granulocytes",
    )
    path = tmp_path / "pinned.yaml"
    path.write_text(text)
    assert parse_template(text, path).gates[-3].name == "blasts"  # parses, blasts pinned
    return path


def _run(tmp_path: Path, timepoints=("baseline", "day3", "6h")) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    manifest = pd.read_csv(RUN42 / "manifest.csv")
    keep = manifest[
        manifest["patient"].isin(["P02", "P04"]) & manifest["timepoint"].isin(timepoints)
    ]
    for name in keep["file"]:
        shutil.copy(RUN42 / name, run / name)
    keep.to_csv(run / "manifest.csv", index=False)
    return run


def test_baseline_fit_is_reused_for_the_patients_other_files(tmp_path):
    template = _pinned_template(tmp_path)
    run = _run(tmp_path)
    serial = run_batch(run, template=template, jobs=1)
    tmpl = parse_template(template.read_text(), template)
    for patient in ("P02", "P04"):
        baseline = gate(read_fcs(run / f"{patient}_baseline_stained.fcs"), tmpl)
        fitted = baseline.gate_of("blasts").geometry
        assert serial.pinned[patient]["blasts"] == fitted
        assert serial.run["pinned_gates"][patient]["blasts"] == geometry_to_dict(fitted)
        for name in (f"{patient}_day3_stained.fcs", f"{patient}_6h_isotype.fcs"):
            pinned = gate(read_fcs(run / name), tmpl, pinned={"blasts": fitted})
            assert pinned.gate_of("blasts").geometry == fitted
            pops = serial.populations.set_index(["file", "population"])
            assert pops.loc[(name, "blasts"), "count"] == pinned.count("blasts")
            assert not pops.loc[(name, "blasts"), "qc_flag"]
            free = gate(read_fcs(run / name), tmpl)  # fitted on its own: another polygon
            assert free.gate_of("blasts").geometry != fitted
    # a job per patient keeps the run parallel, and the tables do not depend on it
    parallel = run_batch(run, template=template, jobs=2)
    for table in ("samples", "populations", "markers", "timecourse", "stats"):
        pd.testing.assert_frame_equal(getattr(serial, table), getattr(parallel, table))


def test_without_a_baseline_the_pinned_gate_is_fitted_and_flagged(tmp_path):
    template = _pinned_template(tmp_path)
    run = _run(tmp_path, timepoints=("day3", "6h"))
    result = run_batch(run, template=template, jobs=1)
    blasts = result.populations[result.populations["population"] == "blasts"]
    assert blasts["qc_flag"].all()
    assert blasts["qc_reason"].str.contains("no baseline fit is available").all()
    assert np.all(blasts["count"] > 0)
    assert result.pinned == {"P02": {}, "P04": {}}


def test_plots_of_a_pinned_run_show_the_pinned_gate(tmp_path):
    from cytogate.analysis.quantify import MarkerPlan
    from cytogate.study.design import RunConfig
    from cytogate.viz.plots import gate_figure, plot_group, plot_jobs

    template = _pinned_template(tmp_path)
    run = _run(tmp_path, timepoints=("baseline", "day3"))
    result = run_batch(run, template=template, jobs=1)
    tmpl = parse_template(template.read_text(), template)
    jobs = plot_jobs(result.outcomes, result.markers, "stained", "isotype")
    job = next(j for j in jobs if j.patient == "P02" and j.timepoint == "day3")
    plan = MarkerPlan.from_config(RunConfig())
    out = plot_group(job, plan, str(tmp_path / "plots"), "png", 60)
    stained = next(e for e in out.entries if e.tube == "stained" and e.kind == "gates")
    table = result.populations.set_index(["file", "population"])
    count = table.loc[("P02_day3_stained.fcs", "blasts"), "count"]
    assert not stained.error and stained.counts["blasts"][0] == count
    # the outline drawn is the baseline's pinned polygon, not a fit of this file
    pinned = np.asarray(result.pinned["P02"]["blasts"].vertices)
    drawn = gate_figure(job.stained).figure
    line = next(ln for ax in drawn.axes for ln in ax.lines if ln.get_gid() == "gate:blasts")
    assert np.allclose(line.get_xydata()[:-1], pinned)
    free = gate(read_fcs(run / "P02_day3_stained.fcs"), tmpl).gate_of("blasts").geometry
    assert free != result.pinned["P02"]["blasts"]  # the test can tell the difference
