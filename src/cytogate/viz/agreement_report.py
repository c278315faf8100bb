"""``agreement.html``: the report of ``cytogate compare``, next to ``agreement.csv``.

``compare`` gates a folder of files on its own (it does not read a batch's output), so its
report is its own page in the compare output folder rather than a section of a batch's
``report.html``: the agreement table sorted worst first (lowest F1), the Bland–Altman plot of
% of parent with the bias and 95 % limits of agreement stated in numbers, the worst files'
panels with both gates drawn, and where FlowJo's recorded counts differ from the exact
evaluation of its own gates, a list of those differences. Like ``report.html`` it is one file
with inline CSS linking only to the figures beside it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytogate.atomic import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.interop.compare import CompareResult

REPORT_NAME = "agreement.html"
BLAND_ALTMAN_NAME = "bland_altman.png"
WORST_DIR = "worst"
#: panels per worst file: its worst population pairs
PAIRS_PER_FILE = 4

_COLUMNS = (
    ("file", False),
    ("population", False),
    ("reference_population", False),
    ("count_cytogate", True),
    ("count_reference", True),
    ("count_flowjo", True),
    ("f1", True),
    ("precision", True),
    ("recall", True),
    ("count_ratio", True),
    ("pct_parent_cytogate", True),
    ("pct_parent_reference", True),
    ("pct_parent_diff", True),
    ("note", False),
)


def write_agreement_report(result: CompareResult, dpi: int = 150) -> list[Path]:
    """Draw the Bland–Altman plot and the worst files' both-gates panels, write the page.

    Returns the files written (figures, then ``agreement.html``).
    """
    from cytogate.viz.agreement_figures import (
        bland_altman_figure,
        bland_altman_numbers,
        both_gates_figure,
    )
    from cytogate.viz.figure import save_figure
    from cytogate.viz.report import page_environment, resource

    out = result.out
    simulated = any(_simulated(item) for item in result.worst)
    written = save_figure(
        bland_altman_figure(result.table, simulated=simulated), out / BLAND_ALTMAN_NAME, dpi=dpi
    )
    worst = []
    for item in result.worst:
        name = item.ours.sample.path.name
        rows = [r for r in result.table.to_dict("records") if r["file"] == name]
        rows = rows[:PAIRS_PER_FILE]
        path = out / WORST_DIR / f"{Path(name).stem}_both_gates.png"
        written += save_figure(both_gates_figure(item, rows), path, dpi=dpi)
        worst.append(
            {
                "file": name,
                "figure": f"{WORST_DIR}/{path.name}",
                "pairs": ", ".join(
                    f"{r['population']} vs {r['reference_population']}" for r in rows
                ),
                "cytogate": _if_exists(out, f"{WORST_DIR}/{Path(name).stem}_cytogate.png"),
                "reference": _if_exists(out, f"{WORST_DIR}/{Path(name).stem}_reference.png"),
            }
        )
    numbers = bland_altman_numbers(result.table)
    page = (
        page_environment()
        .from_string(resource("agreement.html.j2"))
        .render(
            css=_markup(resource("report.css")),
            simulated=simulated,
            run=str(result.run),
            reference=str(result.reference.path),
            reference_kind=_reference_kind(result),
            template=result.template,
            mapping=", ".join(f"{k}={v}" for k, v in result.mapping.items()) or "same names",
            n_files=result.table["file"].nunique(),
            n_rows=len(result.table),
            ba=numbers,
            ba_text=_ba_text(numbers),
            bland_altman=BLAND_ALTMAN_NAME,
            columns=[c for c, _ in _COLUMNS],
            rows=_rows(result),
            flowjo=_flowjo_differences(result),
            worst=worst,
        )
    )
    written.append(
        atomic_write(out / REPORT_NAME, lambda p: Path(p).write_text(page, encoding="utf-8"))
    )
    return written


def _simulated(item: Any) -> bool:
    from cytogate.viz.figure import is_simulated

    return is_simulated(item.ours.sample.keywords)


def _markup(text: str) -> Any:
    from markupsafe import Markup

    return Markup(text)


def _if_exists(out: Path, rel: str) -> str:
    return rel if (out / rel).is_file() else ""


def _reference_kind(result: CompareResult) -> str:
    suffix = result.reference.path.suffix.lower()
    if suffix == ".wsp":
        return "FlowJo workspace, its gates evaluated exactly by FlowKit on each file"
    if suffix == ".xml":
        return "GatingML 2.0 document, evaluated by FlowKit on each file"
    return "per-event labels (no hierarchy: percentages are of all events)"


def _ba_text(ba: Any) -> str:
    if not math.isfinite(ba.bias):
        return "no pair with both percentages"
    if not math.isfinite(ba.lower):
        return f"bias {ba.bias:+.2f} points of {ba.basis} (one pair: no limits of agreement)"
    return (
        f"bias {ba.bias:+.2f} points of {ba.basis} (cytogate − reference, mean over {ba.n} "
        f"pairs); 95 % limits of agreement {ba.lower:+.2f} to {ba.upper:+.2f} "
        "(bias ± 1.96 × sample SD of the differences)"
    )


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return ""
    if v == int(v) and abs(v) >= 1:
        return f"{int(v):,}"
    return f"{v:.4g}"


def _rows(result: CompareResult) -> list[dict[str, Any]]:
    rows = []
    for rec in result.table.to_dict("records"):
        f1 = rec.get("f1")
        rows.append(
            {
                "cells": [(_fmt(rec.get(c)), numeric) for c, numeric in _COLUMNS],
                "poor": isinstance(f1, float) and (math.isnan(f1) or f1 < 0.9),
            }
        )
    return rows


def _flowjo_differences(result: CompareResult) -> dict[str, Any]:
    """What the page says about FlowJo's recorded counts vs the exact evaluation."""
    table = result.table
    if result.reference.path.suffix.lower() != ".wsp":
        return {"applies": False}
    recorded = table[table["count_flowjo"].notna()]
    differ = recorded[recorded["count_flowjo"] != recorded["count_reference"]]
    return {
        "applies": True,
        "n_recorded": len(recorded),
        "n_missing": len(table) - len(recorded),
        "rows": [
            {
                "file": r.file,
                "population": r.reference_population,
                "flowjo": int(r.count_flowjo),
                "exact": int(r.count_reference),
                "diff": int(r.count_flowjo) - int(r.count_reference),
            }
            for r in differ.itertuples()
        ],
    }


def default_renderer(result: CompareResult) -> list[Path]:
    """The renderer ``cytogate compare`` hands to :func:`~cytogate.interop.compare.run_compare`."""
    return write_agreement_report(result)


__all__ = ["REPORT_NAME", "default_renderer", "write_agreement_report"]
