"""Writing simulated files: FCS keywords that say SIMULATED, per-file seeds, deterministic npz.

Every file draws from its own ``numpy.random.Generator`` seeded by ``(seed, patient,
timepoint, tube)``, and dates/times come from the config, never the clock, so the same config
gives byte-identical files.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import warnings
import zipfile
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

from cytogate.io.fcs_writer import atomic_write_bytes, write_fcs
from cytogate.sim.common import SIMULATED_COMMENT, TUBES
from cytogate.sim.config import StudyConfig
from cytogate.sim.patients import PatientParams, make_patients
from cytogate.sim.populations import SimulatedSample, simulate_sample

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def acquisition_start(config: StudyConfig, patient: PatientParams, timepoint: str) -> datetime:
    inst = config.instrument
    day, clock = inst.acquisition.get(timepoint, (config.timepoints.index(timepoint), "09:00:00"))
    start = date.fromisoformat(inst.study_start) + timedelta(
        days=patient.index * inst.patient_stagger_days + int(day)
    )
    hh, mm, ss = (int(x) for x in clock.split(":"))
    return datetime(start.year, start.month, start.day, hh, mm, ss)


def fcs_date(moment: datetime) -> str:
    """``$DATE`` as FCS 3.1 writes it: ``08-JAN-2024``."""
    return f"{moment.day:02d}-{_MONTHS[moment.month - 1]}-{moment.year}"


def file_name(patient: str, timepoint: str, tube: str) -> str:
    """``<patient>_<timepoint>_<tube>.fcs``, e.g. ``P01_baseline_stained.fcs``."""
    return f"{patient}_{timepoint}_{tube}.fcs"


def sample_keywords(
    config: StudyConfig, patient: PatientParams, sample: SimulatedSample, fil: str
) -> dict[str, str]:
    """FCS keywords of a simulated file: it says it is simulated, and which sample it is."""
    start = acquisition_start(config, patient, sample.timepoint)
    end = start + timedelta(seconds=math.ceil(sample.duration_s))
    return {
        "$CYT": config.instrument.cytometer,
        "$COM": SIMULATED_COMMENT,
        "$FIL": fil,
        "$DATE": fcs_date(start),
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


def file_rng(config: StudyConfig, patient: int, timepoint: int, tube: int) -> np.random.Generator:
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
    rng = file_rng(config, patient, config.timepoints.index(timepoint), TUBES.index(tube))
    sample = simulate_sample(config, params, timepoint, tube, n_events, rng)
    return write_sample(path, sample, config, params)


def warn_stale_fcs(out: Path, written: list[Path]) -> None:
    """Warn when ``out`` holds FCS files this simulation did not write: a reader of the folder
    would take them for part of the study (the simulator never deletes a user's files)."""
    names = {f.name for f in written}
    stale = sorted(p.name for p in out.glob("*.fcs") if p.name not in names)
    if stale:
        warnings.warn(
            f"{out}: FCS files not written by this simulation remain: {', '.join(stale[:5])}"
            + (" …" if len(stale) > 5 else ""),
            RuntimeWarning,
            stacklevel=3,
        )


def atomic_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, [text.encode("utf-8")])


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
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
