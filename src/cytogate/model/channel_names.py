"""What instruments call their scatter channels and how $PnS spells a stained marker.

Why: a template says ``FSC-A``/``SSC-A``/``CD45``; a Navios says ``FS INT LIN``/``SS INT LOG``
and ``CD45-PC7``, an FC 500 ``FS Lin``/``SS Log``, a CytoFLEX adds ``VSSC-A``, a Guava
``FSC-HLin``, a Sony ``BSC-A``. Patterns in every template cannot keep up, so the panel falls
back to this vocabulary when a marker's own patterns find nothing.

Scatter names are parsed into (kind, measure, amplification, secondary): kind FSC or SSC;
measure area (A, Area, INT, Integral), height (H, Height, HLin/HLog), peak (Beckman PEAK),
width (W, Width) or tof (TOF), or none (``FS Lin``, ``FSC``: the instrument's one pulse
measure); secondary marks violet/back side scatter (``VSSC``, ``SSC-B``, ``Violet SSC``), used
only when no primary one exists. :func:`rank_scatter` orders candidates: area before height
before width/peak/TOF, as gating on area is the convention where several exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ScatterKind = Literal["FSC", "SSC"]
Measure = Literal["area", "none", "height", "peak", "width", "tof"]

_KIND_TOKENS: dict[str, ScatterKind] = {
    "FSC": "FSC",
    "FS": "FSC",
    "FALS": "FSC",
    "FWD": "FSC",
    "FSCA": "FSC",
    "SSC": "SSC",
    "SS": "SSC",
    "SALS": "SSC",
    "SIDE": "SSC",
    "BSC": "SSC",  # Sony: back scatter is their side scatter
    "VSSC": "SSC",
}
_SECONDARY_KIND = {"VSSC"}
_SECONDARY_TOKENS = {"B", "V", "VIOLET", "BLUE", "2"}
_MEASURE_TOKENS: dict[str, Measure] = {
    "A": "area",
    "AREA": "area",
    "INT": "area",
    "INTEGRAL": "area",
    "H": "height",
    "HEIGHT": "height",
    "HLIN": "height",
    "HLOG": "height",
    "PEAK": "peak",
    "W": "width",
    "WIDTH": "width",
    "TOF": "tof",
}
_AMP_TOKENS = {"LIN": "lin", "LOG": "log", "HLIN": "lin", "HLOG": "log"}
_FILLER_TOKENS = {"SCATTER", "SC", "FORWARD"}

# measure -> rank when a marker asks for area (or any scatter); lower is preferred
_AREA_RANK: dict[Measure, float] = {
    "area": 0,
    "none": 1,
    "height": 2,
    "peak": 3,
    "width": 5,
    "tof": 6,
}
# measures that serve a request for a given pulse measure (FSC-H, FSC-W), best first
_SERVES: dict[str, tuple[Measure, ...]] = {
    "area": ("area", "none", "height", "peak", "width", "tof"),
    "height": ("height", "peak"),
    "width": ("width", "tof"),
}


@dataclass(frozen=True)
class ScatterName:
    """A parsed scatter channel name."""

    kind: ScatterKind
    measure: Measure
    amplification: str  # "lin", "log" or ""
    secondary: bool


def parse_scatter(name: str) -> ScatterName | None:
    """``FS INT LIN`` -> (FSC, area, lin); ``SSC-B-A`` -> (SSC, area, secondary); else None."""
    tokens = [t for t in re.split(r"[\s\-_/.()]+", name.strip().upper()) if t]
    if not tokens:
        return None
    if tokens[0] == "VIOLET" and len(tokens) > 1:
        tokens = [tokens[1], "V", *tokens[2:]]
    first = tokens[0]
    kind = _KIND_TOKENS.get(first)
    if first == "FSCA":  # "FSCA" written without a separator
        tokens = ["FSC", "A", *tokens[1:]]
        first = "FSC"
    if kind is None:
        return None
    secondary = first in _SECONDARY_KIND
    measure: Measure = "none"
    amplification = ""
    for token in tokens[1:]:
        if token in _MEASURE_TOKENS and measure == "none":
            measure = _MEASURE_TOKENS[token]
            amplification = _AMP_TOKENS.get(token, amplification)
        elif token in _AMP_TOKENS:
            amplification = _AMP_TOKENS[token]
        elif token in _SECONDARY_TOKENS and measure == "none":
            secondary = True
        elif token in _FILLER_TOKENS:
            continue
        else:
            return None
    return ScatterName(kind, measure, amplification, secondary)


def scatter_request(marker_name: str) -> tuple[ScatterKind, str] | None:
    """The (kind, measure) a template marker name asks for: ``FSC-H`` -> (FSC, height)."""
    parsed = parse_scatter(marker_name)
    if parsed is None or parsed.secondary:
        return None
    measure = parsed.measure if parsed.measure in ("height", "width") else "area"
    if parsed.measure == "peak":
        measure = "height"
    if parsed.measure == "tof":
        measure = "width"
    return parsed.kind, measure


def rank_scatter(parsed: ScatterName, measure: str) -> float | None:
    """Rank of a channel for a request of ``measure`` (lower first); None if it cannot serve."""
    serves = _SERVES[measure]
    if parsed.measure not in serves:
        return None
    rank = float(serves.index(parsed.measure)) if measure != "area" else _AREA_RANK[parsed.measure]
    if parsed.secondary:
        rank += 10
    preferred = "lin" if parsed.kind == "FSC" else "log"
    if parsed.amplification and parsed.amplification != preferred:
        rank += 0.5  # e.g. FS Lin before FS Log, SS Log before SS Lin
    return rank


# Fluorochromes as written after (or before) a marker in $PnS, reduced to letters and digits.
FLUOROCHROMES = frozenset(
    """
    FITC PE ECD PC5 PC55 PC7 PERCP PERCPCY55 PERCPCY5 PERCPEF710 PECY7 PECY5 PECY55 PETR
    PETEXASRED PETXRED PECF594 PEDAZZLE594 PEA594 APC APCH7 APCCY7 APCR700 APCA700 APCA750
    APCFIRE750 APCEF780 APCAF750 V450 V500 V500C BV421 BV480 BV510 BV570 BV605 BV650 BV711
    BV750 BV786 BUV395 BUV496 BUV563 BUV661 BUV737 BUV805 KRO KO PB PO PACIFICBLUE
    PACIFICORANGE AMCYAN AF350 AF405 AF488 AF532 AF555 AF594 AF647 AF660 AF680 AF700 AF750
    A488 A594 A647 A700 A750 ALEXA488 ALEXA647 ALEXA700 ALEXAFLUOR488 ALEXAFLUOR647
    ALEXAFLUOR700 EF450 EF506 EF660 SB436 SB600 SB645 SB702 SB780 BB515 BB700 HV450 HV500
    V421 CY3 CY5 CY55 CY7 GFP YFP RFP DAPI PI 7AAD SPARKBLUE550 SPARKNIR685 NFB61 NFR685
    """.split()
)
_ANTI = re.compile(r"^(ANTI|HU|HUMAN)")


def _alnum(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def stain_names_marker(pns: str, marker: str) -> bool:
    """Whether ``pns`` is ``marker`` plus at most a fluorochrome (and an -A/-H/-W suffix).

    ``CD45-ECD``, ``CD45 V500-C-A``, ``CD 45 PerCP``, ``Anti-CD45 APC-H7``, ``PerCP CD45`` all
    name CD45; ``CD45RA FITC`` and ``CD4 PE`` do not.
    """
    want = _alnum(marker)
    have = _ANTI.sub("", _alnum(re.sub(r"\([^)]*\)", " ", pns)))
    if not want or want not in have:
        return False
    if have == want:
        return True
    if have.startswith(want):
        return _is_fluor(have[len(want) :])
    if have.endswith(want):
        return _is_fluor(have[: -len(want)])
    return False


def _is_fluor(rest: str) -> bool:
    return rest in FLUOROCHROMES or (rest[-1:] in ("A", "H", "W") and rest[:-1] in FLUOROCHROMES)
