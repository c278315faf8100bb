"""Forward scatter, side scatter and CD45 resolve with the default template's panel on every
vendor's channel names (issue 9, item 1). Channel lists are those the instruments write
($PnN, $PnS); the events are irrelevant to resolution."""

from __future__ import annotations

import numpy as np
import pytest

from cytogate.errors import PanelError
from cytogate.gating.template import load_template
from cytogate.model.channel_names import parse_scatter, stain_names_marker
from cytogate.model.panel import resolve_panel
from tests.conftest import make_sample

PANEL = load_template("aml_blasts_cd45_ssc").panel

# vendor: (channels as (PnN, PnS), expected FSC-A, SSC-A, CD45 $PnN)
VENDORS = {
    "BD FACSDiva/Canto": (
        [("FSC-A", ""), ("FSC-H", ""), ("FSC-W", ""), ("SSC-A", ""), ("PerCP-A", "CD45")],
        ("FSC-A", "SSC-A", "PerCP-A"),
    ),
    "BD FACSLyric": (
        [("FSC-A", ""), ("FSC-H", ""), ("SSC-A", ""), ("V500-C-A", "CD45 V500-C-A")],
        ("FSC-A", "SSC-A", "V500-C-A"),
    ),
    "BD FACSCalibur": (
        [("FSC-H", "FSC-Height"), ("SSC-H", "SSC-Height"), ("FL3-H", "CD45 PerCP")],
        ("FSC-H", "SSC-H", "FL3-H"),
    ),
    "BD Accuri": (
        [("FSC-A", ""), ("SSC-A", ""), ("FSC-H", ""), ("SSC-H", ""), ("FL4-A", "CD45 APC")],
        ("FSC-A", "SSC-A", "FL4-A"),
    ),
    "Beckman FC 500": (
        [("FS Lin", ""), ("SS Log", ""), ("FL3 Log", "CD45-ECD")],
        ("FS Lin", "SS Log", "FL3 Log"),
    ),
    "Beckman FC 500 both amplifications": (
        [("FS Lin", ""), ("FS Log", ""), ("SS Lin", ""), ("SS Log", ""), ("FL3 Log", "CD45-ECD")],
        ("FS Lin", "SS Log", "FL3 Log"),
    ),
    "Beckman Navios/Kaluza": (
        [
            ("FS INT LIN", ""),
            ("FS PEAK LIN", ""),
            ("FS TOF LIN", ""),
            ("SS INT LIN", ""),
            ("FL10 INT LOG", "CD45"),
        ],
        ("FS INT LIN", "SS INT LIN", "FL10 INT LOG"),
    ),
    "Beckman Gallios": (
        [("FS INT", ""), ("FS PEAK", ""), ("SS INT", ""), ("FL9 INT", "CD45 KrO")],
        ("FS INT", "SS INT", "FL9 INT"),
    ),
    "Beckman Navios log side scatter": (
        [("FS INT LIN", ""), ("SS INT LIN", ""), ("SS INT LOG", ""), ("FL5 INT LOG", "CD45-PC7")],
        ("FS INT LIN", "SS INT LOG", "FL5 INT LOG"),
    ),
    "Beckman CytoFLEX": (
        [
            ("FSC-A", ""),
            ("FSC-H", ""),
            ("FSC-Width", ""),
            ("SSC-A", ""),
            ("VSSC-A", ""),
            ("KO525-A", "CD45 KrO"),
        ],
        ("FSC-A", "SSC-A", "KO525-A"),
    ),
    "Beckman MoFlo": (
        [("FSC", ""), ("SSC", ""), ("FL6 Log", "CD45 APC-H7")],
        ("FSC", "SSC", "FL6 Log"),
    ),
    "Cytek Aurora": (
        [("FSC-A", ""), ("SSC-A", ""), ("SSC-B-A", ""), ("V7-A", "CD45 BV510")],
        ("FSC-A", "SSC-A", "V7-A"),
    ),
    "Cytek xP5": ([("FSC", ""), ("SSC", ""), ("FL3", "CD45 PerCP")], ("FSC", "SSC", "FL3")),
    "Thermo Attune NxT": (
        [("FSC-A", ""), ("FSC-H", ""), ("SSC-A", ""), ("SSC-H", ""), ("BL3-A", "CD45-PerCP")],
        ("FSC-A", "SSC-A", "BL3-A"),
    ),
    "Miltenyi MACSQuant": (
        [
            ("FSC-A", ""),
            ("FSC-H", ""),
            ("SSC-A", ""),
            ("V2-A", "CD45-VioGreen"),
            ("B1-A", "CD34 FITC"),
        ],
        ("FSC-A", "SSC-A", "V2-A"),
    ),
    "Sysmex/Partec CyFlow": (
        [("FSC", ""), ("SSC", ""), ("FL1", "CD45 FITC")],
        ("FSC", "SSC", "FL1"),
    ),
    "Stratedigm": (
        [("FSC-Area", ""), ("FSC-Height", ""), ("SSC-Area", ""), ("FL4-Area", "CD 45 PerCP")],
        ("FSC-Area", "SSC-Area", "FL4-Area"),
    ),
    "Sony SH800": (
        [("FSC-A", ""), ("FSC-H", ""), ("BSC-A", ""), ("BSC-H", ""), ("FL3-A", "Anti-CD45 PE")],
        ("FSC-A", "BSC-A", "FL3-A"),
    ),
    "Guava": (
        [
            ("FSC-HLin", "Forward Scatter (FSC-HLin)"),
            ("SSC-HLin", "Side Scatter (SSC-HLin)"),
            ("RED-HLog", "CD45 PC5"),
        ],
        ("FSC-HLin", "SSC-HLin", "RED-HLog"),
    ),
}


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_scatter_and_cd45_resolve_on_every_vendor(vendor: str):
    channels, expected = VENDORS[vendor]
    pnn = [c[0] for c in channels]
    sample = make_sample(np.zeros((2, len(pnn))), pnn, [c[1] for c in channels])
    resolved = resolve_panel(sample, PANEL, ["FSC-A", "SSC-A", "CD45"])
    assert tuple(resolved[m].pnn for m in ("FSC-A", "SSC-A", "CD45")) == expected


def test_chosen_scatter_says_what_it_was_chosen_over():
    pnn = ["FS INT LIN", "FS PEAK LIN", "FS TOF LIN", "SS INT LIN", "FL10 INT LOG"]
    sample = make_sample(np.zeros((2, 5)), pnn, ["", "", "", "", "CD45"])
    resolved = resolve_panel(sample, PANEL, ["FSC-A", "FSC-H", "FSC-W"])
    assert resolved["FSC-A"].via == "scatter"
    assert "'FS INT LIN' (over FS PEAK LIN, FS TOF LIN)" in resolved["FSC-A"].note
    assert resolved["FSC-H"].pnn == "FS PEAK LIN"  # Beckman's doublet pair: INT vs PEAK
    assert resolved["FSC-W"].pnn == "FS TOF LIN"


def test_height_only_file_has_no_separate_height_for_the_doublet_ratio():
    sample = make_sample(np.zeros((2, 3)), ["FSC-HLin", "SSC-HLin", "RED"], ["", "", "CD45"])
    assert resolve_panel(sample, PANEL, ["FSC-A"])["FSC-A"].pnn == "FSC-HLin"
    with pytest.raises(PanelError, match="'FSC-H' matches no channel"):
        resolve_panel(sample, PANEL, ["FSC-H"])


def test_equally_good_scatter_channels_are_an_error_not_a_pick():
    sample = make_sample(np.zeros((2, 3)), ["FS INT", "FS INT LIN", "SS"], ["", "", ""])
    # both are forward-scatter integrals with no stated or the preferred amplification
    with pytest.raises(PanelError, match="equally good FSC"):
        resolve_panel(sample, PANEL, ["FSC-A"])


def test_file_without_cd45_fails_with_one_line_listing_its_channels():
    sample = make_sample(np.zeros((2, 3)), ["FSC-A", "SSC-A", "FL1-A"], ["", "", "CD3 FITC"])
    with pytest.raises(PanelError) as info:
        resolve_panel(sample, PANEL, ["CD45"])
    message = str(info.value)
    assert "\n" not in message
    assert "FSC-A, SSC-A, FL1-A (CD3 FITC)" in message


@pytest.mark.parametrize(
    ("pns", "names_cd45"),
    [
        ("CD45-ECD", True),
        ("CD45 V500-C", True),
        ("CD45 PerCP", True),
        ("CD45 APC-H7", True),
        ("CD 45 PerCP", True),
        ("Anti-CD45 APC-H7", True),
        ("PerCP-CD45", True),
        ("CD45PerCP-Cy5.5-A", True),
        ("CD45RA FITC", False),
        ("CD4 PE", False),
        ("CD45RO", False),
        ("IgG1 ECD", False),
    ],
)
def test_stain_spellings(pns: str, names_cd45: bool):
    assert stain_names_marker(pns, "CD45") is names_cd45


@pytest.mark.parametrize(
    ("name", "kind", "measure"),
    [
        ("FS INT LIN", "FSC", "area"),
        ("SS INT LOG", "SSC", "area"),
        ("FS PEAK", "FSC", "peak"),
        ("FS TOF", "FSC", "tof"),
        ("FSC-HLin", "FSC", "height"),
        ("SS Log", "SSC", "none"),
        ("FSC-Width", "FSC", "width"),
        ("BSC-A", "SSC", "area"),
    ],
)
def test_scatter_names_parse(name: str, kind: str, measure: str):
    parsed = parse_scatter(name)
    assert parsed is not None
    assert (parsed.kind, parsed.measure) == (kind, measure)


@pytest.mark.parametrize("name", ["FL1 INT LOG", "Time", "HDR-T", "FSC-A CD45", "SSCX"])
def test_non_scatter_names_do_not_parse(name: str):
    assert parse_scatter(name) is None
