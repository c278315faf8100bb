"""Gated events as AnnData (``.h5ad``) for the scverse world (scanpy, pytometry).

One file's events become one ``AnnData``, events × channels:

* ``X``: compensated linear intensities (float32), as cytogate quantifies them;
  ``layers["raw"]``: the values as read from the file; ``layers["transformed"]``: each channel
  on the scale the template gave it for this file (for channels a gate used: exactly the values
  the gates saw; others: the template's default scale, or the compensated values where there is
  none; ``var["transform"]`` says which).
* ``obs``: one boolean column per population (the membership), the event's index in the file,
  and the sample's metadata (file, and patient/timepoint/tube when known from a run's design).
* ``var`` (index $PnN): $PnS, $PnR, the template marker resolved to the channel, whether it was
  compensated, its transform.
* ``uns["cytogate"]``: template name, source, sha256, the gates as applied (JSON text), the
  scales per marker, the compensation, cytogate's version — JSON-serialisable only (h5ad stores
  no None, so nested, optional structures are stored as JSON text).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import anndata

    from cytogate.gating.engine import GatingResult

__all__ = ["to_anndata", "write_h5ad"]


def to_anndata(result: GatingResult, metadata: Mapping[str, str] | None = None) -> anndata.AnnData:
    """The AnnData of ``result``'s sample (see the module docstring for the fields)."""
    import anndata as ad
    import pandas as pd

    from cytogate import __version__
    from cytogate.errors import CytogateError

    sample = result.sample
    n, n_channels = sample.data.shape
    pnn = [str(v) for v in sample.channels["pnn"]]
    compensated = np.asarray(result.compensated, dtype=np.float64)
    raw = np.asarray(sample.data, dtype=np.float32)
    marker_of = {r.index: m for m, r in result.markers.items() if r.index >= 0}
    transformed = np.empty((n, n_channels), dtype=np.float32)
    transform_text, spill = [], set()
    if result.spillover is not None:
        spill = {str(c) for c in result.spillover.columns}
    for j in range(n_channels):
        marker = marker_of.get(j)
        if marker is not None and (marker in result.scaled or marker in result.template.panel):
            try:
                transformed[:, j] = result.scaled_values(marker)
                transform_text.append(_scale_text(result, marker))
                continue
            except CytogateError:
                pass
        try:
            if pnn[j].lower() == "time":  # a clock, not an intensity: never scaled
                raise CytogateError("time")
            scale = result.template.scale_for(pnn[j], sample, j)
        except CytogateError:
            transformed[:, j] = compensated[:, j]
            transform_text.append("none")
            continue
        pnr = float(sample.channels["pnr"].iloc[j])
        transformed[:, j] = scale.apply(compensated[:, j], pnr)
        transform_text.append(f"default: {scale.kind} {json.dumps(scale.params)}")
    obs = pd.DataFrame({pop: result.mask(pop) for pop in result.populations})
    obs.insert(0, "event", np.arange(n, dtype=np.int64))
    meta = {"file": sample.path.name, **(metadata or {})}
    for key, value in meta.items():
        obs[key] = pd.Categorical([str(value)] * n)
    obs.index = [str(i) for i in range(n)]
    var = pd.DataFrame(
        {
            "pns": [str(v) for v in sample.channels["pns"]],
            "pnr": sample.channels["pnr"].to_numpy(dtype=np.float64),
            "marker": [marker_of.get(j, "") for j in range(n_channels)],
            "compensated": [p in spill for p in pnn],
            "transform": transform_text,
        },
        index=pnn,
    )
    adata = ad.AnnData(
        X=compensated.astype(np.float32),
        obs=obs,
        var=var,
        layers={"raw": raw, "transformed": transformed},
    )
    adata.uns["cytogate"] = _uns(result, meta, __version__)
    return adata


def write_h5ad(
    result: GatingResult,
    path: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write :func:`to_anndata` of ``result`` to ``path`` (atomically: temporary + rename)."""
    from cytogate.atomic import atomic_write

    adata = to_anndata(result, metadata)
    target = Path(path)
    return atomic_write(target, lambda tmp: adata.write_h5ad(tmp))


def _scale_text(result: GatingResult, marker: str) -> str:
    from cytogate.gating.external import ExternalTemplate

    if isinstance(result.template, ExternalTemplate):
        return f"{marker}: as the {type(result.template).__name__} gates it"
    scale = result.scale_for(marker)
    return f"{marker}: {scale.kind} {json.dumps(scale.params)}"


def _uns(result: GatingResult, meta: Mapping[str, str], version: str) -> dict[str, Any]:
    template = result.template
    gates = [
        {
            "name": g.name,
            "parent": g.parent,
            "kind": g.kind,
            "status": g.status,
            "dims": list(g.dims),
            "channels": list(g.channels),
            "geometry": _geometry_json(g.geometry),
            "qc": list(g.qc),
            "note": g.note,
        }
        for g in result.gates
    ]
    scales = {}
    for marker in result.markers:
        try:
            scale = result.scale_for(marker)
        except Exception:  # a marker the template has no scale for (external templates)
            continue
        scales[marker] = {
            "kind": scale.kind,
            "params": {k: (v if isinstance(v, str) else float(v)) for k, v in scale.params.items()},
        }
    spill = result.spillover
    out: dict[str, Any] = {
        "version": version,
        "template": {
            "name": template.name,
            "source": template.source,
            "sha256": template.sha256,
            "gates_json": json.dumps(gates),
        },
        "scales": scales,
        "compensation": result.compensation,
        "sample": dict(meta),
        "populations": list(result.populations),
        "parents": {p: result.parent(p) for p in result.populations},
    }
    if spill is not None:
        out["spillover"] = {
            "channels": [str(c) for c in spill.columns],
            "matrix": spill.to_numpy(dtype=np.float64),
        }
    json.dumps(out, default=lambda o: o.tolist())  # fails here, not in h5py, if not JSON-ready
    return out


def _geometry_json(geometry: Any) -> Any:
    if geometry is None:
        return None
    from cytogate.gating.adaptive import geometry_to_dict

    try:
        return geometry_to_dict(geometry)
    except Exception:  # an external geometry: named, not described
        return {
            "kind": str(getattr(geometry, "kind", type(geometry).__name__)),
            "text": str(geometry),
        }
