"""Per-patient planted values: baseline levels and each timepoint's multipliers (the truth).

A patient's multiplier is ``cohort × exp(u + e_t)``, ``u`` shared over the patient's timepoints
(some patients mobilise more) and ``e_t`` per timepoint; baseline is exactly 1.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from cytogate.sim.common import MARKERS, TUBES, SimulationError, logicle_inverse, uniform
from cytogate.sim.instrument import FLUORESCENCE_CHANNELS

if TYPE_CHECKING:
    from cytogate.sim.config import StudyConfig

#: Cohort multipliers vs baseline (docs/architecture.md §5; the study reports leukocytes ×2.4
#: and blasts ×3.5 after G-CSF, a further ×1.8 and ×2.8 at 6 h, 12G5 falling to 6 h and
#: recovering at 24 h, 1D9 rising within 2 h, CD114/CD49f falling under G-CSF, Ki67 rising
#: slightly).
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
            return float(logicle_inverse(np.array([self.blast_cd45]))[0])
        if tube == "stained" and marker in self.blast_mfi_baseline:
            return self.blast_mfi_baseline[marker] * self.multipliers[f"mfi_{marker}"][timepoint]
        if tube not in TUBES:
            raise SimulationError(f"unknown tube {tube!r} (one of {TUBES})")
        channel = self.panel[marker]
        return self.isotype_background[channel] * self.isotype_drift[timepoint][channel]


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
    run_gain = uniform(study_rng, geo.scatter_gain_range)

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
        blast_cd45 = uniform(rng, cd45_range)
        blast_ssc = uniform(rng, ssc_range)
        lo, hi = comp.wbc_range
        wbc0 = float(np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * rng.random()))
        share0 = uniform(rng, comp.blast_share_range)
        mix = rng.dirichlet(np.asarray(comp.non_blast_mix) * comp.mix_concentration)
        cd45neg = uniform(rng, comp.cd45_negative_range)
        ki67_0 = uniform(rng, mk.ki67_fraction_range)
        blast_mfi = {
            m: float(v * np.exp(mk.blast_patient_sdlog * rng.standard_normal()))
            for m, v in mk.blast_mfi.items()
        }
        background = {c: uniform(rng, mk.isotype_range) for c in FLUORESCENCE_CHANNELS}
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
            gain = uniform(rng, geo.scatter_gain_range)
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
