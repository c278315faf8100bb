"""A seeded, simulated AML mobilisation study with ground truth: the simulator's public names.

Why: gating and quantification can only be checked against data whose answer is known. The
simulator writes FCS 3.1 files that look like a CD45/SSC blast-gating panel acquired on a
Diva-like instrument, plus per-event population labels and the planted per-patient effects.
Its parts, one job each: :mod:`~cytogate.sim.common` (labels, scales), :mod:`~.instrument`
(detectors, spillover, noise), :mod:`~.populations` (cell types and events), :mod:`~.patients`
(planted per-patient effects), :mod:`~.config` (the study config), :mod:`~.files` (FCS writing),
:mod:`~.ground_truth` (truth tables), :mod:`~.study` (a whole run on disk) and
:mod:`~.multitube` (the AML study's multi-tube panel as a FACSDiva export).
"""

from __future__ import annotations

from cytogate.sim.common import (
    LABEL_CODES,
    LABELS,
    LEUKOCYTE_LABELS,
    LOGICLE_PARAMS,
    MARKERS,
    MFI_MARKERS,
    SCATTER_RANGE,
    SIMULATED_COMMENT,
    TUBES,
    SimulationError,
)
from cytogate.sim.config import (
    HARD_BLAST_CD45,
    HARD_BLAST_SHARE,
    HARD_BLAST_SSC,
    HARD_SCATTER_GAIN,
    StudyConfig,
    cd45_on_channel,
    hard_config,
)
from cytogate.sim.files import (
    file_name,
    file_rng,
    read_labels,
    sample_keywords,
    write_benchmark_file,
    write_sample,
)
from cytogate.sim.ground_truth import StudyTruth, patient_table, planted_table
from cytogate.sim.instrument import (
    CHANNELS,
    FLUORESCENCE_CHANNELS,
    FLUOROCHROMES,
    ISOTYPE_NAMES,
    STAINED_NAMES,
    ChannelSpec,
    Instrument,
    channel_specs,
    spillover_frame,
)
from cytogate.sim.multitube import MultiTubeConfig, MultiTubeTruth, simulate_multitube_study
from cytogate.sim.patients import DEFAULT_EFFECTS, Effects, PatientParams, make_patients
from cytogate.sim.populations import (
    Cluster,
    Composition,
    Geometry,
    Markers,
    SimulatedSample,
    simulate_sample,
)
from cytogate.sim.study import simulate_study

__all__ = [
    "CHANNELS",
    "DEFAULT_EFFECTS",
    "FLUORESCENCE_CHANNELS",
    "FLUOROCHROMES",
    "HARD_BLAST_CD45",
    "HARD_BLAST_SHARE",
    "HARD_BLAST_SSC",
    "HARD_SCATTER_GAIN",
    "ISOTYPE_NAMES",
    "LABELS",
    "LABEL_CODES",
    "LEUKOCYTE_LABELS",
    "LOGICLE_PARAMS",
    "MARKERS",
    "MFI_MARKERS",
    "SCATTER_RANGE",
    "SIMULATED_COMMENT",
    "STAINED_NAMES",
    "TUBES",
    "ChannelSpec",
    "Cluster",
    "Composition",
    "Effects",
    "Geometry",
    "Instrument",
    "Markers",
    "MultiTubeConfig",
    "MultiTubeTruth",
    "PatientParams",
    "SimulatedSample",
    "SimulationError",
    "StudyConfig",
    "StudyTruth",
    "cd45_on_channel",
    "channel_specs",
    "file_name",
    "file_rng",
    "hard_config",
    "make_patients",
    "patient_table",
    "planted_table",
    "read_labels",
    "sample_keywords",
    "simulate_multitube_study",
    "simulate_sample",
    "simulate_study",
    "spillover_frame",
    "write_benchmark_file",
    "write_sample",
]
