"""Per-file gates out: a FlowJo workspace and GatingML per file, read back with FlowKit.

The files are simulated (cytogate.sim: simulated data, not an instrument's) and gated with the
default adaptive template, so every file has its own fitted geometry; the export must carry
each file's own gates: the round trip reads the workspace with ``flowkit.Workspace`` and gets
cytogate's counts per file and population, and its memberships event for event.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cytogate.errors import CytogateError
from cytogate.gating.engine import gate
from cytogate.interop.workspace_export import export_gatingml_per_file, export_workspace
from cytogate.io.fcs import read_fcs

fk = pytest.importorskip("flowkit")


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    from cytogate.sim.simulate import write_benchmark_file

    folder = tmp_path_factory.mktemp("wsp")
    pairs = []
    for patient, timepoint in ((0, "baseline"), (1, "baseline"), (2, "24h")):
        path = write_benchmark_file(
            folder / f"P{patient}_{timepoint}.fcs",
            n_events=20_000,
            patient=patient,
            timepoint=timepoint,
        )
        sample = read_fcs(path)
        pairs.append((sample, gate(sample)))
    return folder, pairs


def test_round_trip_gives_cytogates_counts_per_file(gated, tmp_path):
    _, pairs = gated
    blasts = [r.gate_of("blasts").geometry for _, r in pairs]
    assert blasts[0] != blasts[1]  # fitted per file: the export must keep each file's own
    path = export_workspace(pairs, tmp_path / "cytogate.wsp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workspace = fk.Workspace(str(path), fcs_samples=[str(s.path) for s, _ in pairs])
    assert workspace.get_sample_groups() == ["cytogate"]
    assert sorted(workspace.get_sample_ids("cytogate")) == sorted(s.path.name for s, _ in pairs)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workspace.analyze_samples(group_name="cytogate", use_mp=False)
        for sample, result in pairs:
            for pop in result.populations:
                theirs = workspace.get_gate_membership(sample.path.name, pop)
                assert int(theirs.sum()) == result.count(pop), (sample.path.name, pop)
                np.testing.assert_array_equal(theirs, result.mask(pop))


def test_gatingml_per_file_reads_back_with_the_files_gates(gated, tmp_path):
    _, pairs = gated
    docs = export_gatingml_per_file(pairs, tmp_path / "gatingml")
    assert [d.name for d in docs] == [f"{s.path.stem}.xml" for s, _ in pairs]
    for (sample, result), doc in zip(pairs, docs, strict=True):
        again = gate(sample, doc)  # the document as a cytogate template (FlowKit evaluates)
        for pop in result.populations:
            np.testing.assert_array_equal(again.mask(pop), result.mask(pop), err_msg=pop)


def test_duplicate_names_and_other_matrices_are_refused(gated, tmp_path):
    _, pairs = gated
    with pytest.raises(CytogateError, match="unique"):
        export_workspace([pairs[0], pairs[0]], tmp_path / "x.wsp")
    sample = pairs[1][0]
    other = gate(sample, compensation=sample.spillover * 1.01)
    with pytest.raises(CytogateError, match="another matrix"):
        export_workspace([pairs[0], (sample, other)], tmp_path / "x.wsp")
    assert not (tmp_path / "x.wsp").exists()


def test_batch_export_wsp_opens_in_flowkit_with_populations_csv_counts(tmp_path, two_tube_run42):
    """``cytogate batch --export-wsp`` writes the gates the batch applied (from its per-file
    outcomes, no re-gating); flowkit.Workspace gives the counts of populations.csv for every
    file and population. Files: 8 of the two-tube simulated run (conftest), stained and isotype."""
    import shutil

    import pandas as pd
    from click.testing import CliRunner

    from cytogate.cli import cli

    run42 = two_tube_run42
    run = tmp_path / "run"
    run.mkdir()
    for name in ("P01_baseline", "P01_24h", "P02_baseline", "P02_24h"):
        for tube in ("stained", "isotype"):
            shutil.copy(run42 / f"{name}_{tube}.fcs", run)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli, ["batch", str(run), "--no-plots", "-q", "-j", "1", "-o", str(out), "--export-wsp"]
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "populations.csv")
    files = sorted(table["file"].unique())
    assert len(files) == 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workspace = fk.Workspace(
            str(out / "flowjo" / "cytogate.wsp"), fcs_samples=[str(run / f) for f in files]
        )
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workspace.analyze_samples(group_name="cytogate", use_mp=False)
        for row in table.itertuples():
            theirs = int(workspace.get_gate_membership(row.file, row.population).sum())
            assert theirs == row.count, (row.file, row.population)
    assert sorted(p.name for p in (out / "flowjo" / "gatingml").glob("*.xml")) == [
        f.replace(".fcs", ".xml") for f in files
    ]


def test_gates_flowkits_writer_lacks_are_one_clear_error(tmp_path):
    from pathlib import Path

    from cytogate.gating.loader import parse_template

    template = parse_template(
        "name: ell\npanel: {A: '^channel_A$', B: '^channel_B$'}\ncompensation: none\n"
        "scales: {default: {kind: linear, top: 1}}\ngates:\n"
        "  - {name: e, kind: ellipse, dims: [A, B], center: [0.5, 0.5],"
        " covariance: [[0.01, 0], [0, 0.01]]}\n",
        Path("ell.yaml"),
    )
    examples = Path(__file__).parent / "data" / "flowjo_examples"
    sample = read_fcs(examples / "test_data_diamond_01.fcs")
    with pytest.raises(CytogateError, match=r"FlowKit cannot write.*EllipsoidGate"):
        export_workspace([(sample, gate(sample, template))], tmp_path / "e.wsp")
    assert not (tmp_path / "e.wsp").exists()
