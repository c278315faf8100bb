"""``cytogate compare``: gate a run, hold it against the reference, write the agreement files.

Kept apart from :mod:`cytogate.interop.agreement` (the scores) so the scoring stays a pure
function of masks, and this module only finds files and writes outputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cytogate.atomic import atomic_write
from cytogate.errors import CytogateError
from cytogate.interop.agreement import compare_files, load_reference, parse_map

__all__ = ["fcs_files", "run_compare"]


def fcs_files(run: Path) -> list[Path]:
    """One file, or the FCS files directly inside a run folder (sorted by name)."""
    if run.is_file():
        return [run]
    files = sorted(p for p in run.iterdir() if p.is_file() and p.suffix.lower() == ".fcs")
    if not files:
        raise CytogateError(f"{run}: no .fcs files in this folder")
    return files


def run_compare(
    run: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    template: Any,
    *,
    mapping: Sequence[str] = (),
    out: str | os.PathLike[str] | None = None,
    group: str | None = None,
) -> list[Path]:
    """Write ``agreement.csv`` and ``bland_altman.png`` into ``out``; return their paths."""
    from cytogate.interop.agreement_plots import bland_altman

    run = Path(run)
    files = fcs_files(run)
    ref = load_reference(reference, group)
    table = compare_files(files, template, ref, parse_map(mapping))
    target = (
        Path(out)
        if out is not None
        else (run if run.is_dir() else run.parent) / ("cytogate_compare")
    )
    target.mkdir(parents=True, exist_ok=True)
    csv = atomic_write(
        target / "agreement.csv", lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g")
    )
    return [csv, bland_altman(table, target / "bland_altman.png")]
