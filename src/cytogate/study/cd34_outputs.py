"""``cd34.csv`` and ``groups.csv`` of a batch gated with an ISHAGE template.

A run is a CD34 run when the template names the ``cd34`` and ``beads`` roles and the manifest
has a ``specimen`` column (blood | apheresis). The manifest's CD34 columns (``collection_day``,
``beads_per_ul``, ``beads_per_tube``, ``sample_ul``, ``product_ml``, ``weight_kg``) are read
here, each bad value reported with its line and column; the arithmetic is
:mod:`cytogate.analysis.cd34`, the group comparison :mod:`cytogate.analysis.groups`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cytogate.analysis.cd34 import APHERESIS, BLOOD, CD34Thresholds, cd34_table, patient_table
from cytogate.analysis.groups import compare_groups
from cytogate.errors import DesignError
from cytogate.study.design import MANIFEST_NAME

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.gating.template import Template

NUMERIC = (
    "collection_day",
    "beads_per_ul",
    "beads_per_tube",
    "sample_ul",
    "product_ml",
    "weight_kg",
)
GROUP_MEASURES = ("peak_blood_cd34_per_ul", "cd34_e6_per_kg", "viable_cd34_e6_per_kg")


def is_cd34_template(template: Template) -> bool:
    """True for ISHAGE templates: they name the ``cd34`` and ``beads`` populations as roles."""
    return {"cd34", "beads"} <= set(template.roles)


def read_cd34_manifest(run_dir: Path) -> pd.DataFrame | None:
    """The manifest's CD34 columns per file, or None when it has no ``specimen`` column."""
    path = run_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    reader = csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    if "specimen" not in header:
        return None
    rows, problems = [], []
    for line, raw in enumerate(reader, start=2):
        rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        if not any(rec.values()):
            continue
        where = f"{path.name}: line {line}"
        row: dict[str, object] = {
            "file": rec.get("file", ""),
            "cohort": rec.get("cohort", ""),
            "specimen": rec.get("specimen", ""),
        }
        if row["specimen"] not in (BLOOD, APHERESIS):
            problems.append(f"{where}: 'specimen' {row['specimen']!r} is not blood or apheresis")
        for col in NUMERIC:
            text = rec.get(col, "")
            try:
                value = float(text) if text else math.nan
            except ValueError:
                value = math.nan
                problems.append(f"{where}: '{col}' {text!r} is not a number")
            if value < 0 or math.isinf(value):
                problems.append(f"{where}: '{col}' {text!r} must be a finite number >= 0")
            row[col] = value
        day = float(row["collection_day"])  # type: ignore[arg-type]
        if math.isfinite(day) and day != int(day):
            problems.append(f"{where}: 'collection_day' {day:g} is not a whole number")
        if row["specimen"] == APHERESIS:
            for col in ("product_ml", "weight_kg"):
                if not math.isfinite(float(row[col])):  # type: ignore[arg-type]
                    problems.append(f"{where}: '{col}' is needed for an apheresis product")
        if math.isnan(float(row["collection_day"])):  # type: ignore[arg-type]
            row["collection_day"] = 0.0 if row["specimen"] == BLOOD else math.nan
            if row["specimen"] == APHERESIS:
                problems.append(f"{where}: 'collection_day' is needed for an apheresis product")
        rows.append(row)
    if problems:
        raise DesignError("manifest problems (CD34 columns):\n  " + "\n  ".join(problems))
    return pd.DataFrame(rows)


def cd34_outputs(
    run_dir: Path,
    template: Template,
    populations: pd.DataFrame,
    thresholds: CD34Thresholds | None = None,
) -> dict[str, pd.DataFrame]:
    """``{"cd34": per tube, "groups": group comparison}``, or ``{}`` for a non-CD34 run."""
    if not is_cd34_template(template) or populations.empty:
        return {}
    manifest = read_cd34_manifest(run_dir)
    if manifest is None:
        return {}
    roles = template.roles
    names = {
        roles.get("leukocytes", ""): "cd45",
        roles["cd34"]: "cd34",
        roles.get("viable_cd34", ""): "viable_cd34",
        roles["beads"]: "bead",
    }
    pops = populations[populations["population"].isin(names)]
    counts = pops.pivot_table(
        index=["file", "patient", "timepoint"],
        columns="population",
        values="count",
        aggfunc="first",
    ).rename(columns=lambda c: f"{names[c]}_events")
    for col in ("cd45_events", "cd34_events", "viable_cd34_events", "bead_events"):
        if col not in counts:
            counts[col] = math.nan
    qc = pops.pivot_table(
        index="file", columns="population", values="qc_reason", aggfunc="first"
    ).fillna("")
    tubes = counts.reset_index()
    tubes["bead_qc"] = tubes["file"].map(qc.get(roles["beads"], pd.Series(dtype=str))).fillna("")
    tubes["cd34_qc"] = tubes["file"].map(qc.get(roles["cd34"], pd.Series(dtype=str))).fillna("")
    tubes = tubes.merge(manifest, on="file", how="inner")
    table = cd34_table(tubes, thresholds)
    patients = patient_table(table, thresholds)
    groups = compare_groups(patients, GROUP_MEASURES, "cohort", "collection_failure")
    return {"cd34": table, "groups": groups}
