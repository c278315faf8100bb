"""Gating templates: the model (:mod:`.model`) and its YAML loading (:mod:`.loader`), under the
names callers use (``from cytogate.gating.template import load_template``); see
docs/architecture.md and docs/adaptive_gating.md for the format."""

from cytogate.gating.loader import (
    bundled_template_dir,
    list_templates,
    load_template,
    parse_template,
)
from cytogate.gating.model import PIN_CHOICES, ROOT, GateSpec, QCRules, Template

__all__ = [
    "PIN_CHOICES",
    "ROOT",
    "GateSpec",
    "QCRules",
    "Template",
    "bundled_template_dir",
    "list_templates",
    "load_template",
    "parse_template",
]
