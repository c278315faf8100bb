"""Bounds that are statistics of other populations (``{of: lymphocytes, stat: median, n: -3,
spread: sd}``), used by relative gates and cluster selection (docs/adaptive_gating.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cytogate.gating import fields as f
from cytogate.gating.fields import REQUIRED, Entry, Field, field_table
from cytogate.gating.fitting.base import STAT_SAMPLE, FitContext, FitError, spread

BOUND_FIELDS = field_table(
    (
        Field("of", "the population whose statistic it is", REQUIRED),
        Field("dim", "its marker (default: the gate's dimension at this position)"),
        Field("stat", "median | mean | quantile", "median", f.choice("median", "mean", "quantile")),
        Field("q", "the quantile, with stat: quantile", 0.5, f.fraction),
        Field("n", "spreads added to the statistic", 0.0, f.number),
        Field("spread", "mad | sd", "mad", f.choice("mad", "sd")),
    )
)


@dataclass(frozen=True, kw_only=True)
class Bound:
    """A coordinate: a number, or ``stat + n × spread`` of population ``of`` on ``dim``.

    E.g. ``{of: lymphocytes, stat: median, n: -3, spread: sd}`` is "3 SD below the lymphocytes'
    median". The template defaults are declared in :data:`BOUND_FIELDS`.
    """

    value: float | None = None
    of: str | None = None
    dim: str | None = None
    stat: Literal["median", "mean", "quantile"] = BOUND_FIELDS["stat"].default
    q: float = BOUND_FIELDS["q"].default
    n: float = BOUND_FIELDS["n"].default
    spread: Literal["sd", "mad"] = BOUND_FIELDS["spread"].default

    def populations(self) -> set[str]:
        return {self.of} if self.of else set()

    def evaluate(self, ctx: FitContext, default_dim: str) -> float:
        if self.of is None:
            assert self.value is not None
            return self.value
        dim = self.dim or default_dim
        # statistics of at most 50,000 events (seeded): exact below, precise enough above
        values = ctx.values(self.of, dim, (STAT_SAMPLE, 0))
        values = values[np.isfinite(values)]
        if values.size < 3:
            raise FitError(f"reference population '{self.of}' has {values.size} events")
        if self.stat == "quantile":
            centre = float(np.quantile(values, self.q))
        elif self.stat == "mean":
            centre = float(values.mean())
        else:
            centre = float(np.median(values))
        if self.n == 0:
            return centre
        return centre + self.n * spread(values, self.spread)

    def describe(self) -> str:
        if self.of is None:
            return f"{self.value:g}"
        centre = f"q{self.q:g}" if self.stat == "quantile" else self.stat
        text = f"{self.of}.{centre}" + (f"[{self.dim}]" if self.dim else "")
        return text + (f" {self.n:+g} {self.spread}" if self.n else "")


def parse_bound(parent: Entry, value: Any, label: str) -> Bound:
    """A number or a statistic mapping; ``label`` names it in messages (``field 'min'``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Bound(value=float(value))
    context = f"{parent.context}: {label}"
    if not isinstance(value, dict) or not isinstance(value.get("of"), str):
        where = Entry({}, parent.source, context, line=f.line_of(value) or parent.line)
        raise where.fail(
            None, "a number or {of: POPULATION, stat: median|mean|quantile, n: k, spread: sd|mad}"
        )
    entry = Entry(value, parent.source, context, BOUND_FIELDS)
    entry.reject_unknown(BOUND_FIELDS)
    stat = entry.get("stat")
    if "q" in entry and stat != "quantile":
        raise entry.fail("q", "only with stat: quantile")
    dim = entry.raw("dim")
    if dim is not None and not isinstance(dim, str):
        raise entry.fail("dim", "a marker name")
    return Bound(
        of=entry.raw("of"),
        dim=dim,
        stat=stat,
        q=entry.get("q"),
        n=entry.get("n"),
        spread=entry.get("spread"),
    )


def bound_list(entry: Entry, name: str, n: int) -> tuple[Bound | None, ...]:
    """``min``/``max`` of a relative gate: one bound (or null) per dimension."""
    return f.per_dimension(entry, name, n, lambda v: parse_bound(entry, v, f"field {name!r}"))
