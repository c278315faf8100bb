"""Craft FCS files byte by byte for the reader's tests.

Deliberately independent of ``cytogate.io.fcs_writer`` and of the reader: the point is to produce
files whose every byte the test controls - FCS 2.0/3.0/3.1, $DATATYPE I (any whole-byte widths,
mixed), F or D, either byte order, chosen $PnE/$PnG/$PnR, extra or missing keywords, escaped
delimiters, empty values, supplemental TEXT, several data sets, zero HEADER offsets and the
vendor quirks the corpus shows (off-by-one $ENDDATA) - and to know exactly what a correct reader
must return.

Layout written: HEADER (58 bytes) | TEXT | [supplemental TEXT] | DATA | CRC "00000000" (3.x).
$NEXTDATA is always written 10 characters wide (space padded, as the Guava Muse does), so a data
set's length does not depend on the value and :func:`build_multi` can fill it in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HEADER_LEN = 58


def pack_events(values: np.ndarray, datatype: str, bits: Sequence[int], big_endian: bool) -> bytes:
    """Encode an (n_events, n_par) array as the DATA segment.

    Integers are written as unsigned values with ceil(bits/8) bytes each (values must already
    fit); the byte matrix is assembled per channel with shifts, so widths like 24 bits work.
    """
    values = np.asarray(values)
    n_events, n_par = values.shape
    order = ">" if big_endian else "<"
    columns: list[np.ndarray] = []
    for i in range(n_par):
        col = values[:, i]
        if datatype in ("F", "D"):
            dtype = np.dtype(f"{order}f{4 if datatype == 'F' else 8}")
            columns.append(col.astype(dtype).view(np.uint8).reshape(n_events, dtype.itemsize))
            continue
        width = (int(bits[i]) + 7) // 8
        ints = col.astype(np.uint64)
        shifts = [8 * k for k in range(width)]  # least significant byte first
        if big_endian:
            shifts.reverse()
        mat = np.stack(
            [((ints >> np.uint64(s)) & np.uint64(0xFF)).astype(np.uint8) for s in shifts], axis=1
        )
        columns.append(mat.reshape(n_events, width))
    if not columns:
        return b""
    return np.ascontiguousarray(np.hstack(columns)).tobytes()


def _escape(text: str, delimiter: str) -> str:
    return text.replace(delimiter, delimiter * 2)


def render_text(
    items: Sequence[tuple[str, str]], delimiter: str = "/", escape: bool = True
) -> bytes:
    """A TEXT segment: delimiter, then key/value pairs each followed by the delimiter."""
    out = [delimiter]
    for key, value in items:
        if escape:
            key, value = _escape(key, delimiter), _escape(value, delimiter)
        out.append(f"{key}{delimiter}{value}{delimiter}")
    return "".join(out).encode("utf-8")


def build_fcs(
    values: np.ndarray | Sequence[Sequence[float]],
    *,
    version: str = "3.1",
    datatype: str = "F",
    bits: int | Sequence[int] | None = None,
    big_endian: bool = False,
    byteord: str | None = None,
    pnn: Sequence[str] | None = None,
    pns: Sequence[str] | None = None,
    pnr: Sequence[float | str] | float | str | None = None,
    pne: Sequence[str] | str | None = None,
    png: Sequence[float | str] | float | str | None = None,
    mode: str = "L",
    extra: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    extra_first: bool = False,
    drop: Sequence[str] = (),
    override: Mapping[str, str] | None = None,
    supplemental: Mapping[str, str] | None = None,
    delimiter: str = "/",
    escape: bool = True,
    text_data_offsets: bool | None = None,
    header_data_zero: bool = False,
    enddata_off_by_one: bool = False,
    nextdata: int = 0,
    crc: bool = True,
) -> bytes:
    """Bytes of one FCS data set holding ``values`` (as stored; ints for I).

    ``extra`` adds keywords (after the standard ones, so they can also duplicate one; before
    them with ``extra_first``);
    ``override`` replaces the value of a standard keyword after it is computed (e.g.
    ``{"$TOT": "999"}``); ``drop`` omits keywords (e.g. ``["$TOT"]``). ``text_data_offsets``
    defaults to True for 3.x and False for 2.0 (which has no $BEGINDATA keyword).
    """
    data = np.asarray(values, dtype=np.float64 if datatype != "I" else np.uint64)
    if data.ndim != 2:
        raise ValueError("values must be 2-D (n_events, n_par)")
    n_events, n_par = data.shape
    if bits is None:
        bits = {"F": 32, "D": 64, "I": 16}[datatype]
    bit_list = [int(bits)] * n_par if isinstance(bits, int) else [int(b) for b in bits]

    def per_channel(value: Any, default: Any) -> list[Any]:
        if value is None:
            return [default(i) for i in range(n_par)]
        if isinstance(value, (str, int, float)):
            return [value] * n_par
        return list(value)

    names = per_channel(pnn, lambda i: f"CH{i + 1}")
    ranges = per_channel(pnr, lambda i: 2 ** bit_list[i] if datatype == "I" else 262144)
    amps = per_channel(pne, lambda i: "0,0")
    gains = None if png is None else per_channel(png, lambda i: 1.0)
    if byteord is None:
        n_bytes = 2 if datatype == "I" and max(bit_list, default=8) <= 16 else 4
        seq = [str(k) for k in range(1, n_bytes + 1)]
        byteord = ",".join(reversed(seq) if big_endian else seq)
    if text_data_offsets is None:
        text_data_offsets = version != "2.0"

    payload = pack_events(data, datatype, bit_list, big_endian)
    stext = render_text(list(supplemental.items()), delimiter) if supplemental else b""

    def items(text_len: int) -> list[tuple[str, str]]:
        stext_begin = HEADER_LEN + text_len if stext else 0
        stext_end = stext_begin + len(stext) - 1 if stext else 0
        data_begin = HEADER_LEN + text_len + len(stext)
        data_end = data_begin + len(payload) - 1 + (1 if enddata_off_by_one else 0)
        std: list[tuple[str, str]] = []
        if version != "2.0":
            std += [("$BEGINANALYSIS", "0"), ("$ENDANALYSIS", "0")]
            std += [("$BEGINSTEXT", str(stext_begin)), ("$ENDSTEXT", str(stext_end))]
        if text_data_offsets:
            std += [("$BEGINDATA", str(data_begin)), ("$ENDDATA", str(data_end))]
        std += [
            ("$BYTEORD", byteord),
            ("$DATATYPE", datatype),
            ("$MODE", mode),
            ("$NEXTDATA", f"{nextdata:>10}"),
            ("$PAR", str(n_par)),
            ("$TOT", str(n_events)),
        ]
        for i in range(n_par):
            n = i + 1
            std += [(f"$P{n}B", str(bit_list[i])), (f"$P{n}E", str(amps[i]))]
            std += [(f"$P{n}N", str(names[i])), (f"$P{n}R", str(ranges[i]))]
            if gains is not None:
                std.append((f"$P{n}G", str(gains[i])))
            if pns is not None and pns[i]:
                std.append((f"$P{n}S", str(pns[i])))
        std = [(k, (override or {}).get(k, v)) for k, v in std if k not in drop]
        more = list(extra.items()) if isinstance(extra, Mapping) else list(extra or [])
        return more + std if extra_first else std + more

    # $BEGINDATA etc. change the TEXT length they depend on: iterate to a fixed point.
    text_len = 0
    for _ in range(10):
        text = render_text(items(text_len), delimiter, escape)
        if len(text) == text_len:
            break
        text_len = len(text)
    data_begin = HEADER_LEN + len(text) + len(stext)
    data_end = data_begin + len(payload) - 1 + (1 if enddata_off_by_one else 0)
    if header_data_zero:
        data_fields = (0, 0)
    elif not payload:
        data_fields = (0, 0)
    else:
        data_fields = (data_begin, data_end)
    header = f"FCS{version}    ".encode("ascii")
    offsets = (HEADER_LEN, HEADER_LEN + len(text) - 1, *data_fields, 0, 0)
    header += b"".join(f"{x:>8}".encode("ascii") for x in offsets)
    assert len(header) == HEADER_LEN
    tail = b"00000000" if crc and version != "2.0" else b""
    return header + text + stext + payload + tail


def build_multi(data_sets: Sequence[Mapping[str, Any]]) -> bytes:
    """Several data sets chained by $NEXTDATA (relative to each data set's start).

    Each element is the keyword arguments of :func:`build_fcs` (``values`` included).
    """
    blobs = [build_fcs(**kwargs) for kwargs in data_sets]
    out = []
    for i, kwargs in enumerate(data_sets):
        nxt = len(blobs[i]) if i + 1 < len(data_sets) else 0
        blob = build_fcs(**{**kwargs, "nextdata": nxt})
        assert len(blob) == len(blobs[i])
        out.append(blob)
    return b"".join(out)


def set_header_field(blob: bytes, index: int, value: int | str) -> bytes:
    """Replace HEADER offset field ``index`` (0 = TEXT begin ... 5 = ANALYSIS end)."""
    start = 10 + 8 * index
    text = f"{value:>8}".encode("ascii")
    assert len(text) == 8
    return blob[:start] + text + blob[start + 8 :]


def text_span(blob: bytes) -> tuple[int, int]:
    """(begin, end) of the primary TEXT segment, from the HEADER."""
    return int(blob[10:18]), int(blob[18:26])


def write(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    return path
