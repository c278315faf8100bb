"""cytogate's gates out, per file: a FlowJo 10 workspace and a GatingML document per file.

Why: a scientist trusts an automated gate after seeing it in the tool the lab already uses. The
export takes the gates the batch *applied* (each file's :class:`GatingResult`: its fitted
geometries, resolved channels, compensation and scales) through
:func:`cytogate.interop.flowkit_export.to_flowkit_strategy`, so FlowJo/FlowKit evaluate the
same gates on the same values; nothing is re-fitted here.

One workspace group holds every file: the group's gates are the first file's, and every file's
own tree (its own geometries) is written from its own strategy. FlowKit 1.3.2's writer is used
for the workspace and its gate elements; three of its gaps are filled here (see
:func:`_per_sample_xml`): sample-specific gates below the root, each sample's compensation, and
boolean gates. The round-trip test (read back with ``flowkit.Workspace``) guards all three.

FlowJo has one compensation matrix and one transform per parameter for a group: files whose
matrices or scale parameters differ cannot share a workspace, and the export says which.
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cytogate.atomic import atomic_write_bytes
from cytogate.errors import CytogateError

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.gating.engine import GatingResult
    from cytogate.gating.model import Template
    from cytogate.io.fcs import Sample

__all__ = ["export_batch_gates", "export_gatingml_per_file", "export_workspace"]


def export_workspace(
    samples_and_results: Sequence[tuple[Sample, GatingResult]],
    path: str | os.PathLike[str],
    *,
    group: str = "cytogate",
) -> Path:
    """Write the gates applied to each file as one FlowJo 10 workspace at ``path``."""
    import warnings

    from cytogate.interop.flowkit_export import to_flowkit_strategy

    pairs = list(samples_and_results)
    if not pairs:
        raise CytogateError(f"{path}: no gated files to export")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # agreement caveats are warned by to_flowkit_strategy
        strategies = [to_flowkit_strategy(result, sample) for sample, result in pairs]
    return _write_workspace(strategies, [s for s, _ in pairs], Path(path), group)


def export_batch_gates(
    outcomes: Sequence[Any],
    template: Template,
    out: str | os.PathLike[str],
    *,
    group: str = "cytogate",
) -> list[Path]:
    """The gates a batch applied (its per-file outcomes) as ``out/cytogate.wsp`` and
    ``out/gatingml/<file stem>.xml``; failed files are left out."""
    import warnings

    from cytogate.interop.flowkit_export import strategy_from_outcome, write_gatingml
    from cytogate.io.fcs import read_fcs

    done = [o for o in outcomes if o.ok]
    if not done:
        raise CytogateError(f"{out}: no file of the run was gated; nothing to export")
    target = Path(out)
    (target / "gatingml").mkdir(parents=True, exist_ok=True)
    samples = [read_fcs(o.file) for o in done]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategies = [
            strategy_from_outcome(o, template, s) for o, s in zip(done, samples, strict=True)
        ]
        written = [_write_workspace(strategies, samples, target / "cytogate.wsp", group)]
        for strategy, sample in zip(strategies, samples, strict=True):
            doc = target / "gatingml" / f"{sample.path.stem}.xml"
            written.append(write_gatingml(strategy, template, doc))
    return written


def _write_workspace(strategies: list[Any], samples: list[Sample], path: Path, group: str) -> Path:
    import warnings

    import flowkit as fk
    from flowkit._utils.wsp_utils import export_flowjo_wsp

    names = [s.path.name for s in samples]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CytogateError(f"{path}: file names must be unique in a workspace: {', '.join(dupes)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check_shared(strategies, names, path)
        deferred = _boolean_subtrees(strategies[0])
        stripped = [_without(strategy, deferred) for strategy in strategies]
        fk_samples = [fk.Sample(str(s.path), sample_id=s.path.name) for s in samples]
        buffer = io.BytesIO()
        export_flowjo_wsp(stripped[0], group, fk_samples, buffer)
        payload = _per_sample_xml(buffer.getvalue(), strategies, stripped, names, deferred)
    return atomic_write_bytes(path, [payload])


def export_gatingml_per_file(
    samples_and_results: Sequence[tuple[Sample, GatingResult]],
    folder: str | os.PathLike[str],
) -> list[Path]:
    """One GatingML 2.0 document per file (``<file stem>.xml``) with that file's gates."""
    import warnings

    from cytogate.interop.flowkit_export import export_gatingml

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sample, result in samples_and_results:
            written.append(export_gatingml(result, target / f"{sample.path.stem}.xml"))
    return written


def _without(strategy: Any, gate_ids: list[tuple[str, tuple[str, ...]]]) -> Any:
    """A copy of ``strategy`` without ``gate_ids`` (children removed before parents)."""
    out = copy.deepcopy(strategy)
    for name, path in reversed(gate_ids):
        out.remove_gate(name, path)
    return out


def _boolean_subtrees(strategy: Any) -> list[tuple[str, tuple[str, ...]]]:
    """Boolean gates and everything below them, parents first: FlowKit 1.3.2's workspace
    writer has no boolean gates, so these are added to its XML afterwards."""
    import flowkit as fk

    out: list[tuple[str, tuple[str, ...]]] = []
    for name, path in strategy.get_gate_ids():
        gid = (name, tuple(path))
        below = any((path[i], tuple(path[:i])) in out for i in range(1, len(path)))
        if below or isinstance(_gate_or_none(strategy, *gid), fk.gates.BooleanGate):
            out.append(gid)
    return out


def _per_sample_xml(
    payload: bytes,
    strategies: list[Any],
    stripped: list[Any],
    names: list[str],
    deferred: list[tuple[str, tuple[str, ...]]],
) -> bytes:
    """Finish FlowKit's XML: every sample's tree from its own strategy, its compensation, and
    the boolean gates.

    FlowKit 1.3.2's writer gives only root gates their sample-specific geometry (it does not
    pass the sample on when it recurses) and puts the matrix only in the workspace's
    ``Matrices``, while readers take a sample's compensation from its own ``spilloverMatrix``.
    Boolean gates become FlowJo ``AndNode``/``OrNode``/``NotNode`` elements whose dependents
    are named by their path from the root, as FlowJo and FlowKit read them.
    """
    import flowkit as fk
    from flowkit._utils import wsp_utils
    from lxml import etree

    root = etree.fromstring(payload)
    ns_map = {k: v for k, v in root.nsmap.items() if k}
    matrices = root.find("Matrices")
    comp_prefix = "Comp-" if stripped[0].comp_matrices else ""
    prefixes = dict.fromkeys(stripped[0].comp_matrices, comp_prefix)
    samples = {el.find("DataSet").get("uri"): el for el in root.iter("Sample")}
    for number, (strategy, own, name) in enumerate(
        zip(strategies, stripped, names, strict=True), start=1
    ):
        sample_el = samples[name]
        for matrix in matrices if matrices is not None else ():
            sample_el.insert(0, copy.deepcopy(matrix))
        sample_id = sample_el.find("DataSet").get("sampleID")
        sample_el.remove(sample_el.find("SampleNode"))
        wsp_utils._add_sample_node_to_wsp(sample_el, name, sample_id, own, prefixes, ns_map)
        sample_node = sample_el.find("SampleNode")
        for k, (gate_name, path) in enumerate(deferred):
            subpops = _subpopulations(sample_node, path)
            gate = strategy.get_gate(gate_name, path)
            if isinstance(gate, fk.gates.BooleanGate):
                if any(r.get("complement") for r in gate.gate_refs):
                    raise CytogateError(f"gate {gate_name!r}: FlowJo has no complement operand")
                el = etree.SubElement(subpops, f"{gate.type.capitalize()}Node")
                el.set("name", gate_name)
                el.set("annotation", "")
                el.set("owningGroup", "")
                deps = etree.SubElement(el, "Dependents")
                for ref in gate.gate_refs:
                    dep = etree.SubElement(deps, "Dependent")
                    dep.set("name", "/".join([*tuple(ref["path"])[1:], ref["ref"]]))
                etree.SubElement(el, "Subpopulations")
                continue
            pop = etree.SubElement(subpops, "Population")
            pop.set("name", gate_name)
            pop.set("annotation", "")
            pop.set("owningGroup", "")
            fj_id = f"{number}000{k + 1}"
            gate_el = etree.SubElement(pop, "Gate")
            gate_el.set(f"{{{ns_map['gating']}}}id", f"ID{fj_id}")
            if isinstance(gate, fk.gates.RectangleGate):
                wsp_utils._add_rectangle_gate(gate_el, gate, fj_id, None, own, comp_prefix, ns_map)
            elif isinstance(gate, fk.gates.PolygonGate):
                wsp_utils._add_polygon_gate(gate_el, gate, fj_id, None, own, comp_prefix, ns_map)
            else:
                raise CytogateError(
                    f"gate {gate_name!r} ({type(gate).__name__}) below a boolean gate cannot be "
                    "written to a FlowJo workspace"
                )
    return etree.tostring(root, encoding="utf-8", xml_declaration=True, pretty_print=True)


def _subpopulations(sample_node: Any, path: tuple[str, ...]) -> Any:
    """The ``Subpopulations`` element under the population at ``path`` (made if missing)."""
    from lxml import etree

    here = sample_node
    for name in path[1:]:
        subs = here.find("Subpopulations")
        found = None if subs is None else next((c for c in subs if c.get("name") == name), None)
        if found is None:
            raise CytogateError(f"workspace export: population {'/'.join(path)} not found")
        here = found
    subs = here.find("Subpopulations")
    return subs if subs is not None else etree.SubElement(here, "Subpopulations")


def _gate_or_none(strategy: Any, name: str, path: tuple[str, ...]) -> Any:
    from flowkit.exceptions import QuadrantReferenceError

    try:
        return strategy.get_gate(name, path)
    except QuadrantReferenceError:  # a quadrant: exported with its quadrant gate
        return None


def _check_shared(strategies: list[Any], names: list[str], path: Path) -> None:
    """Every file must share the first file's matrices and transforms (FlowJo's model)."""
    first = strategies[0]
    for strategy, name in zip(strategies[1:], names[1:], strict=True):
        if set(strategy.comp_matrices) != set(first.comp_matrices) or any(
            not np.array_equal(strategy.comp_matrices[k].matrix, first.comp_matrices[k].matrix)
            for k in first.comp_matrices
        ):
            raise CytogateError(
                f"{path}: {name} was compensated with another matrix than {names[0]}; a FlowJo "
                "workspace group has one matrix (export these files separately)"
            )
        if set(strategy.transformations) != set(first.transformations) or any(
            vars(strategy.transformations[k]) != vars(first.transformations[k])
            for k in first.transformations
        ):
            raise CytogateError(
                f"{path}: {name} was scaled with other transform parameters than {names[0]} "
                "(e.g. another $PnR); a FlowJo workspace has one transform per parameter"
            )
