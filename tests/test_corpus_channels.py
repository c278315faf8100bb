"""Which corpus files (real acquisitions, tests/data/fcs_corpus) have forward scatter, side
scatter and CD45, and that each of the three resolves with the default template's panel; a
file without CD45 fails with one line that lists its channels (issue 9, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cytogate.errors import PanelError
from cytogate.gating.template import load_template
from cytogate.io.fcs import read_fcs
from cytogate.model.panel import resolve_panel

CORPUS = Path(__file__).parent / "data" / "fcs_corpus"
PANEL = load_template("aml_blasts_cd45_ssc").panel

# file -> (instrument, FSC $PnN, SSC $PnN, CD45 $PnN or None when the tube has no CD45)
EXPECTED = {
    "FACS_Diva/facs_diva_test.fcs": ("BD FACSDiva", "FSC-A", "SSC-A", "PerCP-A"),
    "fake_bitmask_error/fcs1_cleaned.lmd": (
        "Beckman Navios",
        "FS INT LIN",
        "SS INT LIN",
        "FL5 INT LOG",
    ),
    "Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs": (
        "BD Fortessa",
        "FSC-A",
        "SSC-A",
        None,
    ),
    "HTS_BD_LSR-II/HTS_BD_LSR_II_Mixed_Specimen_001_D6_D06.fcs": (
        "BD LSR-II",
        "FSC-A",
        "SSC-A",
        None,
    ),
    "fake_large_fcs/fake_large_fcs.fcs": ("BD LSR-II", "FSC-A", "SSC-A", None),
    "FACSCaliburHTS/Sample_Well_A02.fcs": ("BD FACSCalibur", "FSC-H", "SSC-H", None),
    "Cytek_xP5/Cytek_xP5.fcs": ("Cytek xP5", "FSC", "SSC", None),
    "cyflow_cube_8/cyflow_cube_8.fcs": ("Sysmex/Partec CyFlow Cube 8", "FSC", "SSC", None),
    "GuavaMuse/Guava Muse.fcs": ("Guava Muse", "FSC-HLin", None, None),
    "MiltenyiBiotec/FCS2.0/EY_2013-07-19_PBS_FCS_2.0_Custom_Without_Add_Well_A1.001.fcs": (
        "Miltenyi MACSQuant",
        "FSC-A",
        "SSC-A",
        None,
    ),
    "MiltenyiBiotec/FCS3.0/FCS3.0_Custom_Compatible.fcs": (
        "Miltenyi MACSQuant",
        "FSC-A",
        "SSC-A",
        None,
    ),
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Custom_Add_Well_A1.001.fcs": (
        "Miltenyi MACSQuant",
        "FSC-A",
        "SSC-A",
        None,
    ),
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Custom_Without_Add_Well_A1.001.fcs": (
        "Miltenyi MACSQuant",
        "FSC-A",
        "SSC-A",
        None,
    ),
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Well_A1.001.fcs": (
        "Miltenyi MACSQuant",
        "FSC-A",
        "SSC-A",
        None,
    ),
    "MiltenyiBiotec/FCS3.1/SG_2014-09-26_Duplicate_Names.fcs": (
        "Miltenyi MACSQuant",
        "FSC-A",
        "SSC-A",
        None,
    ),
}
UNREADABLE = {"corrupted/corrupted.fcs", "cytek-nl-2000/sample_header.fcs"}


def test_every_corpus_file_is_listed():
    found = {
        str(p.relative_to(CORPUS))
        for p in CORPUS.rglob("*")
        if p.suffix.lower() in (".fcs", ".lmd")
    }
    assert found == set(EXPECTED) | UNREADABLE


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scatter_and_cd45_resolve_where_the_file_has_them(name: str):
    _, fsc, ssc, cd45 = EXPECTED[name]
    sample = read_fcs(CORPUS / name)
    for marker, want in (("FSC-A", fsc), ("SSC-A", ssc), ("CD45", cd45)):
        if want is not None:
            assert resolve_panel(sample, PANEL, [marker])[marker].pnn == want
            continue
        with pytest.raises(PanelError) as info:
            resolve_panel(sample, PANEL, [marker])
        message = str(info.value)
        assert "\n" not in message
        assert f"marker '{marker}' matches no channel" in message
        assert "Channels in file: " in message
        assert all(pnn in message for pnn in sample.channel_names)


def test_files_with_all_three_by_vendor():
    complete = sorted(v[0] for v in EXPECTED.values() if None not in v[1:])
    assert complete == ["BD FACSDiva", "Beckman Navios"]
