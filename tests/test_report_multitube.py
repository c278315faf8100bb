"""The report of a multi-tube study: every tube's gates, each stained tube's markers, n per measure.

A SIMULATED FACSDiva-style study (CXCR4 tube and Ki67 tube per draw, each with its isotype;
one of three patients without the Ki67 tube, one without CD114) is batched with plots; the
checks read the files written and the report's cards and captions.
"""

from __future__ import annotations

import pandas as pd
import pytest

from cytogate.pipeline import run_batch

from .test_report import _parse


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from cytogate.sim.config import StudyConfig
    from cytogate.sim.multitube import MultiTubeConfig, simulate_multitube_study
    from cytogate.study.design import RunConfig

    run = tmp_path_factory.mktemp("mt") / "run"
    config = MultiTubeConfig(
        study=StudyConfig(n_patients=3, events_per_file=1500, timepoints=("baseline", "day3")),
        without_cd114=1,
        without_cd49f=1,
        without_ki67=1,
    )
    simulate_multitube_study(run, config)
    out = run.parent / "out"
    cfg = RunConfig(timepoints=("baseline", "day3"))
    result = run_batch(run, out=out, config=cfg, jobs=1, plots=True)
    return run, out, result


def test_every_tube_gets_its_gate_plot_and_every_stained_tube_its_marker_plot(study):
    run, out, _ = study
    manifest = pd.read_csv(run / "manifest.csv", keep_default_na=False)
    for name in manifest["file"]:
        assert (out / "plots" / "gates" / f"{name[:-4]}.png").is_file(), name
    stained = manifest[manifest["role"] == "stained"]
    for name in stained["file"]:
        assert (out / "plots" / "markers" / f"{name[:-4]}_markers.png").is_file(), name
    page = _parse(out / "report.html")
    assert page.problems == []
    text = " ".join(page.text)
    for tube in sorted(set(stained["tube"])):
        control = f"{tube} isotype"
        assert f"gates, {tube} tube" in text and f"gates, {control} tube" in text
        assert f"markers, {tube} vs its control" in text
    # the patient without a Ki67 tube: its Ki67 cards say so, for both draws
    lacking = set(manifest["patient"]) - set(manifest.loc[manifest["tube"] == "Ki67", "patient"])
    assert len(lacking) == 1
    assert text.count("gates, Ki67 tube: no file") == 2


def test_time_course_captions_give_each_measures_own_n(study):
    _, out, _ = study
    html = (out / "report.html").read_text()
    stats = pd.read_csv(out / "stats.csv")
    n = stats.groupby("measure")["n_patients"].first()
    assert n["blasts_CXCR4_12G5_rmfi_median"] == 3 and n["blasts_Ki67_pct_positive"] == 2
    for measure, label in (
        ("blasts_CXCR4_12G5_rmfi_median", "CXCR4 (12G5) RMFI on blasts"),
        ("blasts_CD114_rmfi_median", "CD114 RMFI on blasts"),
        ("blasts_Ki67_pct_positive", "Ki67+ % of blasts"),
    ):
        k = int(n[measure])
        assert f"{label}, n = {k} patient{'s' if k != 1 else ''}" in html
