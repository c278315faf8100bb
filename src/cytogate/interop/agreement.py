"""Agreement of cytogate's gating with an expert's: ``cytogate compare RUN --reference …``.

Scientists trust an automated gate after holding it against their own, event by event. The
reference is a FlowJo workspace or a GatingML document (evaluated exactly, by FlowKit, on the
same file) or per-event labels (a CSV with one label per event, in file order, e.g. FlowSOM's
``gatingResult.csv``). For every file × population the table gives both counts, event-level
precision/recall/F1 (ours as the prediction, the reference as truth), the count ratio and the
difference in % of parent, sorted worst first.

Population names are matched by a map ``REFERENCE=OURS`` (``Blasts=blasts``); without one,
populations with the same name on both sides. A label reference may join labels with ``+``
(``T=CD4 T cells+CD8 T cells``). Labels have no hierarchy, so for a label reference both
percentages are of all events (``pct_basis`` says which).

For a FlowJo reference the counts FlowJo recorded in the workspace are shown beside the exact
evaluation (``count_flowjo``): FlowJo evaluates some gates on binned display data, so the two
can differ by a few events, and the table says so rather than hide it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cytogate.errors import CytogateError, TemplateError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from cytogate.gating.engine import GatingResult
    from cytogate.io.fcs import Sample

__all__ = [
    "COLUMNS",
    "FileAgreement",
    "Reference",
    "agreement_rows",
    "compare_files",
    "compare_files_keeping",
    "event_scores",
    "file_agreement",
    "load_reference",
    "parse_map",
    "read_labels",
]

COLUMNS = [
    "file",
    "population",
    "reference_population",
    "n_events",
    "count_cytogate",
    "count_reference",
    "count_flowjo",
    "f1",
    "precision",
    "recall",
    "count_ratio",
    "pct_basis",
    "pct_parent_cytogate",
    "pct_parent_reference",
    "pct_parent_diff",
    "note",
]


@dataclass(frozen=True)
class Reference:
    """What cytogate's gating is held against: a template (.wsp/.xml) or per-event labels."""

    kind: str  # "template" or "labels"
    path: Path
    template: Any = None  # the FlowKit-evaluated template (kind "template")
    flowjo_counts: Mapping[tuple[str, str], int] | None = None


def parse_map(items: Sequence[str]) -> dict[str, str]:
    """``["Blasts=blasts", …]`` (or one comma-separated string) -> {reference: ours}.

    A comma separates pairs only where the text after it holds its own ``=``, so names with
    commas (FlowJo's ``Q1: CD4- , CD8+``) can be mapped: ``Q1: CD4- , CD8+=q1``.
    """
    out: dict[str, str] = {}
    for item in items:
        parts: list[str] = []
        pending = ""
        for piece in item.split(","):
            pending = f"{pending},{piece}" if pending else piece
            if "=" in piece:
                parts.append(pending)
                pending = ""
        if pending:
            parts.append(pending)
        for part in parts:
            if not part.strip():
                continue
            if "=" not in part:
                raise CytogateError(f"--map {part!r}: expected REFERENCE=OURS (e.g. Blasts=blasts)")
            ref, ours = (s.strip() for s in part.split("=", 1))
            if not ref or not ours:
                raise CytogateError(f"--map {part!r}: both names are needed (REFERENCE=OURS)")
            out[ref] = ours
    return out


def load_reference(path: str | os.PathLike[str], group: str | None = None) -> Reference:
    """A .wsp/.xml reference (gated exactly by FlowKit) or a label CSV / folder of them."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".wsp":
        from cytogate.interop.flowjo import load_workspace, recorded_counts

        return Reference("template", path, load_workspace(path, group), recorded_counts(path))
    if suffix == ".xml":
        from cytogate.interop.gatingml import load_gatingml

        return Reference("template", path, load_gatingml(path))
    if suffix == ".csv" or path.is_dir():
        if not path.exists():
            raise CytogateError(f"{path}: no such label file or folder")
        return Reference("labels", path)
    raise CytogateError(
        f"{path}: a reference is a FlowJo .wsp, a GatingML .xml, or per-event labels (.csv or a "
        "folder of <file stem>.csv)"
    )


def read_labels(path: Path, n_events: int) -> np.ndarray:
    """One label per event, in file order (first column; a header line is skipped if the file
    has one line more than the events)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise CytogateError(f"{path}: cannot read labels: {exc}") from exc
    labels = frame.iloc[:, 0].to_numpy(dtype=str)
    if labels.shape[0] == n_events + 1:
        labels = labels[1:]
    if labels.shape[0] != n_events:
        raise CytogateError(
            f"{path}: {labels.shape[0]} labels for a file of {n_events} events (one label per "
            "event, in file order)"
        )
    return labels


def event_scores(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float, float]:
    """(F1, precision, recall) of ``ours`` against ``theirs``; both empty counts as F1 = 1."""
    both = int(np.count_nonzero(ours & theirs))
    n_ours, n_theirs = int(np.count_nonzero(ours)), int(np.count_nonzero(theirs))
    precision = both / n_ours if n_ours else math.nan
    recall = both / n_theirs if n_theirs else math.nan
    f1 = 2 * both / (n_ours + n_theirs) if (n_ours + n_theirs) else 1.0
    return f1, precision, recall


@dataclass(frozen=True)
class FileAgreement:
    """One file's comparison as drawn by the report: cytogate's gating result, the
    reference's membership per compared population pair, and the file's rows.

    Kept for the worst files only (see :func:`compare_files_keeping`), so the report draws
    recorded memberships and gates nothing again.
    """

    ours: GatingResult
    reference_masks: Mapping[tuple[str, str], np.ndarray]  # (ours, reference) -> mask
    rows: tuple[dict[str, Any], ...]


def agreement_rows(
    ours: GatingResult,
    reference: Reference,
    mapping: Mapping[str, str],
    sample: Sample | None = None,
) -> list[dict[str, Any]]:
    """Rows of ``agreement.csv`` for one file."""
    return list(file_agreement(ours, reference, mapping, sample).rows)


def file_agreement(
    ours: GatingResult,
    reference: Reference,
    mapping: Mapping[str, str],
    sample: Sample | None = None,
) -> FileAgreement:
    """One file held against the reference: its rows and the reference's masks."""
    sample = sample or ours.sample
    name = sample.path.name
    n = sample.n_events
    rows = []
    masks: dict[tuple[str, str], np.ndarray] = {}
    if reference.kind == "template":
        from cytogate.gating.engine import gate

        theirs = gate(sample, reference.template)
        pairs = _pairs(mapping, theirs.populations, ours.populations, reference.path)
        for ref_pop, our_pop in pairs:
            ref_mask, our_mask = theirs.mask(ref_pop), ours.mask(our_pop)
            masks[(our_pop, ref_pop)] = ref_mask
            flowjo = None
            if reference.flowjo_counts is not None:
                ref = next(r for r in reference.template.refs if r.name == ref_pop)
                key = (name, "/".join([*ref.gate_id[1][1:], ref.gate_id[0]]))
                recorded = reference.flowjo_counts.get(key)
                flowjo = recorded if recorded is not None and recorded >= 0 else None
            rows.append(
                _row(
                    name,
                    n,
                    our_pop,
                    ref_pop,
                    our_mask,
                    ref_mask,
                    ours.pct_parent(our_pop),
                    theirs.pct_parent(ref_pop),
                    "parent",
                    flowjo,
                )
            )
        return FileAgreement(ours, masks, tuple(rows))
    labels = read_labels(_label_file(reference.path, sample), n)
    present = sorted(set(labels.tolist()))
    pairs = _pairs(mapping, present, ours.populations, reference.path, joinable=True)
    for ref_pop, our_pop in pairs:
        ref_mask = np.isin(labels, ref_pop.split("+"))
        masks[(our_pop, ref_pop)] = ref_mask
        our_mask = ours.mask(our_pop)
        rows.append(
            _row(
                name,
                n,
                our_pop,
                ref_pop,
                our_mask,
                ref_mask,
                100.0 * np.count_nonzero(our_mask) / n if n else math.nan,
                100.0 * np.count_nonzero(ref_mask) / n if n else math.nan,
                "total",
                None,
            )
        )
    return FileAgreement(ours, masks, tuple(rows))


def compare_files(
    files: Sequence[Path],
    template: Any,
    reference: Reference,
    mapping: Mapping[str, str],
) -> pd.DataFrame:
    """Gate every file with ``template`` and compare with ``reference``; worst first."""
    return compare_files_keeping(files, template, reference, mapping, keep=0)[0]


def compare_files_keeping(
    files: Sequence[Path],
    template: Any,
    reference: Reference,
    mapping: Mapping[str, str],
    keep: int = 3,
) -> tuple[pd.DataFrame, list[FileAgreement]]:
    """:func:`compare_files`, also keeping the ``keep`` worst files' results (worst first).

    A file's rank is that of its worst row in :func:`sort_worst_first` order, so the kept
    files are the first ``keep`` files of the table. Only those results stay in memory.
    """
    import pandas as pd

    from cytogate.gating.engine import gate
    from cytogate.io.fcs import read_fcs

    if reference.kind == "template" and reference.path.suffix.lower() == ".wsp":
        from cytogate.interop.flowjo import check_files

        check_files(reference.template, files)
    rows: list[dict[str, Any]] = []
    kept: list[tuple[tuple[Any, ...], FileAgreement]] = []
    for path in files:
        sample = read_fcs(path)
        result = file_agreement(gate(sample, template), reference, mapping, sample)
        rows.extend(result.rows)
        if keep > 0 and result.rows:
            kept.append((min(_rank(r) for r in result.rows), result))
            kept.sort(key=lambda item: item[0])
            del kept[keep:]
    table = pd.DataFrame(rows, columns=COLUMNS)
    return sort_worst_first(table), [item for _, item in kept]


def _rank(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A row's place in :func:`sort_worst_first` order (NaN F1 first, then larger |diff|)."""
    f1 = row["f1"]
    diff = row["pct_parent_diff"]
    return (
        -1.0 if f1 is None or math.isnan(f1) else f1,
        0.0 if diff is None or math.isnan(diff) else -abs(diff),
        row["file"],
        row["population"],
    )


def sort_worst_first(table: pd.DataFrame) -> pd.DataFrame:
    """Lowest F1 first, then the largest % of parent difference."""
    order = table.assign(
        _f1=table["f1"].fillna(-1.0), _diff=-table["pct_parent_diff"].abs().fillna(0.0)
    ).sort_values(["_f1", "_diff", "file", "population"], kind="stable")
    return order.drop(columns=["_f1", "_diff"]).reset_index(drop=True)


# --------------------------------------------------------------------------- helpers


def _pairs(
    mapping: Mapping[str, str],
    reference_pops: Sequence[str],
    our_pops: Sequence[str],
    where: Path,
    joinable: bool = False,
) -> list[tuple[str, str]]:
    if mapping:
        pairs = list(mapping.items())
    else:
        pairs = [(p, p) for p in our_pops if p in reference_pops]
        if not pairs:
            raise TemplateError(
                f"{where}: no population has the same name on both sides (reference: "
                f"{', '.join(reference_pops)}; cytogate: {', '.join(our_pops)}); give --map "
                "REFERENCE=OURS"
            )
    for ref, ours in pairs:
        missing_ref = [
            r for r in (ref.split("+") if joinable else [ref]) if r not in reference_pops
        ]
        if missing_ref:
            raise TemplateError(
                f"{where}: --map {ref}={ours}: no reference population {', '.join(missing_ref)}"
                f" (reference has: {', '.join(reference_pops)})"
            )
        if ours not in our_pops:
            raise TemplateError(
                f"--map {ref}={ours}: cytogate's template has no population {ours!r} "
                f"(populations: {', '.join(our_pops)})"
            )
    return pairs


def _label_file(path: Path, sample: Sample) -> Path:
    if path.is_dir():
        found = path / f"{sample.path.stem}.csv"
        if not found.is_file():
            raise CytogateError(f"{path}: no label file {found.name} for {sample.path.name}")
        return found
    return path


def _row(
    file: str,
    n: int,
    our_pop: str,
    ref_pop: str,
    ours: np.ndarray,
    theirs: np.ndarray,
    pct_ours: float,
    pct_theirs: float,
    basis: str,
    flowjo: int | None,
) -> dict[str, Any]:
    f1, precision, recall = event_scores(ours, theirs)
    n_ours, n_theirs = int(np.count_nonzero(ours)), int(np.count_nonzero(theirs))
    note = ""
    if flowjo is not None and flowjo != n_theirs:
        note = (
            f"FlowJo recorded {flowjo} events, the exact evaluation of its gates gives "
            f"{n_theirs} (FlowJo evaluates some gates on binned data)"
        )
    return {
        "file": file,
        "population": our_pop,
        "reference_population": ref_pop,
        "n_events": n,
        "count_cytogate": n_ours,
        "count_reference": n_theirs,
        "count_flowjo": flowjo,
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "count_ratio": n_ours / n_theirs if n_theirs else math.nan,
        "pct_basis": basis,
        "pct_parent_cytogate": pct_ours,
        "pct_parent_reference": pct_theirs,
        "pct_parent_diff": pct_ours - pct_theirs,
        "note": note,
    }
