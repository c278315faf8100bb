"""Public names of data-driven ("adaptive") gating, gathered for callers outside the gating
layer: each kind lives in :mod:`cytogate.gating.kinds`, its algorithms in
:mod:`cytogate.gating.fitting` (see docs/adaptive_gating.md)."""

from cytogate.gating.fitting.base import MAD_TO_SD, Fit, FitContext, FitError
from cytogate.gating.kinds import ADAPTIVE_KINDS, AdaptiveGeometry, is_adaptive
from cytogate.gating.kinds.bound import Bound
from cytogate.gating.kinds.cluster import ClusterGate
from cytogate.gating.kinds.relative import RelativeGate
from cytogate.gating.kinds.threshold import METHODS as THRESHOLD_METHODS
from cytogate.gating.kinds.threshold import ThresholdGate
from cytogate.gating.model import QCRules
from cytogate.gating.serialize import geometry_to_dict, json_ready

__all__ = [
    "ADAPTIVE_KINDS",
    "MAD_TO_SD",
    "THRESHOLD_METHODS",
    "AdaptiveGeometry",
    "Bound",
    "ClusterGate",
    "Fit",
    "FitContext",
    "FitError",
    "QCRules",
    "RelativeGate",
    "ThresholdGate",
    "geometry_to_dict",
    "is_adaptive",
    "json_ready",
]
