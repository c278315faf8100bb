"""`cytogate.run_batch`: the study's batch with the figures drawn by the viz layer.

The study layer runs the batch and stages the output set but may not import the figures (they
sit above it, docs/architecture.md §2), so it takes the drawing as a ``renderer``. This module,
above both, supplies :func:`cytogate.viz.report.write_plots_and_report` — the public API and the
CLI call this, so ``run_batch(..., plots=True)`` draws as users expect.
"""

from __future__ import annotations

import functools
from typing import Any

from cytogate.study import batch
from cytogate.study.batch import BatchResult


@functools.wraps(batch.run_batch)
def run_batch(*args: Any, **kwargs: Any) -> BatchResult:
    if kwargs.get("renderer") is None:
        from cytogate.viz.report import write_plots_and_report

        kwargs["renderer"] = write_plots_and_report
    return batch.run_batch(*args, **kwargs)
