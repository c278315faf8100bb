"""Small runs for tests: a few patients' (and timepoints') files of a study, with its manifest."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import pandas as pd


def copy_run(
    source: Path,
    dest: Path,
    patients: Iterable[str],
    timepoints: Iterable[str] | None = None,
) -> Path:
    """Copy ``patients``' files (only ``timepoints``', if given) and their manifest rows from
    the study folder ``source`` into a new folder ``dest``; returns ``dest``."""
    dest.mkdir()
    manifest = pd.read_csv(source / "manifest.csv")
    keep = manifest["patient"].isin(list(patients))
    if timepoints is not None:
        keep &= manifest["timepoint"].isin(list(timepoints))
    chosen = manifest[keep]
    for name in chosen["file"]:
        shutil.copy(source / name, dest / name)
    chosen.to_csv(dest / "manifest.csv", index=False)
    return dest
