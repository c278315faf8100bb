"""The study config: every knob of the simulation, its validation and its JSON round trip.

Presets: :func:`hard_config` (what a fixed blast gate cannot follow) and
:func:`cd45_on_channel` (CD45 on another detector).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, get_args, get_origin, get_type_hints

import numpy as np

from cytogate.sim.common import MARKERS, SimulationError
from cytogate.sim.instrument import FLUORESCENCE_CHANNELS, Instrument
from cytogate.sim.patients import DEFAULT_EFFECTS, Effects
from cytogate.sim.populations import Composition, Geometry, Markers


@dataclass(frozen=True)
class StudyConfig:
    """Every knob of the simulated study; the defaults reproduce docs/architecture.md §5.

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
    geometry: Geometry = field(default_factory=Geometry)
    composition: Composition = field(default_factory=Composition)
    markers: Markers = field(default_factory=Markers)
    effects: Effects = field(default_factory=Effects)
    instrument: Instrument = field(default_factory=Instrument)

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
