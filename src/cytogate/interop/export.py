"""``cytogate export FILE|RUN --format anndata|wsp|gatingml``: gate, then write the files.

The gating is cytogate's ``gate`` with the chosen template on each file (no batch pinning);
the writers are :mod:`~cytogate.interop.anndata_export` (one ``.h5ad`` per file, with the run's
design as sample metadata when RUN is a run folder) and
:mod:`~cytogate.interop.workspace_export` (one FlowJo workspace for all files, GatingML per
file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cytogate.interop.compare import fcs_files

__all__ = ["FORMATS", "run_export"]

FORMATS = ("anndata", "wsp", "gatingml")


def run_export(
    source: str | os.PathLike[str],
    fmt: str,
    template: Any,
    out: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Gate ``source`` (a file or the FCS files of a run folder) and write ``fmt``."""
    from cytogate.gating.engine import gate
    from cytogate.io.fcs import read_fcs

    source = Path(source)
    files = fcs_files(source)
    target = (
        Path(out)
        if out is not None
        else (source if source.is_dir() else source.parent) / "cytogate_export"
    )
    target.mkdir(parents=True, exist_ok=True)
    metadata = _design(source) if source.is_dir() else {}
    pairs = []
    written: list[Path] = []
    for path in files:
        sample = read_fcs(path)
        result = gate(sample, template)
        if fmt == "anndata":
            from cytogate.interop.anndata_export import write_h5ad

            written.append(
                write_h5ad(result, target / f"{path.stem}.h5ad", metadata.get(path.name))
            )
        else:
            pairs.append((sample, result))
    if fmt == "wsp":
        from cytogate.interop.workspace_export import export_workspace

        written.append(export_workspace(pairs, target / "cytogate.wsp"))
    elif fmt == "gatingml":
        from cytogate.interop.workspace_export import export_gatingml_per_file

        written.extend(export_gatingml_per_file(pairs, target / "gatingml"))
    return written


def _design(run: Path) -> dict[str, dict[str, str]]:
    """file name -> patient/timepoint/tube from the run's manifest, keywords or file names
    (empty when the folder is not a study run)."""
    from cytogate.errors import CytogateError
    from cytogate.study.design import load_config, read_design

    try:
        design = read_design(run, load_config(run))
    except CytogateError:
        return {}
    return {
        row.file.name: {"patient": row.patient, "timepoint": row.timepoint, "tube": row.tube}
        for row in design.rows
    }
