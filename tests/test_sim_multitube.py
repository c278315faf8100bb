"""The simulated multi-tube study: design, partial panels, Diva-style keywords, planted truth."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cytogate.cli import cli
from cytogate.io.fcs import read_fcs, read_keywords
from cytogate.sim.common import LABEL_CODES, SIMULATED_COMMENT, SimulationError
from cytogate.sim.config import StudyConfig
from cytogate.sim.multitube import PANEL, MultiTubeConfig, simulate_multitube_study
from cytogate.sim.simulate import read_labels

BLAST = LABEL_CODES["blast"]
CHANNEL = {"CD45": "PerCP-Cy5-5-A", "CXCR4_12G5": "PE-A", "CXCR4_1D9": "APC-A",
           "CD114": "FITC-A", "CD49f": "PE-Cy7-A", "Ki67": "BV421-A"}  # fmt: skip


def small(**kw) -> MultiTubeConfig:
    study = StudyConfig(n_patients=6, events_per_file=4000, seed=7, atypical_patients=0)
    return MultiTubeConfig(study=study, **{"without_cd114": 2, "without_cd49f": 3,
                                           "without_ki67": 2, **kw})  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("multitube")
    return simulate_multitube_study(out, small())


def _compensated(path: Path) -> tuple[np.ndarray, list[str]]:
    """Events with the file's own spillover undone (numpy.linalg, not cytogate's transforms)."""
    sample = read_fcs(path)
    names = list(sample.channels["pnn"])
    spill = sample.spillover
    cols = [names.index(c) for c in spill.columns]
    events = sample.events.copy()
    events[:, cols] = np.linalg.solve(spill.to_numpy().T, events[:, cols].T).T
    return events, names


def test_design_and_partial_panels(study) -> None:
    m = study.manifest
    assert list(m.columns) == ["file", "patient", "timepoint", "tube", "role", "control_for",
                               "fmo_marker", "wbc_per_ul", "cohort"]  # fmt: skip
    on_disk = pd.read_csv(study.outdir / "manifest.csv", keep_default_na=False)
    assert list(on_disk["file"]) == list(m["file"])
    assert sorted(p.name for p in study.outdir.glob("*.fcs")) == sorted(m["file"])
    panels = study.panels.set_index("patient")
    # the counts asked for, CD49f-less patients including the CD114-less ones
    assert (~panels["has_CD114"]).sum() == 2 and (~panels["has_CD49f"]).sum() == 3
    assert (~panels["has_Ki67"]).sum() == 2
    assert set(panels.index[~panels["has_CD114"]]) <= set(panels.index[~panels["has_CD49f"]])
    for pid, tubes in m.groupby("patient"):
        names = set(tubes["tube"])
        expected = {"CXCR4", "CXCR4 isotype"} | (
            {"Ki67", "Ki67 isotype"} if panels.loc[pid, "has_Ki67"] else set()
        )
        assert names == expected
        # every draw has every tube of the patient's panel, once
        assert (tubes.groupby("timepoint").size() == len(expected)).all()
    controls = m[m["role"] == "isotype"]
    assert (controls["tube"] == controls["control_for"] + " isotype").all()
    assert (m.loc[m["role"] == "stained", "control_for"] == "").all()


def test_channels_follow_each_patients_panel(study) -> None:
    panels = study.panels.set_index("patient")
    for rec in study.manifest.itertuples():
        pnn = list(read_fcs(study.outdir / rec.file).channels["pnn"])
        tube = next(t for t in PANEL if t.name == rec.tube)
        want = [
            m
            for m in tube.markers
            if not (m in ("CD114", "CD49f") and not panels.loc[rec.patient, f"has_{m}"])
        ]
        assert pnn[:3] == ["FSC-A", "FSC-H", "SSC-A"] and pnn[-1] == "Time"
        assert sorted(pnn[3:-1]) == sorted(CHANNEL[m] for m in want), rec.file


def test_diva_keywords_say_simulated_and_name_the_sample(study) -> None:
    code = {"baseline": "BL", "day3": "D3"}
    for rec in study.manifest.itertuples():
        kw = read_keywords(study.outdir / rec.file)
        specimen = f"{rec.patient}_{code.get(rec.timepoint, rec.timepoint)}"
        assert kw["$SRC"] == specimen
        assert kw["TUBE NAME"] == rec.tube
        assert kw["EXPERIMENT NAME"] == f"AML-MOB {rec.patient}"
        assert kw["$FIL"] == rec.file
        assert rec.file.startswith(f"{specimen}_{rec.tube}_") and rec.file.endswith(".fcs")
        assert kw["$COM"] == SIMULATED_COMMENT and kw["CYTOGATE_SIMULATED"] == "TRUE"
        assert "SIMULATED" in kw["CREATOR"] and "FACSDiva" in kw["CREATOR"]
        assert "CYTOGATE_PATIENT" not in kw  # the design must come from Diva's own keywords
    assert "SIMULATED" in (study.outdir / "README.md").read_text()


def test_planted_marker_medians_and_ki67_fraction_are_in_the_right_tube(study) -> None:
    """Blast medians of the compensated events (true labels) match the planted truth."""
    labels = read_labels(study.outdir / "ground_truth" / "labels.npz")
    planted = study.planted.set_index(["patient", "timepoint", "measure"])["value"]
    m = study.manifest
    checked = 0
    for rec in m[m["tube"] == "CXCR4"].itertuples():
        s_ev, names = _compensated(study.outdir / rec.file)
        iso = m[(m["patient"] == rec.patient) & (m["timepoint"] == rec.timepoint)
                & (m["tube"] == "CXCR4 isotype")].iloc[0]  # fmt: skip
        i_ev, _ = _compensated(study.outdir / iso["file"])
        sb = labels[rec.file] == BLAST
        ib = labels[iso["file"]] == BLAST
        for marker in ("CXCR4_12G5", "CXCR4_1D9", "CD114", "CD49f"):
            key = (rec.patient, rec.timepoint, f"blast_rmfi_{marker}")
            if CHANNEL[marker] not in names:
                assert key not in planted.index  # no truth for a marker not measured
                continue
            j = names.index(CHANNEL[marker])
            rmfi = np.median(s_ev[sb, j]) / np.median(i_ev[ib, j])
            assert rmfi == pytest.approx(planted[key], rel=0.12), (rec.file, marker)
            checked += 1
    assert checked >= 6 * 6 * 2
    for rec in m[m["tube"] == "Ki67"].itertuples():
        s_ev, names = _compensated(study.outdir / rec.file)
        iso = m[(m["patient"] == rec.patient) & (m["timepoint"] == rec.timepoint)
                & (m["tube"] == "Ki67 isotype")].iloc[0]["file"]  # fmt: skip
        i_ev, _ = _compensated(study.outdir / iso)
        j = names.index(CHANNEL["Ki67"])
        threshold = np.percentile(i_ev[labels[iso] == BLAST, j], 99)
        frac = np.mean(s_ev[labels[rec.file] == BLAST, j] > threshold)
        truth = planted[(rec.patient, rec.timepoint, "ki67_fraction")]
        assert abs(frac - truth) < 0.06, rec.file
        # a stained marker of the other tube is not in this one
        assert CHANNEL["CXCR4_12G5"] not in names


def test_same_config_same_bytes_and_config_round_trip(tmp_path: Path, study) -> None:
    again = simulate_multitube_study(tmp_path, small())
    for a, b in zip(study.files, again.files, strict=True):
        assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    meta = json.loads((tmp_path / "ground_truth" / "config.json").read_text())
    assert MultiTubeConfig.from_dict(meta["config"]) == small()


def test_bundled_run42_is_what_the_documented_command_writes(tmp_path: Path) -> None:
    """sample_fcs/run42 is ``cytogate simulate sample_fcs/run42 --design multitube``, byte for byte.

    The FCS files, per-event labels, manifest and README; the CSV truth tables print floats,
    whose last digit may differ between numpy builds, so they are compared as numbers.
    """
    bundled = Path(__file__).resolve().parents[1] / "sample_fcs" / "run42"
    out = tmp_path / "run42"
    res = CliRunner().invoke(cli, ["simulate", str(out), "--design", "multitube"])
    assert res.exit_code == 0, res.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(
        p.relative_to(bundled).as_posix()
        for p in bundled.rglob("*")
        if p.is_file() and "cytogate_results" not in p.parts
    )
    manifest = pd.read_csv(out / "manifest.csv")
    names = [*manifest["file"], "manifest.csv", "README.md", "ground_truth/labels.npz"]
    assert len(names) == 147  # 144 FCS files
    assert [n for n in names if (bundled / n).read_bytes() != (out / n).read_bytes()] == []
    for table in ("planted_effects.csv", "patients.csv", "panels.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(bundled / "ground_truth" / table),
            pd.read_csv(out / "ground_truth" / table),
            rtol=1e-12,
        )


def test_config_errors_name_the_field() -> None:
    with pytest.raises(SimulationError, match="without_ki67"):
        small(without_ki67=7)
    with pytest.raises(SimulationError, match="without_cd49f"):
        small(without_cd114=3, without_cd49f=1)
    with pytest.raises(SimulationError, match="unknown fields"):
        MultiTubeConfig.from_dict({"patients": 3})


def test_study_proportions() -> None:
    c = MultiTubeConfig.for_patients(29)
    assert 29 - c.without_cd114 == 17 and 29 - c.without_cd49f == 15
    assert 29 - c.without_ki67 == 10
    assert MultiTubeConfig.for_patients(8) == MultiTubeConfig()


def test_cli_simulate_multitube(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = CliRunner().invoke(
        cli, ["simulate", str(out), "--design", "multitube", "--patients", "4", "--events", "800"]
    )
    assert res.exit_code == 0, res.output
    manifest = pd.read_csv(out / "manifest.csv")
    assert manifest["patient"].nunique() == 4 and set(manifest["tube"]) == {
        "CXCR4", "CXCR4 isotype", "Ki67", "Ki67 isotype"}  # fmt: skip
    assert read_fcs(out / manifest["file"][0]).events.shape[0] == 800
    res = CliRunner().invoke(cli, ["simulate", str(tmp_path / "x"), "--design", "multitube",
                                   "--hard"])  # fmt: skip
    assert res.exit_code != 0 and "--design multitube" in res.output
