"""A simulated multi-tube study laid out as a FACSDiva export: the AML study's real design.

Why: a lab's run is not one stained and one isotype tube per draw. In the study behind
cytogate each draw (patient × baseline, day3, 2h, 4h, 6h, 24h) had a CXCR4 tube (CD45, CXCR4
clones 12G5 and 1D9, CD114, CD49f), its isotype tube, a fixed/permeabilised Ki67 tube (CD45,
Ki67) and its isotype; CD114/CD49f were measured in some patients only and the Ki67 tubes in
fewer. This module writes that design with ground truth, reusing the two-tube simulator's
patients, populations and planted effects (:mod:`cytogate.sim.patients`), so a design
inference, a multi-tube batch and partial-panel statistics can be checked against the truth.

File names and keywords follow FACSDiva's export (see the real Diva files in the FCS corpus):
specimen ``$SRC`` = ``<patient>_<timepoint code>`` (``P03_D3``), ``TUBE NAME`` = the panel's
tube (``CXCR4 isotype``), ``EXPERIMENT NAME`` = ``AML-MOB <patient>`` (one experiment per
patient), file ``<specimen>_<tube>_<NNN>.fcs`` with NNN the tube's running number in its
experiment (``P03_D3_CXCR4 isotype_010.fcs``). Every file says SIMULATED in ``$COM``,
``CREATOR`` and ``CYTOGATE_SIMULATED``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cytogate.io.fcs_writer import atomic_write_bytes, write_fcs
from cytogate.sim.common import MFI_MARKERS, SIMULATED_COMMENT, SimulationError
from cytogate.sim.config import StudyConfig
from cytogate.sim.files import acquisition_start, atomic_text, fcs_date, npz_bytes, warn_stale_fcs
from cytogate.sim.ground_truth import patient_table, planted_table
from cytogate.sim.patients import PatientParams, make_patients
from cytogate.sim.populations import SimulatedSample, simulate_sample

#: Timepoint -> the code a lab types into the specimen name (others are written as they are).
TIMEPOINT_CODES: dict[str, str] = {"baseline": "BL", "day3": "D3"}
#: Markers a patient's CXCR4 tube may lack (partial panels, as in the study's Figure 1f).
OPTIONAL_MARKERS: tuple[str, ...] = ("CD114", "CD49f")


@dataclass(frozen=True)
class Tube:
    """One tube of the panel: its name, role, the stained tube it controls, its antibodies."""

    name: str
    role: Literal["stained", "isotype"]
    markers: tuple[str, ...]  # markers whose detector the tube records (CD45 in every tube)
    control_for: str = ""


#: The study's panel, in acquisition order: each stained tube is followed by its isotype.
_CXCR4_PANEL = ("CD45", "CXCR4_12G5", "CXCR4_1D9", "CD114", "CD49f")
PANEL: tuple[Tube, ...] = (
    Tube("CXCR4", "stained", _CXCR4_PANEL),
    Tube("CXCR4 isotype", "isotype", _CXCR4_PANEL, "CXCR4"),
    Tube("Ki67", "stained", ("CD45", "Ki67")),
    Tube("Ki67 isotype", "isotype", ("CD45", "Ki67"), "Ki67"),
)


@dataclass(frozen=True)
class MultiTubeConfig:
    """The multi-tube study: the two-tube simulator's config plus who lacks which tube/marker.

    ``without_cd114`` / ``without_cd49f`` patients have no CD114 / CD49f detector in their
    CXCR4 tubes; ``without_ki67`` patients have no Ki67 tubes. Which patients is drawn from the
    study stream ``(seed, 3)``; the CD49f-less patients include the CD114-less ones (the study
    measured CD49f in fewer patients than CD114).
    """

    study: StudyConfig = field(
        default_factory=lambda: StudyConfig(n_patients=8, events_per_file=5000)
    )
    without_cd114: int = 3
    without_cd49f: int = 4
    without_ki67: int = 4
    cytometer: str = "FACSCanto II (simulated)"
    creator: str = "BD FACSDiva Software Version 8.0.1 (SIMULATED by cytogate)"
    #: minutes between consecutive tubes of one draw
    tube_minutes: int = 4

    def __post_init__(self) -> None:
        n = self.study.n_patients
        for name in ("without_cd114", "without_cd49f", "without_ki67"):
            value = getattr(self, name)
            if not 0 <= value <= n:
                raise SimulationError(f"{name} must be between 0 and n_patients ({n}), got {value}")
        if self.without_cd49f < self.without_cd114:
            raise SimulationError(
                f"without_cd49f ({self.without_cd49f}) must be >= without_cd114 "
                f"({self.without_cd114}): the CD49f-less patients include the CD114-less ones"
            )
        if self.tube_minutes < 0:
            raise SimulationError(f"tube_minutes must be >= 0, got {self.tube_minutes}")

    @classmethod
    def for_patients(
        cls, n_patients: int = 8, events_per_file: int = 5000, seed: int = 42
    ) -> MultiTubeConfig:
        """The study's proportions for ``n_patients``: CD114 in 17/29, CD49f in 15/29, Ki67 in
        10/29 of the patients (Figure 1f), each measured in at least 4 (or all) patients so a
        paired test has a chance. One patient's blasts are atypical, as in the two-tube study.
        """
        floor = min(n_patients, 4)

        def has(ratio: float) -> int:
            return max(floor, round(n_patients * ratio))

        study = StudyConfig(
            n_patients=n_patients,
            events_per_file=events_per_file,
            seed=seed,
            atypical_patients=min(1, n_patients - 1),
        )
        return cls(
            study=study,
            without_cd114=n_patients - has(17 / 29),
            without_cd49f=n_patients - min(has(15 / 29), has(17 / 29)),
            without_ki67=n_patients - has(10 / 29),
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["study"] = self.study.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MultiTubeConfig:
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise SimulationError(f"multitube config: unknown fields {unknown}")
        values = dict(data)
        if "study" in values:
            values["study"] = StudyConfig.from_dict(values["study"])
        return cls(**values)

    def panels(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """Patient -> tube name -> markers recorded (tubes a patient lacks are absent)."""
        ids = self.study.patient_ids()
        order = np.random.default_rng([self.study.seed, 3]).permutation(len(ids))
        no_cd114 = {ids[int(i)] for i in order[: self.without_cd114]}
        no_cd49f = {ids[int(i)] for i in order[: self.without_cd49f]}
        ki67_order = np.random.default_rng([self.study.seed, 4]).permutation(len(ids))
        no_ki67 = {ids[int(i)] for i in ki67_order[: self.without_ki67]}
        out: dict[str, dict[str, tuple[str, ...]]] = {}
        for pid in ids:
            lacks = {"CD114"} if pid in no_cd114 else set()
            lacks |= {"CD49f"} if pid in no_cd49f else set()
            tubes = {}
            for tube in PANEL:
                if pid in no_ki67 and "Ki67" in tube.markers:
                    continue
                tubes[tube.name] = tuple(m for m in tube.markers if m not in lacks)
            out[pid] = tubes
        return out


@dataclass(frozen=True)
class MultiTubeTruth:
    """What :func:`simulate_multitube_study` wrote and planted (tables as in ``ground_truth/``)."""

    outdir: Path
    config: MultiTubeConfig
    patients: tuple[PatientParams, ...]
    files: tuple[Path, ...]
    manifest: pd.DataFrame
    planted: pd.DataFrame
    panels: pd.DataFrame
    labels: dict[str, np.ndarray]


def specimen_name(patient: str, timepoint: str) -> str:
    """Diva specimen name of a draw: ``P03_D3`` (timepoint codes: :data:`TIMEPOINT_CODES`)."""
    return f"{patient}_{TIMEPOINT_CODES.get(timepoint, timepoint)}"


def diva_file_name(specimen: str, tube: str, number: int) -> str:
    """FACSDiva's export name ``<specimen>_<tube>_<NNN>.fcs``, e.g. ``P03_D3_Ki67_011.fcs``."""
    return f"{specimen}_{tube}_{number:03d}.fcs"


def _keywords(
    config: MultiTubeConfig,
    patient: PatientParams,
    sample: SimulatedSample,
    tube: Tube,
    fil: str,
    minutes: int,
) -> dict[str, str]:
    start = acquisition_start(config.study, patient, sample.timepoint) + timedelta(minutes=minutes)
    end = start + timedelta(seconds=int(np.ceil(sample.duration_s)))
    return {
        "$CYT": config.cytometer,
        "$COM": SIMULATED_COMMENT,
        "$FIL": fil,
        "$DATE": fcs_date(start),
        "$BTIM": start.strftime("%H:%M:%S"),
        "$ETIM": end.strftime("%H:%M:%S"),
        "$SRC": specimen_name(patient.patient, sample.timepoint),
        "$TIMESTEP": repr(config.study.instrument.timestep),
        "CREATOR": config.creator,
        "EXPERIMENT NAME": f"AML-MOB {patient.patient}",
        "TUBE NAME": tube.name,
        "APPLY COMPENSATION": "TRUE",
        "CYTOGATE_SIMULATED": "TRUE",
        "CYTOGATE_SEED": str(config.study.seed),
    }


def _planted(config: MultiTubeConfig, patients: list[PatientParams]) -> pd.DataFrame:
    """The two-tube simulator's planted table, less the measures a patient's panel lacks."""
    table = planted_table(config.study, patients)
    panels = config.panels()
    keep = np.ones(len(table), dtype=bool)
    for pid, tubes in panels.items():
        have = {m for markers in tubes.values() for m in markers}
        of_patient = table["patient"].to_numpy() == pid
        for m in (*MFI_MARKERS, "Ki67"):
            if m in have:
                continue
            measures = ["ki67_fraction"] if m == "Ki67" else [
                f"blast_mfi_stained_{m}", f"blast_mfi_isotype_{m}", f"blast_rmfi_{m}"
            ]  # fmt: skip
            keep &= ~(of_patient & table["measure"].isin(measures).to_numpy())
    return table[keep].reset_index(drop=True)


def _panel_table(config: MultiTubeConfig) -> pd.DataFrame:
    rows = []
    for pid, tubes in config.panels().items():
        have = {m for markers in tubes.values() for m in markers}
        rows.append(
            {
                "patient": pid,
                "tubes": ";".join(tubes),
                **{f"has_{m}": m in have for m in (*MFI_MARKERS, "Ki67")},
            }
        )
    return pd.DataFrame(rows)


def _readme(config: MultiTubeConfig, truth_files: int, panels: pd.DataFrame) -> str:
    from cytogate import __version__

    s = config.study
    n = {m: int(panels[f"has_{m}"].sum()) for m in (*MFI_MARKERS, "Ki67")}
    counts = ", ".join(f"{m} n = {v}" for m, v in n.items())
    return f"""# Simulated multi-tube AML mobilisation study (NOT patient data)

**SIMULATED DATA.** Every file in this folder was generated by
`cytogate.sim.multitube.simulate_multitube_study` (cytogate {__version__}, seed {s.seed});
none comes from a patient or an instrument. Each FCS file says so in `$COM`
("{SIMULATED_COMMENT}"), `CREATOR` and `CYTOGATE_SIMULATED=TRUE`.

## Design (the study's panel)
{s.n_patients} patients × {len(s.timepoints)} timepoints ({", ".join(s.timepoints)}); per draw
up to four tubes of {s.events_per_file} events, {truth_files} FCS 3.1 files in all:

| tube | role | control for | stains (besides FSC-A, FSC-H, SSC-A, Time) |
|---|---|---|---|
| `CXCR4` | stained | | CD45 PerCP-Cy5.5, CXCR4 12G5 PE, 1D9 APC, CD114 FITC, CD49f PE-Cy7 |
| `CXCR4 isotype` | isotype | `CXCR4` | the same detectors, isotype antibodies (CD45 stained) |
| `Ki67` | stained (fixed/permeabilised) | | CD45 PerCP-Cy5.5, Ki67 BV421 |
| `Ki67 isotype` | isotype | `Ki67` | the same detectors, isotype antibody (CD45 stained) |

Partial panels: {config.without_cd114} patients have no CD114 and {config.without_cd49f} no
CD49f detector in their CXCR4 tubes, {config.without_ki67} have no Ki67 tubes ({counts}); see
`ground_truth/panels.csv`.

## Files, as FACSDiva exports them
- `<specimen>_<tube>_<NNN>.fcs`: specimen `<patient>_<timepoint code>` (codes BL = baseline,
  D3 = day3, others as written: 2h, 4h, 6h, 24h), tube as in the table, NNN the tube's running
  number in the patient's experiment, e.g. `P03_D3_CXCR4 isotype_010.fcs`.
- Keywords: `$SRC` (specimen), `TUBE NAME`, `EXPERIMENT NAME` (`AML-MOB <patient>`), `$FIL`,
  `$DATE`, `$BTIM`/`$ETIM`, `CREATOR`, `$CYT`. `cytogate design .` infers the design from them
  (preset `facsdiva`); `manifest.csv` states it: file, patient, timepoint, tube, role,
  control_for, fmo_marker, wbc_per_ul, cohort.

## Ground truth
- `ground_truth/planted_effects.csv`: as for the two-tube simulator (patient, timepoint,
  measure, value, multiplier_vs_baseline, cohort_multiplier), without the measures a patient's
  panel lacks. Medians in linear units before spillover; RMFI = stained ÷ isotype median.
- `ground_truth/labels.npz` (per file, one uint8 label per event: 0 debris, 1 doublet,
  2 CD45-negative, 3 lymphocyte, 4 monocyte, 5 granulocyte, 6 blast), `patients.csv`,
  `panels.csv`, `config.json` (`MultiTubeConfig.from_dict(json.load(f)["config"])`).
- Simplifications: fixation does not change scatter in the Ki67 tubes; a dye absent from a tube
  adds no light to any detector.
"""


def simulate_multitube_study(
    outdir: str | os.PathLike[str], config: MultiTubeConfig | None = None
) -> MultiTubeTruth:
    """Write the simulated multi-tube study (FCS files, manifest, README, ground truth).

    Each file draws from its own generator ``(seed, 5, patient, timepoint, tube)`` and takes
    its dates from the config, so the same config gives byte-identical files.
    """
    from cytogate import __version__

    config = config or MultiTubeConfig()
    s = config.study
    out = Path(outdir)
    truth_dir = out / "ground_truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    patients = make_patients(s)
    panels = config.panels()
    files: list[Path] = []
    labels: dict[str, np.ndarray] = {}
    rows = []
    for pt in patients:
        number = 0
        for k, t in enumerate(s.timepoints):
            for j, tube in enumerate(PANEL):
                markers = panels[pt.patient].get(tube.name)
                if markers is None:
                    continue
                number += 1
                name = diva_file_name(specimen_name(pt.patient, t), tube.name, number)
                rng = np.random.default_rng([s.seed, 5, pt.index, k, j])
                stained = [m for m in markers if m != "CD45"] if tube.role == "stained" else []
                sample = simulate_sample(
                    s,
                    pt,
                    t,
                    "stained" if tube.role == "stained" else "isotype",
                    s.events_per_file,
                    rng,
                    stained_markers=stained,
                    markers=markers,
                )
                keywords = _keywords(config, pt, sample, tube, name, j * config.tube_minutes)
                files.append(
                    write_fcs(
                        out / name,
                        sample.events,
                        pnn=sample.pnn,
                        pns=sample.pns,
                        pnr=[c.pnr for c in sample.channels],
                        keywords=keywords,
                        spillover=sample.spillover,
                    )
                )
                labels[name] = sample.labels
                rows.append(
                    {
                        "file": name,
                        "patient": pt.patient,
                        "timepoint": t,
                        "tube": tube.name,
                        "role": tube.role,
                        "control_for": tube.control_for,
                        "fmo_marker": "",
                        "wbc_per_ul": int(pt.wbc_per_ul(t)),
                        "cohort": s.cohort,
                    }
                )
    warn_stale_fcs(out, files)
    manifest = pd.DataFrame(rows)
    planted = _planted(config, patients)
    panel_table = _panel_table(config)
    atomic_text(out / "manifest.csv", manifest.to_csv(index=False))
    atomic_text(out / "README.md", _readme(config, len(files), panel_table))
    atomic_write_bytes(truth_dir / "labels.npz", [npz_bytes(labels)])
    atomic_text(truth_dir / "planted_effects.csv", planted.to_csv(index=False))
    atomic_text(truth_dir / "patients.csv", patient_table(patients).to_csv(index=False))
    atomic_text(truth_dir / "panels.csv", panel_table.to_csv(index=False))
    meta = {
        "cytogate_version": __version__,
        "design": "multitube",
        "seed": s.seed,
        "config": config.to_dict(),
    }
    atomic_text(truth_dir / "config.json", json.dumps(meta, indent=2) + "\n")
    return MultiTubeTruth(
        outdir=out,
        config=config,
        patients=tuple(patients),
        files=tuple(files),
        manifest=manifest,
        planted=planted,
        panels=panel_table,
        labels=labels,
    )
