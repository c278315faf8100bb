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
