"""``cytogate compare``: gate a run, hold it against the reference, write the agreement files.

Kept apart from :mod:`cytogate.interop.agreement` (the scores) so the scoring stays a pure
function of masks, and this module only finds files and writes outputs. The report
(``agreement.html``, the Bland–Altman plot, the worst files' panels with both gates) is drawn
above this layer: the caller hands in a ``renderer`` (the CLI passes
:func:`cytogate.viz.agreement_report.write_agreement_report`), which gets a
:class:`CompareResult` holding the table and the worst files' recorded memberships, so the
figures gate nothing again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytogate.atomic import atomic_write
from cytogate.errors import CytogateError
from cytogate.interop.agreement import (
    FileAgreement,
    Reference,
    compare_files_keeping,
    load_reference,
    parse_map,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["AGREEMENT_NAME", "CompareResult", "fcs_files", "run_compare"]

AGREEMENT_NAME = "agreement.csv"


@dataclass(frozen=True)
class CompareResult:
    """What ``cytogate compare`` found, as a renderer draws it."""

    table: pd.DataFrame  # agreement.csv's rows, worst first
    worst: tuple[FileAgreement, ...]  # the worst files' results, worst first
    out: Path  # the output folder (agreement.csv is in it)
    run: Path
    reference: Reference
    template: str  # cytogate's side, as the user named it
    mapping: Mapping[str, str]


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
    worst: int = 3,
    renderer: Callable[[CompareResult], list[Path]] | None = None,
) -> list[Path]:
    """Write ``agreement.csv`` into ``out`` and, with a ``renderer``, what it draws.

    ``worst``: how many of the worst files' results the renderer gets. Returns the paths
    written, ``agreement.csv`` first.
    """
    run = Path(run)
    files = fcs_files(run)
    ref = load_reference(reference, group)
    pairs = parse_map(mapping)
    table, kept = compare_files_keeping(files, template, ref, pairs, keep=worst)
    target = (
        Path(out)
        if out is not None
        else (run if run.is_dir() else run.parent) / ("cytogate_compare")
    )
    target.mkdir(parents=True, exist_ok=True)
    csv = atomic_write(
        target / AGREEMENT_NAME, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g")
    )
    written = [csv]
    if renderer is not None:
        if isinstance(template, str | os.PathLike):
            template_name = str(template)
        else:
            template_name = str(getattr(template, "name", type(template).__name__))
        result = CompareResult(
            table=table,
            worst=tuple(kept),
            out=target,
            run=run,
            reference=ref,
            template=template_name,
            mapping=pairs,
        )
        written += renderer(result)
    return written
