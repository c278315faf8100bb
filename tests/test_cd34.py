"""ISHAGE CD34+ enumeration end to end on a SIMULATED cohort with ground truth.

The cohort (15 patients in three regimen groups, 35 tubes, generated once per module) is gated
by ``cytogate batch`` with the bundled ``ishage_cd34`` template; ``cd34.csv`` and
``groups.csv`` are compared with the planted values, the gates with the per-event labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from cytogate.cli import cli
from cytogate.errors import DesignError
from cytogate.gating.engine import gate
from cytogate.gating.template import load_template
from cytogate.io.fcs import read_fcs
from cytogate.sim.cd34 import CD34_LABEL_CODES, CD34Config, simulate_cd34_study
from cytogate.study.batch import run_batch
from cytogate.study.cd34_outputs import is_cd34_template, read_cd34_manifest

DEMO = Path(__file__).resolve().parents[1] / "sample_fcs" / "cd34_demo"
CD34_CODES = [CD34_LABEL_CODES["cd34_viable"], CD34_LABEL_CODES["cd34_dead"]]
DOUBLET_RICH = "P02_LP1.fcs"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):
    run = tmp_path_factory.mktemp("cd34") / "cohort"
    config = CD34Config(
        patients_per_regimen=5,
        blood_leukocyte_events=40000,
        apheresis_leukocyte_events=16000,
        seed=7,
        doublet_rich_tubes=(DOUBLET_RICH,),
    )
    study = simulate_cd34_study(run, config)
    result = run_batch(run, out=run / "out", jobs=1)
    return study, result


def _joined(cohort) -> pd.DataFrame:
    study, result = cohort
    planted = study.tubes.set_index("file")
    return result.extra["cd34"].set_index("file").join(planted, rsuffix="_planted")


def test_batch_writes_cd34_and_groups_tables(cohort):
    study, result = cohort
    out = result.out
    assert (out / "cd34.csv").is_file() and (out / "groups.csv").is_file()
    assert len(pd.read_csv(out / "cd34.csv")) == len(study.manifest)
    assert set(pd.read_csv(out / "groups.csv")["section"]) == {
        "summary",
        "test",
        "failure",
        "failure_test",
    }


def test_counts_within_5_percent_of_planted_when_countable(cohort):
    t = _joined(cohort)
    countable = t[(t["events_cd34"] >= 100) & (t.index != DOUBLET_RICH)]
    assert len(countable) >= 25
    for col in ("cd34_per_ul", "viable_cd34_per_ul"):
        err = (countable[col] / countable[f"{col}_planted"] - 1).abs()
        assert err.max() < 0.05, err.sort_values().tail(3)
    pct = (countable["cd34_pct_of_cd45"] / countable["cd34_pct_of_cd45_planted"] - 1).abs()
    assert pct.max() < 0.05


def test_yields_within_5_percent_of_planted(cohort):
    t = _joined(cohort)
    aph = t[(t["specimen"] == "apheresis") & (t["events_cd34"] >= 100) & (t.index != DOUBLET_RICH)]
    assert len(aph) >= 10
    err = (aph["cd34_e6_per_kg"] / aph["yield_e6_per_kg"] - 1).abs()
    assert err.max() < 0.05


def test_tubes_it_cannot_count_are_flagged(cohort):
    t = _joined(cohort)
    few = t[t["events_cd34"] < 100]
    assert len(few) >= 3
    assert few["too_few_cd34_events"].all()
    assert few["count_qc"].str.contains("CD34\\+ events \\(< 100\\)").all()
    # doublet-rich beads: the count is 20-30 % high and says why
    rich = t.loc[DOUBLET_RICH]
    assert rich["cd34_per_ul"] / rich["cd34_per_ul_planted"] > 1.15
    assert "doublet-rich" in rich["count_qc"]
    others = t[(t["events_cd34"] >= 100) & (t.index != DOUBLET_RICH)]
    assert (others["count_qc"] == "").all()


def test_ishage_gates_against_per_event_truth(cohort):
    study, _ = cohort
    template = load_template("ishage_cd34")
    typical = study.tubes[
        (study.tubes["events_cd34"] >= 100) & (study.tubes["file"] != DOUBLET_RICH)
    ]
    f1s = []
    for rec in typical.itertuples():
        result = gate(read_fcs(study.outdir / rec.file), template)
        labels = study.labels[rec.file]
        for pop, codes in (
            ("cd34", CD34_CODES),
            ("viable_cd34", [CD34_LABEL_CODES["cd34_viable"]]),
            ("bead_singlets", [CD34_LABEL_CODES["bead"]]),
        ):
            mask, truth = result.mask(pop), np.isin(labels, codes)
            f1s.append(2 * (mask & truth).sum() / (mask.sum() + truth.sum()))
    assert min(f1s) >= 0.95


def test_group_differences_in_the_planted_direction_with_scipy(cohort):
    study, result = cohort
    groups = result.extra["groups"]
    summary = groups[groups["section"] == "summary"].set_index(["measure", "group"])
    blood = summary.loc["peak_blood_cd34_per_ul", "median"]
    # planted medians 128.5 (VTd) > 62.8 (Dara-VCd) > 24.9 (Isa-KRd)
    assert blood["VTd"] > blood["Dara-VCd"] > blood["Isa-KRd"]
    cd34 = result.extra["cd34"]
    pb = cd34[cd34["specimen"] == "blood"].merge(
        study.patients[["patient", "cohort"]], on="patient"
    )
    samples = [pb.loc[pb["cohort_x"] == g, "cd34_per_ul"].to_numpy() for g in sorted(blood.index)]
    kw = groups[
        (groups["test"] == "kruskal_wallis") & (groups["measure"] == "peak_blood_cd34_per_ul")
    ]
    assert kw["p_value"].iloc[0] == pytest.approx(stats.kruskal(*samples).pvalue)
    assert kw["p_value"].iloc[0] < 0.05
    # the planted failures (poor mobilisers below 2 ×10⁶/kg) are the ones found
    failure = groups[groups["section"] == "failure"].set_index("group")["failures"]
    planted = study.patients.groupby("cohort")["collection_failure"].sum()
    assert dict(failure.astype(int)) == dict(planted.astype(int))


def test_simulated_files_say_so(cohort):
    study, _ = cohort
    sample = read_fcs(study.outdir / study.manifest["file"].iloc[0])
    assert "SIMULATED" in sample.keywords["$COM"]
    assert sample.keywords["CYTOGATE_SIMULATED"] == "TRUE"
    assert "SIMULATED" in (study.outdir / "README.md").read_text()


def test_same_config_same_bytes(tmp_path):
    config = CD34Config(patients_per_regimen=1, blood_leukocyte_events=500,
                        apheresis_leukocyte_events=500)  # fmt: skip
    a = simulate_cd34_study(tmp_path / "a", config)
    simulate_cd34_study(tmp_path / "b", config)
    for name in [*a.manifest["file"], "manifest.csv", "ground_truth/labels.npz"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_bad_cd34_manifest_value_names_line_and_column(tmp_path):
    config = CD34Config(patients_per_regimen=1, blood_leukocyte_events=500,
                        apheresis_leukocyte_events=500)  # fmt: skip
    simulate_cd34_study(tmp_path, config)
    manifest = tmp_path / "manifest.csv"
    lines = manifest.read_text().splitlines()
    lines[2] = lines[2].replace(",apheresis,", ",apheresis,").rsplit(",", 1)[0] + ",heavy"
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(DesignError, match=r"manifest.csv: line 3: 'weight_kg' 'heavy' is not a"):
        read_cd34_manifest(tmp_path)


def test_bundled_demo_and_other_templates(tmp_path):
    assert is_cd34_template(load_template("ishage_cd34"))
    assert not is_cd34_template(load_template("aml_blasts_cd45_ssc"))
    manifest = read_cd34_manifest(DEMO)
    assert manifest is not None and set(manifest["specimen"]) == {"blood", "apheresis"}
    runner = CliRunner()
    res = runner.invoke(
        cli, ["batch", str(DEMO), "--template", "ishage_cd34", "--no-plots", "-q",
              "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    cd34 = pd.read_csv(tmp_path / "out" / "cd34.csv")
    planted = pd.read_csv(DEMO / "ground_truth" / "planted_tubes.csv").set_index("file")
    ok = cd34[(cd34["cd34_events"] >= 100) & (cd34["count_qc"].isna())].set_index("file")
    assert len(ok) >= 4
    err = (ok["cd34_per_ul"] / planted.loc[ok.index, "cd34_per_ul"] - 1).abs()
    assert err.max() < 0.05


def test_cli_simulate_cd34(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["simulate", "--cd34", "--patients", "3", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "SIMULATED CD34 tubes (3 patients" in res.output
    assert (tmp_path / "s" / "cytogate.yaml").is_file()
    res = runner.invoke(cli, ["simulate", "--cd34", "--hard", str(tmp_path / "t")])
    assert res.exit_code == 2 and "--cd34 does not take --hard" in res.output


def test_bundled_demo_is_what_simulate_cd34_writes(tmp_path):
    """sample_fcs/cd34_demo (``cytogate simulate --cd34``) regenerates byte for byte."""
    study = simulate_cd34_study(tmp_path / "demo")
    names = [*study.manifest["file"], "manifest.csv", "cytogate.yaml", "ground_truth/labels.npz"]
    assert [
        n for n in names if (DEMO / n).read_bytes() != (tmp_path / "demo" / n).read_bytes()
    ] == []
