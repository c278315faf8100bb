"""JSON-ready forms of geometries and fit diagnostics (the batch's gates.json and pins)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cytogate.gating.gates import Ellipse, Geometry, Polygon, Rectangle


def geometry_to_dict(geometry: Geometry) -> dict[str, Any]:
    """A JSON-ready description of an ordinary geometry (the template syntax of its kind)."""
    if isinstance(geometry, Rectangle):
        return {
            "kind": geometry.kind,
            "dims": list(geometry.dims),
            "min": list(geometry.min),
            "max": list(geometry.max),
        }
    if isinstance(geometry, Polygon):
        return {
            "kind": "polygon",
            "dims": list(geometry.dims),
            "vertices": [list(v) for v in geometry.vertices],
        }
    if isinstance(geometry, Ellipse):
        return {
            "kind": "ellipse",
            "dims": list(geometry.dims),
            "center": list(geometry.center),
            "covariance": [list(r) for r in geometry.covariance],
            "distance_square": geometry.distance_square,
        }
    raise TypeError(f"no dict form for {type(geometry).__name__}")


def json_ready(value: Any) -> Any:
    """Diagnostics with numpy scalars turned into Python numbers (for JSON/CSV)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
