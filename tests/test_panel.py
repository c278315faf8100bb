"""Marker -> channel resolution across instrument spellings and for isotype tubes."""

import numpy as np
import pytest

from cytogate.errors import PanelError
from cytogate.gating.template import load_template
from cytogate.model.panel import resolve_panel
from tests.conftest import make_sample

PANEL = load_template("aml_blasts_cd45_ssc").panel


def _sample(pnn, pns):
    return make_sample(np.zeros((3, len(pnn))), pnn, pns)


@pytest.mark.parametrize(
    "label", ["CXCR4 (12G5)", "CD184 12G5 PE", "12G5", "cxcr4-12g5", "CD184 (CXCR4 12G5) PE"]
)
def test_12g5_spellings_resolve_to_the_pe_channel(label):
    sample = _sample(["FSC-A", "PE-A", "APC-A"], ["", label, "CXCR4 1D9 APC"])
    resolved = resolve_panel(sample, PANEL, ["CXCR4_12G5", "CXCR4_1D9"])
    assert resolved["CXCR4_12G5"].pnn == "PE-A"
    assert resolved["CXCR4_12G5"].via == "pns"
    assert resolved["CXCR4_1D9"].pnn == "APC-A"


def test_scatter_resolves_by_pnn_when_pns_is_empty():
    sample = _sample(["FSC-A", "FSC-H", "SSC-A"], ["", "", ""])
    resolved = resolve_panel(sample, PANEL, ["FSC-A", "FSC-H", "SSC-A"])
    assert [resolved[m].index for m in ("FSC-A", "FSC-H", "SSC-A")] == [0, 1, 2]
    assert {r.via for r in resolved.values()} == {"pnn"}


def test_old_instrument_names():
    sample = _sample(["FS Lin", "SS Log", "FL3 Log"], ["", "", "CD45 ECD"])
    resolved = resolve_panel(sample, PANEL, ["FSC-A", "SSC-A", "CD45"])
    assert [resolved[m].pnn for m in ("FSC-A", "SSC-A", "CD45")] == ["FS Lin", "SS Log", "FL3 Log"]


def test_cd45_does_not_match_cd45ra():
    sample = _sample(["FITC-A", "PerCP-A"], ["CD45RA FITC", "CD45 PerCP"])
    assert resolve_panel(sample, PANEL, ["CD45"])["CD45"].pnn == "PerCP-A"


def test_isotype_tube_resolves_through_the_stained_tubes_channel():
    stained = _sample(["PE-A", "APC-A"], ["CD184 12G5 PE", "CXCR4 1D9 APC"])
    isotype = _sample(["PE-A", "APC-A"], ["IgG2a PE", "Rat IgG2b APC"])
    ref = {m: r.pnn for m, r in resolve_panel(stained, PANEL, ["CXCR4_12G5", "CXCR4_1D9"]).items()}
    with pytest.raises(PanelError):
        resolve_panel(isotype, PANEL, ["CXCR4_12G5"])  # without the reference: no match
    resolved = resolve_panel(isotype, PANEL, ["CXCR4_12G5", "CXCR4_1D9"], reference=ref)
    assert resolved["CXCR4_12G5"].pnn == "PE-A"
    assert resolved["CXCR4_1D9"].pnn == "APC-A"
    assert resolved["CXCR4_12G5"].via == "reference"


def test_reference_wins_over_a_pattern_match_elsewhere():
    # a mislabelled isotype tube whose $PnS mentions 12G5 on another detector must still be
    # read on the stained tube's detector, or the RMFI would compare two different detectors
    isotype = _sample(["PE-A", "APC-A"], ["IgG2a PE", "12G5 leftover label"])
    resolved = resolve_panel(isotype, PANEL, ["CXCR4_12G5"], reference={"CXCR4_12G5": "PE-A"})
    assert resolved["CXCR4_12G5"].pnn == "PE-A"


def test_missing_marker_lists_the_files_channels():
    sample = _sample(["FSC-A", "SSC-A", "PE-A"], ["", "", "CD3 PE"])
    with pytest.raises(PanelError) as info:
        resolve_panel(sample, PANEL, ["CD45"])
    message = str(info.value)
    assert "memory.fcs" in message and "'CD45'" in message
    assert "FSC-A, SSC-A, PE-A (CD3 PE)" in message


def test_ambiguous_marker_is_an_error_naming_both_channels():
    sample = _sample(["PE-A", "APC-A"], ["CD184 12G5 PE", "12G5 APC"])
    with pytest.raises(PanelError) as info:
        resolve_panel(sample, PANEL, ["CXCR4_12G5"])
    assert "2 channels" in str(info.value)
    assert "PE-A" in str(info.value) and "APC-A" in str(info.value)


def test_unknown_marker_name():
    with pytest.raises(PanelError, match="not in the panel"):
        resolve_panel(_sample(["FSC-A"], [""]), PANEL, ["CD999"])
