"""``cytogate design``'s text: the inferred design, one row per file, with each field's source.

Why: a design read from keywords and file names is a guess until a person has looked at it;
this shows every file's patient, timepoint, tube, role and control beside where each came from,
then the files that could not be placed and why, before any gating is spent on a wrong design.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from cytogate.errors import DesignError
from cytogate.study.design import MANIFEST_NAME, Inference, RunConfig, read_manifest

_FIELDS = ("patient", "timepoint", "tube", "role", "control_for")
_HEADER = ("file", "patient", "timepoint", "tube", "role", "control")


def _short(source: str) -> str:
    """A source in a few characters for the table (the legend gives it in full)."""
    text = source.replace("keyword ", "").replace(" regex", " re").replace("file name", "name")
    text = text.replace(", normalised ", ", ").replace("the draw's only stained tube", "draw")
    if text.startswith("tube name rule"):
        return "tube name"
    if text.startswith("tube name (no control"):
        return "default"
    return text


def inference_lines(inference: Inference) -> list[str]:
    """The design table, the legend of sources, the unplaced files and the draw problems."""
    table: list[tuple[str, ...]] = [_HEADER]
    for p in inference.placed:
        r = p.row
        cells = [r.name]
        for name in _FIELDS:
            value = getattr(r, name)
            source = p.sources.get(name, "")
            if name == "role" and r.role == "fmo" and r.fmo_marker:
                value = f"fmo {r.fmo_marker}"
            cells.append(f"{value} [{_short(source)}]" if value and source else value or "-")
        table.append(tuple(cells))
    widths = [max(len(row[i]) for row in table) for i in range(len(_HEADER))]
    lines = [f"design inferred from {inference.source}: {len(inference.placed)} file(s)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in table]  # fmt: skip
    legend: Counter[tuple[str, str]] = Counter(
        (name, source) for p in inference.placed for name, source in p.sources.items()
    )
    if legend:
        lines.append("sources:")
        lines += [
            f"  {name}: {source} ({n} file(s))" for (name, source), n in sorted(legend.items())
        ]
    for path, why in inference.unreadable:
        lines.append(f"cannot read {path.name}: {why}")
    if inference.unplaced:
        lines.append(f"{len(inference.unplaced)} file(s) cannot be placed:")
        lines += [f"  {path.name}: {why}" for path, why in inference.unplaced]
    if inference.problems:
        lines.append(f"{len(inference.problems)} problem(s) in the draws:")
        lines += [f"  {p}" for p in inference.problems]
    lines += [f"warning: {w}" for w in inference.warnings]
    no_wbc = sum(p.row.wbc_per_ul is None for p in inference.placed)
    if no_wbc:
        lines.append(
            f"note: {no_wbc} file(s) without wbc_per_ul: cells/µL will be NaN for them (add a "
            "wbc_per_ul rule, or fill the column of the manifest --write gives)"
        )
    return lines


def manifest_agreement(run_dir: Path, inference: Inference, config: RunConfig) -> str | None:
    """One line comparing the inferred design with an existing ``manifest.csv`` (None: none)."""
    path = run_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        listed = {r.name: r for r in read_manifest(path, run_dir, config).rows}
    except DesignError as exc:
        first = str(exc).splitlines()[-1].strip()
        return f"{MANIFEST_NAME} exists but does not read ({first}); batch would stop on it"
    keys = ("patient", "timepoint", "tube", "role", "control_for", "fmo_marker")
    differ = [
        p.row.name
        for p in inference.placed
        if p.row.name in listed
        and any(getattr(p.row, k) != getattr(listed[p.row.name], k) for k in keys)
    ]
    same = sum(p.row.name in listed for p in inference.placed) - len(differ)
    text = (
        f"{MANIFEST_NAME} exists (batch uses it): the inferred design agrees on {same} of "
        f"{len(listed)} file(s)"
    )
    return text + (f"; differs on {', '.join(differ[:5])}" if differ else "")
