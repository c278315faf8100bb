"""The simulated study: reproducible files whose ground truth is recoverable from the files.

The default study (6 patients × 6 timepoints × 2 tubes × 6000 events) is generated once per
module; checks that need the planted effects read the files back with ``read_fcs``, compensate
with the file's own ``$SPILLOVER`` and use the ground-truth labels, as an analysis would.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flowutils import transforms as fu

from cytogate.io.fcs import read_fcs
from cytogate.sim.simulate import (
    CHANNELS,
    LABELS,
    Composition,
    Geometry,
    Instrument,
    SimulationError,
    StudyConfig,
    StudyTruth,
    make_patients,
    read_labels,
    simulate_sample,
    simulate_study,
    write_benchmark_file,
    write_sample,
)

LEUKOCYTES = [3, 4, 5, 6]
BLAST = 6


@pytest.fixture(scope="module")
def study(two_tube_study: StudyTruth) -> StudyTruth:
    """The default two-tube study (tests/conftest.py), simulated once per session."""
    return two_tube_study


@pytest.fixture(scope="module")
def table(study: StudyTruth) -> pd.DataFrame:
    """Per file: blast events, leukocyte events, compensated blast means per channel."""
    labels = read_labels(study.outdir / "ground_truth" / "labels.npz")
    rows = []
    for rec in study.manifest.itertuples(index=False):
        sample = read_fcs(study.outdir / rec.file)
        lab = labels[rec.file]
        spill = sample.spillover
        cols = [sample.channel_index(c) for c in spill.columns]
        comp = sample.events.copy()
        comp[:, cols] = np.linalg.solve(spill.to_numpy().T, comp[:, cols].T).T  # obs @ inv(S)
        blasts = lab == BLAST
        row = {
            "file": rec.file,
            "patient": rec.patient,
            "timepoint": rec.timepoint,
            "tube": rec.tube,
            "wbc": rec.wbc_per_ul,
            "n_blast": int(blasts.sum()),
            "n_leuk": int(np.isin(lab, LEUKOCYTES).sum()),
        }
        for ch in ("FITC-A", "PE-A", "PE-Cy7-A", "APC-A"):
            row[f"mean_{ch}"] = comp[blasts, sample.channel_index(ch)].mean()
        ki67 = comp[blasts, sample.channel_index("BV421-A")]
        row["ki67_values"] = ki67
        rows.append(row)
    return pd.DataFrame(rows)


def _planted(study: StudyTruth, measure: str) -> pd.Series:
    p = study.planted
    return p[p.measure == measure].set_index(["patient", "timepoint"])


# ---------------------------------------------------------------------------------------------
# Layout, manifest, keywords, size
# ---------------------------------------------------------------------------------------------


def test_run_layout_manifest_and_size(study: StudyTruth) -> None:
    out = study.outdir
    fcs = sorted(p.name for p in out.glob("*.fcs"))
    assert len(fcs) == 6 * 6 * 2
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.columns) == [
        "file",
        "patient",
        "timepoint",
        "tube",
        "wbc_per_ul",
        "cohort",
    ]
    assert sorted(manifest.file) == fcs
    assert manifest.duplicated(["patient", "timepoint", "tube"]).sum() == 0
    assert set(manifest.tube) == {"stained", "isotype"}
    # both tubes of a sample carry the same blood count
    assert (manifest.groupby(["patient", "timepoint"]).wbc_per_ul.nunique() == 1).all()
    for name in ("labels.npz", "planted_effects.csv", "patients.csv", "config.json"):
        assert (out / "ground_truth" / name).is_file()
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert total <= 25 * 1024 * 1024
    readme = (out / "README.md").read_text()
    assert "SIMULATED DATA" in readme and "seed **42**" in readme
    assert not list(out.glob(".*.tmp")) and not list(out.rglob(".*.tmp"))


def test_files_match_manifest_and_say_they_are_simulated(study: StudyTruth) -> None:
    labels = read_labels(study.outdir / "ground_truth" / "labels.npz")
    assert set(labels) == set(study.manifest.file)
    for rec in study.manifest.itertuples(index=False):
        sample = read_fcs(study.outdir / rec.file)
        kw = sample.keywords
        assert kw["$COM"] == "SIMULATED DATA (cytogate simulate) - not a patient sample"
        assert kw["$CYT"] == "cytogate simulator"
        assert kw["CYTOGATE_SIMULATED"] == "TRUE" and kw["CYTOGATE_SEED"] == "42"
        assert (kw["CYTOGATE_PATIENT"], kw["CYTOGATE_TIMEPOINT"], kw["CYTOGATE_TUBE"]) == (
            rec.patient,
            rec.timepoint,
            rec.tube,
        )
        assert kw["$FIL"] == rec.file
        assert re.fullmatch(r"\d\d-[A-Z]{3}-\d{4}", kw["$DATE"])
        assert "simulated" in kw["$SRC"]
        assert sample.n_events == 6000 == labels[rec.file].size
        assert labels[rec.file].dtype == np.uint8
        assert sample.channel_names == list(CHANNELS)
        assert sample.spillover is not None and sample.spillover.shape == (6, 6)
        time = sample.events[:, sample.channel_index("Time")]
        # acquisition order: non-decreasing (float32 ticks may tie), spanning seconds
        assert np.all(np.diff(time) >= 0) and time[-1] - time[0] > 100


def test_stains_follow_the_panel_table(study: StudyTruth) -> None:
    stained = read_fcs(study.outdir / "P01_baseline_stained.fcs").channels
    isotype = read_fcs(study.outdir / "P01_baseline_isotype.fcs").channels
    assert list(stained.pns) == [
        "", "", "", "CD114 FITC", "CD184 (CXCR4 12G5) PE", "CD45 PerCP-Cy5.5", "CD49f PE-Cy7",
        "CXCR4 1D9 APC", "Ki67 BV421", "",
    ]  # fmt: skip
    assert list(isotype.pns) == [
        "", "", "", "IgG1 FITC", "IgG2a PE", "CD45 PerCP-Cy5.5", "Rat IgG2a PE-Cy7",
        "Rat IgG2b APC", "IgG1 BV421", "",
    ]  # fmt: skip
    assert (stained.pnr == 262144.0).all()


# ---------------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_differs(study: StudyTruth, tmp_path: Path) -> None:
    again = simulate_study(tmp_path / "again")
    first, second = _tree(study.outdir), _tree(again.outdir)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []

    other = simulate_study(tmp_path / "other", StudyConfig(seed=43))
    third = _tree(other.outdir)
    fcs = [k for k in first if k.endswith(".fcs")]
    assert all(first[k] != third[k] for k in fcs)
    assert not np.array_equal(
        study.labels["P01_baseline_stained.fcs"], other.labels["P01_baseline_stained.fcs"]
    )


def test_config_json_rebuilds_the_config(study: StudyTruth) -> None:
    meta = json.loads((study.outdir / "ground_truth" / "config.json").read_text())
    assert meta["seed"] == 42 and meta["cytogate_version"]
    assert StudyConfig.from_dict(meta["config"]) == study.config == StudyConfig()
    custom = StudyConfig(
        n_patients=3,
        timepoints=("baseline", "day3"),
        geometry=Geometry(blast_cd45_range=(0.3, 0.7)),
        instrument=Instrument(noise_sd=10.0),
    )
    assert StudyConfig.from_dict(json.loads(json.dumps(custom.to_dict()))) == custom
    with pytest.raises(SimulationError, match="unknown fields \\['n_patient'\\]"):
        StudyConfig.from_dict({"n_patient": 3})


# ---------------------------------------------------------------------------------------------
# Composition and geometry
# ---------------------------------------------------------------------------------------------


def test_label_proportions_match_the_configured_composition(study: StudyTruth) -> None:
    all_labels = np.concatenate(list(study.labels.values()))
    share = np.bincount(all_labels, minlength=7) / all_labels.size
    assert abs(share[0] - 0.08) < 0.005  # debris
    assert abs(share[1] - 0.05) < 0.005  # doublets
    assert 0.03 <= share[2] <= 0.06  # CD45-negative
    planted = _planted(study, "blast_share")["value"]
    for name, lab in study.labels.items():
        patient, timepoint, _ = name[:-4].split("_")
        p = planted[(patient, timepoint)]
        n_leuk = np.isin(lab, LEUKOCYTES).sum()
        observed = (lab == BLAST).sum() / n_leuk
        assert abs(observed - p) < 4 * np.sqrt(p * (1 - p) / n_leuk) + 0.002, name
    pt = study.patient_table.set_index("patient")
    for patient in pt.index:
        lab = study.labels[f"{patient}_baseline_stained.fcs"]
        non_blast = np.bincount(lab, minlength=7)[3:6]
        expected = pt.loc[
            patient,
            [
                "lymphocyte_share_of_non_blasts",
                "monocyte_share_of_non_blasts",
                "granulocyte_share_of_non_blasts",
            ],
        ].to_numpy(dtype=float)
        np.testing.assert_allclose(non_blast / non_blast.sum(), expected, atol=0.04)


def _logicle(x: np.ndarray) -> np.ndarray:
    return fu.logicle(np.ascontiguousarray(x, dtype=float), None, t=262144, m=4.5, w=0.5, a=0)


def test_populations_sit_where_the_template_expects(study: StudyTruth) -> None:
    pt = study.patient_table.set_index("patient")
    kinds = pt.kind.value_counts().to_dict()
    assert kinds == {"typical": 5, "atypical": 1}
    for patient, row in pt.iterrows():
        name = f"{patient}_baseline_stained.fcs"
        sample = read_fcs(study.outdir / name)
        lab = study.labels[name]
        spill = sample.spillover
        cols = [sample.channel_index(c) for c in spill.columns]
        comp = sample.events.copy()
        comp[:, cols] = np.linalg.solve(spill.to_numpy().T, comp[:, cols].T).T
        cd45 = _logicle(comp[:, sample.channel_index("PerCP-Cy5-5-A")])
        ssc = comp[:, sample.channel_index("SSC-A")] / 262144
        fsc = comp[:, sample.channel_index("FSC-A")] / 262144
        fsc_h = comp[:, sample.channel_index("FSC-H")] / 262144
        blasts = lab == BLAST
        assert abs(np.median(cd45[blasts]) - row.blast_cd45_scaled) < 0.01
        assert abs(np.median(ssc[blasts]) - row.blast_ssc_scaled) < 0.01
        if row.kind == "typical":
            assert 0.50 - 0.01 <= row.blast_cd45_scaled <= 0.58 + 0.01
            assert 0.08 <= row.blast_ssc_scaled <= 0.12
        else:
            assert row.blast_cd45_scaled > 0.64 and row.blast_ssc_scaled > 0.15
        for code, (c_cd45, c_ssc, c_fsc) in {
            3: (0.78, 0.075, 0.28),
            4: (0.72, 0.22, 0.42),
            5: (0.62, 0.45, 0.48),
            2: (0.25, 0.05, 0.20),
        }.items():
            sel = lab == code
            assert abs(np.median(cd45[sel]) - c_cd45) < 0.015, (patient, LABELS[code])
            assert abs(np.median(ssc[sel]) - c_ssc) < 0.015, (patient, LABELS[code])
            assert abs(np.median(fsc[sel]) - c_fsc) < 0.015, (patient, LABELS[code])
        debris = lab == 0
        assert fsc[debris].max() <= 0.12 + 1e-6 and ssc[debris].max() <= 0.10 + 1e-6
        singlets = np.isin(lab, [2, 3, 4, 5, 6])
        ratio = fsc_h / np.maximum(fsc, 1e-9)
        assert abs(np.median(ratio[singlets]) - 0.85) < 0.01
        assert abs(np.median(ratio[lab == 1]) - 0.55) < 0.01
        # doublets are two nucleated cells: bigger than any single population's centre
        assert np.median(fsc[lab == 1]) > 0.5


# ---------------------------------------------------------------------------------------------
# Planted effects, recovered from files + labels
# ---------------------------------------------------------------------------------------------


def test_blast_counts_per_ul_recover_the_planted_fold_changes(
    study: StudyTruth, table: pd.DataFrame
) -> None:
    st = table[table.tube == "stained"].set_index(["patient", "timepoint"])
    per_ul = st.wbc * st.n_blast / st.n_leuk
    fold = per_ul / per_ul.xs("baseline", level="timepoint").reindex(per_ul.index, level="patient")
    median = fold.groupby(level="timepoint").median()
    assert abs(median["day3"] / 3.5 - 1) < 0.15
    assert abs(median["6h"] / 9.8 - 1) < 0.15
    # 6h vs day3: the study's further ×2.8 for blasts
    assert abs((median["6h"] / median["day3"]) / 2.8 - 1) < 0.15
    planted = _planted(study, "blasts_per_ul")
    np.testing.assert_allclose(per_ul / planted["value"].reindex(per_ul.index), 1.0, atol=0.08)
    np.testing.assert_allclose(
        fold / planted["multiplier_vs_baseline"].reindex(fold.index), 1.0, atol=0.1
    )
    wbc = _planted(study, "wbc_per_ul")["value"].reindex(st.index)
    np.testing.assert_array_equal(st.wbc.to_numpy(dtype=float), wbc.to_numpy())


@pytest.mark.parametrize(
    ("channel", "measure", "timepoint", "cohort"),
    [
        ("PE-A", "blast_rmfi_CXCR4_12G5", "6h", 0.40),
        ("PE-A", "blast_rmfi_CXCR4_12G5", "24h", 0.85),
        ("APC-A", "blast_rmfi_CXCR4_1D9", "2h", 2.6),
        ("FITC-A", "blast_rmfi_CD114", "day3", 0.55),
        ("PE-Cy7-A", "blast_rmfi_CD49f", "day3", 0.70),
    ],
)
def test_rmfi_fold_changes_recover_the_planted_effects(
    study: StudyTruth, table: pd.DataFrame, channel: str, measure: str, timepoint: str,
    cohort: float,
) -> None:  # fmt: skip
    t = table.set_index(["patient", "timepoint", "tube"])[f"mean_{channel}"]
    rmfi = t.xs("stained", level="tube") / t.xs("isotype", level="tube")
    fold = rmfi.xs(timepoint, level="timepoint") / rmfi.xs("baseline", level="timepoint")
    assert abs(fold.median() / cohort - 1) < 0.15
    planted = _planted(study, measure).xs(timepoint, level="timepoint")["multiplier_vs_baseline"]
    np.testing.assert_allclose(fold / planted.reindex(fold.index), 1.0, atol=0.1)


def test_ki67_fraction_positive_recovers_the_planted_fraction(
    study: StudyTruth, table: pd.DataFrame
) -> None:
    t = table.set_index(["patient", "timepoint", "tube"])["ki67_values"]
    planted = _planted(study, "ki67_fraction")["value"]
    for (patient, timepoint), f in planted.items():
        stained = t[(patient, timepoint, "stained")]
        threshold = np.percentile(t[(patient, timepoint, "isotype")], 99)
        # ~1 % of Ki67- blasts lie above the isotype's 99th percentile, hence the offset
        assert abs((stained > threshold).mean() - f - 0.01) < 0.05, (patient, timepoint)


def test_planted_table_is_self_consistent(study: StudyTruth) -> None:
    p = study.planted.pivot_table(index=["patient", "timepoint"], columns="measure", values="value")
    np.testing.assert_allclose(p.blasts_per_ul, p.wbc_per_ul * p.blast_share)
    np.testing.assert_allclose(
        p.blast_rmfi_CXCR4_12G5, p.blast_mfi_stained_CXCR4_12G5 / p.blast_mfi_isotype_CXCR4_12G5
    )
    assert (p.blast_share <= 0.9).all()
    on_disk = pd.read_csv(study.outdir / "ground_truth" / "planted_effects.csv")
    pd.testing.assert_frame_equal(on_disk, study.planted, check_exact=False, rtol=1e-12)
    base = study.planted[study.planted.timepoint == "baseline"]
    assert (base.multiplier_vs_baseline == 1.0).all()
    # cohort medians sit near the configured table (6 patients, sdlog ≈ 0.12)
    med = study.planted.groupby(["timepoint", "measure"]).multiplier_vs_baseline.median()
    assert abs(med[("day3", "wbc_per_ul")] / 2.4 - 1) < 0.15
    assert abs(med[("6h", "blast_mfi_stained_CXCR4_12G5")] / 0.40 - 1) < 0.15
    patients = pd.read_csv(study.outdir / "ground_truth" / "patients.csv")
    assert list(patients.patient) == [p.patient for p in study.patients]
    assert set(patients.kind) == {"typical", "atypical"}


# ---------------------------------------------------------------------------------------------
# Spillover and single samples
# ---------------------------------------------------------------------------------------------


def test_compensating_with_the_written_spillover_recovers_the_true_values(tmp_path: Path) -> None:
    config = StudyConfig()
    patient = make_patients(config)[1]
    sample = simulate_sample(config, patient, "2h", "stained", 20000, np.random.default_rng(7))
    path = write_sample(tmp_path / "s.fcs", sample, config, patient)
    read = read_fcs(path)
    np.testing.assert_array_equal(read.events, sample.events.astype(np.float64))
    s = read.spillover.to_numpy()
    fl = slice(3, 9)
    assert list(read.spillover.columns) == list(CHANNELS[fl])
    comp = np.linalg.solve(s.T, read.events[:, fl].T).T
    residual = comp - sample.unmixed[:, fl]
    # what is left is the electronic noise, carried through inv(S)
    expected_sd = 30.0 * np.sqrt((np.linalg.inv(s) ** 2).sum(axis=0))
    np.testing.assert_allclose(residual.std(axis=0), expected_sd, rtol=0.05)
    assert np.all(np.abs(residual.mean(axis=0)) < 4 * expected_sd / np.sqrt(len(residual)))
    # without compensation the spillover is plainly visible (FITC -> PE 0.15, PE -> PerCP 0.12)
    raw_bias = (read.events[:, fl] - sample.unmixed[:, fl]).mean(axis=0)
    assert raw_bias[1] > 100 and raw_bias[2] > 100
    # scatter and Time are not spilled into
    np.testing.assert_allclose(read.events[:, [0, 1, 2, 9]], sample.unmixed[:, [0, 1, 2, 9]],
                               rtol=1e-6)  # fmt: skip


def test_cd45_on_another_fluorochrome(tmp_path: Path) -> None:
    panel = dict(Instrument().panel, CD45="BV421-A", Ki67="PerCP-Cy5-5-A")
    config = StudyConfig(n_patients=1, atypical_patients=0, instrument=Instrument(panel=panel))
    patient = make_patients(config)[0]
    sample = simulate_sample(config, patient, "baseline", "stained", 5000, np.random.default_rng(1))
    assert sample.pns[CHANNELS.index("BV421-A")] == "CD45 BV421"
    assert sample.pns[CHANNELS.index("PerCP-Cy5-5-A")] == "Ki67 PerCP-Cy5.5"
    blasts = sample.labels == BLAST
    cd45 = _logicle(sample.unmixed[blasts, CHANNELS.index("BV421-A")])
    assert abs(np.median(cd45) - patient.blast_cd45) < 0.01


def test_harder_options_are_config_fields() -> None:
    config = StudyConfig(
        n_patients=4,
        atypical_patients=1,
        cd45_negative_blast_patients=1,
        geometry=Geometry(
            blast_cd45_range=(0.30, 0.70),
            scatter_gain_range=(0.7, 1.4),
            scatter_gain_level="patient",
        ),
    )
    patients = make_patients(config)
    assert sorted(p.kind for p in patients) == ["atypical", "cd45_negative", "typical", "typical"]
    assert len({p.scatter_gain for p in patients}) == 4
    assert all(0.7 <= p.scatter_gain <= 1.4 for p in patients)
    neg = next(p for p in patients if p.kind == "cd45_negative")
    assert neg.blast_cd45 < 0.35


def test_blast_share_cap_warns() -> None:
    config = StudyConfig(n_patients=2, composition=Composition(blast_share_range=(0.6, 0.7)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        patients = make_patients(config)
    assert any("capped at 0.9" in str(w.message) for w in caught)
    assert max(p.blast_share(t) for p in patients for t in config.timepoints) == 0.9


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_patients": 0}, "n_patients"),
        ({"atypical_patients": 7}, "atypical_patients"),
        ({"timepoints": ("baseline", "day9")}, "day9"),
        ({"timepoints": ("day3", "baseline")}, "must be 1"),
        ({"instrument": Instrument(panel={"CD45": "FITC-A"})}, "panel"),
        ({"composition": Composition(non_blast_mix=(0.5, 0.5, 0.5))}, "sum to 1"),
    ],
)
def test_invalid_configs_raise(changes: dict, message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        dataclasses.replace(StudyConfig(), **changes)


def test_benchmark_file_helper(tmp_path: Path) -> None:
    path = write_benchmark_file(tmp_path / "big.fcs", n_events=20000)
    sample = read_fcs(path)
    assert sample.n_events == 20000
    assert sample.keywords["CYTOGATE_SIMULATED"] == "TRUE"
    assert sample.keywords["CYTOGATE_TUBE"] == "stained"
    (tmp_path / "again").mkdir()
    again = write_benchmark_file(tmp_path / "again" / "big.fcs", n_events=20000)
    assert again.read_bytes() == path.read_bytes()


def test_hard_preset_spans_the_hard_conditions() -> None:
    from cytogate.sim.simulate import HARD_BLAST_CD45, HARD_BLAST_SSC, hard_config

    config = hard_config(12, 500, seed=3, cd45_channel="BV421-A")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # high shares are capped at 0.9
        patients = make_patients(config)
    kinds = [p.kind for p in patients]
    assert kinds.count("cd45_negative") == 1 and "atypical" not in kinds
    typical = [p for p in patients if p.kind == "typical"]
    assert all(HARD_BLAST_CD45[0] <= p.blast_cd45 <= HARD_BLAST_CD45[1] for p in typical)
    assert all(HARD_BLAST_SSC[0] <= p.blast_ssc <= HARD_BLAST_SSC[1] for p in typical)
    assert all(0.005 <= p.blast_share_baseline <= 0.9 for p in patients)
    assert len({round(p.scatter_gain, 9) for p in patients}) == 12  # per patient
    assert all(0.7 <= p.scatter_gain <= 1.4 for p in patients)
    assert config.instrument.panel["CD45"] == "BV421-A"
    assert config.instrument.panel["Ki67"] == "PerCP-Cy5-5-A"  # the marker that was there


def test_simulate_cli_hard_and_fine_options(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cytogate.cli import cli

    out = tmp_path / "hard"
    args = ["simulate", str(out), "--hard", "--patients", "3", "--events", "400"]
    args += ["--cd45-channel", "APC-A", "--blast-cd45", "0.40", "0.45", "--seed", "5"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "SIMULATED" in result.stdout and "cd45_negative" in result.stdout
    meta = json.loads((out / "ground_truth" / "config.json").read_text())
    config = StudyConfig.from_dict(meta["config"])
    assert config.geometry.blast_cd45_range == (0.40, 0.45)
    assert config.geometry.blast_ssc_range == (0.05, 0.20)  # from --hard
    assert config.composition.blast_share_range == (0.005, 0.90)
    assert config.cd45_negative_blast_patients == 1
    assert config.instrument.panel["CD45"] == "APC-A"
    table = pd.read_csv(out / "ground_truth" / "patients.csv")
    typical = table[table["kind"] == "typical"]
    assert typical["blast_cd45_scaled"].between(0.40, 0.45).all()
    sample = read_fcs(out / "P01_baseline_stained.fcs")
    assert sample.channels.set_index("pnn").loc["APC-A", "pns"] == "CD45 APC"

    plain = CliRunner().invoke(
        cli, ["simulate", str(tmp_path / "plain"), "--patients", "2", "--events", "300",
              "--blast-share", "0.01", "0.02", "--scatter-gain", "0.8", "0.9",
              "--cd45-negative-blast-patients", "1"],
    )  # fmt: skip
    assert plain.exit_code == 0, plain.output
    meta = json.loads((tmp_path / "plain" / "ground_truth" / "config.json").read_text())
    config = StudyConfig.from_dict(meta["config"])
    assert config.composition.blast_share_range == (0.01, 0.02)
    assert config.geometry.scatter_gain_range == (0.8, 0.9)
    assert (config.cd45_negative_blast_patients, config.atypical_patients) == (1, 1)

    bad = CliRunner().invoke(cli, ["simulate", str(tmp_path / "bad"), "--blast-ssc", "0.3", "0.1"])
    assert bad.exit_code == 2 and "LO must not exceed HI" in bad.output
    too_many = CliRunner().invoke(
        cli, ["simulate", str(tmp_path / "x"), "--patients", "2", "--cd45-negative-blast-patients",
              "3"],
    )  # fmt: skip
    assert too_many.exit_code == 2 and "cd45_negative_blast_patients" in too_many.output


@pytest.mark.parametrize("design", ["two-tube", "multitube"])
def test_a_foreign_fcs_file_left_in_the_folder_is_warned_about_not_deleted(
    tmp_path: Path, design: str
) -> None:
    from cytogate.sim.config import StudyConfig
    from cytogate.sim.multitube import MultiTubeConfig, simulate_multitube_study

    (tmp_path / "old_run.fcs").write_bytes(b"not ours")
    study = StudyConfig(n_patients=1, events_per_file=300)
    with pytest.warns(RuntimeWarning, match="old_run.fcs") as caught:
        if design == "two-tube":
            simulate_study(tmp_path, study)
        else:
            simulate_multitube_study(
                tmp_path,
                MultiTubeConfig(study=study, without_cd114=0, without_cd49f=0, without_ki67=0),
            )
    assert caught[0].filename == __file__  # points at the caller, not at the simulator
    assert (tmp_path / "old_run.fcs").read_bytes() == b"not ours"
