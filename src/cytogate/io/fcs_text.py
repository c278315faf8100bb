"""HEADER and TEXT of FCS data sets: offsets, keywords, the $NEXTDATA chain, keyword numbers.

Linear on hostile input (issue 13): each TEXT byte span is parsed once and the bytes parsed in
all are bounded (:class:`TextBudget`); escaped delimiters are split in C; numbers are ASCII
only (``int()`` accepts every Unicode digit, ``str.isdigit()`` superscripts). Failures raise
:class:`FCSCause`, which :mod:`cytogate.io.fcs` turns into an ``FCSError`` naming the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

HEADER_LEN = 58
_SUPPORTED_VERSIONS = ("2.0", "3.0", "3.1", "3.2")
# Bytes a TEXT segment may be padded with after its final delimiter (Miltenyi pads with a
# space, the CyFlow Cube 8 with many, some writers with NULs).
_PAD_BYTES = b" \t\r\n\x00"
MAX_DATA_SETS = 100_000  # a chain longer than this is certainly corrupt


class FCSCause(Exception):
    """A cause; turned into FCSError with the file path (and data set) prefixed."""


@dataclass
class DataSetMeta:
    """HEADER and TEXT of one data set; offsets are relative to ``base``."""

    base: int
    version: str
    text_begin: int
    text_end: int
    header_data: tuple[int, int] | None  # None when the HEADER leaves DATA offsets 0 / blank
    keywords: dict[str, str]
    warnings: list[str]
    nextdata: int


def walk_chain(buf: bytes, wanted: int) -> tuple[DataSetMeta | None, int, list[str]]:
    """Walk the ``$NEXTDATA`` chain; return the wanted data set's HEADER+TEXT and the count.

    Only the wanted data set is kept (its keywords copied); the others are visited just to
    count them, so memory stays that of one TEXT. TEXT segments are parsed once per byte span
    (a file of thousands of headers sharing one TEXT parses it once), and the bytes parsed in
    all are bounded (:class:`TextBudget`), so a crafted chain costs time linear in the file.
    A broken link or an exhausted budget *after* the wanted data set only ends the count with a
    warning. ``$NEXTDATA`` is relative to the current data set (FCS 2.0 wording; the Guava Muse
    file confirms) and must be positive, which also rules out loops.
    """
    budget = TextBudget(len(buf))
    cur = parse_meta(buf, 0, budget, keep=wanted == 0)
    chosen = cur if wanted == 0 else None
    count = 1
    notes: list[str] = []
    while cur.nextdata != 0:
        nxt = cur.base + cur.nextdata
        problem = None
        if count >= MAX_DATA_SETS:
            problem = f"more than {MAX_DATA_SETS} chained data sets"
        elif cur.nextdata < 0:
            problem = f"$NEXTDATA={cur.nextdata} is negative"
        elif nxt + HEADER_LEN > len(buf):
            problem = f"$NEXTDATA points to byte {nxt}, past the end of the file ({len(buf)} bytes)"
        else:
            try:
                cur = parse_meta(buf, nxt, budget, keep=count == wanted)
            except FCSCause as exc:
                problem = f"data set {count} at byte {nxt} is unreadable: {exc}"
            else:
                if count == wanted:
                    chosen = cur
                count += 1
                continue
        if count <= wanted:
            raise FCSCause(f"cannot reach data set {wanted}: {problem}")
        notes.append(f"$NEXTDATA chain broken after data set {count - 1} ({problem}); ignored")
        break
    return chosen, count, notes


class TextBudget:
    """Parsed TEXT segments by absolute byte span, and a bound on the bytes parsed in all.

    The bound (8x the file plus 16 MB) is far above any real file (each data set parses its own
    TEXT once) and stops a chain of headers that point at overlapping TEXT spans from costing
    time quadratic in the file size.
    """

    def __init__(self, file_size: int) -> None:
        self.left = 8 * file_size + (16 << 20)
        self.spans: dict[tuple[int, int], tuple[dict[str, str], bytes, tuple[str, ...]]] = {}

    def parse(
        self, buf: bytes, start: int, stop: int, what: str, notes: list[str]
    ) -> tuple[dict[str, str], bytes]:
        """Keywords and delimiter of ``buf[start:stop]`` (shared: callers must not mutate)."""
        hit = self.spans.get((start, stop))
        if hit is None:
            if stop - start > self.left:
                raise FCSCause(
                    f"{what} at bytes {start}-{stop - 1}: the data sets' TEXT segments overlap "
                    "so much that reading them would parse over 8x the file; refused"
                )
            self.left -= stop - start
            own: list[str] = []
            keywords, delim = _parse_text(buf[start:stop], what, own)
            hit = (keywords, delim, tuple(own))
            self.spans[(start, stop)] = hit
        notes.extend(hit[2])
        return hit[0], hit[1]


# --------------------------------------------------------------------------------------------
# HEADER and TEXT


def parse_meta(
    buf: bytes, base: int, budget: TextBudget | None = None, keep: bool = True
) -> DataSetMeta:
    """HEADER and TEXT of the data set at ``base``.

    With ``keep=False`` (a data set only counted) the keywords are the shared parsed TEXT and
    supplemental TEXT is not read: only ``$NEXTDATA`` is used.
    """
    if budget is None:
        budget = TextBudget(len(buf))
    size = len(buf) - base
    head = buf[base : base + HEADER_LEN]
    if len(head) < HEADER_LEN:
        raise FCSCause(f"file shorter than the {HEADER_LEN}-byte HEADER")
    if not head.startswith(b"FCS"):
        raise FCSCause(f"not an FCS file (starts with {head[:6]!r}, expected b'FCS')")
    magic = head[:6].decode("latin-1")
    match = re.fullmatch(r"FCS(\d\.\d)", magic)
    if match is None:
        raise FCSCause(f"not an FCS file (bad version field {magic!r} in HEADER)")
    version = match.group(1)
    if version not in _SUPPORTED_VERSIONS:
        supported = ", ".join(_SUPPORTED_VERSIONS)
        raise FCSCause(f"unsupported FCS version {version} (supported: {supported})")

    fields = [_header_int(head[10 + 8 * i : 18 + 8 * i], i) for i in range(6)]
    text_begin, text_end, data_begin, data_end = (v if v is not None else 0 for v in fields[:4])
    if text_begin < HEADER_LEN or text_end < text_begin:
        raise FCSCause(
            f"garbage HEADER: TEXT offsets {text_begin}-{text_end} are not a valid segment"
        )
    if text_end >= size:
        raise FCSCause(
            f"TEXT offsets {text_begin}-{text_end} past end of file ({size} bytes from HEADER)"
        )
    notes: list[str] = []
    if data_begin and text_end == data_begin:
        # Seen in the wild (fcsparser works around it too): TEXT end = first DATA byte.
        text_end -= 1
        notes.append("HEADER TEXT end overlaps DATA start by one byte; TEXT shortened")

    keywords, delim = budget.parse(buf, base + text_begin, base + text_end + 1, "TEXT", notes)
    if keep:
        keywords = dict(keywords)
        _merge_supplemental(buf, base, size, keywords, delim, notes)

    header_data = (data_begin, data_end) if (data_begin or data_end) else None
    nextdata = 0
    raw_next = keywords.get("$NEXTDATA", "0").strip() or "0"
    parsed = ascii_int(raw_next)
    if parsed is None:
        notes.append(f"$NEXTDATA={raw_next!r} is not an integer; treated as 0 (single data set)")
    else:
        nextdata = parsed
    return DataSetMeta(base, version, text_begin, text_end, header_data, keywords, notes, nextdata)


def _header_int(raw: bytes, index: int) -> int | None:
    text = raw.decode("latin-1").strip()
    if not text:
        return None  # blank = not given (large files, empty ANALYSIS)
    if not (text.isascii() and text.isdigit()):
        if index >= 4:  # ANALYSIS offsets are not used; tolerate junk there
            return None
        raise FCSCause(f"garbage HEADER: offset field {index + 1} is {raw!r}, not a number")
    return int(text)


def _merge_supplemental(
    buf: bytes, base: int, size: int, keywords: dict[str, str], delim: bytes, notes: list[str]
) -> None:
    raw_begin = keywords.get("$BEGINSTEXT", "").strip()
    raw_end = keywords.get("$ENDSTEXT", "").strip()
    if not raw_begin and not raw_end:
        return
    begin, end = ascii_int(raw_begin or "0"), ascii_int(raw_end or "0")
    if begin is None or end is None:
        notes.append(
            f"$BEGINSTEXT/$ENDSTEXT ({raw_begin!r}, {raw_end!r}) are not integers; "
            "supplemental TEXT ignored"
        )
        return
    if begin == 0 and end == 0:
        return
    if not (HEADER_LEN <= begin <= end < size):
        notes.append(
            f"supplemental TEXT offsets {begin}-{end} are invalid or past end of file; ignored"
        )
        return
    raw = buf[base + begin : base + end + 1]
    if raw[:1] != delim:
        # e.g. the CyFlow Cube 8 points $BEGINSTEXT at an embedded ZIP archive
        notes.append(
            f"supplemental TEXT at {begin}-{end} does not start with the TEXT delimiter "
            f"(starts with {raw[:4]!r}); ignored"
        )
        return
    sub_notes: list[str] = []
    try:
        extra, _ = _parse_text(raw, "supplemental TEXT", sub_notes)
    except FCSCause as exc:
        notes.append(f"{exc}; supplemental TEXT ignored")
        return
    notes.extend(sub_notes)
    clashes = sorted(k for k in extra if k in keywords and extra[k] != keywords[k])
    if clashes:
        shown = ", ".join(clashes[:5]) + (" ..." if len(clashes) > 5 else "")
        notes.append(f"supplemental TEXT repeats keywords {shown} with other values; kept TEXT's")
    for key, value in extra.items():
        keywords.setdefault(key, value)


def _valid_delimiter(byte: int) -> bool:
    # Any ASCII character except those that would make keywords unparseable: letters, digits,
    # '$' (starts standard keywords), ',' (separates values) and non-ASCII bytes (they could be
    # part of a UTF-8 sequence, so splitting on them would corrupt text).
    char = chr(byte)
    return byte < 0x80 and not char.isalnum() and char not in "$,"


def _parse_text(raw: bytes, what: str, notes: list[str]) -> tuple[dict[str, str], bytes]:
    """Parse a TEXT (or supplemental TEXT) segment into upper-cased keyword -> value.

    The first byte is the delimiter. A doubled delimiter inside a keyword or value is an escaped
    delimiter (FCS 3.1); pre-3.1 writers sometimes write empty values instead, which look
    identical, so both readings are tried and the one that puts standard ``$`` keywords in
    keyword positions is kept. Bytes that are not UTF-8 are decoded as Latin-1. Returns the
    keywords and the delimiter.
    """
    if not raw:
        raise FCSCause(f"{what} segment is empty")
    if not _valid_delimiter(raw[0]):
        raise FCSCause(
            f"garbage {what}: bad delimiter {raw[:1]!r} (first byte of the segment must be a "
            "delimiter character, e.g. '/' or '\\x0c')"
        )
    delim = raw[:1]
    body = raw[1:]
    if not body.endswith(delim):
        stripped = body.rstrip(_PAD_BYTES) if delim not in _PAD_BYTES else body
        if not stripped.endswith(delim):
            notes.append(f"{what} does not end with its delimiter; last value read to its end")
        body = stripped
    if body.endswith(delim):
        body = body[:-1]

    split_at, restore = body, b""
    if delim * 2 in body:
        escaped, placeholder = _mark_escapes(body, delim)
        if _split_score(body, delim) <= _split_score(escaped, delim):
            split_at, restore = escaped, placeholder
        else:
            notes.append(f"{what} has empty values (doubled delimiters); read them as empty")
    tokens = split_at.split(delim)
    if restore:  # only tokens holding an escaped delimiter are copied
        tokens = [t.replace(restore, delim) if restore in t else t for t in tokens]

    if len(tokens) % 2:
        dangling = _decode_token(tokens[-1], [])
        notes.append(f"{what} ends with keyword {dangling!r} without a value; ignored")
        tokens = tokens[:-1]
    if not tokens:
        raise FCSCause(f"garbage {what}: no keyword/value pairs")

    latin: list[str] = []
    keywords: dict[str, str] = {}
    repeated: set[str] = set()
    for i in range(0, len(tokens), 2):
        key = _decode_token(tokens[i], latin).strip().upper()
        if not key:
            continue
        if key in keywords:
            repeated.add(key)
        keywords[key] = _decode_token(tokens[i + 1], latin)
    if not keywords:
        raise FCSCause(f"garbage {what}: no keywords")
    if latin:
        notes.append(f"{what} has non-UTF-8 bytes (e.g. in {latin[0]!r}); decoded as Latin-1")
    if repeated:
        notes.append(f"{what} repeats keywords {sorted(repeated)}; the last value was kept")
    return keywords, delim


def _mark_escapes(body: bytes, delim: bytes) -> tuple[bytes, bytes]:
    """``body`` with each doubled delimiter (FCS 3.1 escape) replaced by a placeholder.

    The placeholder is a byte (or, if every byte value occurs, a byte sequence) absent from
    ``body``, so splitting on single delimiters and restoring it afterwards is exact; all of it
    runs in C (``bytes.replace``/``split``), linear in the TEXT however many escapes it holds.
    """
    counts = np.bincount(np.frombuffer(body, dtype=np.uint8), minlength=256)
    free = np.flatnonzero(counts == 0)
    if free.size:
        placeholder = bytes([int(free[0])])
    else:
        placeholder = b"\x00<cytogate-escaped-delimiter>\x00"
        while placeholder in body:
            placeholder += b"\x00"
    return body.replace(delim * 2, placeholder), placeholder


def _split_score(body: bytes, delim: bytes) -> int:
    """How well ``body.split(delim)`` puts standard ``$`` keywords in keyword positions.

    Vectorised over the delimiter positions (a TEXT may hold millions of them).
    """
    arr = np.frombuffer(body, dtype=np.uint8)
    starts = np.concatenate(([0], np.flatnonzero(arr == delim[0]) + 1))
    dollar = np.zeros(starts.size, dtype=bool)
    inside = starts < arr.size
    dollar[inside] = arr[starts[inside]] == ord("$")
    keys = int(np.count_nonzero(dollar[0::2]))
    values = int(np.count_nonzero(dollar[1::2]))
    return keys - values - (2 if starts.size % 2 else 0)


def _decode_token(token: bytes, latin: list[str]) -> str:
    try:
        return token.decode("utf-8")
    except UnicodeDecodeError:
        text = token.decode("latin-1")
        latin.append(text[:40])
        return text


# --------------------------------------------------------------------------------------------
# keyword values


def keyword(keywords: dict[str, str], key: str) -> str:
    value = keywords.get(key)
    if value is None:
        raise FCSCause(f"missing required keyword {key}")
    return value.strip()


# ASCII only: str.isdigit() accepts superscripts ("\u00b2"), and int()/float() accept every
# Unicode decimal digit (Arabic-Indic, fullwidth); the FCS standard's numbers are ASCII.
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Far above any count, width or offset a real file holds (2**53: exact in float64).
_MAX_NUMBER = 2**53


def ascii_int(raw: str) -> int | None:
    """``raw`` (stripped) as an integer if it is ASCII digits with an optional sign, else None."""
    text = raw.strip()
    if len(text) > 30 or not _INT_RE.fullmatch(text):
        return None
    return int(text)


def keyword_int(keywords: dict[str, str], key: str, minimum: int = 0) -> int:
    """A required integer keyword, with a message naming the keyword and what is wrong."""
    raw = keyword(keywords, key)
    value = ascii_int(raw)
    if value is None:
        if not raw.isascii():
            raise FCSCause(f"garbage TEXT: {key}={raw!r} is not an integer (non-ASCII characters)")
        as_float = float(raw) if _FLOAT_RE.fullmatch(raw) else math.nan
        if not (math.isfinite(as_float) and as_float.is_integer()):
            raise FCSCause(f"garbage TEXT: {key}={raw[:40]!r} is not an integer") from None
        value = int(as_float)
    if value < minimum:
        raise FCSCause(f"invalid {key}={raw!r} (must be >= {minimum})")
    if value > _MAX_NUMBER:
        raise FCSCause(f"invalid {key}={raw[:40]!r}: implausibly large (over 2**53)")
    return value


def float_or(raw: str | None, default: float) -> float:
    """A float keyword (ASCII syntax only); ``default`` when absent/empty, NaN when garbage."""
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    if not _FLOAT_RE.fullmatch(text):
        return math.nan
    return float(text)


def parse_pne(raw: str) -> tuple[float, float] | None:
    parts = raw.split(",")
    if len(parts) != 2:
        return None
    f1, f2 = float_or(parts[0], math.nan), float_or(parts[1], math.nan)
    if not (math.isfinite(f1) and math.isfinite(f2)) or f1 < 0:
        return None
    return f1, f2
