"""cytogate: flow cytometry gating with reusable templates and CXCR4 quantification.

The public API is re-exported here but loaded lazily (PEP 562), so ``import cytogate`` and
``cytogate --help`` stay fast and do not pull in pandas, flowkit or matplotlib until a function
that needs them is called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cytogate.errors import (
    CytogateError,
    DesignError,
    FCSError,
    GatingError,
    PanelError,
    TemplateError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Sample": "cytogate.io.fcs",
    "read_fcs": "cytogate.io.fcs",
    "read_keywords": "cytogate.io.fcs",
    "run_batch": "cytogate.pipeline",
    "BatchResult": "cytogate.study.batch",
    "RunConfig": "cytogate.study.design",
    "write_fcs": "cytogate.io.fcs_writer",
    "resolve_panel": "cytogate.model.panel",
    "Template": "cytogate.gating.template",
    "load_template": "cytogate.gating.template",
    "list_templates": "cytogate.gating.template",
    "GatingResult": "cytogate.gating.engine",
    "gate": "cytogate.gating.engine",
    "simulate_study": "cytogate.sim.simulate",
}

__all__ = [
    "BatchResult",
    "CytogateError",
    "DesignError",
    "FCSError",
    "GatingError",
    "GatingResult",
    "PanelError",
    "RunConfig",
    "Sample",
    "Template",
    "TemplateError",
    "__version__",
    "gate",
    "list_templates",
    "load_template",
    "read_fcs",
    "read_keywords",
    "resolve_panel",
    "run_batch",
    "simulate_study",
    "write_fcs",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from cytogate.gating.engine import GatingResult, gate
    from cytogate.gating.template import Template, list_templates, load_template
    from cytogate.io.fcs import Sample, read_fcs, read_keywords
    from cytogate.io.fcs_writer import write_fcs
    from cytogate.model.panel import resolve_panel
    from cytogate.pipeline import run_batch
    from cytogate.sim.simulate import simulate_study
    from cytogate.study.batch import BatchResult
    from cytogate.study.design import RunConfig


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cytogate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
