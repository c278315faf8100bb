"""Per-sample quantification: populations (counts, absolute counts) and markers (MFI, RMFI, %+).

Definitions (docs/architecture.md §5), each named in the output columns:

* ``mfi_mean``, ``mfi_median``: arithmetic mean and median of the population's compensated
  linear intensities; ``mfi_geomean``: geometric mean over the *positive* values only
  (``exp(mean(log x))``, x > 0), because compensated values can be ≤ 0 and have no logarithm;
  ``n_positive_values`` says how many entered it.
* ``rmfi`` = MFI(marker, population, stained tube) / MFI(same marker and population, matched
  control tube of the same patient and timepoint: the stained tube's own control of the kind
  configured for the marker, isotype by default), using the run's ``mfi_statistic``
  (recorded in the ``mfi_statistic`` column).
* ``pct_positive`` = 100 × share of the population's stained-tube events above ``threshold``,
  the ``positivity_percentile``-th percentile of the same population in the matched control tube.
* ``per_ul`` (cells/µL): single-platform when the template has a ``beads`` population and the
  manifest gives ``beads_per_ul`` (count / bead events × beads/µL); otherwise dual-platform
  from the blood count (``wbc_per_ul`` × count / CD45+ leukocyte events).

A measure that cannot be computed (too few events, no control tube, a zero or missing
denominator, a marker absent from the file) is NaN with the reason in the ``reason`` column,
never an exception or an infinity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cytogate.errors import PanelError

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.gating.engine import GatingResult
    from cytogate.study.design import RunConfig

NAN = float("nan")


def mfi_statistics(values: np.ndarray) -> dict[str, float]:
    """Mean, median and geometric mean (positive values only) of linear intensities."""
    n = int(values.size)
    positive = values[values > 0]
    return {
        "n_events": n,
        "mfi_mean": float(values.mean()) if n else NAN,
        "mfi_median": float(np.median(values)) if n else NAN,
        "mfi_geomean": float(np.exp(np.log(positive).mean())) if positive.size else NAN,
        "n_positive_values": int(positive.size),
    }


def population_rows(
    result: GatingResult,
    wbc_per_ul: float | None,
    beads_per_ul: float | None,
) -> list[dict[str, Any]]:
    """One row per population: count, % parent, % total, absolute count per µL with method,
    and the gating QC flag with its reasons (``qc_flag``, ``qc_reason``)."""
    roles = result.template.roles
    leuko_pop = roles.get("leukocytes")
    bead_pop = roles.get("beads")
    leuko_count = result.count(leuko_pop) if leuko_pop in result.populations else None
    bead_count = result.count(bead_pop) if bead_pop in result.populations else None
    rows = []
    for pop in result.populations:
        count = result.count(pop)
        per_ul, method, reason = _absolute_count(
            count, leuko_count, wbc_per_ul, bead_count, beads_per_ul, leuko_pop
        )
        gate = result.gate_of(pop)
        rows.append(
            {
                "population": pop,
                "parent": result.parent(pop),
                "count": count,
                "pct_parent": result.pct_parent(pop),
                "pct_total": result.pct_total(pop),
                "per_ul": per_ul,
                "per_ul_method": method,
                "gate_status": gate.status,
                "gate_channels": "/".join(gate.channels),
                "reason": reason,
                # doubtful gating (a fitted gate's QC, or one it depends on): see qc_reason
                "qc_flag": bool(result.qc(pop)),
                "qc_reason": "; ".join(result.qc(pop)),
            }
        )
    return rows


def _absolute_count(
    count: int,
    leuko_count: int | None,
    wbc_per_ul: float | None,
    bead_count: int | None,
    beads_per_ul: float | None,
    leuko_pop: str | None,
) -> tuple[float, str, str]:
    if beads_per_ul is not None and bead_count is not None:
        if bead_count == 0:
            return NAN, "single-platform", "no bead events"
        return count / bead_count * beads_per_ul, "single-platform", ""
    if wbc_per_ul is None:
        return NAN, "", "no wbc_per_ul (dual-platform) or beads_per_ul (single-platform) given"
    if leuko_count is None:
        return NAN, "dual-platform", "template has no 'leukocytes' role population"
    if leuko_count == 0:
        return NAN, "dual-platform", f"no {leuko_pop} events"
    return wbc_per_ul * count / leuko_count, "dual-platform", ""


def _marker_values(
    result: GatingResult, marker: str, population: str
) -> tuple[np.ndarray | None, str, str]:
    """Values of ``marker`` on ``population``, the channel, and why not (if unavailable)."""
    if population not in result.populations:
        return None, "", f"no population {population!r} in template {result.template.name}"
    try:
        channel = result.resolve(marker).pnn
    except PanelError as exc:
        return None, "", str(exc)
    return result.values(marker, population), channel, ""


@dataclass(frozen=True)
class MarkerPlan:
    """Which markers get which measures, from the run config, and which kind of control each
    is measured against (``controls``: marker -> isotype/fmo/unstained; any other marker:
    ``default_control``)."""

    populations: tuple[str, ...]
    rmfi: tuple[str, ...]
    positivity: tuple[str, ...]
    statistic: str
    percentile: float
    min_events: int
    controls: tuple[tuple[str, str], ...] = ()
    default_control: str = "isotype"

    @classmethod
    def from_config(cls, config: RunConfig) -> MarkerPlan:
        return cls(
            config.marker_populations,
            config.rmfi_markers,
            config.positivity_markers,
            config.mfi_statistic,
            float(config.positivity_percentile),
            config.min_events,
            config.marker_controls,
            config.legacy_control_role,
        )

    @property
    def markers(self) -> list[str]:
        return list(dict.fromkeys((*self.rmfi, *self.positivity)))

    def control_role(self, marker: str) -> str:
        """The kind of control ``marker``'s RMFI / % positive is taken against."""
        return dict(self.controls).get(marker, self.default_control)


def marker_reference(result: GatingResult, plan: MarkerPlan) -> dict[str, str]:
    """Marker -> $PnN in a stained tube, for every marker its control tube will need (so that
    RMFI compares the same detectors; see :mod:`cytogate.model.panel`)."""
    for marker in plan.markers:
        try:
            result.resolve(marker)
        except PanelError:
            pass  # reported per marker in markers.csv
    return result.channel_map()


def panel_problem(result: GatingResult, marker: str) -> str:
    """'' when the file's panel has exactly one channel for ``marker``, else why not (a
    partial panel lacks it, or its patterns match several channels)."""
    try:
        result.resolve(marker)
    except PanelError as exc:
        return str(exc)
    return ""


def marker_rows(
    stained: GatingResult, control: GatingResult | None, plan: MarkerPlan
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Marker rows for the stained tube (with RMFI / % positive) and for its control tube,
    every marker of ``plan`` against the one ``control``."""
    stained_rows, control_rows = [], []
    for population in plan.populations:
        for marker in plan.markers:
            s_row, c_row = marker_row(stained, control, population, marker, plan)
            stained_rows.append(s_row)
            if c_row is not None:
                control_rows.append(c_row)
    return stained_rows, control_rows


def marker_row(
    stained: GatingResult,
    control: GatingResult | None,
    population: str,
    marker: str,
    plan: MarkerPlan,
    no_control: str = "no matched control tube",
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One marker on one population: the stained tube's row (MFI, RMFI, % positive against
    ``control``) and the control tube's row (None without a control; ``no_control`` is then
    the reason RMFI and % positive are NaN)."""
    s_values, s_channel, s_why = _marker_values(stained, marker, population)
    c_values, c_channel, c_why = (None, "", no_control)
    if control is not None:
        c_values, c_channel, c_why = _marker_values(control, marker, population)
    s_stats = _stats_or_nan(s_values)
    c_stats = _stats_or_nan(c_values)
    row = {
        "population": population,
        "marker": marker,
        "channel": s_channel,
        **s_stats,
        "mfi_statistic": plan.statistic,
    }
    rmfi, rmfi_why = NAN, ""
    threshold, pct_pos, pos_why = NAN, NAN, ""
    too_few = _too_few(s_values, c_values, population, plan.min_events)
    if marker in plan.rmfi:
        rmfi, rmfi_why = _rmfi(s_stats, c_stats, s_why or c_why or too_few, plan.statistic)
    if marker in plan.positivity:
        threshold, pct_pos, pos_why = _pct_positive(
            s_values, c_values, s_why or c_why or too_few, plan.percentile
        )
    row.update(
        {
            "control_mfi": c_stats[f"mfi_{plan.statistic}"],
            "control_n_events": c_stats["n_events"],
            "rmfi": rmfi,
            "threshold": threshold,
            "threshold_rule": (
                f"p{plan.percentile:g} of control tube" if marker in plan.positivity else ""
            ),
            "pct_positive": pct_pos,
            "reason": "; ".join(dict.fromkeys(r for r in (rmfi_why, pos_why) if r)),
        }
    )
    if control is None:
        return row, None
    control_row = {
        "population": population,
        "marker": marker,
        "channel": c_channel,
        **c_stats,
        "mfi_statistic": plan.statistic,
        "reason": c_why,
    }
    return row, control_row


def missing_marker_row(
    population: str, marker: str, plan: MarkerPlan, reason: str
) -> dict[str, Any]:
    """The stained row of a marker no tube of the draw can measure (a partial panel): NaN
    values with ``reason``, so the measure is missing data for that draw, not an error."""
    return {
        "population": population,
        "marker": marker,
        "channel": "",
        **_stats_or_nan(None),
        "mfi_statistic": plan.statistic,
        "control_mfi": NAN,
        "control_n_events": 0,
        "rmfi": NAN,
        "threshold": NAN,
        "threshold_rule": (
            f"p{plan.percentile:g} of control tube" if marker in plan.positivity else ""
        ),
        "pct_positive": NAN,
        "reason": reason,
    }


def _stats_or_nan(values: np.ndarray | None) -> dict[str, float]:
    if values is None:
        return {
            "n_events": 0,
            "mfi_mean": NAN,
            "mfi_median": NAN,
            "mfi_geomean": NAN,
            "n_positive_values": 0,
        }
    return mfi_statistics(values)


def _too_few(
    s_values: np.ndarray | None, c_values: np.ndarray | None, population: str, minimum: int
) -> str:
    if s_values is not None and s_values.size < minimum:
        return f"only {s_values.size} {population} events in stained tube (< {minimum})"
    if c_values is not None and c_values.size < minimum:
        return f"only {c_values.size} {population} events in control tube (< {minimum})"
    return ""


def _rmfi(
    s_stats: dict[str, float], c_stats: dict[str, float], why_not: str, statistic: str
) -> tuple[float, str]:
    if why_not:
        return NAN, why_not
    numerator, denominator = s_stats[f"mfi_{statistic}"], c_stats[f"mfi_{statistic}"]
    if not math.isfinite(denominator) or denominator <= 0:
        return NAN, f"control {statistic} MFI is {denominator:g} (not > 0)"
    if not math.isfinite(numerator):
        return NAN, f"stained {statistic} MFI is undefined"
    return numerator / denominator, ""


def _pct_positive(
    s_values: np.ndarray | None, c_values: np.ndarray | None, why_not: str, percentile: float
) -> tuple[float, float, str]:
    if why_not or s_values is None or c_values is None:
        return NAN, NAN, why_not or "no values"
    threshold = float(np.percentile(c_values, percentile))
    return threshold, 100.0 * float(np.mean(s_values > threshold)), ""
