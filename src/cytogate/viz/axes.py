"""Axes in data units: each dimension drawn in its scaled space, ticked at data values.

Events and gate outlines are drawn in each dimension's scaled space (the space the template's
coordinates live in), so a polygon edge is straight exactly where the gate's edge is. Ticks sit
at *data* values mapped through :meth:`Scale.apply`: 0, ±10², 10³, … on logicle/arcsinh/log
axes, 0, 50K, 100K, … on linear scatter axes; labels are never 0–1 transform coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from cytogate.model.transforms import Scale
    from cytogate.viz.events import EventView

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_MINUS = "\N{MINUS SIGN}"


@dataclass(frozen=True)
class AxisInfo:
    """One plotted dimension: its template scale, the channel's $PnR and the axis limits."""

    dim: str
    channel: str
    scale: Scale
    channel_range: float
    limits: tuple[float, float]  # in scaled space

    @property
    def label(self) -> str:
        return self.dim if self.channel in ("", self.dim) else f"{self.dim} ({self.channel})"

    def to_data(self, scaled: Any) -> np.ndarray:
        return self.scale.inverse(
            np.atleast_1d(np.asarray(scaled, dtype=float)), self.channel_range
        )

    def to_scaled(self, data: Any) -> np.ndarray:
        return self.scale.apply(np.atleast_1d(np.asarray(data, dtype=float)), self.channel_range)


def axis_for(view: EventView, dim: str, values: np.ndarray | None = None) -> AxisInfo:
    """Axis of ``dim`` in ``view``'s file: recorded scale, $PnR, display limits (scaled)."""
    d = view.dimension(dim)
    return AxisInfo(
        dim, d.channel, d.scale, d.channel_range, _limits(d.scale, d.channel_range, values)
    )


def _limits(scale: Scale, pnr: float, values: np.ndarray | None) -> tuple[float, float]:
    """Display range in scaled space: the whole detector range, as cytometry software shows it."""
    if scale.kind in ("linear", "log", "logicle"):
        # linear: 0..$PnR; log: M decades below T; logicle: 0..1 spans its negative "zero
        # region" up to T (about −110 .. 262,144 for the usual W 0.5, M 4.5).
        return (0.0, 1.0)
    top = float(scale.apply(np.array([pnr]), pnr)[0])
    bottom = float(scale.apply(np.array([-10 * float(scale.params["cofactor"])]), pnr)[0])
    if values is not None and values.size:
        bottom = min(bottom, float(np.percentile(values, 0.5)))
    return (bottom, top)


def _si(value: float) -> str:
    """50000 -> "50K", 1.5e6 -> "1.5M", 200 -> "200"."""
    if value == 0:
        return "0"
    sign = _MINUS if value < 0 else ""
    v = abs(value)
    for div, suffix in ((1e6, "M"), (1e3, "K")):
        if v >= div:
            return f"{sign}{v / div:g}{suffix}"
    return f"{sign}{v:g}"


def _decade_label(value: float) -> str:
    if value == 0:
        return "0"
    exponent = round(math.log10(abs(value)))
    text = "10" + str(exponent).translate(_SUPERSCRIPT)
    return (_MINUS + text) if value < 0 else text


def data_ticks(
    axis: AxisInfo, min_gap: float = 0.075
) -> tuple[list[float], list[str], list[float]]:
    """Major tick positions (scaled), their labels in data units, and minor tick positions.

    Linear axes get round data values (0, 50K, 100K…); logicle/arcsinh/log axes get 0 and
    ±10^k. A decade closer than ``min_gap`` (axis fraction) to a kept label is demoted to a
    minor tick, so labels never overlap (e.g. 10¹ next to 0 on a logicle axis).
    """
    lo, hi = axis.limits
    dlo, dhi = (float(v) for v in axis.to_data([lo, hi]))
    span = hi - lo
    if axis.scale.kind == "linear":
        from matplotlib.ticker import MaxNLocator

        values = [
            float(v)
            for v in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(dlo, dhi)
            if dlo - 1e-9 * abs(dhi - dlo) <= v <= dhi + 1e-9 * abs(dhi - dlo)
        ]
        positions = [float(p) for p in axis.to_scaled(values)]
        return positions, [_si(v) for v in values], []
    decades = [10.0**k for k in range(1, 10)]
    candidates: list[float] = [] if axis.scale.kind == "log" else [0.0]
    candidates += sorted(decades, reverse=True) + [-d for d in decades]
    candidates = [v for v in candidates if dlo <= v <= dhi]
    kept: list[tuple[float, float]] = []  # (position, value)
    demoted: list[float] = []
    for value in candidates:  # priority: 0, then positive decades high to low, then negatives
        pos = float(axis.to_scaled([value])[0])
        if all(abs(pos - p) >= min_gap * span for p, _ in kept):
            kept.append((pos, value))
        else:
            demoted.append(pos)
    # minor ticks at 2..9 × 10^k, thinned where the scale is nearly linear (around 0) so they
    # do not merge into a black bar
    raw = sorted(
        float(axis.to_scaled([v])[0])
        for d in decades
        for m in range(2, 10)
        for v in (m * d, -m * d)
        if dlo <= v <= dhi
    )
    minor: list[float] = []
    taken = [p for p, _ in kept]
    for pos in sorted(raw + demoted):
        if all(abs(pos - q) >= 0.012 * span for q in taken + minor[-1:]):
            minor.append(pos)
    return [p for p, _ in kept], [_decade_label(v) for _, v in kept], minor


def set_axis(ax: Axes, axis: AxisInfo, which: str) -> None:
    """Limits, data-unit tick labels and minor ticks of one axis.

    Minor ticks are drawn as one line collection rather than as matplotlib Tick objects (which
    carry a label each and made up half the drawing time of a gate figure).
    """
    positions, labels, minor = data_ticks(axis)
    if which == "x":
        ax.set_xlim(*axis.limits)
        ax.set_xticks(positions, labels)
        ax.set_xlabel(axis.label, fontsize=8)
        if minor:
            ax.vlines(
                minor,
                -0.018,
                0,
                transform=ax.get_xaxis_transform(),
                colors="black",
                lw=0.5,
                clip_on=False,
                gid="minor-ticks",
            )
    else:
        ax.set_ylim(*axis.limits)
        ax.set_yticks(positions, labels)
        ax.set_ylabel(axis.label, fontsize=8)
        if minor:
            ax.hlines(
                minor,
                -0.018,
                0,
                transform=ax.get_yaxis_transform(),
                colors="black",
                lw=0.5,
                clip_on=False,
                gid="minor-ticks",
            )
    ax.tick_params(axis=which, which="major", labelsize=7, direction="out", length=3.5)
