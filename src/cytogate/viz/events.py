"""The events of one file as the batch gated them, rebuilt from its recorded outcome.

A figure needs the events (to draw densities) and the populations (to know whose events a
panel shows). :class:`EventView` re-reads the file, compensates it with the recorded matrix,
scales each dimension with the recorded scale and re-applies the recorded geometries in
template order: nothing is fitted or chosen here. The counts it gets must be the recorded
ones; if the file changed since the run, the view says so instead of drawing other gates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cytogate.errors import CytogateError, PanelError

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.gating.engine import AppliedGate, GatingResult
    from cytogate.model.transforms import Compensation
    from cytogate.study.outcome import DimensionRecord, FileOutcome

ROOT = "root"


class EventView:
    """Scaled values and population masks of one file, for drawing (see module docstring)."""

    def __init__(
        self,
        outcome: FileOutcome,
        compensation: Compensation,
        masks: dict[str, np.ndarray],
    ) -> None:
        self.outcome = outcome
        self._comp = compensation
        self._masks = masks
        self._scaled: dict[str, np.ndarray] = {}
        self._result: GatingResult | None = None  # set by from_result

    # ----------------------------------------------------------------- building
    @classmethod
    def from_outcome(cls, outcome: FileOutcome) -> EventView:
        """Re-read ``outcome.file`` and re-apply the gates recorded for it."""
        from cytogate.io.fcs import read_fcs
        from cytogate.model.transforms import Compensation

        if not outcome.ok:
            raise CytogateError(f"{outcome.file.name}: not gated ({outcome.error})")
        sample = read_fcs(outcome.file)
        if outcome.sha256 and sample.sha256 != outcome.sha256:
            raise CytogateError(
                f"{outcome.file}: the file changed since it was gated (sha256 "
                f"{sample.sha256[:12]}… is not {outcome.sha256[:12]}…); run the batch again"
            )
        pnn = [str(v) for v in sample.channels["pnn"]]
        spill = outcome.spillover
        if spill is None:
            comp = Compensation(sample.events, [], None)
        else:
            comp = Compensation(
                sample.events,
                [pnn.index(c) for c in spill.channels],
                np.asarray(spill.matrix, dtype=np.float64),
            )
        view = cls(outcome, comp, {})
        view._masks = view._apply(outcome.gates)
        view._check_counts()
        return view

    @classmethod
    def from_result(cls, result: GatingResult) -> EventView:
        """A view of a file gated in this process (``cytogate plot``), sharing its arrays."""
        from cytogate.study.outcome import record_outcome

        outcome = record_outcome(result)
        view = cls(outcome, _compensation_of(result), {})
        view._masks = {pop: result.mask(pop) for pop in result.populations}
        view._result = result
        return view

    def _apply(self, gates: tuple[AppliedGate, ...]) -> dict[str, np.ndarray]:
        """Membership of every population from the recorded geometries, in template order."""
        from cytogate.gating.gates import Boolean, Quadrant

        masks: dict[str, np.ndarray] = {}
        everything = np.ones(self.n_events, dtype=bool)
        for g in gates:
            parent = everything if g.parent == ROOT else masks[g.parent]
            if g.status != "applied" or g.geometry is None:
                for pop in self.outcome.populations_of(
                    g
                ):  # a skipped gate passes its parent's events through
                    masks[pop] = parent.copy()
                continue
            geometry = g.geometry
            if isinstance(geometry, Boolean):
                masks[g.name] = geometry.combine([masks[o] for o in geometry.operands]) & parent
                continue
            index = np.flatnonzero(parent)
            points = np.column_stack([self.scaled_values(d)[index] for d in geometry.dims])
            named = (
                geometry.assign(points)
                if isinstance(geometry, Quadrant)
                else {g.name: geometry.contains(points)}
            )
            for pop, inside in named.items():
                full = np.zeros(self.n_events, dtype=bool)
                full[index[inside]] = True
                masks[pop] = full
        return masks

    def _check_counts(self) -> None:
        for pop, expected in self.outcome.counts.items():
            got = int(np.count_nonzero(self._masks[pop]))
            if got != expected:
                raise CytogateError(
                    f"{self.outcome.file.name}: re-applying the recorded gates gives {got} "
                    f"events in {pop}, the tables say {expected}"
                )

    # ----------------------------------------------------------------- what figures ask
    @property
    def name(self) -> str:
        return self.outcome.file.name

    @property
    def n_events(self) -> int:
        return self.outcome.n_events

    @property
    def gates(self) -> tuple[AppliedGate, ...]:
        return self.outcome.gates

    @property
    def populations(self) -> list[str]:
        return list(self._masks)

    @property
    def simulated(self) -> bool:
        return self.outcome.simulated

    def mask(self, population: str) -> np.ndarray:
        if population == ROOT:
            return np.ones(self.n_events, dtype=bool)
        return self._masks[population]

    def count(self, population: str) -> int:
        if population == ROOT:
            return self.n_events
        return int(self.outcome.counts[population])

    def pct_parent(self, population: str) -> float:
        return self.outcome.pct_parent(population)

    def parent(self, population: str) -> str:
        return self.outcome.parents[population]

    def has(self, dim: str) -> bool:
        return dim in self.outcome.dimensions

    def dimension(self, dim: str) -> DimensionRecord:
        try:
            return self.outcome.dimensions[dim]
        except KeyError:
            raise PanelError(f"{self.name}: marker '{dim}' was not found in this file") from None

    def scaled_values(self, dim: str, population: str = ROOT) -> np.ndarray:
        """Values of ``dim`` in its recorded scaled space (as the gates saw them).

        A view of a result gated in this process takes the result's own scaled values: for a
        GatingML/FlowJo template those are FlowKit's transformed values (FlowJo's biex, …),
        which the recorded identity scale cannot recompute from the compensated channel.
        """
        if dim not in self._scaled and self._result is not None and dim in self._result.scaled:
            self._scaled[dim] = self._result.scaled[dim]
        if dim not in self._scaled:
            d = self.dimension(dim)
            self._scaled[dim] = d.scale.apply(self._comp.column(d.index), d.channel_range)
        column = self._scaled[dim]
        return column if population == ROOT else column[self.mask(population)]


def _compensation_of(result: GatingResult) -> Compensation:
    """The compensation a result used, rebuilt from its public matrix and the sample."""
    from cytogate.model.transforms import Compensation

    sample = result.sample
    if result.spillover is None:
        return Compensation(sample.events, [], None)
    pnn = [str(v) for v in sample.channels["pnn"]]
    names = [str(c) for c in result.spillover.columns]
    return Compensation(
        sample.events, [pnn.index(n) for n in names], result.spillover.to_numpy(dtype=np.float64)
    )


def view_of(source: EventView | GatingResult | FileOutcome) -> EventView:
    """An :class:`EventView` of a view, a gating result, or a recorded outcome."""
    from cytogate.gating.engine import GatingResult
    from cytogate.study.outcome import FileOutcome

    if isinstance(source, EventView):
        return source
    if isinstance(source, GatingResult):
        return EventView.from_result(source)
    if isinstance(source, FileOutcome):
        return EventView.from_outcome(source)
    raise TypeError(f"cannot draw a {type(source).__name__}")
