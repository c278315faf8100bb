"""Population model: where each cell type sits, how many of each, and their marker intensities.

Each event is debris, a doublet, a CD45-negative cell, a lymphocyte, monocyte, granulocyte or
blast (:data:`~cytogate.sim.common.LABELS`); the composition is drawn multinomially from the
patient's planted values, so event shares match the truth in expectation. Markers are lognormal
per cell around a planted median (linear units, before spillover); isotype tubes carry
background only (CD45 is stained in both tubes: it is the gating marker).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from cytogate.sim.common import (
    LABELS,
    SCATTER_RANGE,
    TUBES,
    SimulationError,
    logicle_inverse,
    uniform,
)
from cytogate.sim.instrument import (
    CHANNELS,
    FLUORESCENCE_CHANNELS,
    ChannelSpec,
    channel_specs,
    detect,
    skinny_matmul,
    spillover_frame,
)

if TYPE_CHECKING:
    from cytogate.sim.config import StudyConfig
    from cytogate.sim.patients import PatientParams


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


def cluster_draw(
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
    z = skinny_matmul(rng.standard_normal((m, 3)), np.linalg.cholesky(corr).T)
    fsc = cluster.fsc + cluster.fsc_sd * z[:, 0]
    ssc = cluster.ssc * np.exp((cluster.ssc_sd / cluster.ssc) * z[:, 1])  # right-skewed
    cd45 = cluster.cd45 + cluster.cd45_sd * z[:, 2]
    return fsc, ssc, cd45


def population_clusters(config: StudyConfig, patient: PatientParams) -> dict[int, Cluster]:
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


def singlets(
    config: StudyConfig,
    patient: PatientParams,
    timepoint: str,
    tube: str,
    counts: np.ndarray,
    rng: np.random.Generator,
    stained_markers: Collection[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Singlet events in label blocks: (labels, FSC-A scaled, SSC-A scaled, true fluorescence).

    ``counts[code]`` events of each label code except doublets (code 1 must be 0). Fluorescence
    columns follow FLUORESCENCE_CHANNELS, in linear units before spillover. ``stained_markers``
    (a "stained" tube only; default every marker): the markers whose antibody is in the tube;
    the others carry background, as in an isotype tube.
    """
    geo, mk = config.geometry, config.markers
    stained = frozenset(config.instrument.panel if stained_markers is None else stained_markers)
    n = int(counts.sum())
    labels = np.repeat(np.arange(len(LABELS), dtype=np.uint8), counts)
    fsc = np.empty(n)
    ssc = np.empty(n)
    cd45 = np.empty(n)
    fluor = np.empty((n, len(FLUORESCENCE_CHANNELS)))
    clusters = population_clusters(config, patient)
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
            fsc[sl], ssc[sl], cd45[sl] = cluster_draw(rng, clusters[code], m)
        af = mk.autofluorescence.get(name, 1.0)
        for j, ch in enumerate(FLUORESCENCE_CHANNELS):
            marker = by_channel[ch]
            if marker == "CD45":
                continue  # filled from the scaled CD45 below
            background = patient.isotype_background[ch] * patient.isotype_drift[timepoint][ch] * af
            values = background * np.exp(mk.isotype_sdlog * rng.standard_normal(m))
            if tube == "stained" and marker in stained:
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
    fluor[:, FLUORESCENCE_CHANNELS.index(config.instrument.panel["CD45"])] = logicle_inverse(cd45)
    return labels, fsc, ssc, fluor


def probabilities(config: StudyConfig, patient: PatientParams, timepoint: str) -> np.ndarray:
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
    *,
    stained_markers: Collection[str] | None = None,
    markers: Collection[str] | None = None,
) -> SimulatedSample:
    """Simulate one file's events (vectorised; no Python loop over events).

    ``stained_markers``: in a "stained" tube, the markers whose antibody it holds (default all;
    see :func:`singlets`). ``markers``: the markers whose detector the file records (default
    all six); the other dyes are absent from the tube, so they add nothing to any detector and
    their columns, $PnN and spillover rows are left out (a multi-tube panel's smaller tubes).

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
    p = probabilities(config, patient, timepoint)
    counts = rng.multinomial(n_events, p)
    n_doublets = int(counts[1])

    singlet_counts = counts.copy()
    singlet_counts[1] = 0
    labels, fsc, ssc, fluor = singlets(
        config, patient, timepoint, tube, singlet_counts, rng, stained_markers
    )
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
        _, d_fsc, d_ssc, d_fluor = singlets(
            config, patient, timepoint, tube, pair_counts, rng, stained_markers
        )
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
        gain = uniform(rng, geo.scatter_gain_range)
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

    channels = channel_specs(config, tube)
    spillover = spillover_frame(config)
    keep = None
    if markers is not None:
        unknown = sorted(set(markers) - set(inst.panel))
        if unknown:
            raise SimulationError(f"unknown marker(s) {unknown} (one of {sorted(inst.panel)})")
        kept = {inst.panel[m] for m in markers}
        absent = [j for j, ch in enumerate(FLUORESCENCE_CHANNELS) if ch not in kept]
        unmixed[:, [3 + j for j in absent]] = 0.0  # no dye, no light in any detector
        keep = [i for i, ch in enumerate(CHANNELS) if ch not in FLUORESCENCE_CHANNELS or ch in kept]
    events = unmixed.astype(np.float32)
    events[:, 3:9] = detect(unmixed[:, 3:9], config, rng)
    if keep is not None:
        fl = [CHANNELS[i] for i in keep if CHANNELS[i] in FLUORESCENCE_CHANNELS]
        events, unmixed = events[:, keep], unmixed[:, keep]
        channels = tuple(channels[i] for i in keep)
        spillover = spillover.loc[fl, fl]
    return SimulatedSample(
        patient=patient.patient,
        timepoint=timepoint,
        tube=tube,
        events=events,
        unmixed=unmixed,
        labels=labels[order],
        channels=channels,
        spillover=spillover,
        duration_s=float(seconds[-1]) if n_events else 0.0,
    )
