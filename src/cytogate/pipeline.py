"""`cytogate.run_batch`: the study's batch with its figures and exports drawn from above.

The study layer runs the batch and stages the output set but may not import the figures or
the FlowJo export (they sit above it, docs/architecture.md §2), so it takes them as a
``renderer`` that writes into the staged set before it is published. This module, above both,
supplies that renderer — the public API and the CLI call this, so ``run_batch(..., plots=True)``
draws as users expect and ``export_wsp=True`` puts the workspace inside the same output set.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from cytogate.errors import CytogateError
from cytogate.study import batch
from cytogate.study.batch import BatchResult


@functools.wraps(batch.run_batch)
def run_batch(*args: Any, export_wsp: bool = False, **kwargs: Any) -> BatchResult:
    plots = bool(kwargs.get("plots", False))
    if kwargs.get("renderer") is None and (plots or export_wsp):
        kwargs["renderer"] = functools.partial(
            _render, draw=plots, export_wsp=export_wsp, template=kwargs.get("template")
        )
    return batch.run_batch(*args, **kwargs)


def _render(
    result: BatchResult,
    config: Any,
    out: Path,
    jobs: int = 1,
    fmt: str = "png",
    dpi: int | None = None,
    progress: Any = None,
    *,
    draw: bool,
    export_wsp: bool,
    template: Any,
) -> tuple[list[Path], dict[str, Any]]:
    files: list[Path] = []
    summary: dict[str, Any] = {"report": None, "errors": [], "timings": {"total_s": 0.0}}
    if draw:
        from cytogate.viz.report import write_plots_and_report

        files, summary = write_plots_and_report(result, config, out, jobs, fmt, dpi, progress)
    if export_wsp:
        try:
            exported = export_applied_gates(result, Path(out), template)
        except Exception as exc:
            # the tables and figures are still published; the failure is said, not hidden
            reason = f"{type(exc).__name__}: {exc}"
            summary["errors"].append({"file": "", "kind": "flowjo export", "error": reason})
        else:
            files += exported
            summary["flowjo_workspace"] = str(exported[0])
    return files, summary


def export_applied_gates(result: BatchResult, out: Path, template: Any = None) -> list[Path]:
    """The gates the batch applied (its outcomes) as ``out/flowjo/cytogate.wsp`` + GatingML."""
    from cytogate.gating.external import ExternalTemplate
    from cytogate.gating.template import load_template
    from cytogate.interop.workspace_export import export_batch_gates

    info = result.run["template"]
    tmpl = load_template(template or info["path"] or info["name"])
    if isinstance(tmpl, ExternalTemplate):
        raise CytogateError(
            f"--export-wsp: the template is already a GatingML/FlowJo document ({tmpl.source})"
        )
    return export_batch_gates(result.outcomes, tmpl, out / "flowjo")
