"""A SIMULATED stem-cell mobilisation cohort for ISHAGE CD34+ enumeration, with ground truth.

Why: single-platform CD34+ counting (ISHAGE) can only be checked on data whose answer is known.
Myeloma patients in induction-regimen groups each give one mobilised-blood tube (``PB``) and
one apheresis-product tube per collection day (``LP1``…), stained CD45-FITC, CD34-PE, 7-AAD
(PerCP-Cy5.5 detector) with counting beads bright in every channel. Planted per patient: peak
blood CD34+/µL and the collection yield (CD34+ ×10⁶/kg) around the regimen's median (defaults
from the reviews cited in issue 14), a poor-mobiliser share per regimen, weight, product
volumes. Per-event labels and planted values go to ``ground_truth/``; every file says
SIMULATED in ``$COM`` and ``CYTOGATE_SIMULATED``.

Event counts are not Poisson-drawn: a tube holds ``round(expected)`` events of each kind, so
``CD34+ events / bead singlet events × beads/µL`` equals the planted concentration up to
rounding and bead doublets (``(1 - d)`` of the beads are singlets: doublet-rich beads bias the
count, which is why they are flagged). Any other deviation is the gate's.
Geometry is set in the template's scaled space (scatter / 262144; logicle T=262144, W=0.5,
M=4.5, A=0), as in :mod:`cytogate.sim.populations`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cytogate.io.fcs_writer import atomic_write_bytes, write_fcs
from cytogate.sim.common import (
    SCATTER_RANGE,
    SIMULATED_COMMENT,
    SimulationError,
    logicle_inverse,
    uniform,
)
from cytogate.sim.files import atomic_text, npz_bytes

__all__ = [
    "CD34_LABELS",
    "CD34_LABEL_CODES",
    "CD34Config",
    "CD34Study",
    "Regimen",
    "simulate_cd34_study",
]

#: Per-event ground-truth label codes of a CD34 tube.
CD34_LABELS: dict[int, str] = {
    0: "debris",
    1: "bead",
    2: "bead_doublet",
    3: "cd45_negative",
    4: "lymphocyte",
    5: "monocyte",
    6: "granulocyte",
    7: "cd34_viable",  # CD34+ HSPC, 7-AAD negative
    8: "cd34_dead",  # CD34+ HSPC, 7-AAD positive
    9: "cd34_nonspecific",  # CD34 staining on granulocyte-like or CD45-negative events
    10: "dead_leukocyte",
}
CD34_LABEL_CODES: dict[str, int] = {v: k for k, v in CD34_LABELS.items()}
CHANNELS = ("FSC-A", "FSC-H", "SSC-A", "FITC-A", "PE-A", "PerCP-Cy5-5-A")
PNS = ("", "", "", "CD45 FITC", "CD34 PE", "7-AAD")
#: spillover among FITC, PE, PerCP-Cy5.5 (rows = source dye), as the mobilisation simulator's
SPILLOVER = ((1.0, 0.15, 0.02), (0.01, 1.0, 0.12), (0.0, 0.005, 1.0))
TIMEPOINT_BLOOD = "PB"


@dataclass(frozen=True)
class Regimen:
    """Planted medians of one induction-regimen group (lognormal scatter around them)."""

    peak_blood_cd34_per_ul: float
    yield_e6_per_kg: float
    #: share of patients who mobilise poorly (blood × 0.15, yield × 0.2)
    poor_mobiliser_fraction: float


def _default_regimens() -> dict[str, Regimen]:
    # Issue 14: peak blood CD34+ 128.5 /µL after VTd, 62.8 after Dara-VCd, 24.9 after Isa-KRd;
    # collected 8.3-9.0 ×10⁶/kg (bortezomib), 6.7 (daratumumab), 7.7 (isatuximab).
    return {
        "VTd": Regimen(128.5, 8.6, 0.05),
        "Dara-VCd": Regimen(62.8, 6.7, 0.15),
        "Isa-KRd": Regimen(24.9, 7.7, 0.20),
    }


@dataclass(frozen=True)
class CD34Config:
    """Every knob of the simulated CD34 cohort (defaults: the bundled ``cd34_demo``)."""

    patients_per_regimen: int = 2
    seed: int = 42
    regimens: dict[str, Regimen] = field(default_factory=_default_regimens)
    blood_sdlog: float = 0.35
    yield_sdlog: float = 0.30
    #: CD45+ leukocyte events acquired per tube
    blood_leukocyte_events: int = 16000
    apheresis_leukocyte_events: int = 8000
    blood_wbc_range: tuple[float, float] = (8000.0, 30000.0)
    apheresis_wbc_range: tuple[float, float] = (40000.0, 120000.0)
    weight_range: tuple[float, float] = (55.0, 100.0)
    product_ml_range: tuple[float, float] = (150.0, 350.0)
    beads_per_tube: float = 50000.0
    blood_sample_ul: float = 100.0
    apheresis_sample_ul: float = 10.0
    cd34_viability_range: tuple[float, float] = (0.90, 0.99)
    leukocyte_dead_fraction: float = 0.03
    bead_doublet_fraction: float = 0.01
    #: tubes (file names) whose beads are doublet-rich (d = 0.2), to exercise the QC flag
    doublet_rich_tubes: tuple[str, ...] = ("P02_LP1.fcs",)
    debris_fraction: float = 0.08
    cd45_negative_fraction: float = 0.05
    nonspecific_fraction: float = 0.0015  # of leukocytes
    cd34_debris_fraction: float = 0.05  # CD34+ CD45dim debris (below the lymph-blast region)
    cd34_cd45neg_fraction: float = 0.05  # of CD34+ cells: CD34-stained CD45-negative events
    #: per tube, uniform: CD34+ cells' CD34 and CD45 centres (scaled) and the scatter gain, so
    #: the gates must follow each tube
    cd34_brightness_range: tuple[float, float] = (0.60, 0.72)
    cd34_cd45_range: tuple[float, float] = (0.50, 0.60)
    scatter_gain_range: tuple[float, float] = (0.85, 1.15)

    def __post_init__(self) -> None:
        if self.patients_per_regimen < 1:
            raise SimulationError(
                f"patients_per_regimen must be >= 1, got {self.patients_per_regimen}"
            )
        if not self.regimens:
            raise SimulationError("regimens: at least one regimen")
        for field_name in ("blood_leukocyte_events", "apheresis_leukocyte_events"):
            if getattr(self, field_name) < 100:
                raise SimulationError(f"{field_name} must be >= 100")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def patient_ids(self) -> list[tuple[str, str]]:
        """(patient, regimen) pairs: P01, P02… grouped by regimen in config order."""
        n = self.patients_per_regimen * len(self.regimens)
        width = max(2, len(str(n)))
        ids = [f"P{i + 1:0{width}d}" for i in range(n)]
        regs = [r for r in self.regimens for _ in range(self.patients_per_regimen)]
        return list(zip(ids, regs, strict=True))


@dataclass(frozen=True)
class CD34Study:
    """What :func:`simulate_cd34_study` wrote: manifest, per-tube and per-patient truth."""

    outdir: Path
    manifest: pd.DataFrame
    tubes: pd.DataFrame
    patients: pd.DataFrame
    labels: dict[str, np.ndarray]


# ------------------------------------------------------------------ planted values


def _loguniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * rng.random()))


def planted_patients(config: CD34Config) -> pd.DataFrame:
    """Per patient: regimen, weight, peak blood CD34+/µL, daily yields (×10⁶/kg) and volumes.

    Collection days: 1 when the planted total is ≥ 6 ×10⁶/kg, 2 when ≥ 3, else 3, the total
    split 1 : 0.7 : 0.5 over the days (day 1 collects most).
    """
    rows = []
    for index, (patient, regimen) in enumerate(config.patient_ids()):
        rng = np.random.default_rng([config.seed, 34, index])
        reg = config.regimens[regimen]
        z = rng.standard_normal(2)
        poor = bool(rng.random() < reg.poor_mobiliser_fraction)
        blood = reg.peak_blood_cd34_per_ul * np.exp(config.blood_sdlog * z[0])
        total = reg.yield_e6_per_kg * np.exp(config.yield_sdlog * (0.7 * z[0] + 0.71 * z[1]))
        if poor:
            blood, total = blood * 0.15, total * 0.2
        days = 1 if total >= 6 else 2 if total >= 3 else 3
        shares = np.array([1.0, 0.7, 0.5][:days])
        daily = total * shares / shares.sum()
        rows.append(
            {
                "patient": patient,
                "cohort": regimen,
                "poor_mobiliser": poor,
                "weight_kg": round(_loguniform(rng, config.weight_range), 1),
                "blood_wbc_per_ul": round(_loguniform(rng, config.blood_wbc_range)),
                "peak_blood_cd34_per_ul": float(blood),
                "collection_days": days,
                "daily_yield_e6_per_kg": [float(v) for v in daily],
                "product_ml": [
                    round(_loguniform(rng, config.product_ml_range)) for _ in range(days)
                ],
                "apheresis_wbc_per_ul": [
                    round(_loguniform(rng, config.apheresis_wbc_range)) for _ in range(days)
                ],
                "cd34_viability": [
                    uniform(rng, config.cd34_viability_range) for _ in range(days + 1)
                ],
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ events


def _counts(
    config: CD34Config,
    n_leuko: int,
    wbc: float,
    cd34: float,
    viability: float,
    beads_per_ul: float,
    doublet: float,
) -> dict[str, int]:
    """Events of each label in one tube (expected values, rounded; see the module doc)."""
    beads = n_leuko * beads_per_ul / wbc  # physical beads acquired with n_leuko leukocytes
    hspc = beads * cd34 / beads_per_ul
    viable = round(hspc * viability)
    dead_hspc = round(hspc) - viable
    other = n_leuko - viable - dead_hspc
    dead_other = round(other * config.leukocyte_dead_fraction)
    nonspec = round(n_leuko * config.nonspecific_fraction)
    live = other - dead_other - nonspec
    n_total_cells = n_leuko / (1 - config.debris_fraction - config.cd45_negative_fraction)
    return {
        "debris": round(n_total_cells * config.debris_fraction),
        "bead": round(beads * (1 - doublet)),
        "bead_doublet": round(beads * doublet / 2),
        "cd45_negative": round(n_total_cells * config.cd45_negative_fraction),
        "live_other": live,
        "cd34_viable": viable,
        "cd34_dead": dead_hspc,
        "cd34_nonspecific": nonspec,
        "dead_leukocyte": dead_other,
        "cd34_debris": round(hspc * config.cd34_debris_fraction),
        "cd34_cd45neg": round(hspc * config.cd34_cd45neg_fraction),
    }


# (fsc, fsc_sd, ssc median, ssc_sd, CD45, CD45 sd, CD34, CD34 sd, 7AAD, 7AAD sd) in scaled space
_POP = {
    "lymphocyte": (0.28, 0.03, 0.075, 0.015, 0.78, 0.03, 0.22, 0.05, 0.25, 0.04),
    "monocyte": (0.42, 0.04, 0.20, 0.03, 0.72, 0.03, 0.24, 0.05, 0.27, 0.04),
    "granulocyte": (0.48, 0.05, 0.45, 0.06, 0.63, 0.035, 0.25, 0.05, 0.28, 0.04),
    "cd34": (0.33, 0.03, 0.10, 0.02, 0.55, 0.035, 0.68, 0.04, 0.25, 0.04),
    "cd45_negative": (0.20, 0.03, 0.05, 0.012, 0.22, 0.04, 0.22, 0.05, 0.24, 0.04),
    "nonspecific": (0.48, 0.05, 0.45, 0.06, 0.66, 0.035, 0.58, 0.05, 0.28, 0.04),
    "bead": (0.10, 0.006, 0.06, 0.006, 0.93, 0.01, 0.93, 0.01, 0.92, 0.01),
    "cd34_debris": (0.07, 0.02, 0.03, 0.01, 0.52, 0.04, 0.66, 0.05, 0.30, 0.05),
    "cd34_cd45neg": (0.26, 0.03, 0.06, 0.015, 0.22, 0.04, 0.62, 0.05, 0.26, 0.04),
}
_DEAD_7AAD = (0.72, 0.05)


def _draw(rng: np.random.Generator, spec: tuple[float, ...], m: int) -> np.ndarray:
    """m events (FSC, SSC, CD45, CD34, 7AAD) in scaled space of one population."""
    fsc, fsc_sd, ssc, ssc_sd, *fluor = spec
    z = rng.standard_normal((m, 5))
    out = np.empty((m, 5))
    out[:, 0] = fsc + fsc_sd * z[:, 0]
    out[:, 1] = ssc * np.exp((ssc_sd / ssc) * z[:, 1])
    for j in range(3):
        out[:, 2 + j] = fluor[2 * j] + fluor[2 * j + 1] * z[:, 2 + j]
    return out


def simulate_tube(
    config: CD34Config,
    counts: dict[str, int],
    apheresis: bool,
    rng: np.random.Generator,
    cd34_centre: tuple[float, float] = (0.68, 0.55),
    scatter_gain: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Events (n × 6, uncompensated linear, float32) and labels of one tube (vectorised).

    ``cd34_centre``: the CD34+ cells' (CD34, CD45) centre in scaled space; ``scatter_gain``
    multiplies FSC and SSC of every event (instrument settings).
    """
    mix = (0.60, 0.25, 0.15) if apheresis else (0.25, 0.08, 0.67)
    split = np.floor(np.array(mix) * counts["live_other"]).astype(int)
    split[0] += counts["live_other"] - split.sum()
    dead_split = np.floor(np.array(mix) * counts["dead_leukocyte"]).astype(int)
    dead_split[0] += counts["dead_leukocyte"] - dead_split.sum()
    code = CD34_LABEL_CODES
    blocks: list[tuple[int, np.ndarray]] = []
    debris = np.column_stack(
        [
            0.01 + 0.11 * rng.beta(1.3, 2.5, counts["debris"]),
            0.10 * rng.beta(1.0, 3.0, counts["debris"]),
            0.05 + 0.40 * rng.beta(2.0, 2.0, counts["debris"]),
            0.10 + 0.30 * rng.beta(2.0, 2.0, counts["debris"]),
            0.15 + 0.30 * rng.beta(2.0, 2.0, counts["debris"]),
        ]
    )
    blocks.append((code["debris"], debris))
    blocks.append((code["bead"], _draw(rng, _POP["bead"], counts["bead"])))
    blocks.append(
        (code["cd45_negative"], _draw(rng, _POP["cd45_negative"], counts["cd45_negative"]))
    )
    for name, m in zip(("lymphocyte", "monocyte", "granulocyte"), split, strict=True):
        blocks.append((code[name], _draw(rng, _POP[name], int(m))))
    for name, m in zip(("lymphocyte", "monocyte", "granulocyte"), dead_split, strict=True):
        dead = _draw(rng, _POP[name], int(m))
        dead[:, 4] = _DEAD_7AAD[0] + _DEAD_7AAD[1] * rng.standard_normal(int(m))
        blocks.append((code["dead_leukocyte"], dead))
    hspc = list(_POP["cd34"])
    hspc[6], hspc[4] = cd34_centre
    blocks.append((code["cd34_viable"], _draw(rng, tuple(hspc), counts["cd34_viable"])))
    dead = _draw(rng, tuple(hspc), counts["cd34_dead"])
    dead[:, 4] = _DEAD_7AAD[0] + _DEAD_7AAD[1] * rng.standard_normal(counts["cd34_dead"])
    blocks.append((code["cd34_dead"], dead))
    blocks.append(
        (code["cd34_nonspecific"], _draw(rng, _POP["nonspecific"], counts["cd34_nonspecific"]))
    )
    blocks.append((code["debris"], _draw(rng, _POP["cd34_debris"], counts["cd34_debris"])))
    blocks.append(
        (code["cd34_nonspecific"], _draw(rng, _POP["cd34_cd45neg"], counts["cd34_cd45neg"]))
    )
    labels = np.concatenate([np.full(len(b), c, dtype=np.uint8) for c, b in blocks])
    scaled = np.concatenate([b for _, b in blocks])

    fluor = logicle_inverse(scaled[:, 2:5])
    fsc = np.clip(scaled[:, 0], 0.0, None)
    ssc = np.clip(scaled[:, 1], 0.0, None)
    fsc_h = fsc * 0.85 * (1 + 0.03 * rng.standard_normal(fsc.size))
    n_dbl = counts["bead_doublet"]
    if n_dbl:  # two beads: scatter and fluorescence add, height/area ratio drops
        pair = _draw(rng, _POP["bead"], 2 * n_dbl)
        pair_fluor = logicle_inverse(pair[:, 2:5]).reshape(n_dbl, 2, 3).sum(axis=1)
        d_fsc = pair[:, 0].reshape(n_dbl, 2).sum(axis=1)
        d_ssc = pair[:, 1].reshape(n_dbl, 2).sum(axis=1)
        labels = np.concatenate([labels, np.full(n_dbl, code["bead_doublet"], dtype=np.uint8)])
        fsc = np.concatenate([fsc, d_fsc])
        fsc_h = np.concatenate([fsc_h, d_fsc * 0.55 * (1 + 0.04 * rng.standard_normal(n_dbl))])
        ssc = np.concatenate([ssc, d_ssc])
        fluor = np.concatenate([fluor, pair_fluor])

    top = SCATTER_RANGE - 1.0
    events = np.empty((labels.size, len(CHANNELS)))
    events[:, 0] = np.minimum(fsc * (scatter_gain * SCATTER_RANGE), top)
    events[:, 1] = np.minimum(fsc_h * (scatter_gain * SCATTER_RANGE), top)
    events[:, 2] = np.minimum(ssc * (scatter_gain * SCATTER_RANGE), top)
    observed = fluor @ np.asarray(SPILLOVER)  # n × 3 @ 3 × 3: tiny, exact
    observed += 30.0 * rng.standard_normal(observed.shape)
    events[:, 3:6] = np.minimum(observed, SCATTER_RANGE - 1.0)
    order = rng.permutation(labels.size)
    return events[order].astype(np.float32), labels[order]


# ------------------------------------------------------------------ the study on disk


def _tube_plan(config: CD34Config, patients: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per tube: manifest columns plus the planted values."""
    beads_blood = config.beads_per_tube / config.blood_sample_ul
    tubes = []
    for pt in patients.itertuples(index=False):
        tubes.append(
            {
                "file": f"{pt.patient}_{TIMEPOINT_BLOOD}.fcs",
                "patient": pt.patient,
                "timepoint": TIMEPOINT_BLOOD,
                "tube": "stained",
                "cohort": pt.cohort,
                "specimen": "blood",
                "collection_day": 0,
                "beads_per_ul": beads_blood,
                "beads_per_tube": "",
                "sample_ul": "",
                "product_ml": "",
                "weight_kg": pt.weight_kg,
                "wbc_per_ul": pt.blood_wbc_per_ul,
                "cd34_per_ul": pt.peak_blood_cd34_per_ul,
                "viability": pt.cd34_viability[0],
                "yield_e6_per_kg": float("nan"),
            }
        )
        for day in range(pt.collection_days):
            ml = pt.product_ml[day]
            y = pt.daily_yield_e6_per_kg[day]
            tubes.append(
                {
                    "file": f"{pt.patient}_LP{day + 1}.fcs",
                    "patient": pt.patient,
                    "timepoint": f"LP{day + 1}",
                    "tube": "stained",
                    "cohort": pt.cohort,
                    "specimen": "apheresis",
                    "collection_day": day + 1,
                    "beads_per_ul": "",
                    "beads_per_tube": config.beads_per_tube,
                    "sample_ul": config.apheresis_sample_ul,
                    "product_ml": ml,
                    "weight_kg": pt.weight_kg,
                    "wbc_per_ul": pt.apheresis_wbc_per_ul[day],
                    # yield = CD34/µL × mL × 1000 / 1e6 / kg, solved for CD34/µL
                    "cd34_per_ul": y * 1e6 * pt.weight_kg / (ml * 1000.0),
                    "viability": pt.cd34_viability[day + 1],
                    "yield_e6_per_kg": y,
                }
            )
    return tubes


def _keywords(config: CD34Config, tube: dict[str, Any]) -> dict[str, str]:
    return {
        "$CYT": "cytogate simulator",
        "$COM": SIMULATED_COMMENT,
        "$FIL": tube["file"],
        "$DATE": "08-JAN-2024",
        "$SRC": f"{tube['patient']} {tube['specimen']} (simulated)",
        "CYTOGATE_SIMULATED": "TRUE",
        "CYTOGATE_SEED": str(config.seed),
        "CYTOGATE_PATIENT": tube["patient"],
        "CYTOGATE_TIMEPOINT": tube["timepoint"],
        "CYTOGATE_TUBE": tube["tube"],
        "CYTOGATE_COHORT": tube["cohort"],
    }


RUN_CONFIG = """\
# Run config for a SIMULATED ISHAGE CD34+ study (cytogate simulate --cd34).
template: ishage_cd34
timepoints: [PB, LP1, LP2, LP3]
baseline: PB
count_populations: [cd45_leukocytes, cd34, viable_cd34]
rmfi_markers: []
positivity_markers: []
marker_populations: [cd34]  # no marker measures; the marker plots say so
"""

MANIFEST_COLUMNS = [
    "file", "patient", "timepoint", "tube", "cohort", "specimen", "collection_day",
    "beads_per_ul", "beads_per_tube", "sample_ul", "product_ml", "weight_kg",
]  # fmt: skip


def simulate_cd34_study(
    outdir: str | os.PathLike[str], config: CD34Config | None = None
) -> CD34Study:
    """Write the SIMULATED cohort: FCS tubes, manifest.csv, cytogate.yaml, README, ground truth.

    ``ground_truth/``: ``labels.npz`` (file -> uint8 label per event, see :data:`CD34_LABELS`),
    ``planted_tubes.csv`` (per tube: planted CD34+/µL, viable CD34+/µL, % of CD45+, event
    counts, yield), ``planted_patients.csv`` (per patient: regimen, peak blood CD34+/µL,
    cumulative yield, collection failure) and ``config.json``. Same config, same bytes.
    """
    config = config or CD34Config()
    out = Path(outdir)
    (out / "ground_truth").mkdir(parents=True, exist_ok=True)
    patients = planted_patients(config)
    plan = _tube_plan(config, patients)
    spill = pd.DataFrame(
        np.asarray(SPILLOVER), index=list(CHANNELS[3:]), columns=list(CHANNELS[3:])
    )
    labels: dict[str, np.ndarray] = {}
    truth_rows = []
    for k, tube in enumerate(plan):
        apheresis = tube["specimen"] == "apheresis"
        beads_per_ul = (
            config.beads_per_tube / config.apheresis_sample_ul
            if apheresis
            else tube["beads_per_ul"]
        )
        doublet = 0.2 if tube["file"] in config.doublet_rich_tubes else config.bead_doublet_fraction
        n_leuko = config.apheresis_leukocyte_events if apheresis else config.blood_leukocyte_events
        counts = _counts(
            config,
            n_leuko,
            tube["wbc_per_ul"],
            tube["cd34_per_ul"],
            tube["viability"],
            beads_per_ul,
            doublet,
        )
        rng = np.random.default_rng([config.seed, 35, k])
        centre = (
            uniform(rng, config.cd34_brightness_range),
            uniform(rng, config.cd34_cd45_range),
        )
        gain = uniform(rng, config.scatter_gain_range)
        events, lab = simulate_tube(config, counts, apheresis, rng, centre, gain)
        write_fcs(
            out / tube["file"],
            events,
            pnn=CHANNELS,
            pns=PNS,
            pnr=SCATTER_RANGE,
            keywords=_keywords(config, tube),
            spillover=spill,
        )
        labels[tube["file"]] = lab
        n_cd34 = counts["cd34_viable"] + counts["cd34_dead"]
        n_cd45 = n_leuko
        truth_rows.append(
            {
                "file": tube["file"],
                "patient": tube["patient"],
                "cohort": tube["cohort"],
                "specimen": tube["specimen"],
                "collection_day": tube["collection_day"],
                "cd34_per_ul": tube["cd34_per_ul"],
                "viable_cd34_per_ul": tube["cd34_per_ul"] * counts["cd34_viable"] / max(n_cd34, 1),
                "cd34_pct_of_cd45": 100.0 * tube["cd34_per_ul"] / tube["wbc_per_ul"],
                "wbc_per_ul": tube["wbc_per_ul"],
                "beads_per_ul": beads_per_ul,
                "bead_doublet_fraction": doublet,
                "events_cd34": n_cd34,
                "events_viable_cd34": counts["cd34_viable"],
                "events_bead_singlets": counts["bead"],
                "events_bead_doublets": counts["bead_doublet"],
                "events_cd45": n_cd45,
                "product_ml": tube["product_ml"] or float("nan"),
                "weight_kg": tube["weight_kg"],
                "yield_e6_per_kg": tube["yield_e6_per_kg"],
                "cd34_cd34_scaled": centre[0],
                "cd34_cd45_scaled": centre[1],
                "scatter_gain": gain,
            }
        )
    manifest = pd.DataFrame(plan)[MANIFEST_COLUMNS]
    tubes = pd.DataFrame(truth_rows)
    ptable = patients.assign(
        cumulative_yield_e6_per_kg=[sum(v) for v in patients["daily_yield_e6_per_kg"]],
    )
    ptable["collection_failure"] = ptable["cumulative_yield_e6_per_kg"] < 2.0
    ptable = ptable.drop(
        columns=["daily_yield_e6_per_kg", "product_ml", "apheresis_wbc_per_ul", "cd34_viability"]
    )
    atomic_text(out / "manifest.csv", manifest.to_csv(index=False))
    atomic_text(out / "cytogate.yaml", RUN_CONFIG)
    atomic_text(out / "README.md", _readme(config, len(plan)))
    atomic_write_bytes(out / "ground_truth" / "labels.npz", [npz_bytes(labels)])
    atomic_text(out / "ground_truth" / "planted_tubes.csv", tubes.to_csv(index=False))
    atomic_text(out / "ground_truth" / "planted_patients.csv", ptable.to_csv(index=False))
    meta = {"seed": config.seed, "config": config.to_dict()}
    atomic_text(out / "ground_truth" / "config.json", json.dumps(meta, indent=2) + "\n")
    return CD34Study(out, manifest, tubes, ptable, labels)


def _readme(config: CD34Config, n_files: int) -> str:
    regs = ", ".join(
        f"{name} (peak blood {r.peak_blood_cd34_per_ul:g} CD34+/µL, yield "
        f"{r.yield_e6_per_kg:g} ×10⁶/kg, {100 * r.poor_mobiliser_fraction:g} % poor mobilisers)"
        for name, r in config.regimens.items()
    )
    return f"""# Simulated ISHAGE CD34+ mobilisation cohort (NOT patient data)

**SIMULATED DATA.** Written by `cytogate simulate --cd34` (`cytogate.sim.cd34`, seed
{config.seed}); every FCS file says so in `$COM` and `CYTOGATE_SIMULATED=TRUE`.

- {n_files} tubes: one mobilised-blood tube (`PB`) per patient and one apheresis-product tube
  per collection day (`LP1`…), CD45-FITC, CD34-PE, 7-AAD and counting beads, 6 parameters.
- Regimen groups (manifest `cohort`): {regs}; {config.patients_per_regimen} patients each.
- `manifest.csv`: beads per µL of sample for blood (`beads_per_ul`), beads per tube and µL of
  product stained for apheresis (`beads_per_tube`, `sample_ul`), `product_ml`, `weight_kg`.
- `cytogate.yaml`: run config (template `ishage_cd34`, timepoints PB, LP1-LP3).
- `ground_truth/`: `labels.npz` (per-event labels), `planted_tubes.csv`,
  `planted_patients.csv`, `config.json`.

Run: `cytogate batch <this folder>` writes `cd34.csv` and `groups.csv` beside the other tables.
"""
