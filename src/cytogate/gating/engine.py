"""Apply a gating template to a sample (see docs/architecture.md, "gating").

Per file: resolve the template's markers to channels → compensate → scale the gate dimensions →
evaluate gates in dependency order, each on its parent's events only (vectorised over those
events), scattering results back into boolean masks over all events. A data-driven gate is
first fitted by its kind's fitter (:mod:`cytogate.gating.kinds`); the fit is an ordinary
geometry, stored in :attr:`AppliedGate.geometry` with its diagnostics and QC reasons. A gate's
QC flag passes to the populations that depend on it (children, gates that refer to it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cytogate.errors import GatingError, PanelError
from cytogate.gating.external import ExternalTemplate
from cytogate.gating.fitting.base import FitError, empty_gate, sample_indices
from cytogate.gating.gates import (
    GRID_MIN_POINTS,
    AxisCells,
    Boolean,
    Geometry,
    PointGrid,
    Polygon,
    Quadrant,
    Rectangle,
)
from cytogate.gating.kinds import KINDS, kind_of
from cytogate.gating.loader import load_template
from cytogate.gating.model import ROOT, GateSpec, Template
from cytogate.gating.serialize import json_ready
from cytogate.model.panel import ResolvedMarker, find_marker
from cytogate.model.scale_estimation import estimate_scale
from cytogate.model.transforms import Compensation, Scale

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from cytogate.io.fcs import Sample

GateStatus = Literal["applied", "skipped"]

#: A data-driven gate is fitted on at most this many of its parent's events: an evenly spaced,
#: deterministic selection in acquisition order (the same on every run and worker), so a fit
#: costs the same on a 10^7-event file as on a 10^5 one; the fitted geometry is then
#: applied to every event. Recorded per gate in ``AppliedGate.diagnostics["fit_events"]``.
#: 100,000: the leukocyte map bins at most that many (``MapSpec.subsample``) and a 1-D
#: threshold's valley is placed to well under a bin with them; more only cost gathering time.
FIT_EVENTS = 100_000


def evenly_spaced(m: int, n: int) -> np.ndarray | None:
    """Indices of ``n`` of ``m`` rows spread evenly over them (None: ``m <= n``, take all)."""
    if m <= n:
        return None
    return (np.arange(n, dtype=np.int64) * m) // n


@dataclass(frozen=True, kw_only=True)
class AppliedGate:
    """What the engine did with one gate of the template on one file."""

    name: str
    parent: str
    kind: str
    status: GateStatus
    geometry: Geometry | None  # the variant used, or the geometry fitted (None when skipped)
    dims: tuple[str, ...]
    channels: tuple[str, ...]  # $PnN of each dimension
    note: str = ""
    diagnostics: dict[str, Any] = field(default_factory=dict)  # fitted gates: how the fit went
    qc: tuple[str, ...] = ()  # this gate's own QC reasons (empty: no doubt)

    @property
    def fitted(self) -> bool:
        """True for an adaptive gate (its geometry was fitted to this file, or pinned)."""
        return self.status == "applied" and KINDS[self.kind].adaptive


class GatingResult:
    """Populations of one sample: boolean masks over all events, counts and percentages.

    Built by :func:`gate` only (keyword arguments). Besides the populations it carries what
    was applied to the file, for the batch's per-file outcome and the figures:

    * ``sample``, ``template``; ``gates``: one :class:`AppliedGate` per template gate, with the
      geometry used (fitted, pinned or fixed), its diagnostics and QC reasons;
    * ``scales``: marker -> the :class:`~cytogate.model.transforms.Scale` applied to it in this
      file (alternatives and ``pne`` resolved), for every gated marker;
    * ``markers``: marker -> resolved channel (:meth:`channel_map` gives marker -> $PnN);
    * ``compensation`` (which matrix, in words) and ``spillover`` (the matrix, or None);
    * ``scaled``: marker -> values in the scaled space, as gates saw them.
    """

    def __init__(
        self,
        *,
        sample: Sample,
        template: Template,
        compensation: Compensation,
        compensation_note: str,
        spillover: pd.DataFrame | None,
        markers: dict[str, ResolvedMarker],
        scaled: dict[str, np.ndarray],
        scales: dict[str, Scale],
        gates: list[AppliedGate],
        masks: dict[str, np.ndarray],
        parents: dict[str, str],
        reference: Mapping[str, str] | None,
        dependencies: dict[str, set[str]],
    ) -> None:
        self.sample: Sample = sample
        self.template: Template = template
        self._comp = compensation
        self.compensation: str = compensation_note
        self.spillover: pd.DataFrame | None = spillover  # labelled by $PnN
        self.markers: dict[str, ResolvedMarker] = markers
        self.scaled: dict[str, np.ndarray] = scaled
        self.scales: dict[str, Scale] = scales
        self.gates: list[AppliedGate] = gates
        self._masks = masks
        self._parents = parents
        self._reference = dict(reference or {})
        self._dependencies = dependencies
        # Events holding NaN/inf (counted per channel by the reader) are left out of the root:
        # one such value spreads through compensation into every gating channel of that event.
        self._finite = sample.finite_mask()
        #: events left out of every gate because they hold NaN/inf (see Sample.nonfinite)
        self.excluded_nonfinite = int(sample.n_events - np.count_nonzero(self._finite))

    # ----------------------------------------------------------------- populations
    @property
    def populations(self) -> list[str]:
        """Population names in template order (the root, all events, is not listed)."""
        return list(self._masks)

    @property
    def n_events(self) -> int:
        return self.sample.n_events

    def mask(self, population: str) -> np.ndarray:
        """Boolean mask over all events of ``population`` (``"root"`` = every event)."""
        if population == ROOT:
            return np.ones(self.n_events, dtype=bool)
        try:
            return self._masks[population]
        except KeyError:
            raise KeyError(
                f"no population {population!r} (populations: {', '.join(self._masks)})"
            ) from None

    def parent(self, population: str) -> str:
        return self._parents[population]

    def count(self, population: str) -> int:
        return int(np.count_nonzero(self.mask(population)))

    def pct_parent(self, population: str) -> float:
        """% of the parent population's events (NaN when the parent is empty)."""
        parent = self.count(self._parents[population])
        return 100.0 * self.count(population) / parent if parent else float("nan")

    def pct_total(self, population: str) -> float:
        return 100.0 * self.count(population) / self.n_events if self.n_events else float("nan")

    def gate_of(self, population: str) -> AppliedGate:
        for g in self.gates:
            if g.name == population or (
                isinstance(g.geometry, Quadrant) and population in g.geometry.populations
            ):
                return g
        raise KeyError(population)

    def table(self) -> pd.DataFrame:
        """One row per population: parent, count, % of parent, % of total, gate status."""
        import pandas as pd

        rows = []
        for pop in self.populations:
            g = self.gate_of(pop)
            rows.append(
                {
                    "population": pop,
                    "parent": self._parents[pop],
                    "count": self.count(pop),
                    "pct_parent": self.pct_parent(pop),
                    "pct_total": self.pct_total(pop),
                    "gate_kind": g.kind,
                    "gate_status": g.status,
                    "gate_channels": "/".join(g.channels),
                    "qc_flag": bool(self.qc(pop)),
                    "qc_reason": "; ".join(self.qc(pop)),
                }
            )
        return pd.DataFrame(rows)

    # ----------------------------------------------------------------- quality control
    def qc(self, population: str) -> tuple[str, ...]:
        """QC reasons for ``population``: its gate's own, then those of every gate it depends
        on (parent chain, referenced populations, ``qc.flag_with``), each as "gate: reason"."""
        if population == ROOT:
            return ()
        gate_of = {g.name: g for g in self.gates}
        seen: list[str] = []
        stack = [self.gate_of(population).name]
        while stack:
            name = stack.pop(0)
            if name in seen or name not in gate_of:
                continue
            seen.append(name)
            deps = self._dependencies.get(name, {self._parents.get(name, ROOT)})
            for dep in sorted(deps):
                if dep != ROOT:
                    stack.append(self.gate_of(dep).name)
        return tuple(f"{name}: {reason}" for name in seen for reason in gate_of[name].qc)

    def qc_flags(self) -> dict[str, tuple[str, ...]]:
        """Population -> QC reasons, for the flagged populations only."""
        return {pop: r for pop in self.populations if (r := self.qc(pop))}

    def fitted_geometries(self) -> dict[str, Geometry]:
        """Gate name -> the geometry fitted to this file, for every adaptive gate applied (what
        a batch reuses when a template pins a gate to the patient's baseline)."""
        return {g.name: g.geometry for g in self.gates if g.fitted and g.geometry is not None}

    def scale_for(self, marker: str) -> Scale:
        """The scale of ``marker`` as used for this file (alternatives resolved)."""
        if marker in self.scales:
            return self.scales[marker]
        resolved = self.resolve(marker)
        return self.template.scale_for(marker, self.sample, resolved.index)

    # ----------------------------------------------------------------- marker values
    @property
    def compensated(self) -> np.ndarray:
        """All channels compensated (n_events × n_channels); computed on first use."""
        return self._comp.all()

    def channel_map(self) -> dict[str, str]:
        """Marker -> $PnN for every marker resolved so far (the reference for isotype tubes)."""
        return {m: r.pnn for m, r in self.markers.items()}

    def resolve(self, marker: str) -> ResolvedMarker:
        """Resolve ``marker`` in this file (memoised), via the stained tube's $PnN if given."""
        if marker not in self.markers:
            if marker not in self.template.panel:
                raise PanelError(
                    f"marker '{marker}' is not in template {self.template.name}'s panel "
                    f"({', '.join(self.template.panel)})"
                )
            self.markers[marker] = find_marker(
                self.sample, self.template.panel[marker], self._reference.get(marker)
            )
        return self.markers[marker]

    def values(self, marker: str, population: str = ROOT) -> np.ndarray:
        """Compensated linear intensities of ``marker`` on ``population``'s events."""
        column = self._comp.column(self.resolve(marker).index)
        return column if population == ROOT else column[self.mask(population)]

    def scaled_values(self, marker: str, population: str = ROOT) -> np.ndarray:
        """Values in the template's scaled space for ``marker`` (as gates see them)."""
        if marker not in self.scaled:
            _scale_into(self, marker, self.resolve(marker))
        column = self.scaled[marker]
        return column if population == ROOT else column[self.mask(population)]


# --------------------------------------------------------------------------- gate()


def gate(
    sample: Sample,
    template: Template | str | None = None,
    *,
    compensation: str | pd.DataFrame | None = None,
    reference: Mapping[str, str] | None = None,
    pinned: Mapping[str, Geometry] | None = None,
) -> GatingResult:
    """Gate ``sample`` with ``template`` (a :class:`Template`, a bundled name or a path).

    ``compensation`` overrides the template's ("file", "none", a CSV path or a labelled
    matrix). ``reference`` maps marker -> $PnN of the matched stained tube, so an isotype tube
    resolves its markers on the same detectors (see :mod:`cytogate.model.panel`). ``pinned`` maps an
    adaptive gate's name to a geometry to use instead of fitting (a batch passes the patient's
    baseline fits for gates with ``pin: baseline``); when given, a pinned gate missing from it
    is fitted on this file and flagged.
    """
    tmpl = load_template(template or "aml_blasts_cd45_ssc")
    if isinstance(tmpl, ExternalTemplate):  # GatingML/FlowJo: evaluated by FlowKit
        return tmpl.gate_sample(
            sample, compensation=compensation, reference=reference, pinned=pinned
        )
    comp, comp_note, spillover = _compensate(sample, tmpl, compensation)
    result = GatingResult(
        sample=sample,
        template=tmpl,
        compensation=comp,
        compensation_note=comp_note,
        spillover=spillover,
        markers={},
        scaled={},
        scales={},
        gates=[],
        masks={},
        parents={},
        reference=reference,
        dependencies={g.name: g.qc_sources() for g in tmpl.gates},
    )
    points_of = _ParentPoints(result.scaled, result.excluded_nonfinite == 0)
    context = _FitContext(result)
    for spec in tmpl.gates:
        result.gates.append(_apply(result, spec, points_of, context, pinned))
    return result


def _apply(
    result: GatingResult,
    spec: GateSpec,
    points_of: _ParentPoints,
    context: _FitContext,
    pinned: Mapping[str, Geometry] | None,
) -> AppliedGate:
    """Evaluate one gate on its parent's events, storing its population masks in ``result``."""
    masks, parents = result._masks, result._parents
    parent_mask = result._finite if spec.parent == ROOT else masks[spec.parent]
    geometry, resolved, why_not = _choose_variant(result, spec)
    if geometry is None:
        if not spec.optional:
            raise GatingError(f"{result.sample.path.name}: gate '{spec.name}': {why_not}")
        for pop in spec.populations():  # a skipped gate passes its parent's events through
            masks[pop], parents[pop] = parent_mask.copy(), spec.parent
        return AppliedGate(
            name=spec.name,
            parent=spec.parent,
            kind=spec.kind,
            status="skipped",
            geometry=None,
            dims=(),
            channels=(),
            note=f"skipped (optional): {why_not}",
        )
    dims = geometry.dims
    for dim, r in zip(dims, resolved, strict=True):
        result.markers.setdefault(dim, r)
        if dim not in result.scaled:
            _scale_into(result, dim, r)
    kind = geometry.kind
    diagnostics: dict[str, Any] = {}
    qc: list[str] = []
    if kind_of(geometry).adaptive:
        geometry, diagnostics, qc = _fit(spec, geometry, parent_mask, points_of, context, pinned)
    evaluated = _evaluate(spec.name, geometry, spec.parent, parent_mask, points_of, masks)
    for pop, mask in evaluated.items():
        masks[pop], parents[pop] = mask, spec.parent
    qc += _qc_rules(spec, evaluated, parent_mask, diagnostics)
    if spec.parent == ROOT and result.excluded_nonfinite:
        qc.append(f"{result.excluded_nonfinite} events with NaN/inf values excluded before gating")
    context.geometries[spec.name] = geometry
    return AppliedGate(
        name=spec.name,
        parent=spec.parent,
        kind=kind,
        status="applied",
        geometry=geometry,
        dims=dims,
        channels=tuple(r.pnn for r in resolved),
        diagnostics=json_ready(diagnostics),
        qc=tuple(qc),
    )


def _fit(
    spec: GateSpec,
    geometry: Any,
    parent_mask: np.ndarray,
    points_of: _ParentPoints,
    context: _FitContext,
    pinned: Mapping[str, Geometry] | None,
) -> tuple[Geometry, dict[str, Any], list[str]]:
    """Fit an adaptive gate with its kind's fitter (or take its pinned geometry):
    (geometry, diagnostics, QC)."""
    if pinned is not None and spec.name in pinned:
        return pinned[spec.name], {"method": geometry.kind, "pinned": spec.pin or True}, []
    qc = []
    if spec.pin and pinned is not None:
        qc.append(f"pin: {spec.pin} requested but no {spec.pin} fit is available; fitted here")
    points, total = points_of.bounded(spec.parent, parent_mask, geometry.dims, FIT_EVENTS)
    bounded = {}
    if points.shape[0] < total:
        bounded = {"fit_events": f"{points.shape[0]} of {total} (evenly spaced)"}
    fitter = kind_of(geometry).fit
    assert fitter is not None
    try:
        fitted = fitter(geometry, spec.name, spec.parent, points, context)
    except FitError as exc:  # no fallback in the template: an empty, flagged gate
        qc.append(f"{exc}; gate left empty")
        diagnostics = {"method": geometry.kind, "fallback": True, **bounded}
        return empty_gate(geometry.dims), diagnostics, qc
    return fitted.geometry, {**fitted.diagnostics, **bounded}, [*qc, *fitted.qc]


def _qc_rules(
    spec: GateSpec,
    evaluated: dict[str, np.ndarray],
    parent_mask: np.ndarray,
    diagnostics: dict[str, Any],
) -> list[str]:
    """The template's ``qc:`` rules on what the gate took (and the fraction, as a diagnostic)."""
    parent_n = int(np.count_nonzero(parent_mask))
    mask = evaluated.get(spec.name)
    if mask is None:  # quadrant: rules apply to the gate's populations together
        mask = np.logical_or.reduce(list(evaluated.values()))
    fraction = np.count_nonzero(mask) / parent_n if parent_n else float("nan")
    if diagnostics or spec.adaptive:
        diagnostics["fraction"] = round(float(fraction), 6)
    rules = spec.qc
    reasons = rules.check_fraction(fraction, spec.parent)
    overlap = diagnostics.get("overlap")
    if rules.max_overlap is not None and overlap is not None and overlap > rules.max_overlap:
        reasons.append(
            f"cluster overlaps another (Bhattacharyya {overlap:.2f} > {rules.max_overlap:g})"
        )
    return reasons


class _FitContext:
    """What fits may ask for: reference populations' values, a shared mixture per file."""

    def __init__(self, result: GatingResult) -> None:
        self._result = result
        self._mixtures: dict[tuple[Any, ...], Any] = {}
        self._selections: dict[str, tuple[tuple[Any, ...], tuple[int, ...]]] = {}
        self._samples: dict[tuple[str, int, int], np.ndarray] = {}
        self._bounded: dict[str, np.ndarray] = {}
        self.geometries: dict[str, Geometry] = {}

    def values(self, population: str, dim: str, limit: tuple[int, int] | None = None) -> np.ndarray:
        """See :class:`~cytogate.gating.fitting.base.FitContext`; without ``limit``, at most
        :data:`FIT_EVENTS` of the population's events (evenly spaced), as a fit gets."""
        try:
            column = self._result.scaled_values(dim)
        except PanelError as exc:
            raise FitError(str(exc)) from exc
        if limit is None:
            if population not in self._bounded:
                members = (
                    np.arange(column.shape[0])
                    if population == ROOT
                    else np.flatnonzero(self._result.mask(population))
                )
                pick = evenly_spaced(members.size, FIT_EVENTS)
                self._bounded[population] = members if pick is None else members[pick]
            if population == ROOT and self._bounded[population].size == column.shape[0]:
                return column
            return column[self._bounded[population]]
        key = (population, *limit)
        if key not in self._samples:  # one seeded subsample per population and limit
            if population == ROOT:
                index = sample_indices(column.shape[0], *limit)
                if index is None:
                    index = np.arange(column.shape[0])
            else:
                members = np.flatnonzero(self._result.mask(population))
                pick = sample_indices(members.size, *limit)
                index = members if pick is None else members[pick]
            self._samples[key] = index
        return column[self._samples[key]]

    def to_scaled(self, dim: str, linear: np.ndarray) -> np.ndarray:
        result = self._result
        result.scaled_values(dim)  # resolves (and, for `auto`, fits) the file's scale
        pnr = float(result.sample.channels["pnr"].iloc[result.resolve(dim).index])
        return result.scales[dim].apply(linear, pnr)

    def mixture(self, key: tuple[Any, ...], fit: Any) -> Any:
        if key not in self._mixtures:
            try:
                self._mixtures[key] = fit()
            except FitError as exc:
                self._mixtures[key] = exc
        found = self._mixtures[key]
        if isinstance(found, FitError):
            raise found
        return found

    def selection(self, population: str) -> tuple[tuple[Any, ...], tuple[int, ...]] | None:
        return self._selections.get(population)

    def record_selection(
        self, population: str, key: tuple[Any, ...], clusters: tuple[int, ...]
    ) -> None:
        self._selections[population] = (key, clusters)

    def geometry(self, population: str) -> Geometry | None:
        return self.geometries.get(population)


def _choose_variant(
    result: GatingResult, spec: GateSpec
) -> tuple[Any | None, list[ResolvedMarker], str]:
    """The first variant whose dimensions all resolve in this file, or why none does."""
    problems = []
    sample, tmpl, reference = result.sample, result.template, result._reference
    for geometry in spec.variants:
        try:
            resolved = [
                result.markers[d]
                if d in result.markers
                else find_marker(sample, tmpl.panel[d], reference.get(d))
                for d in geometry.dims
            ]
        except PanelError as exc:
            problems.append(str(exc).removeprefix(f"{sample.path.name}: "))
            continue
        return geometry, resolved, ""
    return None, [], "; ".join(problems)


class _ParentPoints:
    """The parent's events as (m × d) points, gathered once per (parent, dimensions).

    Sibling gates usually share both (blasts, lymphocytes, monocytes and granulocytes are all
    CD45/SSC gates on the leukocytes), so the gather is done once, not once per gate.
    """

    def __init__(self, scaled: dict[str, np.ndarray], all_finite: bool) -> None:
        self._scaled = scaled
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[np.ndarray, np.ndarray]] = {}
        self._grids: dict[tuple[str, tuple[str, ...]], PointGrid | None] = {}
        self._all_finite = all_finite  # no event excluded for NaN/inf: columns have finite extents
        self._full_grids: dict[tuple[str, ...], PointGrid | None] = {}
        self._axes: dict[str, AxisCells | None] = {}
        self._bounded: dict[tuple[str, tuple[str, ...], int], tuple[np.ndarray, int]] = {}
        self._counts: dict[str, int] = {}

    def full_grid(self, parent: str, parent_mask: np.ndarray, dims: tuple[str, ...]):
        """Every event's cell for ``dims`` (one grid per pair of dimensions, shared by all the
        parents gated on them), when the parent holds a large share of the events; else None
        (the parent's points are gathered instead)."""
        n = parent_mask.shape[0]
        if not self._all_finite or len(dims) != 2 or n < GRID_MIN_POINTS:
            return None
        if parent not in self._counts:
            self._counts[parent] = int(np.count_nonzero(parent_mask))
        if 4 * self._counts[parent] < n:
            return None
        if dims not in self._full_grids:
            ax, ay = (self._axis(d) for d in dims)
            grid = None if ax is None or ay is None else PointGrid.of_axes(ax, ay)
            self._full_grids[dims] = grid
        return self._full_grids[dims]

    def _axis(self, dim: str) -> AxisCells | None:
        if dim not in self._axes:  # one quantisation per dimension, shared by its grids
            self._axes[dim] = PointGrid.axis(self._scaled[dim])
        return self._axes[dim]

    def get(
        self, parent: str, parent_mask: np.ndarray, dims: tuple[str, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        key = (parent, dims)
        if key not in self._cache:
            index = np.flatnonzero(parent_mask)
            # column-major: gates and fits read one dimension at a time
            points = np.empty((index.size, len(dims)), order="F")
            for j, d in enumerate(dims):
                np.take(self._scaled[d], index, out=points[:, j])
            self._cache[key] = (index, points)
        return self._cache[key]

    def column(self, dim: str) -> np.ndarray:
        return self._scaled[dim]

    def has(self, parent: str, dims: tuple[str, ...]) -> bool:
        return (parent, dims) in self._cache

    def bounded(
        self, parent: str, parent_mask: np.ndarray, dims: tuple[str, ...], limit: int
    ) -> tuple[np.ndarray, int]:
        """(at most ``limit`` of the parent's points, evenly spaced; how many it has), gathering
        only those unless every point is already at hand. Read-only and kept: sibling gates
        fitted on one parent and dimensions (a leukocyte map's populations) share them."""
        memo = (parent, dims, limit)
        if memo not in self._bounded:
            points, total = self._gather_bounded(parent, parent_mask, dims, limit)
            points.flags.writeable = False
            self._bounded[memo] = (points, total)
        return self._bounded[memo]

    def _gather_bounded(
        self, parent: str, parent_mask: np.ndarray, dims: tuple[str, ...], limit: int
    ) -> tuple[np.ndarray, int]:
        key = (parent, dims)
        if key in self._cache:
            index, points = self._cache[key]
            pick = evenly_spaced(index.size, limit)
            if pick is None:
                return points, index.size
            chosen = np.empty((pick.size, len(dims)), order="F")
            for j in range(len(dims)):
                np.take(points[:, j], pick, out=chosen[:, j])
            return chosen, index.size
        index = np.flatnonzero(parent_mask)
        pick = evenly_spaced(index.size, limit)
        if pick is None:
            return self.get(parent, parent_mask, dims)[1], index.size
        chosen = np.empty((pick.size, len(dims)), order="F")
        for j, d in enumerate(dims):
            np.take(self._scaled[d], index[pick], out=chosen[:, j])
        return chosen, index.size

    def grid(self, parent: str, dims: tuple[str, ...]) -> PointGrid | None:
        """The parent's points on a grid (after :meth:`get`), shared by its polygon gates;
        None for too few points to pay for one."""
        key = (parent, dims)
        if key not in self._grids:
            points = self._cache[key][1]
            big = points.shape[0] >= GRID_MIN_POINTS and len(dims) == 2
            self._grids[key] = PointGrid.of(points) if big else None
        return self._grids[key]


def _evaluate(
    name: str,
    geometry: Geometry,
    parent: str,
    parent_mask: np.ndarray,
    points_of: _ParentPoints,
    masks: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Masks over all events for the population(s) a gate defines within its parent.

    ``name`` is the gate's population name; a quadrant gate names its own populations.
    """
    if isinstance(geometry, Boolean):
        combined = geometry.combine([masks[name] for name in geometry.operands])
        return {name: combined & parent_mask}
    if isinstance(geometry, Polygon):
        grid = points_of.full_grid(parent, parent_mask, geometry.dims)
        if grid is not None:  # every event by its cell, within the parent: no gather
            from flowutils.gating import points_in_polygon

            x, y = (points_of.column(d) for d in geometry.dims)
            verts = np.asarray(geometry.vertices, dtype=np.float64)
            return {name: grid.polygon_membership(verts, x, y, points_in_polygon, parent_mask)}
    if isinstance(geometry, Rectangle) and not points_of.has(parent, geometry.dims):
        # a few comparisons over every event cost less than gathering the parent's points
        full = parent_mask.copy()
        for d, lo, hi in zip(geometry.dims, geometry.min, geometry.max, strict=True):
            column = points_of.column(d)
            if lo is not None:
                full &= column >= lo
            if hi is not None:
                full &= column < hi
        return {name: full}
    index, points = points_of.get(parent, parent_mask, geometry.dims)
    if isinstance(geometry, Quadrant):
        named = geometry.assign(points)
    elif isinstance(geometry, Polygon):
        named = {name: geometry.contains(points, points_of.grid(parent, geometry.dims))}
    else:
        named = {name: geometry.contains(points)}
    out = {}
    for pop, inside in named.items():
        full = np.zeros(parent_mask.shape[0], dtype=bool)
        full[index[inside]] = True
        out[pop] = full
    return out


def _scale_into(result: GatingResult, dim: str, marker: ResolvedMarker) -> None:
    """Scale ``dim``'s compensated values with this file's scale, recording the scale used."""
    sample = result.sample
    pnr = float(sample.channels["pnr"].iloc[marker.index])
    scale = result.template.scale_for(dim, sample, marker.index)
    if scale.kind == "auto":  # fitted to this file's values (docs/channels_and_scales.md)
        scale = estimate_scale(sample, marker.index).to_scale()
    result.scales[dim] = scale
    result.scaled[dim] = scale.apply(result._comp.for_scaling(marker.index), pnr)


def _compensate(
    sample: Sample, tmpl: Template, override: str | pd.DataFrame | None
) -> tuple[Compensation, str, pd.DataFrame | None]:
    """Lazy compensation of the events, a note saying which matrix, and the matrix itself."""
    from cytogate.model.transforms import read_spillover_csv

    choice = tmpl.compensation if override is None else override
    if isinstance(choice, str):
        if choice == "none":
            return Compensation(sample.data, [], None), "none", None
        if choice == "file":
            if sample.spillover is None:
                if sample.spillover_error:
                    raise GatingError(f"{sample.path.name}: {sample.spillover_error}")
                return (
                    Compensation(sample.data, [], None),
                    "none (the file has no spillover keyword)",
                    None,
                )
            matrix, note = sample.spillover, "file spillover keyword"
            if sample.spillover_columns is not None:  # resolved by the reader (duplicate $PnN)
                columns = list(sample.spillover_columns)
                comp = _compensation(sample, columns, matrix, note)
                return comp, f"{note} ({len(columns)} ch)", matrix
        else:
            matrix, note = read_spillover_csv(choice), f"matrix {choice}"
    else:
        matrix, note = choice, "matrix given by caller"
    names = [str(c) for c in matrix.columns]
    pnn = [str(v) for v in sample.channels["pnn"]]
    missing = [n for n in names if n not in pnn]
    if missing:
        raise GatingError(
            f"{sample.path.name}: spillover ({note}) names channel(s) {', '.join(missing)} "
            f"not in the file (channels: {', '.join(pnn)})"
        )
    shared = sorted({n for n in names if pnn.count(n) > 1})
    if shared:
        raise GatingError(
            f"{sample.path.name}: spillover ({note}) names channel(s) {', '.join(shared)} that "
            "several channels of the file share ($PnN); cannot tell which to compensate"
        )
    columns = [pnn.index(n) for n in names]
    matrix = matrix.loc[names, names] if list(matrix.index) == list(matrix.columns) else matrix
    return _compensation(sample, columns, matrix, note), f"{note} ({len(names)} ch)", matrix


def _compensation(
    sample: Sample, columns: list[int], matrix: pd.DataFrame, note: str
) -> Compensation:
    try:
        return Compensation(sample.data, columns, matrix.to_numpy(dtype=np.float64))
    except np.linalg.LinAlgError as exc:
        raise GatingError(f"{sample.path.name}: spillover ({note}) is singular: {exc}") from exc
