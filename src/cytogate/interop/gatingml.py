"""GatingML 2.0 documents as cytogate templates (``load_template("gates.xml")``).

The document is parsed by FlowKit (``flowkit.parse_gating_xml``) and evaluated by FlowKit on
each file, with gate kinds, transforms and compensation exactly as the document defines them;
see :mod:`cytogate.interop.flowkit_template` for why it is not converted into a YAML-style
template and how the result is adapted.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from cytogate.errors import TemplateError
from cytogate.interop.flowkit_template import FlowKitTemplate, strategy_template

__all__ = ["load", "load_gatingml", "refuse_entities"]


def load_gatingml(path: str | Path) -> FlowKitTemplate:
    """A template running the GatingML 2.0 document at ``path`` through FlowKit."""
    import flowkit as fk

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read GatingML document: {exc.strerror}") from exc
    refuse_entities(raw, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            strategy = fk.parse_gating_xml(str(path))
    except Exception as exc:  # lxml / FlowKit raise many kinds; one line naming the file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TemplateError(f"{path}: not a GatingML 2.0 document FlowKit reads: {first}") from exc
    if not strategy.get_gate_ids():
        raise TemplateError(f"{path}: the GatingML document defines no gates")
    return strategy_template(
        strategy,
        path=path,
        origin="GatingML 2.0",
        strategy_for=SameStrategy(strategy),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


class SameStrategy:
    """One strategy for every sample (a picklable callable, so batch workers get it)."""

    def __init__(self, strategy: object) -> None:
        self.strategy = strategy

    def __call__(self, sample: object) -> object:
        return self.strategy


def refuse_entities(raw: bytes, path: Path) -> None:
    """Refuse DTDs: entity declarations can read local files or expand without bound (lxml
    resolves them by default), and neither GatingML nor FlowJo documents use them."""
    head = raw[:65536]
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
        raise TemplateError(f"{path}: documents with a DOCTYPE/ENTITY declaration are refused")


load = load_gatingml  # the loader hook of cytogate.gating.external
