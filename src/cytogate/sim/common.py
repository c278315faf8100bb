"""Vocabulary shared by the simulator's modules: event labels, markers, tubes, scales, errors.

Geometry is defined in the gating template's scaled space (scatter / 262144, fluorescence
logicle T=262144, W=0.5, M=4.5, A=0, both 0..1) and mapped back to linear units here.
"""

from __future__ import annotations

import numpy as np

from cytogate.errors import CytogateError

#: Per-event ground-truth label codes (uint8) -> population name.
LABELS: dict[int, str] = {
    0: "debris",
    1: "doublet",
    2: "cd45_negative",
    3: "lymphocyte",
    4: "monocyte",
    5: "granulocyte",
    6: "blast",
}
LABEL_CODES: dict[str, int] = {name: code for code, name in LABELS.items()}
#: Populations whose events count as CD45+ leukocytes in the truth (denominator of blast share
#: and of dual-platform absolute counts); debris, doublets and CD45-negative cells do not.
LEUKOCYTE_LABELS: tuple[int, ...] = (3, 4, 5, 6)

SCATTER_RANGE = 262144.0
LOGICLE_PARAMS: dict[str, float] = {"t": 262144.0, "w": 0.5, "m": 4.5, "a": 0.0}

MARKERS: tuple[str, ...] = ("CD114", "CXCR4_12G5", "CD45", "CD49f", "CXCR4_1D9", "Ki67")
TUBES: tuple[str, ...] = ("stained", "isotype")
#: Markers with a planted blast MFI (Ki67 is planted as a fraction positive instead).
MFI_MARKERS: tuple[str, ...] = ("CXCR4_12G5", "CXCR4_1D9", "CD114", "CD49f")

SIMULATED_COMMENT = "SIMULATED DATA (cytogate simulate) - not a patient sample"


class SimulationError(CytogateError, ValueError):
    """A simulation config is inconsistent (the message names the field)."""


def logicle_inverse(scaled: np.ndarray) -> np.ndarray:
    """Template logicle scale (0..1) -> linear units."""
    from flowutils import transforms as fu

    return fu.logicle_inverse(np.asarray(scaled, dtype=np.float64), None, **LOGICLE_PARAMS)


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """One draw from U(lo, hi) (a single ``rng.random()``, so streams stay reproducible)."""
    lo, hi = bounds
    return float(lo + (hi - lo) * rng.random())
