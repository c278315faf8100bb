"""DATA of one FCS data set: layout from the keywords, decoding, $PnR bitmask, $PnE/$PnG
scaling, the spillover keyword and non-finite counts (see :mod:`cytogate.io.fcs` for the rules).

Vectorised: no Python loop over events.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from cytogate.io.fcs_text import (
    HEADER_LEN,
    DataSetMeta,
    FCSCause,
    ascii_int,
    float_or,
    keyword,
    keyword_int,
    parse_pne,
)

_SPILL_KEYWORDS = ("$SPILLOVER", "SPILL", "$SPILL")


def _byte_order(keywords: dict[str, str]) -> str:
    raw = keyword(keywords, "$BYTEORD")
    order = [ascii_int(p) for p in raw.replace(" ", "").split(",")]
    if any(v is None for v in order) or len(order) > 16:
        raise FCSCause(f"unsupported $BYTEORD={raw[:40]!r} (not a list of byte numbers)")
    ascending = list(range(1, len(order) + 1))
    if order == ascending:
        return "<"
    if order == ascending[::-1]:
        return ">"
    raise FCSCause(f"unsupported $BYTEORD={raw!r} (only little- or big-endian orders are read)")


def decode_data(
    buf: bytes, meta: DataSetMeta, scale: bool
) -> tuple[np.ndarray, pd.DataFrame, Spill, list[str]]:
    kw = meta.keywords
    notes: list[str] = []

    mode = kw.get("$MODE", "L").strip().upper()
    if mode != "L":
        raise FCSCause(f"unsupported $MODE={mode!r} (only list mode 'L' is read)")
    datatype = keyword(kw, "$DATATYPE").upper()
    if datatype == "A":
        raise FCSCause("unsupported $DATATYPE=A (ASCII data); convert the file to binary FCS")
    if datatype not in ("I", "F", "D"):
        raise FCSCause(f"unsupported $DATATYPE={datatype!r} (expected I, F or D)")
    order = _byte_order(kw)
    n_par = keyword_int(kw, "$PAR", minimum=1)
    if n_par > len(kw):  # each parameter needs its own $PnB (and $PnR) keyword
        raise FCSCause(f"invalid $PAR={n_par}: the TEXT holds only {len(kw)} keywords")

    table = _channel_table(kw, n_par, notes)
    bits = table["pnb"].to_numpy()

    if datatype == "I":
        bad = [int(b) for b in bits if b <= 0 or b > 64]
        if bad:
            raise FCSCause(f"unsupported integer width $PnB={bad[0]} (1-64 bits are read)")
        widths = [(int(b) + 7) // 8 for b in bits]
    else:
        width = 4 if datatype == "F" else 8
        odd = [(i + 1, int(b)) for i, b in enumerate(bits) if b != width * 8]
        if odd:
            notes.append(
                f"$DATATYPE={datatype} stores {width * 8}-bit values but "
                f"$P{odd[0][0]}B={odd[0][1]}; read as {width * 8}-bit"
            )
        widths = [width] * n_par
    event_bytes = sum(widths)

    tot = _tot(kw, meta, event_bytes, notes)
    needed = tot * event_bytes
    if datatype == "I" and any(b % 8 for b in bits):
        _check_byte_aligned(kw, meta, bits, needed, notes)
    begin = _locate_data(buf, meta, kw, needed, notes)

    start = meta.base + begin
    if tot == 0:  # no events: nothing to decode (the DATA offsets may be anything)
        events = np.empty((0, n_par), dtype=np.float64)
    elif datatype == "I":
        limits = _bitmask_limits(table, widths, notes, kw)
        events, over = _read_int(buf, start, tot, widths, order, limits)
        cleared = [
            f"{row.pnn} ($P{row.n}R={row.pnr:g}, {count} values)"
            for row, count in zip(table.itertuples(index=False), over, strict=True)
            if count
        ]
        if cleared:
            notes.append(
                "ignored bits above $PnR (bitmask applied, as the standard, flowio and "
                "fcsparser do): " + "; ".join(cleared)
            )
    else:
        dtype = np.dtype(f"{order}f{widths[0]}")
        raw = np.frombuffer(buf, dtype=dtype, count=tot * n_par, offset=start).reshape(tot, n_par)
        # Kept at the file's own precision (float32 for $DATATYPE F): widening every value to
        # float64 up front cost a third of reading a file; Sample.events widens on first use,
        # gating widens only the channels it uses. Big-endian DATA is byte-swapped in one copy;
        # unaligned native DATA is used in place (numpy reads it a few % slower than aligned,
        # copying it to align would cost more than every later read together).
        if raw.dtype.isnative:
            events = raw
        else:
            with np.errstate(invalid="ignore"):  # a signalling NaN in the data is kept, as NaN
                events = raw.astype(raw.dtype.newbyteorder("="))

    if scale:
        _scale(events, table, datatype, notes)
    spillover = _spillover(kw, table, notes)
    names = Counter(table["pnn"].tolist())  # not a pandas comparison per channel
    dupes = sorted(n for n, k in names.items() if k > 1)
    if dupes:
        notes.append(f"duplicate $PnN names {dupes}; channel_index() refuses them")
    return np.ascontiguousarray(events), table, spillover, notes


def count_nonfinite(events: np.ndarray, table: pd.DataFrame, notes: list[str]) -> dict[str, int]:
    """Per channel, how many values are NaN or inf (channels without any are left out)."""
    if events.size == 0:
        return {}
    # One summing pass answers the common case: a NaN or inf makes the sum non-finite, and a
    # finite sum means every value is finite (a sum that overflows is counted exactly below).
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(events.reshape(-1))
    if np.isfinite(total):
        return {}
    counts = np.count_nonzero(~np.isfinite(events), axis=0)
    if not counts.any():
        return {}
    names = [str(x) for x in table["pnn"]]
    out: dict[str, int] = {}
    for i in np.flatnonzero(counts):
        label = names[i] if names.count(names[i]) == 1 else f"{names[i]} ($P{i + 1}N)"
        out[label] = int(counts[i])
    shown = ", ".join(f"{k} {v}" for k, v in out.items())
    notes.append(
        f"non-finite values (NaN/inf) in the event data: {shown}; events with them are "
        "excluded from gating"
    )
    return out


def _channel_table(kw: dict[str, str], n_par: int, notes: list[str]) -> pd.DataFrame:
    rows = []
    bad_gain: list[str] = []
    for n in range(1, n_par + 1):
        pnb = keyword_int(kw, f"$P{n}B")
        pnn = kw.get(f"$P{n}N")
        if pnn is None:
            notes.append(f"$P{n}N missing; channel named 'P{n}'")
            pnn = f"P{n}"
        pnr = float_or(kw.get(f"$P{n}R"), math.nan)
        png = float_or(kw.get(f"$P{n}G"), 1.0)
        if not (math.isfinite(png) and png > 0):
            bad_gain.append(f"$P{n}G={kw.get(f'$P{n}G')!r}")
            png = 1.0
        rows.append(
            {
                "n": n,
                "pnn": pnn.strip(),
                "pns": kw.get(f"$P{n}S", "").strip(),
                "pnr": pnr,
                "pnb": pnb,
                "pne": (kw.get(f"$P{n}E") or "0,0").strip(),
                "png": png,
            }
        )
    if bad_gain:
        notes.append(f"invalid gain {', '.join(bad_gain)}; treated as 1")
    # column by column (a frame from a list of row dicts costs ~10x more: a file of few events
    # spent more on this table than on its DATA)
    dtypes = {"n": np.int64, "pnr": np.float64, "pnb": np.int64, "png": np.float64}
    return pd.DataFrame(
        {
            name: np.array([row[name] for row in rows], dtype=dtypes.get(name, object))
            for name in ("n", "pnn", "pns", "pnr", "pnb", "pne", "png")
        }
    )


def _tot(kw: dict[str, str], meta: DataSetMeta, event_bytes: int, notes: list[str]) -> int:
    if "$TOT" in kw or meta.version != "2.0":
        return keyword_int(kw, "$TOT")
    # $TOT is optional in FCS 2.0: derive it from the DATA segment length.
    if meta.header_data is None:
        raise FCSCause("missing required keyword $TOT (and no DATA offsets to derive it from)")
    begin, end = meta.header_data
    length = end - begin + 1
    if length < 0 or length % event_bytes not in (0, 1):
        raise FCSCause(
            f"missing required keyword $TOT, and the DATA length ({length} bytes) is not a "
            f"multiple of the event size ({event_bytes} bytes)"
        )
    tot = length // event_bytes
    notes.append(f"$TOT missing (optional in FCS 2.0); {tot} events from the DATA length")
    return tot


def _locate_data(
    buf: bytes, meta: DataSetMeta, kw: dict[str, str], needed: int, notes: list[str]
) -> int:
    """Choose DATA offsets (relative to the data set) and check them against the file.

    Candidates are the HEADER offsets and ``$BEGINDATA``/``$ENDDATA``. When both exist and
    disagree, the one consistent with the file size and with ``$TOT`` x event size wins (TEXT
    on a tie for FCS 3.x, whose standard makes TEXT authoritative; HEADER for FCS 2.0, which has
    no such keywords). A segment one byte longer than the data (``$ENDDATA`` pointing one past
    the last byte, as Miltenyi FCS 3.1 writes) is read with a warning; shorter is an error.
    Returns the begin offset.
    """
    size = len(buf) - meta.base
    text_pair: tuple[int, int] | None = None
    raw_b, raw_e = kw.get("$BEGINDATA"), kw.get("$ENDDATA")
    if raw_b is not None and raw_e is not None:
        parsed = (ascii_int(raw_b), ascii_int(raw_e))
        if parsed[0] is not None and parsed[1] is not None:
            text_pair = (parsed[0], parsed[1])
        else:
            notes.append(f"$BEGINDATA/$ENDDATA ({raw_b!r}, {raw_e!r}) are not integers; ignored")
    head_pair = meta.header_data

    def fitness(pair: tuple[int, int]) -> int:
        b, e = pair
        if b < HEADER_LEN or b + needed > size:
            return 0
        return 2 if e - b + 1 in (needed, needed + 1) else 1

    if text_pair is None and head_pair is None:
        if needed == 0:
            return HEADER_LEN
        raise FCSCause(
            "no DATA offsets: HEADER DATA offsets are 0/blank and $BEGINDATA/$ENDDATA missing"
        )
    if text_pair is None or head_pair is None or text_pair == head_pair:
        chosen = text_pair or head_pair
        assert chosen is not None
    else:
        prefer_text = meta.version != "2.0"
        candidates = [
            (fitness(text_pair), prefer_text, "TEXT", text_pair),
            (fitness(head_pair), not prefer_text, "HEADER", head_pair),
        ]
        ranked = sorted(candidates, reverse=True)
        _, _, source, chosen = ranked[0]
        other = ranked[1][3]
        notes.append(
            f"HEADER DATA offsets {head_pair[0]}-{head_pair[1]} disagree with TEXT "
            f"$BEGINDATA/$ENDDATA {text_pair[0]}-{text_pair[1]}; used {source} "
            f"{chosen[0]}-{chosen[1]} (not {other[0]}-{other[1]})"
        )

    begin, end = chosen
    if needed == 0:
        return begin
    length = end - begin + 1
    what = f"DATA segment (bytes {begin}-{end})"
    if begin < HEADER_LEN or end < begin:
        raise FCSCause(f"invalid DATA offsets {begin}-{end}")
    if begin >= size:
        raise FCSCause(
            f"DATA offsets past end of file: DATA starts at byte {begin} but the file has only "
            f"{size} bytes (header-only or truncated file)"
        )
    if begin + needed > size:
        raise FCSCause(
            f"truncated DATA: $TOT x event size = {needed} bytes from byte {begin}, but the file "
            f"ends after {size - begin} (offsets past end of file)"
        )
    if length < needed:
        raise FCSCause(
            f"truncated DATA: $TOT x event size = {needed} bytes, but the {what} holds only "
            f"{length} bytes"
        )
    if end >= size and length != needed + 1:
        notes.append(
            f"$ENDDATA={end} is past the end of the file ({size} bytes) but the file holds "
            f"$TOT x event size = {needed} bytes from byte {begin}; read those"
        )
    elif length == needed + 1:
        notes.append(
            f"$ENDDATA points one byte past the data ({what}, {needed} bytes = $TOT x event "
            "size); a known writer quirk (e.g. Miltenyi), read the data"
        )
    elif length > needed:
        notes.append(
            f"{what} is {length} bytes, longer than $TOT x event size = {needed}; "
            "read the first $TOT events"
        )
    return begin


def _check_byte_aligned(
    kw: dict[str, str], meta: DataSetMeta, bits: np.ndarray, needed: int, notes: list[str]
) -> None:
    """Widths like $PnB=10 are either bit-packed (FCS 2.0) or padded to whole bytes.

    The DATA length tells which: byte-aligned storage is read (with a warning); bit-packed
    data are refused rather than guessed (bit order within packed words is not standardised).
    """
    odd = next(int(b) for b in bits if b % 8)
    pair = meta.header_data
    text_b, text_e = ascii_int(kw.get("$BEGINDATA", "")), ascii_int(kw.get("$ENDDATA", ""))
    if text_b is not None and text_e is not None and text_e > 0:
        pair = (text_b, text_e)
    length = None if pair is None else pair[1] - pair[0] + 1
    if length not in (needed, needed + 1):
        raise FCSCause(
            f"unsupported: $PnB={odd} is not a whole number of bytes and the DATA length "
            f"({length} bytes) does not match byte-aligned storage ({needed} bytes); "
            "bit-packed integer DATA (FCS 2.0) is not read"
        )
    notes.append(
        f"$PnB={odd} is not a whole number of bytes; the DATA length matches byte-aligned "
        "storage, so each value was read from whole bytes"
    )


def _bitmask_limits(
    table: pd.DataFrame, widths: list[int], notes: list[str], kw: Mapping[str, str]
) -> list[int]:
    """Per channel, the smallest power of two >= $PnR, or 0 when no mask applies.

    FCS 3.1 ($PnR): for integer data, bits at and above that power of two are ignored.
    A missing/invalid $PnR leaves the channel unmasked (with a warning). An integer $PnR is
    taken from its text, not its float: 64-bit channels may state ranges above 2**53.
    """
    limits: list[int] = []
    bad: list[str] = []
    for row, width in zip(table.itertuples(index=False), widths, strict=True):
        pnr = float(row.pnr)
        if not (math.isfinite(pnr) and pnr > 0):
            bad.append(f"$P{row.n}R")
            limits.append(0)
            continue
        text = str(kw.get(f"$P{row.n}R", "")).strip()
        exact = int(text) if text.isdigit() else max(1, math.ceil(pnr))
        limit = 1 << (max(1, exact) - 1).bit_length()
        limits.append(limit if limit < 2 ** (8 * width) else 0)
    if bad:
        notes.append(f"missing or invalid {', '.join(bad)}; no bitmask for those channels")
    return limits


def _read_int(
    buf: bytes, start: int, tot: int, widths: list[int], order: str, limits: list[int]
) -> tuple[np.ndarray, list[int]]:
    """Decode unsigned integer DATA, apply the $PnR bitmask, return float64 and per-channel
    counts of values the mask changed. Vectorised: no Python loop over events."""
    n_par = len(widths)
    if len(set(widths)) == 1 and widths[0] in (1, 2, 4, 8):
        dtype = np.dtype(f"{order}u{widths[0]}")
        raw = np.frombuffer(buf, dtype=dtype, count=tot * n_par, offset=start)
        raw = raw.reshape(tot, n_par)
        over = [0] * n_par
        if any(limits):
            native = dtype.newbyteorder("=")
            ones = np.iinfo(native).max
            mask = np.array([lim - 1 if lim else ones for lim in limits], dtype=native)
            masked = raw & mask
            over = [int(c) for c in np.count_nonzero(masked != raw, axis=0)]
            raw = masked
        return raw.astype(np.float64), over
    # Mixed or odd widths: view the events as a (tot, event_bytes) byte matrix and assemble
    # each channel from its byte columns (vectorised per channel).
    event_bytes = sum(widths)
    mat = np.frombuffer(buf, dtype=np.uint8, count=tot * event_bytes, offset=start)
    mat = mat.reshape(tot, event_bytes)
    out = np.empty((tot, n_par), dtype=np.float64)
    over = []
    offset = 0
    for i, width in enumerate(widths):
        cols = mat[:, offset : offset + width]
        if width in (1, 2, 4, 8):
            value = np.ascontiguousarray(cols).view(np.dtype(f"{order}u{width}"))[:, 0]
            value = value.astype(np.uint64)
        else:
            value = np.zeros(tot, dtype=np.uint64)
            significance = range(width) if order == "<" else range(width - 1, -1, -1)
            for col, byte_no in enumerate(significance):
                value |= cols[:, col].astype(np.uint64) << np.uint64(8 * byte_no)
        if limits[i]:
            masked = value & np.uint64(limits[i] - 1)
            over.append(int(np.count_nonzero(masked != value)))
            value = masked
        else:
            over.append(0)
        out[:, i] = value
        offset += width
    return out, over


def _scale(events: np.ndarray, table: pd.DataFrame, datatype: str, notes: list[str]) -> None:
    log_claims: list[str] = []
    gain_on_log: list[str] = []
    bad_pne: list[str] = []
    for i, row in enumerate(table.itertuples(index=False)):
        pne = parse_pne(str(row.pne))
        if pne is None:
            bad_pne.append(f"$P{row.n}E={row.pne!r}")
            pne = (0.0, 0.0)
        f1, f2 = pne
        if datatype != "I":
            if f1 > 0:
                log_claims.append(str(row.pnn))
            continue
        if f1 > 0:
            pnr = float(row.pnr)
            if not (math.isfinite(pnr) and pnr > 0):
                bad_pne.append(f"$P{row.n}E={row.pne!r} with invalid $P{row.n}R")
                continue
            with np.errstate(over="ignore"):
                events[:, i] = (f2 if f2 > 0 else 1.0) * np.power(10.0, f1 * events[:, i] / pnr)
            if row.png != 1.0:
                gain_on_log.append(str(row.pnn))
        elif row.png != 1.0:
            events[:, i] /= row.png
    if log_claims:
        notes.append(
            f"floating-point data claim log amplification ($PnE f1>0) for {log_claims}; "
            "ignored, values kept as stored (the standard requires $PnE 0,0 for F/D data)"
        )
    if gain_on_log:
        notes.append(f"$PnG ignored on log-amplified channels {gain_on_log} (as the standard says)")
    if bad_pne:
        notes.append(f"unusable {', '.join(bad_pne)}; those channels left unscaled")


@dataclass(frozen=True)
class Spill:
    matrix: pd.DataFrame | None = None
    columns: tuple[int, ...] | None = None
    error: str | None = None


def _spillover(kw: dict[str, str], table: pd.DataFrame, notes: list[str]) -> Spill:
    """Parse the first of $SPILLOVER / SPILL / $SPILL and find the columns it applies to.

    A malformed matrix does not make the events wrong, so it yields no matrix plus a warning
    (the caller decides whether uncompensated data are acceptable) rather than an FCSError.
    Channels are named by $PnN (FCS 3.1); a $PnN that several channels share is resolved by
    position when the matrix names it as often as the file has it and lists all its channels
    in parameter order (the k-th mention is the k-th such channel); otherwise ``error`` says
    why compensation cannot be trusted, so it fails instead of skipping a channel.
    """
    key = next((k for k in _SPILL_KEYWORDS if k in kw), None)
    if key is None:
        return Spill()
    raw = kw[key].strip()
    parts = [p.strip() for p in raw.split(",")]
    n = ascii_int(parts[0])
    if n is None:
        notes.append(f"malformed {key}: count {parts[0][:40]!r} is not an integer; spillover=None")
        return Spill()
    if n == 0:
        return Spill()
    if n < 0 or len(parts) != 1 + n + n * n:
        notes.append(
            f"malformed {key}: {n} channels need {n} names and {n * n} values, found "
            f"{len(parts) - 1} items; spillover=None"
        )
        return Spill()
    numbers = [float_or(v, math.nan) for v in parts[1 + n :]]
    values = np.array(numbers, dtype=np.float64).reshape(n, n)
    if not np.isfinite(values).all():
        notes.append(f"malformed {key}: non-numeric or non-finite matrix values; spillover=None")
        return Spill()
    pnn = [str(x) for x in table["pnn"]]
    pns = [str(x) for x in table["pns"]]
    columns: list[int] = []
    mentions: dict[str, int] = {}
    for name in parts[1 : 1 + n]:
        hits = [i for i, v in enumerate(pnn) if v == name]
        if hits:
            k = mentions.get(name, 0)
            mentions[name] = k + 1
            columns.append(hits[min(k, len(hits) - 1)])
        elif pns.count(name) == 1:
            columns.append(pns.index(name))
        elif (number := ascii_int(name)) is not None and 1 <= number <= len(pnn):
            columns.append(number - 1)
        else:
            notes.append(
                f"malformed {key}: {name[:40]!r} is neither a $PnN, a unique $PnS nor a channel "
                "number; spillover=None"
            )
            return Spill()
    shared = {name: [i for i, v in enumerate(pnn) if v == name] for name in mentions}
    shared = {name: hits for name, hits in shared.items() if len(hits) > 1}
    if shared:
        where = "; ".join(
            f"{name!r} = " + ", ".join(f"$P{i + 1}N" for i in hits) for name, hits in shared.items()
        )
        ordered = all(a < b for a, b in pairwise(columns))
        if ordered and all(mentions[name] == len(hits) for name, hits in shared.items()):
            notes.append(
                f"{key} names $PnN shared by several channels ({where}); matched by position, "
                "as its channels are listed in parameter order"
            )
        else:
            error = (
                f"{key} names $PnN shared by several channels ({where}) and its order does "
                "not tell which is which; the file cannot be compensated"
            )
            notes.append(error)
            return Spill(error=error)
    if len(set(columns)) != n:
        names = [pnn[c] for c in columns]
        notes.append(f"malformed {key}: channels repeat ({names}); spillover=None")
        return Spill()
    labels = pd.Index([pnn[c] for c in columns])
    return Spill(pd.DataFrame(values, index=labels, columns=labels), tuple(columns))
