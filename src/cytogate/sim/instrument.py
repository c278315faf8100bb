"""The simulated cytometer: detectors, $PnS names, spillover, electronic noise, acquisition clock.

Observed = true @ S + electronic noise, S the spillover matrix (rows = source dye, the FCS
convention); S is written as ``$SPILLOVER``, so compensation with the file's own matrix recovers
the true values up to the noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cytogate.sim.common import SCATTER_RANGE, TUBES, SimulationError

if TYPE_CHECKING:
    from cytogate.sim.config import StudyConfig

CHANNELS: tuple[str, ...] = (
    "FSC-A",
    "FSC-H",
    "SSC-A",
    "FITC-A",
    "PE-A",
    "PerCP-Cy5-5-A",
    "PE-Cy7-A",
    "APC-A",
    "BV421-A",
    "Time",
)
FLUORESCENCE_CHANNELS: tuple[str, ...] = CHANNELS[3:9]
FLUOROCHROMES: dict[str, str] = {
    "FITC-A": "FITC",
    "PE-A": "PE",
    "PerCP-Cy5-5-A": "PerCP-Cy5.5",
    "PE-Cy7-A": "PE-Cy7",
    "APC-A": "APC",
    "BV421-A": "BV421",
}
#: Antibody part of $PnS in the stained and in the isotype tube (the fluorochrome is appended).
STAINED_NAMES: dict[str, str] = {
    "CD114": "CD114",
    "CXCR4_12G5": "CD184 (CXCR4 12G5)",
    "CD45": "CD45",
    "CD49f": "CD49f",
    "CXCR4_1D9": "CXCR4 1D9",
    "Ki67": "Ki67",
}
ISOTYPE_NAMES: dict[str, str] = {
    "CD114": "IgG1",
    "CXCR4_12G5": "IgG2a",
    "CD45": "CD45",  # stained in both tubes: it is the gating marker
    "CD49f": "Rat IgG2a",
    "CXCR4_1D9": "Rat IgG2b",
    "Ki67": "IgG1",
}


def _default_spillover() -> tuple[tuple[float, ...], ...]:
    # rows = source dye, columns = detector, order FLUORESCENCE_CHANNELS
    # fmt: off
    return (
        # FITC  PE     PerCP  PE-Cy7 APC    BV421   <- detector
        (1.0,   0.15,  0.02,  0.003, 0.0,   0.002),  # FITC
        (0.01,  1.0,   0.12,  0.05,  0.001, 0.0),    # PE
        (0.0,   0.005, 1.0,   0.10,  0.02,  0.0),    # PerCP-Cy5.5
        (0.0,   0.02,  0.03,  1.0,   0.01,  0.0),    # PE-Cy7
        (0.0,   0.0,   0.01,  0.02,  1.0,   0.0),    # APC
        (0.02,  0.002, 0.0,   0.0,   0.0,   1.0),    # BV421
    )
    # fmt: on


def _default_acquisition() -> dict[str, tuple[int, str]]:
    # (day offset from the patient's first sample, clock time): G-CSF for 2 days, plerixafor
    # on day 3 after the day3 sample, next-day sample at 24 h.
    return {
        "baseline": (0, "09:00:00"),
        "day3": (2, "09:00:00"),
        "2h": (2, "12:00:00"),
        "4h": (2, "14:00:00"),
        "6h": (2, "16:00:00"),
        "24h": (3, "10:00:00"),
    }


@dataclass(frozen=True)
class Instrument:
    """Detectors, panel, spillover, noise and acquisition metadata."""

    #: marker -> detector ($PnN); any permutation of FLUORESCENCE_CHANNELS (e.g. CD45 on BV421)
    panel: dict[str, str] = field(
        default_factory=lambda: {
            "CD114": "FITC-A",
            "CXCR4_12G5": "PE-A",
            "CD45": "PerCP-Cy5-5-A",
            "CD49f": "PE-Cy7-A",
            "CXCR4_1D9": "APC-A",
            "Ki67": "BV421-A",
        }
    )
    #: spillover S among FLUORESCENCE_CHANNELS (rows = source dye): observed = true @ S
    spillover: tuple[tuple[float, ...], ...] = field(default_factory=_default_spillover)
    #: additive electronic noise on fluorescence detectors (sd, linear units)
    noise_sd: float = 30.0
    channel_range: float = 262144.0
    event_rate_per_s: float = 1000.0
    timestep: float = 0.01
    cytometer: str = "cytogate simulator"
    study_start: str = "2024-01-08"
    #: days between consecutive patients' first samples
    patient_stagger_days: int = 7
    acquisition: dict[str, tuple[int, str]] = field(default_factory=_default_acquisition)


@dataclass(frozen=True)
class ChannelSpec:
    """One parameter of a simulated file: $PnN, $PnS (may be empty) and $PnR."""

    pnn: str
    pns: str
    pnr: float


def channel_specs(config: StudyConfig, tube: str) -> tuple[ChannelSpec, ...]:
    """$PnN/$PnS/$PnR of a tube (stains follow the config's panel)."""
    if tube not in TUBES:
        raise SimulationError(f"unknown tube {tube!r} (one of {TUBES})")
    names = STAINED_NAMES if tube == "stained" else ISOTYPE_NAMES
    by_channel = {ch: m for m, ch in config.instrument.panel.items()}
    rng_ = config.instrument.channel_range
    specs = []
    for ch in CHANNELS:
        if ch in by_channel:
            pns = f"{names[by_channel[ch]]} {FLUOROCHROMES[ch]}"
        else:
            pns = ""
        specs.append(ChannelSpec(ch, pns, SCATTER_RANGE if ch[:3] in ("FSC", "SSC") else rng_))
    return tuple(specs)


def spillover_frame(config: StudyConfig) -> pd.DataFrame:
    """The spillover matrix as a DataFrame (index = source dye channel, columns = detector)."""
    return pd.DataFrame(
        np.asarray(config.instrument.spillover, dtype=np.float64),
        index=list(FLUORESCENCE_CHANNELS),
        columns=list(FLUORESCENCE_CHANNELS),
    )


def skinny_matmul(x: np.ndarray, small: np.ndarray) -> np.ndarray:
    """``x @ small`` for a tall ``x`` (n × k, k ≤ ~10) without BLAS.

    Multi-threaded BLAS on an n × 6 @ 6 × 6 product spends more time starting and syncing
    threads than computing (twice as slow as this on a shared 2-core box, and erratic); k² column
    updates are fast, predictable and give identical results on every machine.
    """
    xt = np.ascontiguousarray(x.T)  # columns contiguous: each update streams through memory
    out = np.zeros((small.shape[1], x.shape[0]))
    for i in range(small.shape[0]):
        for j in range(small.shape[1]):
            if small[i, j] != 0.0:
                out[j] += small[i, j] * xt[i]
    return out.T


def detect(unmixed: np.ndarray, config: StudyConfig, rng: np.random.Generator) -> np.ndarray:
    """Detector side of the fluorescence columns: spillover, additive noise, saturation."""
    inst = config.instrument
    observed = skinny_matmul(unmixed, spillover_frame(config).to_numpy())
    observed += inst.noise_sd * rng.standard_normal(observed.shape)
    np.minimum(observed, inst.channel_range - 1.0, out=observed)
    return observed
