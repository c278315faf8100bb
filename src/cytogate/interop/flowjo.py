"""FlowJo 10 workspaces as cytogate templates (``--template expert.wsp [--group NAME]``).

A workspace holds, per sample, the gate tree of its group plus any gates the scientist adjusted
for that sample. FlowKit's ``Workspace`` parses it (transforms, the sample's compensation,
FlowJo ellipses as FlowKit's polygon approximation), and each file is gated with *its own*
sample's strategy; files are matched to workspace samples by file name. The template's tree
(for plots and tables) is the group's first sample's.

Why FlowKit's memberships rather than FlowJo's recorded counts: the workspace stores counts
FlowJo computed, partly on binned data (FlowJo evaluates some gates, e.g. on biex/log axes, on
its display grid, and ellipses as polygons), so an exact evaluation of the same gates can differ
by a few events; :func:`recorded_counts` gives FlowJo's numbers to compare (see docs/interop.md).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytogate.errors import GatingError, TemplateError
from cytogate.interop.flowkit_template import FlowKitTemplate, strategy_template
from cytogate.interop.gatingml import refuse_entities

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.io.fcs import Sample

__all__ = [
    "DEFAULT_GROUP",
    "check_files",
    "load",
    "load_workspace",
    "recorded_counts",
    "workspace_samples",
]

DEFAULT_GROUP = "All Samples"


class _PerSample:
    """Each file's own strategy, looked up by file name (picklable, for batch workers)."""

    def __init__(self, strategies: dict[str, Any], where: str) -> None:
        self.strategies = strategies
        self.where = where

    def __call__(self, sample: Sample) -> Any:
        name = sample.path.name
        if name not in self.strategies:
            raise GatingError(
                f"{name}: not a sample of {self.where} (its samples: "
                f"{', '.join(sorted(self.strategies))})"
            )
        return self.strategies[name]


def load_workspace(path: str | Path, group: str | None = None) -> FlowKitTemplate:
    """A template running the gates of ``group`` (default "All Samples") of the FlowJo 10
    workspace at ``path``, each file with its own sample's gates."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read FlowJo workspace: {exc.strerror}") from exc
    refuse_entities(raw, path)
    _check_gate_types(raw, path)
    workspace = _parse(path)
    groups = workspace.get_sample_groups()
    name = group or DEFAULT_GROUP
    if name not in groups:
        raise TemplateError(f"{path}: no sample group {name!r} (groups: {', '.join(groups)})")
    ids = workspace.get_sample_ids(name, loaded_only=False)
    if not ids:
        raise TemplateError(f"{path}: sample group {name!r} has no samples")
    strategies = {sid: workspace.get_gating_strategy(sid) for sid in ids}
    where = f"{path.name} group {name!r}"
    return strategy_template(
        strategies[ids[0]],
        path=path,
        origin=f"FlowJo workspace, group {name!r}",
        strategy_for=_PerSample(strategies, where),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def load(path: Path) -> FlowKitTemplate:
    """The loader hook of :mod:`cytogate.gating.external` (default group)."""
    return load_workspace(path)


def workspace_samples(template: FlowKitTemplate) -> list[str]:
    """The workspace samples (file names) ``template`` has gates for."""
    per_sample = template.strategy_for
    return sorted(per_sample.strategies) if isinstance(per_sample, _PerSample) else []


def check_files(template: FlowKitTemplate, files: Iterable[str | Path]) -> None:
    """Raise, listing both sides, unless every file has a sample in the workspace group."""
    samples = workspace_samples(template)
    if not samples:
        return
    names = sorted({Path(f).name for f in files})
    missing = [n for n in names if n not in samples]
    if missing:
        unused = [s for s in samples if s not in names]
        raise TemplateError(
            f"{template.source}: file(s) {', '.join(missing)} have no sample in "
            f"{template.origin}; the workspace's samples without a file: "
            f"{', '.join(unused) or 'none'}"
        )


def recorded_counts(path: str | Path, group: str | None = None) -> dict[tuple[str, str], int]:
    """FlowJo's own counts stored in the workspace: (sample, population path) -> count, the
    path being the population names from the root joined by '/'."""
    from lxml import etree

    raw = Path(path).read_bytes()
    refuse_entities(raw, Path(path))
    root = etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True))
    out: dict[tuple[str, str], int] = {}
    for node in root.iter("SampleNode"):
        sample = node.get("name", "")

        def walk(element: Any, prefix: tuple[str, ...], sample: str = sample) -> None:
            subs = element.find("Subpopulations")
            if subs is None:
                return
            for pop in subs.findall("Population"):
                here = (*prefix, pop.get("name", ""))
                if pop.get("count") is not None:
                    out[(sample, "/".join(here))] = int(pop.get("count"))
                walk(pop, here)

        walk(node, ())
    del group
    return out


# --------------------------------------------------------------------------- parsing


def _parse(path: Path) -> Any:
    import flowkit as fk

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fk.Workspace(str(path), load_missing_file_data=True)
    except Exception as exc:  # FlowKit raises many kinds; one line naming the file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TemplateError(f"{path}: FlowKit cannot read this workspace: {first}") from exc


def _check_gate_types(raw: bytes, path: Path) -> None:
    """Name every population whose gate type FlowKit cannot evaluate (before FlowKit fails
    with a bare KeyError)."""
    from flowkit._utils.wsp_utils import wsp_gate_constructor_lut
    from lxml import etree

    try:
        root = etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise TemplateError(f"{path}: not a FlowJo workspace (XML error: {exc})") from exc
    if etree.QName(root).localname != "Workspace":
        raise TemplateError(f"{path}: not a FlowJo workspace (root element {root.tag!r})")
    bad = set()
    for gate in root.iter("{*}Gate", "Gate"):
        for child in gate:
            if not isinstance(child.tag, str):
                continue
            kind = etree.QName(child).localname
            if kind not in wsp_gate_constructor_lut:
                owner = gate.getparent()
                bad.add(f"{owner.get('name', '?') if owner is not None else '?'} ({kind})")
    if bad:
        raise TemplateError(
            f"{path}: unsupported gate type(s): {', '.join(sorted(bad))} (supported: "
            f"{', '.join(wsp_gate_constructor_lut)})"
        )
