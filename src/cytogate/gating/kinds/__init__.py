"""Gate kinds, one declaration each, registered by name (see :mod:`.base`).

Importing this package registers the built-in kinds; :data:`KINDS` maps a name to its
:class:`Kind`. A geometry's kind is ``KINDS[geometry.kind]``.
"""

from __future__ import annotations

from typing import Any

from cytogate.gating.kinds import fixed  # noqa: F401  (registers the fixed kinds first)
from cytogate.gating.kinds import leukomap as _leukomap  # noqa: F401  (registers leukomap)
from cytogate.gating.kinds.base import KINDS, Kind, kinds_markdown, register
from cytogate.gating.kinds.cluster import ClusterGate
from cytogate.gating.kinds.relative import RelativeGate
from cytogate.gating.kinds.threshold import ThresholdGate

AdaptiveGeometry = ThresholdGate | ClusterGate | RelativeGate
ADAPTIVE_KINDS = tuple(name for name, kind in KINDS.items() if kind.adaptive)


def kind_of(geometry: Any) -> Kind:
    """The registered kind of a geometry or a parsed adaptive gate."""
    return KINDS[geometry.kind]


def is_adaptive(geometry: Any) -> bool:
    """True for a gate fitted per file (its kind declares a fitter)."""
    return kind_of(geometry).adaptive


__all__ = [
    "ADAPTIVE_KINDS",
    "KINDS",
    "AdaptiveGeometry",
    "ClusterGate",
    "Kind",
    "RelativeGate",
    "ThresholdGate",
    "is_adaptive",
    "kind_of",
    "kinds_markdown",
    "register",
]
