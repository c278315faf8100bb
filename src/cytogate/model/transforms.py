"""Compensation and display scales ("transforms") for gating.

Gates are drawn in a *scaled space* per dimension, as flow users expect:

* ``linear``: ``(x - bottom) / (top - bottom)``; with ``top: range`` the channel's $PnR, so a
  scatter gate at 0.2 means "20 % of the detector range" on a 1,024- or a 262,144-channel
  instrument alike.
* ``log``: GatingML 2.0 ``flog``: ``1 + log10(x / T) / M`` (T maps to 1, M decades below T to 0).
* ``logicle``: GatingML 2.0 logicle (T, W, M, A) as in Moore & Parks 2012; 0..1.
* ``arcsinh``: ``asinh(x / cofactor)``, the convention of the cytometry literature (cofactor
  150 for conventional fluorescence, 5 for mass cytometry); in asinh units.

A dimension's scale may depend on the file (:class:`ScaleAlternatives`): older list-mode files
(Beckman FC500 era, FCS 2.0) store log-amplified scatter and fluorescence as 10-bit channel
numbers. With ``$PnE 4,0`` the reader converts them to linear values 1..10^4, and
``{kind: log, T: pne, M: pne}`` (T = 10^decades × offset, M = decades) maps them back to the
channel fraction 0..1; a log channel written with ``$PnE 0,0`` holds log channel numbers, for
which a linear scale is right. ``when: {log_amplified: true}`` / ``when: {pnn: 'Log'}`` pick.

Logicle and log numerics come from flowutils (FlowKit's numeric core), so our gates agree with
FlowKit/FlowJo; the forward logicle is read from a table of flowutils' exact values, indexed
by each value's float32 bits (:class:`LogicleTable`, within 1e-8 of flowutils, about 6x
faster). Compensation solves ``x_obs = x_true @ S`` for the spillover matrix ``S`` (rows =
source dye, the FCS convention) with flowutils as well.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cytogate.errors import CytogateError, TemplateError
from cytogate.userregex import compile_user_regex

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from cytogate.io.fcs import Sample

ScaleKind = Literal["linear", "log", "logicle", "arcsinh", "auto"]

# Defaults are FlowJo's/FlowKit's for a 262,144-channel (18-bit) instrument.
_DEFAULTS: dict[str, dict[str, float | str]] = {
    "linear": {"top": "range", "bottom": 0.0},
    "log": {"T": "range", "M": 4.5},
    "logicle": {"T": "range", "W": 0.5, "M": 4.5, "A": 0.0},
    "arcsinh": {"cofactor": 150.0},
    # fitted to each file's data when gating (cytogate.model.scale_estimation): no parameters
    "auto": {},
}


@dataclass(frozen=True)
class Scale:
    """One dimension's scale. Parameters may say ``"range"``: the channel's $PnR, per file."""

    kind: ScaleKind
    params: dict[str, float | str] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: object, where: str) -> Scale:
        """Build from a template entry: ``logicle`` or ``{kind: logicle, W: 0.5, …}``."""
        if isinstance(spec, str):
            spec = {"kind": spec}
        if not isinstance(spec, dict) or "kind" not in spec:
            raise TemplateError(f"{where}: a scale needs 'kind' (one of {', '.join(_DEFAULTS)})")
        kind = spec["kind"]
        if kind not in _DEFAULTS:
            raise TemplateError(
                f"{where}: field 'kind': unknown scale {kind!r} (one of {', '.join(_DEFAULTS)})"
            )
        params: dict[str, float | str] = dict(_DEFAULTS[kind])
        for key, value in spec.items():
            if key == "kind":
                continue
            if key not in params:
                raise TemplateError(
                    f"{where}: field {key!r} is not a parameter of a {kind} scale "
                    f"({', '.join(params)})"
                )
            if value == "pne" and not (kind == "log" and key in ("T", "M")):
                raise TemplateError(
                    f"{where}: field {key!r}: 'pne' (from the channel's $PnE) is only for the "
                    "T and M of a log scale"
                )
            if value not in ("range", "pne") and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise TemplateError(f"{where}: field {key!r} must be a number or 'range'")
            params[key] = value if value in ("range", "pne") else float(value)
        scale = cls(kind, params)
        scale._check(where)
        return scale

    def _check(self, where: str) -> None:
        p = self.params
        if self.kind == "arcsinh" and not float(p["cofactor"]) > 0:
            raise TemplateError(f"{where}: field 'cofactor' must be > 0")
        if self.kind in ("log", "logicle") and p["M"] != "pne" and not float(p["M"]) > 0:
            raise TemplateError(f"{where}: field 'M' must be > 0")
        if self.kind == "logicle":
            w, m, a = float(p["W"]), float(p["M"]), float(p["A"])
            if not (0 <= w <= m / 2 and -w <= a <= m - 2 * w):
                raise TemplateError(
                    f"{where}: logicle parameters need 0 <= W <= M/2 and -W <= A <= M - 2W "
                    f"(got W={w}, M={m}, A={a})"
                )

    def for_channel(self, sample: Sample, index: int) -> Scale:
        """This scale with ``pne`` parameters resolved for channel ``index`` of ``sample``."""
        if "pne" not in self.params.values():
            return self
        decades, offset = channel_log_amplification(sample, index)
        if decades <= 0:
            pnn = str(sample.channels["pnn"].iloc[index])
            raise TemplateError(
                f"{sample.path.name}: scale {self.describe()} takes T/M from $PnE, but channel "
                f"{pnn} is not log-amplified integer data"
            )
        resolved = {"T": 10.0**decades * (offset if offset > 0 else 1.0), "M": decades}
        params = {k: (resolved[k] if v == "pne" else v) for k, v in self.params.items()}
        return Scale(self.kind, params)

    def _resolved(self, key: str, channel_range: float) -> float:
        value = self.params[key]
        return float(channel_range) if value == "range" else float(value)

    def apply(self, values: np.ndarray, channel_range: float = 262144.0) -> np.ndarray:
        """Linear values -> scaled space (a new float64 array). float32 values (a channel as
        the file stores it) are widened inside the first operation, exactly as if widened
        first, so a scatter channel is scaled in one pass over the file's data."""
        if self.kind == "auto":
            raise TemplateError("an 'auto' scale is fitted per file before use (gating.engine)")
        x = _float_values(values)
        f64 = np.float64
        if self.kind == "linear":
            top, bottom = self._resolved("top", channel_range), float(self.params["bottom"])
            if bottom == 0.0:  # x - 0.0 is x: one pass instead of two, the same values
                return np.divide(x, top - bottom, dtype=f64)
            out = np.subtract(x, bottom, dtype=f64)
            out /= top - bottom
            return out
        if self.kind == "arcsinh":
            return np.arcsinh(np.divide(x, float(self.params["cofactor"]), dtype=f64))
        from flowutils import transforms as fu  # C-accelerated; imported only when scaling

        t = self._resolved("T", channel_range)
        m = float(self.params["M"])
        if self.kind == "log":
            # Non-positive values have no logarithm; place them one decade below the scale's
            # floor instead of producing -inf/NaN, so they are "below" every gate, not dropped.
            floor = t * 10.0 ** (-(m + 1.0))
            return fu.log(np.maximum(x, floor, dtype=f64), None, t=t, m=m)
        w, a = float(self.params["W"]), float(self.params["A"])
        return logicle_table(t, m, w, a).apply(x)

    def inverse(self, scaled: np.ndarray, channel_range: float = 262144.0) -> np.ndarray:
        """Scaled space -> linear values (for axis labels in data units and for simulation)."""
        y = np.asarray(scaled, dtype=np.float64)
        if self.kind == "linear":
            top, bottom = self._resolved("top", channel_range), float(self.params["bottom"])
            return y * (top - bottom) + bottom
        if self.kind == "arcsinh":
            return np.sinh(y) * float(self.params["cofactor"])
        from flowutils import transforms as fu

        t = self._resolved("T", channel_range)
        m = float(self.params["M"])
        if self.kind == "log":
            return fu.log_inverse(y, None, t=t, m=m)
        w, a = float(self.params["W"]), float(self.params["A"])
        return fu.logicle_inverse(y, None, t=t, m=m, w=w, a=a)

    def describe(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}({inner})"


class LogicleTable:
    """The logicle transform read from a table of its exact values, indexed by float bits.

    flowutils computes logicle per value by iterating on the closed-form inverse (~125 ns a
    value, a tenth of gating a file). Here the magnitude axis is cut into cells at the float32
    numbers with ``MANTISSA_BITS`` mantissa bits (cells ``2**-11`` of their magnitude wide, so
    the table is fine where logicle is log-like and where it is linear alike); logicle is
    computed exactly (flowutils) at every cell edge, for both signs, and a value is found by
    its float32 bit pattern, shifted: its cell, with no search and no transcendental function
    per value, then read off the chord ``c0 + c1 * |x|``. The error is below 1e-8 of the scale
    (about 3e-9 with the default W, M); tests/test_transforms.py checks it against flowutils
    over the full range, negatives included. Magnitudes below ``2**-OCTAVES`` of the top share
    the cell that starts at zero; values outside the table (beyond -2T or 4T, NaN) are
    computed by flowutils directly.
    """

    MANTISSA_BITS = 11
    OCTAVES = 32  # magnitudes tabled: 4T down to 4T / 2**32

    def __init__(self, t: float, m: float, w: float, a: float) -> None:
        from flowutils import transforms as fu

        self.params = {"t": t, "m": m, "w": w, "a": a}
        self.lo, self.hi = -2.0 * t, 4.0 * t
        self.shift = 23 - self.MANTISSA_BITS  # float32 has 23 mantissa bits
        top = np.float32(max(-self.lo, self.hi))
        bottom = np.float32(float(top) * 2.0**-self.OCTAVES)
        self.first = int(bottom.view(np.int32)) >> self.shift
        last = (int(top.view(np.int32)) >> self.shift) + 1
        self.cells = last - self.first + 1
        edges = np.arange(self.first, last + 2, dtype=np.int64) << self.shift
        magnitude = edges.astype(np.int32).view(np.float32).astype(np.float64)
        magnitude[0] = 0.0  # the first cell reaches down to zero
        chords = []
        for sign in (1.0, -1.0):
            exact = fu.logicle(sign * magnitude, None, **self.params)
            slope = np.diff(exact) / np.diff(magnitude)
            chords.append((exact[:-1] - slope * magnitude[:-1]) + 1j * slope)
        # one complex table (intercept, slope): a single gather per value
        self.chords = np.concatenate(chords)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Scaled values of ``values`` (linear; float32 or float64), a new float64 array."""
        x = _float_values(values)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: outside, below
            bits = x.astype(np.float32).view(np.int32)  # a copy: changed in place below
        cell = bits & np.int32(0x7FFFFFFF)  # the magnitude's bits; the sign picks the half
        cell >>= self.shift
        cell -= self.first
        np.clip(cell, 0, self.cells - 1, out=cell)
        bits >>= 31  # -1 for negative values, else 0
        bits &= self.cells
        cell += bits
        chord = self.chords[cell]
        out = chord.imag * np.abs(x)
        out += chord.real
        if x.size and not (x.min() >= self.lo and x.max() <= self.hi):  # NaN fails this too
            outside = ~((x >= self.lo) & (x <= self.hi))
            from flowutils import transforms as fu

            out[outside] = fu.logicle(x[outside].astype(np.float64), None, **self.params)
        return out


def _float_values(values: np.ndarray) -> np.ndarray:
    """``values`` as float32 when they are (a channel as the file stores it: the scales widen
    it inside their first operation, exactly), else as float64."""
    x = np.asarray(values)
    return x if x.dtype == np.float32 else np.asarray(x, dtype=np.float64)


@functools.lru_cache(maxsize=32)
def logicle_table(t: float, m: float, w: float, a: float) -> LogicleTable:
    """The (cached) table for one parameter set: built once per process and scale."""
    return LogicleTable(t, m, w, a)


def channel_log_amplification(sample: Sample, index: int) -> tuple[float, float]:
    """($PnE decades, offset) when the reader converted channel ``index`` from log-amplified
    integer channel numbers to linear values (integer data, $PnE f1 > 0); else (0, 0)."""
    datatype = str(sample.keywords.get("$DATATYPE", "")).strip().upper()
    if datatype != "I":
        return 0.0, 0.0
    try:
        f1, f2 = (float(v) for v in str(sample.channels["pne"].iloc[index]).split(","))
    except ValueError:
        return 0.0, 0.0
    if not (math.isfinite(f1) and f1 > 0):
        return 0.0, 0.0
    return f1, (f2 if math.isfinite(f2) else 0.0)


_WHEN_FIELDS = ("log_amplified", "pnn", "pns")


@dataclass(frozen=True)
class ScaleAlternatives:
    """Scales for one dimension, chosen per file: the first whose ``when`` matches the channel.

    ``when`` keys: ``log_amplified`` (bool: integer data with $PnE decades > 0, which the reader
    converted to linear), ``pnn`` / ``pns`` (regular expression searched, case-insensitively, in
    the channel's $PnN / $PnS). The last alternative has no ``when``: it is the default.
    """

    options: tuple[tuple[tuple[tuple[str, Any], ...], Scale], ...]

    @classmethod
    def from_spec(cls, spec: list[Any], where: str) -> ScaleAlternatives:
        if not spec:
            raise TemplateError(f"{where}: a list of alternatives needs at least one scale")
        options = []
        for i, item in enumerate(spec):
            iwhere = f"{where} alternative {i + 1}"
            if not isinstance(item, dict):
                raise TemplateError(f"{iwhere}: a scale mapping with an optional 'when'")
            when = item.get("when", {})
            if not isinstance(when, dict) or set(when) - set(_WHEN_FIELDS):
                raise TemplateError(
                    f"{iwhere}: field 'when': a mapping with {', '.join(_WHEN_FIELDS)}"
                )
            for key in ("pnn", "pns"):
                if key in when:
                    try:  # the linear-time engine used when matching (cytogate.userregex)
                        compile_user_regex(str(when[key]), f"{iwhere}: field 'when.{key}'")
                    except CytogateError as exc:
                        raise TemplateError(str(exc)) from exc
            if "log_amplified" in when and not isinstance(when["log_amplified"], bool):
                raise TemplateError(f"{iwhere}: field 'when.log_amplified': true or false")
            scale = Scale.from_spec({k: v for k, v in item.items() if k != "when"}, iwhere)
            options.append((tuple(sorted(when.items())), scale))
        if options[-1][0]:
            raise TemplateError(f"{where}: the last alternative must have no 'when' (the default)")
        return cls(tuple(options))

    def otherwise(self) -> Scale:
        """The default alternative (the last)."""
        return self.options[-1][1]

    def for_channel(self, sample: Sample, index: int) -> Scale:
        for when, scale in self.options:
            if all(_matches(sample, index, key, value) for key, value in when):
                return scale.for_channel(sample, index)
        return self.otherwise().for_channel(sample, index)  # pragma: no cover - last has no when

    def describe(self) -> str:
        return " | ".join(
            (f"when {dict(when)}: " if when else "") + scale.describe()
            for when, scale in self.options
        )


def _matches(sample: Sample, index: int, key: str, value: Any) -> bool:
    if key == "log_amplified":
        return (channel_log_amplification(sample, index)[0] > 0) == bool(value)
    text = str(sample.channels[key].iloc[index] or "")
    return compile_user_regex(str(value), f"scale rule {key}", True).search(text) is not None


def compensate(events: np.ndarray, columns: list[int], spillover: np.ndarray) -> np.ndarray:
    """Return a copy of ``events`` with ``columns`` compensated for ``spillover``.

    ``spillover[i, j]`` is the fraction of dye ``i``'s signal seen in detector ``j`` (FCS
    $SPILLOVER convention), so observed = true @ S and true = observed @ inv(S).
    """
    from flowutils import compensate as fu_comp

    matrix = np.asarray(spillover, dtype=np.float64)
    if matrix.shape != (len(columns), len(columns)):
        raise ValueError(f"spillover is {matrix.shape}, expected {len(columns)} x {len(columns)}")
    return fu_comp.compensate(np.asarray(events, dtype=np.float64), matrix, list(columns))


class Compensation:
    """Compensated values of one sample, column by column, computed when first asked for.

    Gating a CD45/SSC template needs one fluorescence channel and quantification a handful
    more; compensating every channel of every event up front (a full solve per event) was the
    largest cost of gating a 1M-event file. Column ``k`` of ``observed @ inv(S)`` is
    ``observed[:, spill_columns] @ inv(S)[:, k]``: one matrix-vector product, cached.
    Channels outside the spillover matrix (scatter, time) are returned as they are.
    """

    def __init__(
        self, events: np.ndarray, columns: list[int], spillover: np.ndarray | None
    ) -> None:
        self._events = events
        self._position = {c: i for i, c in enumerate(columns)} if spillover is not None else {}
        self._columns = list(columns)
        # LinAlgError for a singular matrix surfaces here, where the caller can name the file.
        self._inverse = None if spillover is None else np.linalg.inv(spillover)
        self._cache: dict[int, np.ndarray] = {}

    #: rows per block of the weighted sum: the block's columns stay in the CPU cache
    BLOCK_ROWS = 8192

    def column(self, index: int) -> np.ndarray:
        """Compensated values of ``events[:, index]`` as float64 (a read-only view of float64
        events, or a cached array: float32 events are widened here, one channel at a time)."""
        position = self._position.get(index)
        if position is None or self._inverse is None:
            if self._events.dtype == np.float64:
                return self._events[:, index]
            if index not in self._cache:
                self._cache[index] = self._events[:, index].astype(np.float64)
            return self._cache[index]
        if index not in self._cache:
            self._cache[index] = self._weighted_sum(self._inverse[:, position])
        return self._cache[index]

    def for_scaling(self, index: int) -> np.ndarray:
        """Column ``index`` for a scale to read: compensated (float64) when the spillover
        covers it, else as stored (possibly a float32 view, which :meth:`Scale.apply` widens
        exactly while scaling, so a scatter channel is not widened in a pass of its own)."""
        if index in self._position and self._inverse is not None:
            return self.column(index)
        if index in self._cache:
            return self._cache[index]
        return self._events[:, index]

    def _weighted_sum(self, weights: np.ndarray) -> np.ndarray:
        """``sum_k events[:, columns[k]] * weights[k]``, added in that order.

        Deliberately not ``events[:, columns] @ weights``: for an (n x 6) by 6 product
        OpenBLAS starts threads on every core, whose spinning cost 5x the product's own CPU
        time and stopped --jobs 2 from scaling, and BLAS (or einsum) would add in another
        order, changing the last bits of every MFI. Block by block of rows, so the strided
        columns are read from memory once and the partial sums stay in the cache; the same
        additions in the same order as the whole-column sum, so the values are bit-identical.
        float32 events are widened inside the products (exactly), as if widened first.
        """
        events, columns = self._events, self._columns
        n = events.shape[0]
        out = np.empty(n)
        step = self.BLOCK_ROWS
        term = np.empty(min(step, n))
        for lo in range(0, n, step):
            block = events[lo : lo + step]
            part, tmp = out[lo : lo + step], term[: block.shape[0]]
            np.multiply(block[:, columns[0]], weights[0], out=part)
            for k in range(1, len(weights)):
                np.multiply(block[:, columns[k]], weights[k], out=tmp)
                part += tmp
        return out

    def all(self) -> np.ndarray:
        """Every channel compensated: a new (n_events × n_channels) array."""
        return np.column_stack([self.column(j) for j in range(self._events.shape[1])])


def read_spillover_csv(path: str) -> pd.DataFrame:
    """Read a spillover matrix from CSV: a header row of channel names, one row per source dye.

    An optional first column of row names (as FlowJo exports) is accepted when it repeats the
    header names. Raises :class:`TemplateError` naming the file and the problem.
    """
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise TemplateError(f"{path}: cannot read spillover matrix: {exc}") from exc
    first = table.columns[0]
    if table.shape[1] == table.shape[0] + 1 and list(table[first].astype(str)) == list(
        table.columns[1:]
    ):
        table = table.set_index(first)
        table.index.name = None
    else:
        table.index = list(table.columns)
    if table.shape[0] != table.shape[1]:
        raise TemplateError(f"{path}: spillover matrix must be square, got {table.shape}")
    try:
        table = table.astype(float)
    except ValueError as exc:
        raise TemplateError(f"{path}: spillover matrix has a non-numeric entry: {exc}") from exc
    return table
