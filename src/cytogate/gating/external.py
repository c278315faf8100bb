"""Templates whose gating another library evaluates (GatingML documents, FlowJo workspaces).

Why here: :func:`cytogate.gating.template.load_template` and
:func:`cytogate.gating.engine.gate` must accept a lab's own gates (``gates.xml``,
``expert.wsp``) wherever a YAML template is accepted, so batch, quantification and plots work
unchanged. Their semantics (GatingML transforms, per-dimension compensation, ratio dimensions,
FlowJo's per-sample gates) are not all expressible in cytogate's template model, so such a
template is *evaluated* by its own implementation and adapted into a ``GatingResult``.

This module is the extension point only: an :class:`ExternalTemplate` subclass implements
:meth:`ExternalTemplate.gate_sample`. Which module reads which file suffix is a table of
module *names* (:data:`LOADERS`), imported only when such a file is loaded, so the gating layer
has no import of the interop layer that implements them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytogate.errors import GatingError, TemplateError
from cytogate.gating.model import Template

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

    from cytogate.gating.engine import GatingResult
    from cytogate.io.fcs import Sample

__all__ = ["LOADERS", "ExternalGeometry", "ExternalTemplate", "load_external"]

#: file suffix -> module with ``load(path) -> ExternalTemplate``
LOADERS: dict[str, str] = {
    ".xml": "cytogate.interop.gatingml",
    ".wsp": "cytogate.interop.flowjo",
}


@dataclass(frozen=True)
class ExternalGeometry:
    """A gate shape cytogate cannot draw or evaluate itself (a 3-D ellipsoid, a boolean with a
    complemented operand); its membership comes from the external evaluator. ``kind`` is the
    nearest registered kind (tables, QC bookkeeping), ``description`` says what it really is."""

    dims: tuple[str, ...]
    kind: str
    description: str = ""
    operands: tuple[str, ...] = ()  # for kind "boolean": the populations it combines

    def contains(self, points: np.ndarray) -> np.ndarray:
        raise GatingError(f"{self.description}: evaluated by its own library, not by cytogate")


@dataclass(frozen=True)
class ExternalTemplate(Template):
    """A template evaluated outside cytogate's engine; ``gates`` describe its tree for display
    (geometries in the space the external library gates in)."""

    def gate_sample(
        self,
        sample: Sample,
        *,
        compensation: str | pd.DataFrame | None = None,
        reference: Mapping[str, str] | None = None,
        pinned: Mapping[str, Any] | None = None,
    ) -> GatingResult:
        raise NotImplementedError  # pragma: no cover


def load_external(path: Path) -> Template:
    """Load ``path`` with the loader registered for its suffix (see :data:`LOADERS`)."""
    module = LOADERS.get(path.suffix.lower())
    if module is None:
        raise TemplateError(f"{path}: no loader for {path.suffix!r} files")
    if not path.is_file():
        raise TemplateError(f"no template file {str(path)!r}")
    loaded = importlib.import_module(module).load(path)
    assert isinstance(loaded, Template)
    return loaded
