"""A seeded, simulated AML mobilisation study with ground truth (DESIGN §5, §8).

Why: gating and quantification can only be checked against data whose answer is known. This
module writes FCS 3.1 files that look like a CD45/SSC blast-gating panel acquired on a Diva-like
instrument, plus per-event population labels and the planted per-patient effects, so tests and
benchmarks can ask "did the pipeline recover what was planted?".

Model, in brief (every number is a field of :class:`StudyConfig`):

* Geometry is defined in the gating template's *scaled space* (scatter / 262144, fluorescence
  logicle T=262144, W=0.5, M=4.5, A=0, both 0..1) and mapped back to linear units, so a cluster
  "at CD45 0.55, SSC 0.10" lands where the template's blast polygon expects it.
* Each event is debris, a doublet, a CD45-negative cell, a lymphocyte, monocyte, granulocyte or
  blast (:data:`LABELS`); the composition is drawn multinomially from the patient's planted values
  so event shares match the truth in expectation.
* Markers are lognormal per cell around a planted median (linear units, before spillover);
  isotype tubes carry background only (CD45 is stained in both tubes: it is the gating marker).
* Observed = true @ S + electronic noise, S the spillover matrix (rows = source dye, the FCS
  convention); S is written as ``$SPILLOVER``, so compensation with the file's own matrix recovers
  the true values up to the noise.
* Planted effects: per patient, measure and timepoint, a multiplier vs baseline = cohort value ×
  lognormal patient scatter (a patient-level term shared over timepoints plus a per-timepoint
  term).

Reproducible: every file draws from its own ``numpy.random.Generator`` seeded by
``(seed, patient, timepoint, tube)``, and dates/times come from the config, never the clock, so
the same config gives byte-identical files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import numpy as np
import pandas as pd

from cytogate.errors import CytogateError
from cytogate.io.fcs_writer import atomic_write_bytes, write_fcs

__all__ = [
    "CHANNELS",
    "DEFAULT_EFFECTS",
    "FLUORESCENCE_CHANNELS",
    "LABELS",
    "LABEL_CODES",
    "MARKERS",
    "ChannelSpec",
    "Cluster",
    "Composition",
    "Effects",
    "Geometry",
    "Instrument",
    "Markers",
    "PatientParams",
    "SimulatedSample",
    "SimulationError",
    "StudyConfig",
    "StudyTruth",
    "cd45_on_channel",
    "hard_config",
    "make_patients",
    "read_labels",
    "simulate_sample",
    "simulate_study",
    "write_benchmark_file",
    "write_sample",
]

# --------------------------------------------------------------------------------------------
# Constants: labels, channels, markers
# --------------------------------------------------------------------------------------------

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
MARKERS: tuple[str, ...] = ("CD114", "CXCR4_12G5", "CD45", "CD49f", "CXCR4_1D9", "Ki67")
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
TUBES: tuple[str, ...] = ("stained", "isotype")
#: Markers with a planted blast MFI (Ki67 is planted as a fraction positive instead).
MFI_MARKERS: tuple[str, ...] = ("CXCR4_12G5", "CXCR4_1D9", "CD114", "CD49f")

#: Cohort multipliers vs baseline (DESIGN §5; the study reports leukocytes ×2.4 and blasts ×3.5
#: after G-CSF, a further ×1.8 and ×2.8 at 6 h, 12G5 falling to 6 h and recovering at 24 h,
#: 1D9 rising within 2 h, CD114/CD49f falling under G-CSF, Ki67 rising slightly).
# fmt: off
DEFAULT_EFFECTS: dict[str, dict[str, float]] = {
    "wbc_per_ul": {"baseline": 1.0, "day3": 2.4, "2h": 3.36, "4h": 3.96, "6h": 4.32, "24h": 3.1},
    "blasts_per_ul": {"baseline": 1.0, "day3": 3.5, "2h": 7.0, "4h": 8.75, "6h": 9.8, "24h": 6.3},
    "mfi_CXCR4_12G5": {"baseline": 1.0, "day3": 0.95, "2h": 0.55, "4h": 0.45, "6h": 0.40,
                       "24h": 0.85},
    "mfi_CXCR4_1D9": {"baseline": 1.0, "day3": 1.1, "2h": 2.6, "4h": 2.5, "6h": 2.3, "24h": 1.4},
    "mfi_CD114": {"baseline": 1.0, "day3": 0.55, "2h": 0.55, "4h": 0.55, "6h": 0.60, "24h": 0.70},
    "mfi_CD49f": {"baseline": 1.0, "day3": 0.70, "2h": 0.70, "4h": 0.70, "6h": 0.72, "24h": 0.80},
    "ki67_fraction": {"baseline": 1.0, "day3": 1.30, "2h": 1.30, "4h": 1.30, "6h": 1.30,
                      "24h": 1.25},
}
# fmt: on

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
SIMULATED_COMMENT = "SIMULATED DATA (cytogate simulate) - not a patient sample"


class SimulationError(CytogateError, ValueError):
    """A simulation config is inconsistent (the message names the field)."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """A population's centre and spread in scaled space.

    FSC-A and SSC-A as a fraction of 262144, CD45 on the template's logicle scale (0..1). SSC is
    drawn lognormal around its median (right-skewed, as real side scatter), the others normal;
    the correlations make clusters tilted ellipses rather than perfect spheres.
    """

    fsc: float
    fsc_sd: float
    ssc: float
    ssc_sd: float
    cd45: float
    cd45_sd: float
    rho_fsc_ssc: float = 0.35
    rho_ssc_cd45: float = -0.15
    rho_fsc_cd45: float = 0.05


def _blast_cluster_defaults() -> dict[str, float]:
    return {"fsc": 0.34, "fsc_sd": 0.035, "ssc_sd": 0.02, "cd45_sd": 0.035}


@dataclass(frozen=True)
class Geometry:
    """Where populations sit in scaled space, and the scatter model.

    Blasts get a per-patient centre: typical patients draw CD45 and SSC uniformly from
    ``blast_cd45_range``/``blast_ssc_range`` (inside the fixed template's CD45dim/SSClow gate);
    atypical patients sit near the monocytes' lower edge (outside it), and "cd45_negative"
    patients (off by default) below the CD45+ gate. Widening the ranges makes harder studies
    without code changes.
    """

    lymphocyte: Cluster = Cluster(0.28, 0.03, 0.075, 0.015, 0.78, 0.03)
    monocyte: Cluster = Cluster(0.42, 0.04, 0.22, 0.03, 0.72, 0.03)
    granulocyte: Cluster = Cluster(0.48, 0.05, 0.45, 0.06, 0.62, 0.035)
    cd45_negative: Cluster = Cluster(0.20, 0.025, 0.05, 0.012, 0.25, 0.04, rho_ssc_cd45=0.0)
    blast_fsc: float = 0.34
    blast_fsc_sd: float = 0.035
    blast_ssc_sd: float = 0.02
    blast_cd45_sd: float = 0.035
    blast_cd45_range: tuple[float, float] = (0.50, 0.58)
    blast_ssc_range: tuple[float, float] = (0.08, 0.12)
    atypical_blast_cd45_range: tuple[float, float] = (0.65, 0.67)
    atypical_blast_ssc_range: tuple[float, float] = (0.16, 0.18)
    cd45_negative_blast_cd45_range: tuple[float, float] = (0.22, 0.30)
    cd45_negative_blast_ssc_range: tuple[float, float] = (0.07, 0.11)
    debris_fsc_range: tuple[float, float] = (0.01, 0.12)
    debris_ssc_max: float = 0.10
    debris_cd45_range: tuple[float, float] = (0.05, 0.65)
    singlet_fsc_h_ratio: float = 0.85
    singlet_fsc_h_cv: float = 0.03
    debris_fsc_h_cv: float = 0.08
    doublet_fsc_h_ratio: float = 0.55
    doublet_fsc_h_cv: float = 0.04
    #: Scatter gain multiplies FSC-A, FSC-H and SSC-A (instrument settings differ between runs);
    #: drawn uniformly once per ``scatter_gain_level``. (1, 1) = off.
    scatter_gain_range: tuple[float, float] = (1.0, 1.0)
    scatter_gain_level: Literal["run", "patient", "file"] = "run"


@dataclass(frozen=True)
class Composition:
    """Event composition of a file; blast share and WBC are per patient and timepoint."""

    debris_fraction: float = 0.08
    doublet_fraction: float = 0.05
    cd45_negative_range: tuple[float, float] = (0.03, 0.06)
    #: lymphocytes, monocytes, granulocytes among non-blast leukocytes (cohort mean)
    non_blast_mix: tuple[float, float, float] = (0.30, 0.08, 0.62)
    #: Dirichlet concentration of the per-patient mix (larger = closer to the cohort mean)
    mix_concentration: float = 60.0
    #: baseline blast share of CD45+ leukocytes, uniform per patient
    blast_share_range: tuple[float, float] = (0.08, 0.30)
    #: blast share(t) = share(0) × B(t) / L(t), capped here (with a warning)
    blast_share_cap: float = 0.9
    #: baseline WBC per µL, log-uniform per patient
    wbc_range: tuple[float, float] = (2000.0, 15000.0)


def _default_population_mfi() -> dict[str, dict[str, float]]:
    # Stained-tube medians (linear, before spillover) of non-blast populations; markers not
    # listed are at the population's background. Lymphocytes CXCR4-high, granulocytes
    # CD114-high, monocytes in between.
    return {
        "lymphocyte": {"CXCR4_12G5": 6000.0, "CXCR4_1D9": 2500.0, "CD49f": 900.0},
        "monocyte": {"CXCR4_12G5": 3000.0, "CXCR4_1D9": 1200.0, "CD114": 2200.0, "CD49f": 1600.0},
        "granulocyte": {"CXCR4_12G5": 2200.0, "CXCR4_1D9": 900.0, "CD114": 6000.0, "CD49f": 1200.0},
        "cd45_negative": {"CD49f": 600.0},
        "debris": {},
    }


@dataclass(frozen=True)
class Markers:
    """Marker intensities (linear units, before spillover)."""

    #: stained-tube blast median at baseline (cohort), per marker
    blast_mfi: dict[str, float] = field(
        default_factory=lambda: {
            "CXCR4_12G5": 4000.0,
            "CXCR4_1D9": 1500.0,
            "CD114": 2500.0,
            "CD49f": 3000.0,
        }
    )
    #: patient-to-patient lognormal variation of the baseline blast medians
    blast_patient_sdlog: float = 0.25
    #: cell-to-cell lognormal spread of a stained marker
    cell_sdlog: float = 0.5
    population_mfi: dict[str, dict[str, float]] = field(default_factory=_default_population_mfi)
    ki67_positive_mfi: float = 6000.0
    #: baseline fraction of Ki67+ blasts, uniform per patient
    ki67_fraction_range: tuple[float, float] = (0.10, 0.25)
    population_ki67_fraction: dict[str, float] = field(
        default_factory=lambda: {
            "lymphocyte": 0.03,
            "monocyte": 0.02,
            "granulocyte": 0.01,
            "cd45_negative": 0.25,
            "debris": 0.0,
        }
    )
    #: isotype/background median per channel, uniform per patient and channel
    isotype_range: tuple[float, float] = (100.0, 250.0)
    isotype_sdlog: float = 0.6
    #: small drift of the background between timepoints (lognormal, per channel)
    isotype_timepoint_sdlog: float = 0.03
    #: background multiplier per population (granulocytes are more autofluorescent)
    autofluorescence: dict[str, float] = field(
        default_factory=lambda: {
            "debris": 0.5,
            "cd45_negative": 0.7,
            "lymphocyte": 0.8,
            "monocyte": 1.3,
            "granulocyte": 1.5,
            "blast": 1.0,
        }
    )


@dataclass(frozen=True)
class Effects:
    """Planted effects: cohort multiplier vs baseline per measure and timepoint.

    A patient's multiplier is ``cohort × exp(u + e_t)`` with ``u ~ N(0, patient_sdlog)`` shared
    over the patient's timepoints (some patients mobilise more) and ``e_t ~ N(0,
    timepoint_sdlog)``; baseline is exactly 1.
    """

    multipliers: dict[str, dict[str, float]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_EFFECTS.items()}
    )
    patient_sdlog: float = 0.10
    timepoint_sdlog: float = 0.06


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
class StudyConfig:
    """Every knob of the simulated study; the defaults reproduce DESIGN §5.

    Frozen so a config can be passed around and recorded without being changed underneath;
    derive variants with :func:`dataclasses.replace`. Dict fields are not deep-frozen: treat them
    as read-only.
    """

    n_patients: int = 6
    events_per_file: int = 6000
    seed: int = 42
    timepoints: tuple[str, ...] = ("baseline", "day3", "2h", "4h", "6h", "24h")
    #: patients whose blasts sit near the monocytes (outside the fixed template's blast gate)
    atypical_patients: int = 1
    #: patients whose blasts are CD45-negative (below the CD45+ gate); off by default
    cd45_negative_blast_patients: int = 0
    cohort: str = "simulated"
    patient_prefix: str = "P"
    geometry: Geometry = Geometry()
    composition: Composition = Composition()
    markers: Markers = Markers()
    effects: Effects = Effects()
    instrument: Instrument = Instrument()

    def __post_init__(self) -> None:
        if self.n_patients < 1:
            raise SimulationError(f"n_patients must be >= 1, got {self.n_patients}")
        if self.events_per_file < 1:
            raise SimulationError(f"events_per_file must be >= 1, got {self.events_per_file}")
        if not self.timepoints or len(set(self.timepoints)) != len(self.timepoints):
            raise SimulationError(f"timepoints must be non-empty and unique: {self.timepoints}")
        special = self.atypical_patients + self.cd45_negative_blast_patients
        if min(self.atypical_patients, self.cd45_negative_blast_patients) < 0 or (
            special > self.n_patients
        ):
            raise SimulationError(
                f"atypical_patients ({self.atypical_patients}) + cd45_negative_blast_patients "
                f"({self.cd45_negative_blast_patients}) must be between 0 and n_patients "
                f"({self.n_patients})"
            )
        for measure in DEFAULT_EFFECTS:
            table = self.effects.multipliers.get(measure)
            if table is None:
                raise SimulationError(f"effects.multipliers has no entry for {measure!r}")
            missing = [t for t in self.timepoints if t not in table]
            if missing:
                raise SimulationError(
                    f"effects.multipliers[{measure!r}] has no multiplier for timepoints {missing}"
                )
            if table[self.timepoints[0]] != 1.0:
                raise SimulationError(
                    f"effects.multipliers[{measure!r}][{self.timepoints[0]!r}] must be 1: the "
                    "first timepoint is the baseline"
                )
            if any(not v > 0 for v in table.values()):
                raise SimulationError(f"effects.multipliers[{measure!r}] must be positive")
        panel = self.instrument.panel
        if sorted(panel) != sorted(MARKERS) or sorted(panel.values()) != sorted(
            FLUORESCENCE_CHANNELS
        ):
            raise SimulationError(
                f"instrument.panel must map each of {MARKERS} to a distinct channel of "
                f"{FLUORESCENCE_CHANNELS}, got {panel}"
            )
        s = np.asarray(self.instrument.spillover, dtype=float)
        if s.shape != (6, 6) or not np.allclose(np.diag(s), 1.0):
            raise SimulationError("instrument.spillover must be 6x6 with a unit diagonal")
        c = self.composition
        if c.debris_fraction + c.doublet_fraction + c.cd45_negative_range[1] >= 1:
            raise SimulationError("composition: debris + doublets + CD45-negative must be < 1")
        if not math.isclose(sum(c.non_blast_mix), 1.0, abs_tol=1e-9):
            raise SimulationError("composition.non_blast_mix must sum to 1")
        if self.geometry.scatter_gain_level not in ("run", "patient", "file"):
            raise SimulationError("geometry.scatter_gain_level must be 'run', 'patient' or 'file'")
        try:
            date.fromisoformat(self.instrument.study_start)
        except ValueError as exc:
            raise SimulationError(f"instrument.study_start: {exc}") from exc

    # ---- (de)serialisation: config.json records the exact model of a run -------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (nested configs as dicts)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyConfig:
        """Rebuild a config from :meth:`to_dict` output (e.g. a run's ``config.json``).

        Missing fields take their defaults; unknown fields raise :class:`SimulationError`, so a
        typo is not silently ignored.
        """
        return _from_dict(cls, data, "config")

    def patient_ids(self) -> list[str]:
        """Patient identifiers, zero-padded so they sort: P01…P06 (P001… from 100 patients)."""
        width = max(2, len(str(self.n_patients)))
        return [f"{self.patient_prefix}{i + 1:0{width}d}" for i in range(self.n_patients)]


#: The ``cytogate simulate --hard`` preset: what a fixed blast gate cannot follow. Blasts
#: anywhere from just above the CD45-negative cells (CD45 0.25) to just below the monocytes
#: (CD45 0.72, SSC 0.22), blast share 0.5-90 % of leukocytes, scatter gain 0.7-1.4 per patient,
#: and one patient whose blasts are CD45-negative (flagged, not gated, by a CD45/SSC template).
HARD_BLAST_CD45: tuple[float, float] = (0.38, 0.66)
HARD_BLAST_SSC: tuple[float, float] = (0.05, 0.20)
HARD_BLAST_SHARE: tuple[float, float] = (0.005, 0.90)
HARD_SCATTER_GAIN: tuple[float, float] = (0.7, 1.4)


def hard_config(
    n_patients: int = 6,
    events_per_file: int = 6000,
    seed: int = 42,
    *,
    blast_cd45: tuple[float, float] = HARD_BLAST_CD45,
    blast_ssc: tuple[float, float] = HARD_BLAST_SSC,
    blast_share: tuple[float, float] = HARD_BLAST_SHARE,
    scatter_gain: tuple[float, float] = HARD_SCATTER_GAIN,
    scatter_gain_level: Literal["run", "patient", "file"] = "patient",
    cd45_negative_blast_patients: int | None = None,
    atypical_patients: int = 0,
    cd45_channel: str | None = None,
) -> StudyConfig:
    """A study under hard conditions (defaults: the ``--hard`` preset); ground truth as usual.

    ``cd45_negative_blast_patients`` defaults to 1 when there are at least 2 patients.
    ``cd45_channel`` puts CD45 on another detector (see :func:`cd45_on_channel`).
    """
    base = StudyConfig()
    config = StudyConfig(
        n_patients=n_patients,
        events_per_file=events_per_file,
        seed=seed,
        atypical_patients=atypical_patients,
        cd45_negative_blast_patients=(
            min(1, n_patients - 1)
            if cd45_negative_blast_patients is None
            else cd45_negative_blast_patients
        ),
        geometry=dataclasses.replace(
            base.geometry,
            blast_cd45_range=blast_cd45,
            blast_ssc_range=blast_ssc,
            scatter_gain_range=scatter_gain,
            scatter_gain_level=scatter_gain_level,
        ),
        composition=dataclasses.replace(base.composition, blast_share_range=blast_share),
    )
    return cd45_on_channel(config, cd45_channel) if cd45_channel else config


def cd45_on_channel(config: StudyConfig, channel: str) -> StudyConfig:
    """``config`` with CD45 measured on ``channel`` (the marker there moves to CD45's old one)."""
    panel = dict(config.instrument.panel)
    if channel not in FLUORESCENCE_CHANNELS:
        raise SimulationError(
            f"cd45 channel {channel!r} is not one of {', '.join(FLUORESCENCE_CHANNELS)}"
        )
    old = panel["CD45"]
    other = next(m for m, ch in panel.items() if ch == channel)
    panel[other], panel["CD45"] = old, channel
    return dataclasses.replace(
        config, instrument=dataclasses.replace(config.instrument, panel=panel)
    )


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _from_dict(tp, value, where)
    origin, args = get_origin(tp), get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        if len(args) != len(value):
            raise SimulationError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value, strict=True))
    if origin is dict:
        _, vt = args
        return {str(k): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        return float(value)
    if tp is int:
        return int(value)
    return value


def _from_dict(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise SimulationError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SimulationError(f"{where}: unknown fields {unknown}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# Patients: planted per-patient values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientParams:
    """One simulated patient: baseline values and per-timepoint multipliers (the truth).

    ``multipliers[measure][timepoint]`` are the patient's planted multipliers vs baseline (before
    the blast-share cap); the accessors below give the planted absolute values per timepoint.
    """

    patient: str
    index: int
    kind: Literal["typical", "atypical", "cd45_negative"]
    wbc_baseline: float
    blast_share_baseline: float
    blast_fsc: float
    blast_ssc: float
    blast_cd45: float
    non_blast_mix: tuple[float, float, float]
    cd45_negative_fraction: float
    ki67_fraction_baseline: float
    blast_mfi_baseline: dict[str, float]
    isotype_background: dict[str, float]  # per channel ($PnN)
    isotype_drift: dict[str, dict[str, float]]  # timepoint -> channel -> factor
    multipliers: dict[str, dict[str, float]]
    scatter_gain: float
    blast_share_cap: float
    panel: dict[str, str]  # marker -> channel, from the config

    def wbc_per_ul(self, timepoint: str) -> float:
        """Planted WBC/µL, rounded to whole cells as a blood count reports it."""
        return float(round(self.wbc_baseline * self.multipliers["wbc_per_ul"][timepoint]))

    def blast_share_uncapped(self, timepoint: str) -> float:
        m = self.multipliers
        return (
            self.blast_share_baseline * m["blasts_per_ul"][timepoint] / m["wbc_per_ul"][timepoint]
        )

    def blast_share(self, timepoint: str) -> float:
        """Planted blast share of CD45+ leukocytes = share(0) × B(t) / L(t), capped."""
        return min(self.blast_share_cap, self.blast_share_uncapped(timepoint))

    def blasts_per_ul(self, timepoint: str) -> float:
        """Planted blasts/µL = WBC/µL × blast share (the dual-platform definition)."""
        return self.wbc_per_ul(timepoint) * self.blast_share(timepoint)

    def ki67_fraction(self, timepoint: str) -> float:
        """Planted fraction of Ki67+ blasts (capped at 1)."""
        return min(1.0, self.ki67_fraction_baseline * self.multipliers["ki67_fraction"][timepoint])

    def blast_mfi(self, marker: str, timepoint: str, tube: str) -> float:
        """Planted blast median (linear, before spillover) of ``marker`` in ``tube``.

        The median of the per-cell lognormal, i.e. also its geometric mean. Isotype tube (and
        markers without a planted blast level): the channel's background, blasts'
        autofluorescence factor being 1. Ki67 in the stained tube: the median of Ki67+ blasts is
        ``Markers.ki67_positive_mfi``; use :meth:`ki67_fraction` for the planted effect.
        """
        if marker not in MARKERS:
            raise SimulationError(f"unknown marker {marker!r} (one of {MARKERS})")
        if marker == "CD45":  # stained in both tubes; the centre is defined in scaled space
            return float(_logicle_inverse(np.array([self.blast_cd45]))[0])
        if tube == "stained" and marker in self.blast_mfi_baseline:
            return self.blast_mfi_baseline[marker] * self.multipliers[f"mfi_{marker}"][timepoint]
        if tube not in TUBES:
            raise SimulationError(f"unknown tube {tube!r} (one of {TUBES})")
        channel = self.panel[marker]
        return self.isotype_background[channel] * self.isotype_drift[timepoint][channel]


def _logicle_inverse(scaled: np.ndarray) -> np.ndarray:
    """Template logicle scale (0..1) -> linear units."""
    from flowutils import transforms as fu

    return fu.logicle_inverse(np.asarray(scaled, dtype=np.float64), None, **LOGICLE_PARAMS)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(lo + (hi - lo) * rng.random())


def make_patients(config: StudyConfig) -> list[PatientParams]:
    """Draw every patient's planted parameters from the config's seed.

    Each patient draws from its own stream ``(seed, 0, index)``, so adding patients leaves the
    others' draws unchanged; which patients are atypical (or CD45-negative) is drawn from a
    study-level stream ``(seed, 2)`` and does depend on the number of patients.
    """
    geo, comp, mk, eff = config.geometry, config.composition, config.markers, config.effects
    study_rng = np.random.default_rng([config.seed, 2])
    order = study_rng.permutation(config.n_patients)
    kinds: list[Literal["typical", "atypical", "cd45_negative"]] = ["typical"] * config.n_patients
    for i in order[: config.atypical_patients]:
        kinds[int(i)] = "atypical"
    for i in order[
        config.atypical_patients : config.atypical_patients + config.cd45_negative_blast_patients
    ]:
        kinds[int(i)] = "cd45_negative"
    run_gain = _uniform(study_rng, geo.scatter_gain_range)

    patients = []
    for index, pid in enumerate(config.patient_ids()):
        rng = np.random.default_rng([config.seed, 0, index])
        kind = kinds[index]
        cd45_range, ssc_range = {
            "typical": (geo.blast_cd45_range, geo.blast_ssc_range),
            "atypical": (geo.atypical_blast_cd45_range, geo.atypical_blast_ssc_range),
            "cd45_negative": (
                geo.cd45_negative_blast_cd45_range,
                geo.cd45_negative_blast_ssc_range,
            ),
        }[kind]
        blast_cd45 = _uniform(rng, cd45_range)
        blast_ssc = _uniform(rng, ssc_range)
        lo, hi = comp.wbc_range
        wbc0 = float(np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * rng.random()))
        share0 = _uniform(rng, comp.blast_share_range)
        mix = rng.dirichlet(np.asarray(comp.non_blast_mix) * comp.mix_concentration)
        cd45neg = _uniform(rng, comp.cd45_negative_range)
        ki67_0 = _uniform(rng, mk.ki67_fraction_range)
        blast_mfi = {
            m: float(v * np.exp(mk.blast_patient_sdlog * rng.standard_normal()))
            for m, v in mk.blast_mfi.items()
        }
        background = {c: _uniform(rng, mk.isotype_range) for c in FLUORESCENCE_CHANNELS}
        drift = {
            t: {
                c: (
                    1.0
                    if k == 0
                    else float(np.exp(mk.isotype_timepoint_sdlog * rng.standard_normal()))
                )
                for c in FLUORESCENCE_CHANNELS
            }
            for k, t in enumerate(config.timepoints)
        }
        multipliers: dict[str, dict[str, float]] = {}
        for measure in DEFAULT_EFFECTS:
            cohort = eff.multipliers[measure]
            u = eff.patient_sdlog * rng.standard_normal()
            e = eff.timepoint_sdlog * rng.standard_normal(len(config.timepoints))
            multipliers[measure] = {
                t: (1.0 if k == 0 else float(cohort[t] * np.exp(u + e[k])))
                for k, t in enumerate(config.timepoints)
            }
        if geo.scatter_gain_level == "patient":
            gain = _uniform(rng, geo.scatter_gain_range)
        else:
            gain = run_gain  # "file" gains are drawn per file in simulate_sample
        patient = PatientParams(
            patient=pid,
            index=index,
            kind=kind,
            wbc_baseline=wbc0,
            blast_share_baseline=share0,
            blast_fsc=geo.blast_fsc,
            blast_ssc=blast_ssc,
            blast_cd45=blast_cd45,
            non_blast_mix=(float(mix[0]), float(mix[1]), float(mix[2])),
            cd45_negative_fraction=cd45neg,
            ki67_fraction_baseline=ki67_0,
            blast_mfi_baseline=blast_mfi,
            isotype_background=background,
            isotype_drift=drift,
            multipliers=multipliers,
            scatter_gain=gain,
            blast_share_cap=comp.blast_share_cap,
            panel=dict(config.instrument.panel),
        )
        for t in config.timepoints:
            uncapped = patient.blast_share_uncapped(t)
            if uncapped > comp.blast_share_cap:
                warnings.warn(
                    f"{pid} {t}: planted blast share {uncapped:.3f} capped at "
                    f"{comp.blast_share_cap}; blasts/µL fold change is lower than planted",
                    RuntimeWarning,
                    stacklevel=2,
                )
        patients.append(patient)
    return patients


# --------------------------------------------------------------------------------------------
# Event generation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelSpec:
    """One parameter of a simulated file: $PnN, $PnS (may be empty) and $PnR."""

    pnn: str
    pns: str
    pnr: float


@dataclass(frozen=True)
class SimulatedSample:
    """One simulated file's content and truth.

    ``events`` are what the file holds (float32, uncompensated linear: after spillover and
    electronic noise); ``unmixed`` are the true per-cell values before spillover and noise
    (float64), so ``compensate(events) - unmixed`` is the noise alone.
    """

    patient: str
    timepoint: str
    tube: str
    events: np.ndarray
    unmixed: np.ndarray
    labels: np.ndarray
    channels: tuple[ChannelSpec, ...]
    spillover: pd.DataFrame
    duration_s: float

    @property
    def pnn(self) -> list[str]:
        return [c.pnn for c in self.channels]

    @property
    def pns(self) -> list[str]:
        return [c.pns for c in self.channels]


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


def _skinny_matmul(x: np.ndarray, small: np.ndarray) -> np.ndarray:
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


def _cluster_draw(
    rng: np.random.Generator, cluster: Cluster, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FSC, SSC, CD45) in scaled space for ``m`` events of a cluster."""
    corr = np.array(
        [
            [1.0, cluster.rho_fsc_ssc, cluster.rho_fsc_cd45],
            [cluster.rho_fsc_ssc, 1.0, cluster.rho_ssc_cd45],
            [cluster.rho_fsc_cd45, cluster.rho_ssc_cd45, 1.0],
        ]
    )
    z = _skinny_matmul(rng.standard_normal((m, 3)), np.linalg.cholesky(corr).T)
    fsc = cluster.fsc + cluster.fsc_sd * z[:, 0]
    ssc = cluster.ssc * np.exp((cluster.ssc_sd / cluster.ssc) * z[:, 1])  # right-skewed
    cd45 = cluster.cd45 + cluster.cd45_sd * z[:, 2]
    return fsc, ssc, cd45


def _population_clusters(config: StudyConfig, patient: PatientParams) -> dict[int, Cluster]:
    geo = config.geometry
    blast = Cluster(
        patient.blast_fsc,
        geo.blast_fsc_sd,
        patient.blast_ssc,
        geo.blast_ssc_sd,
        patient.blast_cd45,
        geo.blast_cd45_sd,
    )
    return {
        2: geo.cd45_negative,
        3: geo.lymphocyte,
        4: geo.monocyte,
        5: geo.granulocyte,
        6: blast,
    }


def _singlets(
    config: StudyConfig,
    patient: PatientParams,
    timepoint: str,
    tube: str,
    counts: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Singlet events in label blocks: (labels, FSC-A scaled, SSC-A scaled, true fluorescence).

    ``counts[code]`` events of each label code except doublets (code 1 must be 0). Fluorescence
    columns follow FLUORESCENCE_CHANNELS, in linear units before spillover.
    """
    geo, mk = config.geometry, config.markers
    n = int(counts.sum())
    labels = np.repeat(np.arange(len(LABELS), dtype=np.uint8), counts)
    fsc = np.empty(n)
    ssc = np.empty(n)
    cd45 = np.empty(n)
    fluor = np.empty((n, len(FLUORESCENCE_CHANNELS)))
    clusters = _population_clusters(config, patient)
    by_channel = {ch: m for m, ch in config.instrument.panel.items()}
    starts = np.concatenate([[0], np.cumsum(counts)])
    for code, name in LABELS.items():
        lo, m = int(starts[code]), int(counts[code])
        if m == 0:
            continue
        sl = slice(lo, lo + m)
        if code == 0:  # debris: small, skewed toward the axes, CD45 smeared low-mid
            a, b = geo.debris_fsc_range
            fsc[sl] = a + (b - a) * rng.beta(1.3, 2.5, m)
            ssc[sl] = geo.debris_ssc_max * rng.beta(1.0, 3.0, m)
            a, b = geo.debris_cd45_range
            cd45[sl] = a + (b - a) * rng.beta(2.0, 2.0, m)
        elif code == 1:
            raise AssertionError("doublets are built from singlets")
        else:
            fsc[sl], ssc[sl], cd45[sl] = _cluster_draw(rng, clusters[code], m)
        af = mk.autofluorescence.get(name, 1.0)
        for j, ch in enumerate(FLUORESCENCE_CHANNELS):
            marker = by_channel[ch]
            if marker == "CD45":
                continue  # filled from the scaled CD45 below
            background = patient.isotype_background[ch] * patient.isotype_drift[timepoint][ch] * af
            values = background * np.exp(mk.isotype_sdlog * rng.standard_normal(m))
            if tube == "stained":
                if marker == "Ki67":
                    frac = (
                        patient.ki67_fraction(timepoint)
                        if name == "blast"
                        else mk.population_ki67_fraction.get(name, 0.0)
                    )
                    positive = rng.random(m) < frac
                    pos = mk.ki67_positive_mfi * np.exp(mk.cell_sdlog * rng.standard_normal(m))
                    values = np.where(positive, pos, values)
                else:
                    if name == "blast":
                        median: float | None = patient.blast_mfi(marker, timepoint, "stained")
                    else:
                        median = mk.population_mfi.get(name, {}).get(marker)
                    if median is not None:
                        values = median * np.exp(mk.cell_sdlog * rng.standard_normal(m))
            fluor[sl, j] = values
    fluor[:, FLUORESCENCE_CHANNELS.index(config.instrument.panel["CD45"])] = _logicle_inverse(cd45)
    return labels, fsc, ssc, fluor


def _probabilities(config: StudyConfig, patient: PatientParams, timepoint: str) -> np.ndarray:
    """Expected share of each label among all events of a file."""
    comp = config.composition
    share = patient.blast_share(timepoint)
    leuk = 1.0 - comp.debris_fraction - comp.doublet_fraction - patient.cd45_negative_fraction
    lym, mono, gran = patient.non_blast_mix
    p = np.array(
        [
            comp.debris_fraction,
            comp.doublet_fraction,
            patient.cd45_negative_fraction,
            leuk * (1 - share) * lym,
            leuk * (1 - share) * mono,
            leuk * (1 - share) * gran,
            leuk * share,
        ]
    )
    return p / p.sum()


def simulate_sample(
    config: StudyConfig,
    patient: PatientParams,
    timepoint: str,
    tube: str,
    n_events: int,
    rng: np.random.Generator,
) -> SimulatedSample:
    """Simulate one file's events (vectorised; no Python loop over events).

    Composition: multinomial over :data:`LABELS` with the patient's planted shares at this
    timepoint, so blast events / CD45+ events has expectation close to the planted blast share.
    Doublets sum two nucleated singlets (scatter and fluorescence add) and have FSC-H ≈ 0.55 ×
    FSC-A, singlets ≈ 0.85 × FSC-A. Events are shuffled and given an increasing Time.
    """
    if timepoint not in config.timepoints:
        raise SimulationError(f"unknown timepoint {timepoint!r} (one of {config.timepoints})")
    if tube not in TUBES:
        raise SimulationError(f"unknown tube {tube!r} (one of {TUBES})")
    if n_events < 1:
        raise SimulationError(f"n_events must be >= 1, got {n_events}")
    geo, inst = config.geometry, config.instrument
    p = _probabilities(config, patient, timepoint)
    counts = rng.multinomial(n_events, p)
    n_doublets = int(counts[1])

    singlet_counts = counts.copy()
    singlet_counts[1] = 0
    labels, fsc, ssc, fluor = _singlets(config, patient, timepoint, tube, singlet_counts, rng)
    fsc_h = (
        fsc * geo.singlet_fsc_h_ratio * (1 + geo.singlet_fsc_h_cv * rng.standard_normal(fsc.size))
    )
    debris = labels == 0
    fsc_h[debris] = (
        fsc[debris]
        * geo.singlet_fsc_h_ratio
        * (1 + geo.debris_fsc_h_cv * rng.standard_normal(int(debris.sum())))
    )

    if n_doublets:
        nucleated = p.copy()
        nucleated[:2] = 0
        pair_counts = rng.multinomial(2 * n_doublets, nucleated / nucleated.sum())
        _, d_fsc, d_ssc, d_fluor = _singlets(config, patient, timepoint, tube, pair_counts, rng)
        order = rng.permutation(2 * n_doublets)
        d_fsc = d_fsc[order].reshape(n_doublets, 2).sum(axis=1)
        d_ssc = d_ssc[order].reshape(n_doublets, 2).sum(axis=1)
        d_fluor = d_fluor[order].reshape(n_doublets, 2, -1).sum(axis=1)
        d_fsc_h = (
            d_fsc
            * geo.doublet_fsc_h_ratio
            * (1 + geo.doublet_fsc_h_cv * rng.standard_normal(n_doublets))
        )
        labels = np.concatenate([labels, np.full(n_doublets, 1, dtype=np.uint8)])
        fsc = np.concatenate([fsc, d_fsc])
        fsc_h = np.concatenate([fsc_h, d_fsc_h])
        ssc = np.concatenate([ssc, d_ssc])
        fluor = np.concatenate([fluor, d_fluor])

    gain = patient.scatter_gain
    if geo.scatter_gain_level == "file":
        gain = _uniform(rng, geo.scatter_gain_range)
    top = SCATTER_RANGE - 1.0  # detectors saturate at the top channel
    block = np.empty((n_events, len(CHANNELS)))
    block[:, 0] = fsc
    block[:, 1] = fsc_h
    block[:, 2] = ssc
    np.clip(block[:, 0:3] * (gain * SCATTER_RANGE), 0.0, top, out=block[:, 0:3])
    block[:, 3:9] = fluor

    # Acquisition order: one shuffle of the label blocks (a single gather: the costliest step at
    # 10^6 events), then a Poisson process gives increasing Time in $TIMESTEP units.
    order = rng.permutation(n_events)
    unmixed = block[order]
    del block, fluor  # bound peak memory for 10^6-event files
    seconds = np.cumsum(rng.exponential(1.0 / inst.event_rate_per_s, n_events))
    unmixed[:, 9] = seconds / inst.timestep

    # Detector side: spillover, then additive electronic noise, saturating at the range.
    spill = spillover_frame(config)
    observed = _skinny_matmul(unmixed[:, 3:9], spill.to_numpy())
    observed += inst.noise_sd * rng.standard_normal(observed.shape)
    np.minimum(observed, inst.channel_range - 1.0, out=observed)
    events = unmixed.astype(np.float32)
    events[:, 3:9] = observed
    return SimulatedSample(
        patient=patient.patient,
        timepoint=timepoint,
        tube=tube,
        events=events,
        unmixed=unmixed,
        labels=labels[order],
        channels=channel_specs(config, tube),
        spillover=spill,
        duration_s=float(seconds[-1]) if n_events else 0.0,
    )


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _acquisition_start(config: StudyConfig, patient: PatientParams, timepoint: str) -> datetime:
    inst = config.instrument
    day, clock = inst.acquisition.get(timepoint, (config.timepoints.index(timepoint), "09:00:00"))
    start = date.fromisoformat(inst.study_start) + timedelta(
        days=patient.index * inst.patient_stagger_days + int(day)
    )
    hh, mm, ss = (int(x) for x in clock.split(":"))
    return datetime(start.year, start.month, start.day, hh, mm, ss)


def file_name(patient: str, timepoint: str, tube: str) -> str:
    """``<patient>_<timepoint>_<tube>.fcs``, e.g. ``P01_baseline_stained.fcs``."""
    return f"{patient}_{timepoint}_{tube}.fcs"


def sample_keywords(
    config: StudyConfig, patient: PatientParams, sample: SimulatedSample, fil: str
) -> dict[str, str]:
    """FCS keywords of a simulated file: it says it is simulated, and which sample it is."""
    start = _acquisition_start(config, patient, sample.timepoint)
    end = start + timedelta(seconds=math.ceil(sample.duration_s))
    return {
        "$CYT": config.instrument.cytometer,
        "$COM": SIMULATED_COMMENT,
        "$FIL": fil,
        "$DATE": f"{start.day:02d}-{_MONTHS[start.month - 1]}-{start.year}",
        "$BTIM": start.strftime("%H:%M:%S"),
        "$ETIM": end.strftime("%H:%M:%S"),
        "$SRC": f"{sample.patient} peripheral blood (simulated)",
        "$TIMESTEP": repr(config.instrument.timestep),
        "CYTOGATE_SIMULATED": "TRUE",
        "CYTOGATE_SEED": str(config.seed),
        "CYTOGATE_PATIENT": sample.patient,
        "CYTOGATE_TIMEPOINT": sample.timepoint,
        "CYTOGATE_TUBE": sample.tube,
        "CYTOGATE_COHORT": config.cohort,
    }


def write_sample(
    path: str | os.PathLike[str],
    sample: SimulatedSample,
    config: StudyConfig,
    patient: PatientParams,
) -> Path:
    """Write a simulated sample as FCS 3.1 with its spillover and simulated-data keywords."""
    path = Path(path)
    return write_fcs(
        path,
        sample.events,
        pnn=sample.pnn,
        pns=sample.pns,
        pnr=[c.pnr for c in sample.channels],
        keywords=sample_keywords(config, patient, sample, path.name),
        spillover=sample.spillover,
    )


def _file_rng(config: StudyConfig, patient: int, timepoint: int, tube: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, 1, patient, timepoint, tube])


def write_benchmark_file(
    path: str | os.PathLike[str],
    n_events: int = 1_000_000,
    config: StudyConfig | None = None,
    patient: int = 0,
    timepoint: str | None = None,
    tube: str = "stained",
) -> Path:
    """Write one (large) simulated file, e.g. 1,000,000 stained events for benchmarks.

    Same model and keywords as :func:`simulate_study`, no ground truth files (use
    :func:`simulate_sample` for that).
    """
    config = config or StudyConfig()
    timepoint = timepoint or config.timepoints[0]
    patients = make_patients(
        dataclasses.replace(config, n_patients=max(config.n_patients, patient + 1))
    )
    params = patients[patient]
    rng = _file_rng(config, patient, config.timepoints.index(timepoint), TUBES.index(tube))
    sample = simulate_sample(config, params, timepoint, tube, n_events, rng)
    return write_sample(path, sample, config, params)


def _atomic_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, [text.encode("utf-8")])


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """A compressed .npz whose bytes depend only on the arrays (fixed zip timestamps).

    ``numpy.savez_compressed`` stamps the current time into the zip, which would make two
    identical runs differ.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def read_labels(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read ``ground_truth/labels.npz``: file name -> uint8 label per event (see LABELS)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


@dataclass(frozen=True)
class StudyTruth:
    """What :func:`simulate_study` wrote and planted.

    ``manifest``: one row per file; ``planted``: long table (patient, timepoint, measure, value,
    multiplier_vs_baseline, cohort_multiplier); ``patient_table``: one row per patient;
    ``labels``: file name -> per-event labels.
    """

    outdir: Path
    config: StudyConfig
    patients: tuple[PatientParams, ...]
    files: tuple[Path, ...]
    manifest: pd.DataFrame
    planted: pd.DataFrame
    patient_table: pd.DataFrame
    labels: dict[str, np.ndarray]


def planted_table(config: StudyConfig, patients: list[PatientParams]) -> pd.DataFrame:
    """The planted truth per patient × timepoint × measure, absolute and vs baseline.

    Measures: ``wbc_per_ul``, ``blast_share`` (of CD45+ leukocytes), ``blasts_per_ul``,
    ``ki67_fraction`` (Ki67+ blasts), ``blast_mfi_stained_<M>`` / ``blast_mfi_isotype_<M>``
    (medians, linear, before spillover) and ``blast_rmfi_<M>`` (their ratio) for M in
    CXCR4_12G5, CXCR4_1D9, CD114, CD49f. ``multiplier_vs_baseline`` is the realised planted
    ratio (after rounding WBC and capping blast share); ``cohort_multiplier`` is the config's
    cohort value it scatters around.
    """
    eff = config.effects.multipliers
    base_t = config.timepoints[0]
    rows = []
    for pt in patients:

        def values(t: str, pt: PatientParams = pt) -> dict[str, float]:
            out = {
                "wbc_per_ul": pt.wbc_per_ul(t),
                "blast_share": pt.blast_share(t),
                "blasts_per_ul": pt.blasts_per_ul(t),
                "ki67_fraction": pt.ki67_fraction(t),
            }
            for m in MFI_MARKERS:
                s, i = pt.blast_mfi(m, t, "stained"), pt.blast_mfi(m, t, "isotype")
                out[f"blast_mfi_stained_{m}"] = s
                out[f"blast_mfi_isotype_{m}"] = i
                out[f"blast_rmfi_{m}"] = s / i
            return out

        base = values(base_t)
        for t in config.timepoints:
            cohort = {
                "wbc_per_ul": eff["wbc_per_ul"][t],
                "blasts_per_ul": eff["blasts_per_ul"][t],
                "blast_share": eff["blasts_per_ul"][t] / eff["wbc_per_ul"][t],
                "ki67_fraction": eff["ki67_fraction"][t],
            }
            for m in MFI_MARKERS:
                cohort[f"blast_mfi_stained_{m}"] = eff[f"mfi_{m}"][t]
                cohort[f"blast_mfi_isotype_{m}"] = 1.0
                cohort[f"blast_rmfi_{m}"] = eff[f"mfi_{m}"][t]
            for measure, value in values(t).items():
                rows.append(
                    {
                        "patient": pt.patient,
                        "timepoint": t,
                        "measure": measure,
                        "value": value,
                        "multiplier_vs_baseline": value / base[measure],
                        "cohort_multiplier": cohort[measure],
                    }
                )
    return pd.DataFrame(rows)


def patient_table(patients: list[PatientParams]) -> pd.DataFrame:
    """One row per patient: blast geometry (scaled space), kind and baseline planted values."""
    rows = []
    for pt in patients:
        row: dict[str, Any] = {
            "patient": pt.patient,
            "kind": pt.kind,
            "atypical": pt.kind != "typical",
            "blast_cd45_scaled": pt.blast_cd45,
            "blast_ssc_scaled": pt.blast_ssc,
            "blast_fsc_scaled": pt.blast_fsc,
            "blast_share_baseline": pt.blast_share_baseline,
            "wbc_baseline_per_ul": float(round(pt.wbc_baseline)),
            "ki67_fraction_baseline": pt.ki67_fraction_baseline,
            "cd45_negative_fraction": pt.cd45_negative_fraction,
            "lymphocyte_share_of_non_blasts": pt.non_blast_mix[0],
            "monocyte_share_of_non_blasts": pt.non_blast_mix[1],
            "granulocyte_share_of_non_blasts": pt.non_blast_mix[2],
            "scatter_gain": pt.scatter_gain,
        }
        for m, v in pt.blast_mfi_baseline.items():
            row[f"blast_mfi_baseline_{m}"] = v
        for ch, v in pt.isotype_background.items():
            row[f"background_{ch}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def _readme(config: StudyConfig, n_files: int, patients: list[PatientParams]) -> str:
    from cytogate import __version__

    kinds = ", ".join(f"{p.patient} {p.kind}" for p in patients)
    return f"""# Simulated mobilisation study (NOT patient data)

**SIMULATED DATA.** Every file in this folder was generated by `cytogate.sim.simulate`
(cytogate {__version__}); none comes from a patient or an instrument. Each FCS file says so in
`$COM` ("{SIMULATED_COMMENT}") and `CYTOGATE_SIMULATED=TRUE`.

## How it was made
- `simulate_study(outdir, StudyConfig(...))` with seed **{config.seed}**; the full config is in
  `ground_truth/config.json` (`StudyConfig.from_dict(json.load(...)["config"])` rebuilds it, and
  the same config gives byte-identical files).
- {config.n_patients} patients × {len(config.timepoints)} timepoints
  ({", ".join(config.timepoints)}) × 2 tubes (stained, isotype) = {n_files} FCS 3.1 files of
  {config.events_per_file} events, float32, 10 parameters (FSC-A, FSC-H, SSC-A, FITC-A, PE-A,
  PerCP-Cy5-5-A, PE-Cy7-A, APC-A, BV421-A, Time). Events are uncompensated; `$SPILLOVER` holds
  the spillover used (observed = true @ S).
- Patients: {kinds}. "atypical" blasts sit near the monocytes (CD45 ≈ 0.66, SSC ≈ 0.17 in
  scaled space), outside a fixed CD45dim/SSClow gate.
- Planted effects (cohort multipliers vs baseline, per-patient lognormal scatter): see
  `ground_truth/planted_effects.csv` and DESIGN §5.

## Files
- `<patient>_<timepoint>_<tube>.fcs` and `manifest.csv` (file, patient, timepoint, tube,
  wbc_per_ul, cohort).
- `ground_truth/labels.npz`: per file name, one uint8 label per event in file order:
  0 debris, 1 doublet, 2 CD45-negative, 3 lymphocyte, 4 monocyte, 5 granulocyte, 6 blast.
- `ground_truth/planted_effects.csv`: patient, timepoint, measure, value,
  multiplier_vs_baseline, cohort_multiplier. Measures: wbc_per_ul, blast_share (of CD45+
  leukocytes), blasts_per_ul, ki67_fraction, blast_mfi_stained_<M>, blast_mfi_isotype_<M>,
  blast_rmfi_<M> (medians in linear units before spillover; M = CXCR4_12G5, CXCR4_1D9, CD114,
  CD49f).
- `ground_truth/patients.csv`: per patient the blast CD45/SSC/FSC centres (scaled space: scatter
  / 262144, CD45 logicle T=262144 W=0.5 M=4.5 A=0), kind (typical/atypical), baseline blast
  share, WBC, Ki67 fraction, composition and marker baselines.
- `ground_truth/config.json`: the full config, seed and cytogate version.
"""


def simulate_study(outdir: str | os.PathLike[str], config: StudyConfig | None = None) -> StudyTruth:
    """Write a simulated study: FCS files, manifest, README and ground truth.

    Layout of ``outdir``: ``<patient>_<timepoint>_<tube>.fcs``, ``manifest.csv``, ``README.md``,
    ``ground_truth/{labels.npz, planted_effects.csv, patients.csv, config.json}``. Every file is
    written atomically; the same config gives byte-identical output. FCS files already in
    ``outdir`` that this study does not write trigger a warning (a stale file would otherwise sit
    in a run folder looking like data).
    """
    from cytogate import __version__

    config = config or StudyConfig()
    out = Path(outdir)
    truth_dir = out / "ground_truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    patients = make_patients(config)

    files: list[Path] = []
    labels: dict[str, np.ndarray] = {}
    rows = []
    for pt in patients:
        for k, t in enumerate(config.timepoints):
            wbc = pt.wbc_per_ul(t)
            for j, tube in enumerate(TUBES):
                name = file_name(pt.patient, t, tube)
                rng = _file_rng(config, pt.index, k, j)
                sample = simulate_sample(config, pt, t, tube, config.events_per_file, rng)
                files.append(write_sample(out / name, sample, config, pt))
                labels[name] = sample.labels
                rows.append(
                    {
                        "file": name,
                        "patient": pt.patient,
                        "timepoint": t,
                        "tube": tube,
                        "wbc_per_ul": int(wbc),
                        "cohort": config.cohort,
                    }
                )
    stale = sorted(p.name for p in out.glob("*.fcs") if p.name not in {f.name for f in files})
    if stale:
        warnings.warn(
            f"{out}: FCS files not written by this simulation remain: {', '.join(stale[:5])}"
            + (" …" if len(stale) > 5 else ""),
            RuntimeWarning,
            stacklevel=2,
        )

    manifest = pd.DataFrame(rows)
    planted = planted_table(config, patients)
    ptable = patient_table(patients)
    _atomic_text(out / "manifest.csv", manifest.to_csv(index=False))
    _atomic_text(out / "README.md", _readme(config, len(files), patients))
    atomic_write_bytes(truth_dir / "labels.npz", [_npz_bytes(labels)])
    _atomic_text(truth_dir / "planted_effects.csv", planted.to_csv(index=False))
    _atomic_text(truth_dir / "patients.csv", ptable.to_csv(index=False))
    meta = {"cytogate_version": __version__, "seed": config.seed, "config": config.to_dict()}
    _atomic_text(truth_dir / "config.json", json.dumps(meta, indent=2) + "\n")
    return StudyTruth(
        outdir=out,
        config=config,
        patients=tuple(patients),
        files=tuple(files),
        manifest=manifest,
        planted=planted,
        patient_table=ptable,
        labels=labels,
    )
