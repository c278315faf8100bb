"""A summary of an FCS file for people (``cytogate inspect``) and for pipelines (``--json``)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.io.fcs import Sample

# Keywords a cytometrist looks at first: instrument, acquisition, sample identity.
KEY_KEYWORDS = (
    "$CYT",
    "$CYTSN",
    "$DATE",
    "$BTIM",
    "$ETIM",
    "$FIL",
    "$SRC",
    "$SMNO",
    "$OP",
    "$INST",
    "$COM",
    "$DATATYPE",
    "$BYTEORD",
    "$MODE",
    "$TOT",
    "$PAR",
    "$TIMESTEP",
    "CYTOGATE_SIMULATED",
    "CYTOGATE_PATIENT",
    "CYTOGATE_TIMEPOINT",
    "CYTOGATE_TUBE",
)


def describe_sample(sample: Sample) -> dict[str, Any]:
    """Plain-data description of a sample (JSON-serialisable)."""
    channels = [
        {
            "n": int(row.n),
            "pnn": str(row.pnn),
            "pns": str(row.pns),
            "pnr": float(row.pnr),
            "pnb": int(row.pnb),
            "pne": str(row.pne),
        }
        for row in sample.channels.itertuples()
    ]
    spill = sample.spillover
    return {
        "file": str(sample.path),
        "sha256": sample.sha256,
        "fcs_version": sample.version,
        "events": sample.n_events,
        "data_sets": sample.data_sets,
        "channels": channels,
        "spillover": None
        if spill is None
        else {
            "channels": [str(c) for c in spill.columns],
            "matrix": spill.to_numpy().round(6).tolist(),
        },
        "keywords": {k: sample.keywords[k] for k in KEY_KEYWORDS if k in sample.keywords},
        "nonfinite": dict(sample.nonfinite),
        "warnings": list(sample.warnings),
    }


def to_json(info: dict[str, Any]) -> str:
    """:func:`describe_sample`'s result as strict JSON: NaN/inf (a missing $PnR) become null.

    ``json.dumps`` writes bare ``NaN``, which no JSON parser but Python's accepts.
    """
    return json.dumps(_finite(info), indent=2, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def format_description(info: dict[str, Any]) -> str:
    """Human-readable text of :func:`describe_sample`'s result."""
    lines = [
        f"file:        {info['file']}",
        f"FCS version: {info['fcs_version']}    events: {info['events']:,}    "
        f"channels: {len(info['channels'])}    data sets: {info['data_sets']}",
        f"sha256:      {info['sha256']}",
        "",
        f"{'#':>3}  {'$PnN':<18} {'$PnS':<28} {'$PnR':>10} {'$PnB':>4}  $PnE",
    ]
    for ch in info["channels"]:
        lines.append(
            f"{ch['n']:>3}  {ch['pnn']:<18} {ch['pns']:<28} {ch['pnr']:>10g} {ch['pnb']:>4}  "
            f"{ch['pne']}"
        )
    spill = info["spillover"]
    lines.append("")
    if spill is None:
        lines.append("spillover:   none in file")
    else:
        names = spill["channels"]
        lines.append(f"spillover:   {len(names)} x {len(names)} ({', '.join(names)})")
        for name, row in zip(names, spill["matrix"], strict=True):
            lines.append(f"  {name:<18} " + " ".join(f"{v:7.4f}" for v in row))
    if info["keywords"]:
        lines.append("")
        lines.append("keywords:")
        lines.extend(f"  {k:<20} {v}" for k, v in info["keywords"].items())
    for w in info["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
