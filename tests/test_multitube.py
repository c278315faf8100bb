"""Multi-tube draws: each marker from the stained tube that carries it, against that tube's own
control; partial panels are missing data with the right n per measure.

The study is built from a simulated two-tube study (``cytogate.sim.simulate_study``, SIMULATED
data with ground truth, written once per module): each draw's stained and isotype files are
split by channel into a CXCR4 tube (scatter, CD45, 12G5, 1D9, CD114, CD49f) and a Ki67 tube
(scatter, CD45, Ki67), each with its isotype, as a lab stains an intracellular marker in its
own fixed tube. Events are written compensated (no spillover keyword) so that the same events,
written as today's two-tube draws, are an exact reference. Partial panels: P04's CXCR4 tubes
lack CD114 and CD49f; P05 has no Ki67 tubes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cytogate.errors import DesignError
from cytogate.io.fcs import read_fcs
from cytogate.io.fcs_writer import write_fcs
from cytogate.study.batch import run_batch
from cytogate.study.design import RunConfig
from tests.oracle import RECOVERY_TOLERANCE, oracle_measures

PATIENTS = ("P02", "P03", "P04", "P05")
TIMEPOINTS = ("baseline", "day3", "6h")
SCATTER = ["FSC-A", "FSC-H", "SSC-A", "PerCP-Cy5-5-A", "Time"]  # with CD45
CXCR4 = [*SCATTER, "FITC-A", "PE-A", "PE-Cy7-A", "APC-A"]  # CD114, 12G5, CD49f, 1D9
KI67 = [*SCATTER, "BV421-A"]
NO_CD114_CD49F = [c for c in CXCR4 if c not in ("FITC-A", "PE-Cy7-A")]
RMFI = {m: f"blasts_{m}_rmfi_median" for m in ("CXCR4_12G5", "CXCR4_1D9", "CD114", "CD49f")}
KI67_POS = "blasts_Ki67_pct_positive"
HAS = {  # which patients' panels carry each measure (the planted partial panels)
    **{RMFI[m]: set(PATIENTS) for m in ("CXCR4_12G5", "CXCR4_1D9")},
    **{RMFI[m]: {"P02", "P03", "P05"} for m in ("CD114", "CD49f")},
    KI67_POS: {"P02", "P03", "P04"},
}


def _compensated(path: Path) -> tuple[np.ndarray, list[str], list[str], list[float]]:
    sample = read_fcs(path)
    names = [str(n) for n in sample.channels["pnn"]]
    spill = sample.spillover
    cols = [names.index(c) for c in spill.columns]
    events = sample.events.copy()
    events[:, cols] = np.linalg.solve(spill.to_numpy().T, events[:, cols].T).T
    pns = [str(s) for s in sample.channels["pns"]]
    return events, names, pns, [float(r) for r in sample.channels["pnr"]]


def _write(src: Path, dest: Path, keep: list[str] | None = None) -> None:
    events, names, pns, pnr = _compensated(src)
    idx = [names.index(c) for c in (keep or names)]
    write_fcs(
        dest,
        events[:, idx],
        pnn=[names[i] for i in idx],
        pns=[pns[i] for i in idx],
        pnr=[pnr[i] for i in idx],
        keywords={"$COM": "SIMULATED data (cytogate test, split from a simulated two-tube study)"},
    )


def _row(file, patient, tp, tube, role, control_for, wbc):
    return {
        "file": file,
        "patient": patient,
        "timepoint": tp,
        "tube": tube,
        "role": role,
        "control_for": control_for,
        "fmo_marker": "",
        "wbc_per_ul": wbc,
        "cohort": "simulated",
    }


def build_studies(root: Path, source: Path) -> tuple[Path, Path]:
    """(multi-tube run, two-tube reference run) over the same compensated events of the
    two-tube simulated study ``source``."""
    multi, ref = root / "multi", root / "ref"
    multi.mkdir()
    ref.mkdir()
    base = pd.read_csv(source / "manifest.csv")
    base = base[base["patient"].isin(PATIENTS) & base["timepoint"].isin(TIMEPOINTS)]
    rows = []
    for rec in base[base["tube"] == "stained"].itertuples():
        p, tp, wbc = rec.patient, rec.timepoint, rec.wbc_per_ul
        stained, iso = source / rec.file, source / rec.file.replace("_stained", "_isotype")
        _write(stained, ref / stained.name)
        _write(iso, ref / iso.name)
        cxcr4 = NO_CD114_CD49F if p == "P04" else CXCR4
        tubes = [("CXCR4", cxcr4)] + ([] if p == "P05" else [("Ki67", KI67)])
        for tube, keep in tubes:
            s_name, i_name = f"{p}_{tp}_{tube}.fcs", f"{p}_{tp}_{tube} isotype.fcs"
            _write(stained, multi / s_name, keep)
            _write(iso, multi / i_name, keep)
            rows += [
                _row(s_name, p, tp, tube, "stained", "", wbc),
                _row(i_name, p, tp, f"{tube} isotype", "isotype", tube, wbc),
            ]
    pd.DataFrame(rows).to_csv(multi / "manifest.csv", index=False)
    base.to_csv(ref / "manifest.csv", index=False)
    return multi, ref


@pytest.fixture(scope="module")
def two_tube(tmp_path_factory) -> Path:
    """The two-tube simulated study (stained + isotype per draw) the split study comes from."""
    from cytogate.sim.config import StudyConfig
    from cytogate.sim.study import simulate_study

    run = tmp_path_factory.mktemp("two_tube") / "run"
    simulate_study(run, StudyConfig(n_patients=len(PATIENTS) + 1, timepoints=TIMEPOINTS))
    return run


@pytest.fixture(scope="module")
def studies(tmp_path_factory, two_tube):
    multi, ref = build_studies(tmp_path_factory.mktemp("multitube"), two_tube)
    cfg = RunConfig(timepoints=TIMEPOINTS)  # comparisons: day3, 6h vs baseline; 6h vs day3
    return multi, run_batch(multi, config=cfg, jobs=2), run_batch(ref, config=cfg, jobs=2)


def test_multitube_values_equal_the_two_tube_values_of_the_same_events(studies):
    _, multi, ref = studies
    assert multi.exit_status == 0 and len(multi.samples) == 42
    keys = ["patient", "timepoint", "measure"]
    merged = multi.timecourse.merge(ref.timecourse, on=keys, suffixes=("", "_ref"))
    assert len(merged) == len(ref.timecourse)
    for measure, rows in merged.groupby("measure"):
        present = rows["patient"].isin(HAS.get(measure, set(PATIENTS)))
        # where the panel has it: the very value of the two-tube draw (same events, same gates)
        assert np.allclose(rows.loc[present, "value"], rows.loc[present, "value_ref"], rtol=1e-12)
        assert np.isfinite(rows.loc[present, "value"]).all()
        # where it does not: missing data with the reason, not a failed file
        absent = rows[~present]
        assert absent["value"].isna().all() and np.isfinite(absent["value_ref"]).all()
        assert absent["reason"].str.contains("not in this draw's panel", regex=False).all(), measure


def test_each_marker_comes_from_its_tube_against_that_tubes_isotype(studies):
    _, multi, _ = studies
    m = multi.markers
    stained = m[m["control_role"] == "isotype"]
    assert len(stained) and (stained["control_file"] != "").all()
    for rec in stained.itertuples():
        tube = "Ki67" if rec.marker == "Ki67" else "CXCR4"
        assert rec.tube == tube and rec.file == f"{rec.patient}_{rec.timepoint}_{tube}.fcs"
        assert rec.control_file == f"{rec.patient}_{rec.timepoint}_{tube} isotype.fcs"
    # the control rows carry the denominator the stained rows used
    control = m[m["tube"].str.endswith("isotype")].set_index(["file", "marker"])["mfi_median"]
    rmfi = stained[stained["marker"] != "Ki67"]
    denominators = control.loc[list(zip(rmfi["control_file"], rmfi["marker"], strict=True))]
    assert np.allclose(rmfi["control_mfi"], denominators.to_numpy())
    assert np.allclose(rmfi["rmfi"], rmfi["mfi_median"] / denominators.to_numpy())


def test_n_per_measure_is_the_patients_whose_panel_has_it(studies):
    _, multi, _ = studies
    stats = multi.stats
    for measure, patients in HAS.items():
        rows = stats[stats["measure"] == measure]
        assert (rows["n_patients"] == len(patients)).all(), measure
        day3 = rows[rows["comparison"] == "day3 vs baseline"].iloc[0]
        assert day3["n_pairs"] == len(patients)
        assert set(day3["patients"].split(";")) == patients
    counts = stats[stats["measure"] == "blasts_per_ul"]
    assert (counts["n_patients"] == len(PATIENTS)).all()


@pytest.fixture(scope="module")
def truth(two_tube):
    return oracle_measures(two_tube)


def test_planted_effects_are_recovered_per_patient_against_the_ground_truth(studies, truth):
    _, multi, _ = studies
    for measure, patients in {**HAS, "blasts_per_ul": set(PATIENTS)}.items():
        ours = multi.timecourse[
            (multi.timecourse["measure"] == measure) & multi.timecourse["patient"].isin(patients)
        ]
        merged = ours.merge(
            truth[truth["measure"] == measure],
            on=["patient", "timepoint"],
            suffixes=("", "_truth"),
        )
        assert len(merged) == len(patients) * len(TIMEPOINTS), measure
        assert np.allclose(
            merged["fold_change"], merged["fold_change_truth"], rtol=RECOVERY_TOLERANCE[measure]
        ), measure
    stats = multi.stats.set_index(["measure", "comparison"])
    assert stats.loc[(RMFI["CD114"], "day3 vs baseline"), "mean_fc"] < 1  # falls under G-CSF
    assert stats.loc[(RMFI["CXCR4_12G5"], "6h vs day3"), "mean_fc"] < 1  # falls to 6 h


# --------------------------------------------------------------------------- swapped controls


def _swap(run: Path, dest: Path, a: str, b: str) -> Path:
    """A copy of ``run`` whose manifest swaps the files of rows ``a`` and ``b``."""
    shutil.copytree(run, dest)
    manifest = pd.read_csv(dest / "manifest.csv", keep_default_na=False)
    ia, ib = (manifest.index[manifest["file"] == x][0] for x in (a, b))
    manifest.loc[[ia, ib], "file"] = [b, a]
    manifest.to_csv(dest / "manifest.csv", index=False)
    return dest


@pytest.fixture(scope="module")
def small(studies, tmp_path_factory):
    """Baseline draws of P02 and P03 only: a run the swap tests can afford to redo."""
    multi, _, _ = studies
    run = tmp_path_factory.mktemp("small") / "run"
    run.mkdir()
    manifest = pd.read_csv(multi / "manifest.csv", keep_default_na=False)
    keep = manifest[
        manifest["patient"].isin(["P02", "P03"]) & (manifest["timepoint"] == "baseline")
    ]
    for name in keep["file"]:
        shutil.copy(multi / name, run / name)
    keep.to_csv(run / "manifest.csv", index=False)
    return run, run_batch(run, jobs=1)


def _value(result, patient: str, measure: str) -> float:
    tc = result.timecourse
    return float(tc[(tc["patient"] == patient) & (tc["measure"] == measure)]["value"].iloc[0])


def test_swapping_two_patients_isotypes_changes_rmfi_to_the_wrong_denominator(
    small, truth, tmp_path
):
    run, right = small
    wrong = run_batch(
        _swap(
            run,
            tmp_path / "swapped",
            "P02_baseline_CXCR4 isotype.fcs",
            "P03_baseline_CXCR4 isotype.fcs",
        ),
        jobs=1,
    )
    m = wrong.markers
    row = m[(m["file"] == "P02_baseline_CXCR4.fcs") & (m["marker"] == "CXCR4_12G5")].iloc[0]
    assert row["control_file"] == "P03_baseline_CXCR4 isotype.fcs"  # as the manifest now says
    before, after = (
        _value(right, "P02", RMFI["CXCR4_12G5"]),
        _value(wrong, "P02", RMFI["CXCR4_12G5"]),
    )
    assert abs(after / before - 1) > 0.2  # P02's and P03's PE backgrounds differ (~250 vs ~150)
    # recovery against the truth now fails: the swapped RMFI is outside the recovery tolerance
    t = truth[(truth["patient"] == "P02") & (truth["timepoint"] == "baseline")]
    true_value = float(t[t["measure"] == RMFI["CXCR4_12G5"]]["value"].iloc[0])
    assert np.isclose(before, true_value, rtol=RECOVERY_TOLERANCE[RMFI["CXCR4_12G5"]])
    assert not np.isclose(after, true_value, rtol=RECOVERY_TOLERANCE[RMFI["CXCR4_12G5"]])
    # Ki67 has its own tube and isotype: untouched by the CXCR4 swap
    assert _value(wrong, "P02", KI67_POS) == _value(right, "P02", KI67_POS)


def test_swapping_the_cxcr4_and_ki67_isotypes_of_a_draw_loses_both_measures(small, tmp_path):
    run, right = small
    wrong = run_batch(
        _swap(
            run,
            tmp_path / "swapped",
            "P02_baseline_CXCR4 isotype.fcs",
            "P02_baseline_Ki67 isotype.fcs",
        ),
        jobs=1,
    )
    assert wrong.exit_status == 0  # no file failed: the measures are missing, with the reason
    for measure in (RMFI["CXCR4_12G5"], KI67_POS):
        assert np.isfinite(_value(right, "P02", measure))
        assert np.isnan(_value(wrong, "P02", measure))
        assert _value(wrong, "P03", measure) == _value(right, "P03", measure)
    m = wrong.markers
    row = m[(m["file"] == "P02_baseline_CXCR4.fcs") & (m["marker"] == "CXCR4_12G5")].iloc[0]
    assert "P02_baseline_Ki67 isotype.fcs: marker 'CXCR4_12G5' matches no channel" in row["reason"]


# --------------------------------------------------------------------------- run-level checks


def test_a_marker_in_two_stained_tubes_of_a_draw_is_refused_unless_the_config_names_one(
    small, tmp_path
):
    run, _ = small
    copy = tmp_path / "both"
    shutil.copytree(run, copy)
    manifest = pd.read_csv(copy / "manifest.csv", keep_default_na=False)
    extra = manifest[manifest["file"] == "P02_baseline_CXCR4.fcs"].assign(
        file="P02_baseline_CXCR4 clone2.fcs", tube="CXCR4 clone2"
    )
    shutil.copy(copy / "P02_baseline_CXCR4.fcs", copy / "P02_baseline_CXCR4 clone2.fcs")
    pd.concat([manifest, extra]).to_csv(copy / "manifest.csv", index=False)
    with pytest.raises(DesignError) as info:
        run_batch(copy, jobs=1)
    message = str(info.value)
    assert "P02_baseline_CXCR4.fcs (tube CXCR4)" in message
    assert "P02_baseline_CXCR4 clone2.fcs (tube CXCR4 clone2)" in message
    assert "marker_tubes" in message
    cfg = RunConfig(
        marker_tubes=tuple((m, "CXCR4") for m in ("CXCR4_12G5", "CXCR4_1D9", "CD114", "CD49f"))
    )
    result = run_batch(copy, config=cfg, jobs=1)
    m = result.markers
    assert set(m[m["marker"] == "CXCR4_12G5"]["file"]) >= {"P02_baseline_CXCR4.fcs"}
    assert "P02_baseline_CXCR4 clone2.fcs" not in set(m["file"])


def test_a_marker_no_file_carries_stops_the_run_but_a_partial_panel_does_not(studies, tmp_path):
    multi, _, _ = studies
    # the first stained file (P02 CXCR4) lacks Ki67 and P04's lack CD114: not errors
    run = tmp_path / "run"
    run.mkdir()
    manifest = pd.read_csv(multi / "manifest.csv", keep_default_na=False)
    keep = manifest[
        (manifest["timepoint"] == "baseline") & ~manifest["tube"].str.startswith("Ki67")
    ]
    for name in keep["file"]:
        shutil.copy(multi / name, run / name)
    keep.to_csv(run / "manifest.csv", index=False)
    with pytest.raises(DesignError, match=r"Ki67: in no stained file of the run"):
        run_batch(run, jobs=1)


# --------------------------------------------------------------------------- simulated Diva study


def _truth_by_labels(run: Path) -> pd.DataFrame:
    """Per patient × timepoint × measure, from the simulator's per-event labels and each stained
    tube's own control as the manifest states it (compensation by numpy.linalg.solve)."""
    from cytogate.sim.simulate import LABEL_CODES, Instrument

    blast = LABEL_CODES["blast"]
    labels = np.load(run / "ground_truth" / "labels.npz")
    manifest = pd.read_csv(run / "manifest.csv", keep_default_na=False)
    controls = manifest[manifest["role"] == "isotype"].set_index(
        ["patient", "timepoint", "control_for"]
    )["file"]
    channel = Instrument().panel
    rows = []
    for rec in manifest[manifest["role"] == "stained"].itertuples():
        s_events, names, _, _ = _compensated(run / rec.file)
        control = controls[(rec.patient, rec.timepoint, rec.tube)]
        c_events, _, _, _ = _compensated(run / control)
        sb, cb = labels[rec.file] == blast, labels[control] == blast
        values = {}
        for marker in RMFI:
            if channel[marker] in names:
                j = names.index(channel[marker])
                values[RMFI[marker]] = np.median(s_events[sb, j]) / np.median(c_events[cb, j])
        if channel["Ki67"] in names:
            k = names.index(channel["Ki67"])
            values[KI67_POS] = 100 * np.mean(s_events[sb, k] > np.percentile(c_events[cb, k], 99))
        rows += [
            {"patient": rec.patient, "timepoint": rec.timepoint, "measure": m, "value": v}
            for m, v in values.items()
        ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def diva(tmp_path_factory):
    """designsim's simulated FACSDiva-style study: CXCR4 + Ki67 tubes, partial panels."""
    from cytogate.sim.config import StudyConfig
    from cytogate.sim.multitube import MultiTubeConfig, simulate_multitube_study

    run = tmp_path_factory.mktemp("diva") / "run"
    config = MultiTubeConfig(
        study=StudyConfig(n_patients=5, events_per_file=3000, timepoints=TIMEPOINTS),
        without_cd114=1,
        without_cd49f=2,
        without_ki67=1,
    )
    simulate_multitube_study(run, config)
    return run, run_batch(run, config=RunConfig(timepoints=TIMEPOINTS), jobs=2)


def test_simulated_diva_study_n_per_measure_equals_the_patients_whose_panel_has_it(diva):
    run, result = diva
    assert result.exit_status == 0
    panels = pd.read_csv(run / "ground_truth" / "panels.csv")
    expected = {RMFI[m]: int(panels[f"has_{m}"].sum()) for m in RMFI} | {
        KI67_POS: int(panels["has_Ki67"].sum())
    }
    assert expected[RMFI["CD49f"]] == 3 and expected[KI67_POS] == 4  # the config's panels
    n = result.stats.groupby("measure")["n_patients"].first()
    for measure, count in expected.items():
        assert n[measure] == count, measure
    assert n["blasts_per_ul"] == 5


def test_simulated_diva_study_recovers_every_measure_against_its_own_control(diva):
    run, result = diva
    typical = pd.read_csv(run / "ground_truth" / "patients.csv")
    typical = set(typical.loc[typical["kind"] == "typical", "patient"])
    truth = _truth_by_labels(run)
    ours = result.timecourse[result.timecourse["patient"].isin(typical)]
    merged = ours.merge(truth, on=["patient", "timepoint", "measure"], suffixes=("", "_truth"))
    # a draw whose stained and control tubes disagree on the blasts is flagged (issue 7): its
    # ratio is not trusted, and not asserted here; few are
    pops = result.populations
    flagged = pops[pops["qc_reason"].str.contains("blast count differs", na=False)]
    doubtful = set(zip(flagged["file"], flagged["population"], strict=True))
    m = result.markers
    m = m[m["control_file"] != ""]
    bad = {
        (r.patient, r.timepoint, r.marker)
        for r in m.itertuples()
        if (r.file, "blasts") in doubtful or (r.control_file, "blasts") in doubtful
    }
    assert len({(p, t, mk == "Ki67") for p, t, mk in bad}) <= 3  # stained tubes of 27
    for measure, marker in [*((v, k) for k, v in RMFI.items()), (KI67_POS, "Ki67")]:
        rows = merged[merged["measure"] == measure]
        planted = truth[(truth["measure"] == measure) & truth["patient"].isin(typical)]
        assert len(rows) == len(planted) >= 2 * len(TIMEPOINTS), measure  # all who have it
        keys = zip(rows["patient"], rows["timepoint"], strict=True)
        trusted = [(p, t, marker) not in bad for p, t in keys]
        rows = rows[trusted]
        # values (not only fold changes) within the recovery tolerance of the truth
        assert np.allclose(rows["value"], rows["value_truth"], rtol=RECOVERY_TOLERANCE[measure])
    missing = ours[
        ~ours.set_index(["patient", "timepoint", "measure"]).index.isin(
            truth.set_index(["patient", "timepoint", "measure"]).index
        )
        & ours["measure"].isin([*RMFI.values(), KI67_POS])
    ]
    assert len(missing) and missing["value"].isna().all()  # absent from the panel: NaN
    stats = result.stats.set_index(["measure", "comparison"])
    assert stats.loc[(RMFI["CD114"], "day3 vs baseline"), "mean_fc"] < 1
    assert stats.loc[(RMFI["CXCR4_12G5"], "6h vs day3"), "mean_fc"] < 1
    assert stats.loc[("blasts_per_ul", "day3 vs baseline"), "mean_fc"] > 2


def test_figures_pair_each_stained_tube_with_the_control_its_markers_used(diva):
    from cytogate.viz.render import plot_jobs

    _, result = diva
    jobs = plot_jobs(result.outcomes, result.markers, "stained", "isotype")
    stained = result.samples[~result.samples["tube"].str.endswith("isotype")]
    assert len(jobs) == len(stained)  # one job per stained tube, none per draw
    m = result.markers
    used = m[m["control_file"] != ""].groupby("file")["control_file"].first()
    for job in jobs:
        assert job.control is not None and job.control.control_for == job.stained.tube
        assert job.control.tube == f"{job.stained.tube} isotype"
        assert job.control.name == used[job.stained.name]
        assert job.control.patient == job.stained.patient
        assert job.control.timepoint == job.stained.timepoint
        markers = {r["marker"] for r in job.marker_rows}
        if job.stained.tube == "Ki67":
            assert markers == {"Ki67"}
        else:
            assert {"CXCR4_12G5", "CXCR4_1D9"} <= markers <= {*RMFI, "Ki67"}


def test_a_marker_configured_for_fmo_is_divided_by_the_fmo_that_omits_it(small, tmp_path):
    """The FMO file here is the CXCR4 isotype's events with CD49f (PE-Cy7-A) doubled, so the
    truth is exact: CD49f RMFI against it is half the isotype one, every other marker as before."""
    run, right = small
    fmo_run = tmp_path / "fmo"
    shutil.copytree(run, fmo_run)
    iso = read_fcs(fmo_run / "P02_baseline_CXCR4 isotype.fcs")
    names = [str(n) for n in iso.channels["pnn"]]
    events = iso.events.copy()
    events[:, names.index("PE-Cy7-A")] *= 2.0
    fmo = "P02_baseline_CXCR4 FMO CD49f.fcs"
    write_fcs(
        fmo_run / fmo,
        events,
        pnn=names,
        pns=[str(s) for s in iso.channels["pns"]],
        pnr=[float(r) for r in iso.channels["pnr"]],
        keywords={"$COM": "SIMULATED data (cytogate test)"},
    )
    manifest = pd.read_csv(fmo_run / "manifest.csv", keep_default_na=False)
    extra = manifest[manifest["file"] == "P02_baseline_CXCR4 isotype.fcs"].assign(
        file=fmo, tube="CXCR4 FMO CD49f", role="fmo", fmo_marker="CD49f"
    )
    pd.concat([manifest, extra]).to_csv(fmo_run / "manifest.csv", index=False)

    ignored = run_batch(fmo_run, jobs=1)  # isotype is the default control: the FMO is not used
    assert _value(ignored, "P02", RMFI["CD49f"]) == _value(right, "P02", RMFI["CD49f"])
    cfg = RunConfig(marker_controls=(("CD49f", "fmo"),))
    used = run_batch(fmo_run, config=cfg, jobs=1)
    assert np.isclose(
        _value(used, "P02", RMFI["CD49f"]), _value(right, "P02", RMFI["CD49f"]) / 2, rtol=1e-6
    )
    for measure in (RMFI["CXCR4_12G5"], RMFI["CD114"], KI67_POS):
        assert _value(used, "P02", measure) == _value(right, "P02", measure)
    m = used.markers
    row = m[(m["file"] == "P02_baseline_CXCR4.fcs") & (m["marker"] == "CD49f")].iloc[0]
    assert (row["control_file"], row["control_role"]) == (fmo, "fmo")
    # P03 has no FMO tube: its CD49f RMFI is missing, with the reason, not taken vs the isotype
    p03 = m[(m["file"] == "P03_baseline_CXCR4.fcs") & (m["marker"] == "CD49f")].iloc[0]
    assert (
        np.isnan(p03["rmfi"]) and "no fmo control omitting CD49f for tube 'CXCR4'" in p03["reason"]
    )


def test_pinned_gates_come_from_the_baseline_draws_first_stained_tube(diva, tmp_path):
    """With ``pin: baseline`` every tube of the patient (both stained tubes, their isotypes,
    later draws) reuses the fit of the baseline's first stained tube (by name: CXCR4)."""
    from cytogate.gating.engine import gate
    from cytogate.gating.template import bundled_template_dir, parse_template

    source, _ = diva
    text = (bundled_template_dir() / "aml_blasts_cd45_ssc.yaml").read_text()
    text = text.replace("name: aml_blasts_cd45_ssc\n", "name: pinned_blasts\n").replace(
        "    description: CD45dim, SSC below the granulocytes",
        "    pin: baseline\n    description: CD45dim, SSC below the granulocytes",
    )
    template = tmp_path / "pinned.yaml"
    template.write_text(text)
    manifest = pd.read_csv(source / "manifest.csv", keep_default_na=False)
    with_ki67 = sorted(set(manifest.loc[manifest["tube"] == "Ki67", "patient"]))[0]
    keep = manifest[
        (manifest["patient"] == with_ki67) & manifest["timepoint"].isin(["baseline", "day3"])
    ]
    run = tmp_path / "run"
    run.mkdir()
    for name in keep["file"]:
        shutil.copy(source / name, run / name)
    keep.to_csv(run / "manifest.csv", index=False)
    result = run_batch(run, template=template, config=RunConfig(timepoints=TIMEPOINTS), jobs=1)
    tmpl = parse_template(text, template)
    files = keep.set_index(["timepoint", "tube"])["file"]
    fitted = gate(read_fcs(run / files[("baseline", "CXCR4")]), tmpl).gate_of("blasts").geometry
    own = gate(read_fcs(run / files[("baseline", "Ki67")]), tmpl).gate_of("blasts").geometry
    assert own != fitted  # the baseline Ki67 tube (other events) would get another polygon
    assert result.pinned[with_ki67]["blasts"] == fitted
    assert len(result.outcomes) == 8
    for outcome in result.outcomes:
        (blasts,) = [g for g in outcome.gates if g.name == "blasts"]
        assert blasts.geometry == fitted, outcome.name
