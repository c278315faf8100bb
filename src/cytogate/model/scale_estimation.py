"""Display scales that follow a channel's data, not only its header (issue 9, item 2).

Why: headers lie or say too little. FlowCAP-II-era FC 500 exports store linear intensities up
to ~10^4 while $PnR says 1024 and $PnE says 0,0; older instruments store log-amplified
channels as channel numbers; modern ones store compensated linear values with a negative
tail that a fixed logicle width either crushes or spreads. :func:`estimate_scale` looks at
the header *and* the values and returns the scale a cytometrist would draw, with the reason.

Rules, first match wins (``x`` = the channel's finite values as :func:`read_fcs` returns them);
a channel named Time is linear 0..max($PnR, data):

1. integer data with ``$PnE f1,f2`` (f1 > 0): the reader already turned channel numbers into
   linear values of a log amplifier, so ``log`` with T = f2·10^f1 (f2 <= 0 read as 1) and
   M = f1 decades: the amplifier's own range.
2. float data whose ``$PnE`` claims f1 decades and whose values lie in 0..f1: they are log10
   values already (Guava "HLog"): ``linear`` 0..f1.
3. positive values far beyond $PnR (max > 1.05·$PnR) in a channel named "Log", or in a
   non-scatter channel whose values span >= 2.5 decades with >= 10% of the events two decades
   below the top: linear intensities of a log amplifier stored as such; ``log`` with
   T = the next power of ten above the data and M = the decades down to the 0.1% quantile
   (rounded up, 1..6).
4. a channel named "Log" (``FL3 Log``, ``SS INT LOG``) with values inside $PnR: log channel
   numbers stored linearly; ``linear`` 0..max($PnR, data).
5. scatter (see :mod:`cytogate.model.channel_names`) and integer channel numbers with no
   negative values: ``linear`` 0..max($PnR, data).
6. otherwise (fluorescence with negatives): ``logicle`` fitted as flowCore's
   ``estimateLogicle`` does: T = $PnR, or the data's max when it exceeds $PnR; M = 4.5; A = 0;
   W = (M - log10(T/|r|))/2 with r the 5% quantile of the negative values (0 without
   negatives), clipped to 0..min(2, M/2).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from cytogate.model.channel_names import parse_scatter
from cytogate.model.transforms import Scale

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.io.fcs import Sample

EstimatedKind = Literal["linear", "log", "logicle"]

_LOG_NAME = re.compile(r"(?:^|[\s\-_])H?LOG\b", re.IGNORECASE)
_TIME_NAME = re.compile(r"time|HDR-T", re.IGNORECASE)
_BEYOND = 1.05  # data above 1.05 x $PnR are "stored beyond $PnR"
_LOGICLE_M = 4.5
_NEGATIVE_QUANTILE = 0.05


@dataclass(frozen=True)
class ScaleEstimate:
    """A scale fitted to one channel's data, and why.

    ``params`` are those of :class:`cytogate.model.transforms.Scale` for ``kind`` (numbers,
    no "range"), ``covered`` the fraction of finite events at or below the scale's top.
    """

    channel: str
    kind: EstimatedKind
    params: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    covered: float = 1.0

    def to_scale(self) -> Scale:
        """The :class:`Scale` to gate or draw with."""
        return Scale.from_spec({"kind": self.kind, **self.params}, f"estimated {self.channel}")

    @property
    def top(self) -> float:
        """The value the scale maps to its top (1.0)."""
        return float(self.params["top"] if self.kind == "linear" else self.params["T"])

    def describe(self) -> str:
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in self.params.items())
        return f"{self.kind} ({shown}): {self.reason}"


def estimate_scale(sample: Sample, channel: int | str) -> ScaleEstimate:
    """Fit a display scale to ``channel`` (column index or unique $PnN) of ``sample``."""
    index = channel if isinstance(channel, int) else sample.channel_index(channel)
    row = sample.channels.iloc[index]
    pnn, pnr = str(row["pnn"]), float(row["pnr"])
    x = sample.column(index)
    x = x[np.isfinite(x)]
    if not (math.isfinite(pnr) and pnr > 0):
        pnr = float(np.max(x)) if x.size and np.max(x) > 0 else 1.0
    datatype = sample.keywords.get("$DATATYPE", "").strip().upper()
    f1, f2 = _pne(str(row["pne"]))
    if x.size == 0:
        return _linear(pnn, x, 0.0, pnr, "no finite events: linear over $PnR")
    top = float(np.max(x))
    named_log = bool(_LOG_NAME.search(pnn))
    if _TIME_NAME.fullmatch(pnn.strip()):
        upper = max(pnr, top)
        return _linear(pnn, x, 0.0, upper, f"time: linear 0-{_fmt(upper)}")

    if f1 > 0 and datatype == "I":
        t = (f2 if f2 > 0 else 1.0) * 10.0**f1
        why = f"log amplifier per $PnE {row['pne']}: {f1:g} decades up to {_fmt(t)}"
        return _log(pnn, x, t, f1, why)
    if f1 > 0 and float(np.min(x)) >= 0 and top <= f1 * 1.001:
        why = f"float values 0-{f1:g} are already log10 ($PnE {row['pne']} claims {f1:g} decades)"
        return _linear(pnn, x, 0.0, f1, why)

    positive = x[x > 0]
    beyond = top > _BEYOND * pnr
    scatter = parse_scatter(pnn) is not None
    if beyond and positive.size == x.size:
        low = float(np.quantile(positive, 0.001))
        span = math.log10(top / low) if low > 0 else 0.0
        # linear data put few events two decades below their top; log-amplifier data many
        spread = float(np.count_nonzero(x < top / 100) / x.size) >= 0.1
        if named_log or (not scatter and span >= 2.5 and spread):
            t = 10.0 ** math.ceil(math.log10(top) - 1e-9)
            m = float(min(6, max(1, math.ceil(math.log10(t / low) - 0.05))))
            why = (
                f"values up to {_fmt(top)} exceed $PnR {_fmt(pnr)} and span {span:.1f} decades: "
                f"linear intensities of a log amplifier; log over {m:g} decades up to {_fmt(t)}"
            )
            return _log(pnn, x, t, m, why)
    if named_log:
        upper = max(pnr, top)
        why = f"'{pnn}' holds log channel numbers with $PnE 0,0: linear 0-{_fmt(upper)}"
        return _linear(pnn, x, 0.0, upper, why)

    is_integer = datatype == "I" or bool(np.all(x == np.round(x)))
    if scatter or (is_integer and float(np.min(x)) >= 0):
        upper = max(pnr, top)
        what = "scatter" if scatter else "integer channel numbers"
        extra = f" (data reach {_fmt(top)}, beyond $PnR {_fmt(pnr)})" if beyond else ""
        return _linear(pnn, x, 0.0, upper, f"{what}: linear 0-{_fmt(upper)}{extra}")
    return _logicle(pnn, x, pnr, top)


def estimate_scales(sample: Sample, channels: list[int] | None = None) -> list[ScaleEstimate]:
    """:func:`estimate_scale` for each of ``channels`` (default: every channel)."""
    indices = range(sample.data.shape[1]) if channels is None else channels
    return [estimate_scale(sample, i) for i in indices]


def _logicle(pnn: str, x: np.ndarray, pnr: float, top: float) -> ScaleEstimate:
    t = top if top > pnr else pnr
    m = _LOGICLE_M
    negative = x[x < 0]
    w = 0.0
    tail = ""
    if negative.size:
        r = abs(float(np.quantile(negative, _NEGATIVE_QUANTILE)))
        raw = (m - math.log10(t / r)) / 2 if r > 0 else 0.0
        w = min(max(raw, 0.0), 2.0, m / 2)
        tail = f"; negative tail 5% quantile -{_fmt(r)} gives W {w:.3g}"
        if w != raw:
            tail += f" (clipped from {raw:.3g})"
    else:
        tail = "; no negative values: W 0"
    source = f"data max {_fmt(top)} > $PnR {_fmt(pnr)}" if top > pnr else f"$PnR {_fmt(pnr)}"
    why = f"logicle fitted to the data (estimateLogicle): T {_fmt(t)} from {source}{tail}"
    params = {"T": t, "W": round(w, 4), "M": m, "A": 0.0}
    return ScaleEstimate(pnn, "logicle", params, why, _covered(x, t))


def _log(pnn: str, x: np.ndarray, t: float, m: float, why: str) -> ScaleEstimate:
    return ScaleEstimate(pnn, "log", {"T": t, "M": m}, why, _covered(x, t))


def _linear(pnn: str, x: np.ndarray, bottom: float, top: float, why: str) -> ScaleEstimate:
    return ScaleEstimate(pnn, "linear", {"top": top, "bottom": bottom}, why, _covered(x, top))


def _covered(x: np.ndarray, top: float) -> float:
    return float(np.count_nonzero(x <= top * (1 + 1e-9)) / x.size) if x.size else 1.0


def _pne(raw: str) -> tuple[float, float]:
    parts = raw.split(",")
    try:
        f1, f2 = float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        return 0.0, 0.0
    if not (math.isfinite(f1) and math.isfinite(f2)) or f1 < 0:
        return 0.0, 0.0
    return f1, f2


def _fmt(value: float) -> str:
    return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:.3g}"
