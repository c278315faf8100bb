"""A robust, numpy-based reader for FCS 2.0 / 3.0 / 3.1 list-mode files.

Why our own reader: fcsparser 0.2.8 pins numpy<2 (cytogate needs numpy>=2 for flowkit 1.3),
fcsparser 0.2.4 fails on integer data under numpy 2, and flowio rejects real files that other
software opens (Miltenyi FCS 3.1 off-by-one DATA offsets, files with several data sets, a blank
HEADER DATA offset, 24-bit integers). :func:`read_fcs` reads all of them, and every file it
cannot read raises :class:`~cytogate.errors.FCSError` whose message starts with the file path and
names the cause.

How values are produced
-----------------------
1. DATA is decoded with ``np.frombuffer`` on the file's bytes (read once; the same buffer is
   hashed for :attr:`Sample.sha256`). Mixed ``$PnB`` widths use a structured dtype; 3/5/6/7-byte
   integers (e.g. the 24-bit Cytek xP5) are assembled from their bytes column by column.
2. Integer values are unsigned and masked by ``$PnR``: bits at and above the smallest power of
   two >= ``$PnR`` are cleared (FCS 3.1, ``$PnR``). flowio (``next_power_of_2(PnR) - 1``) and
   fcsparser (``2**ceil(log2(PnR)) - 1``) apply the same mask; for a non-integral ``$PnR`` we use
   ``ceil(PnR)`` first, which equals fcsparser's result (flowio cannot parse such a ``$PnR``).
3. With ``scale=True`` (default) values are converted to linear "scale values" as the standard
   says, for integer data only:

   * ``$PnE f1,f2`` with ``f1 > 0`` (log amplifier): ``f2 * 10**(f1 * x / $PnR)``, with
     ``f2 <= 0`` read as 1 (as FlowJo, flowio and flowkit do for the common ``4,0``);
   * linear channels with a valid ``$PnG != 1``: ``x / $PnG``.

   Floating-point data (``F``/``D``) are already scale values: ``$PnE`` must be ``0,0`` there, so
   a float file that claims log is not exponentiated (a warning says so) and ``$PnG`` is not
   applied.

Differences from ``flowkit.Sample(path).get_events(source="raw")`` (= flowio ``as_array()`` with
preprocessing), all deliberate:

* flowkit divides *float* channels by ``$PnG`` too; we do not (the standard's gain conversion is
  for integer channel values; e.g. BD Diva writes ``$PnG`` 0.01 on a float Time channel).
* flowkit multiplies a channel named exactly "Time" by ``$TIMESTEP`` (and forces its gain to 1);
  we do not apply ``$TIMESTEP`` (it converts units, not amplification; it stays in
  :attr:`Sample.keywords` for callers that want seconds).
* flowkit exponentiates float channels that claim ``$PnE f1>0`` (e.g. the Guava Muse "HLog"
  channels, which already hold log10 values 0-4); we keep the stored values and warn.
* flowkit also divides log channels by ``$PnG``; the standard says gain does not apply to
  log-amplified channels, so we do not (and warn when a log channel has ``$PnG != 1``).

Everywhere else (linear integer channels with gain, log integer channels without gain, float
channels with unit gain) the values are identical; ``tests/test_fcs_read.py`` checks this.

Tolerated, with a note in :attr:`Sample.warnings` (the data are still trustworthy): HEADER and
TEXT DATA offsets that disagree (the pair consistent with the file size and ``$TOT`` x event
size wins), ``$ENDDATA`` one byte past the data (Miltenyi FCS 3.1), blank/zero HEADER DATA
offsets (standard for large files: TEXT is used), TEXT padding or a missing final delimiter,
non-UTF-8 TEXT (Latin-1), empty values, unusable supplemental TEXT (ignored), a broken
``$NEXTDATA`` link after the requested data set, ``$TOT`` missing in FCS 2.0 (optional there;
derived from the DATA length), and a malformed spillover keyword: the events are fine, so
``spillover`` is ``None`` and the warning says why, rather than refusing the whole file.
Everything that makes the events unknowable is an :class:`FCSError`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from cytogate.errors import FCSError

__all__ = ["Sample", "read_fcs", "read_fcs_bytes", "read_keywords"]

_HEADER_LEN = 58
_SUPPORTED_VERSIONS = ("2.0", "3.0", "3.1", "3.2")
_SPILL_KEYWORDS = ("$SPILLOVER", "SPILL", "$SPILL")
# Bytes a TEXT segment may be padded with after its final delimiter (Miltenyi pads with a
# space, the CyFlow Cube 8 with many, some writers with NULs).
_PAD_BYTES = b" \t\r\n\x00"
_MAX_DATA_SETS = 100_000  # a chain longer than this is certainly corrupt


@dataclass(frozen=True, eq=False)
class Sample:
    """One data set of an FCS file, decoded.

    ``events`` is float64, C-contiguous and read-only (several analyses may share one Sample).
    ``channels`` has one row per column of ``events`` with columns n, pnn, pns, pnr, pnb, pne,
    png. ``warnings`` lists everything that was tolerated or repaired while reading, so a
    pipeline can surface it instead of silently trusting an odd file.
    """

    path: Path
    sha256: str
    version: str
    events: np.ndarray
    channels: pd.DataFrame
    keywords: dict[str, str]
    spillover: pd.DataFrame | None
    data_sets: int = 1
    warnings: tuple[str, ...] = field(default=())
    #: Columns of :attr:`events` that the rows/columns of :attr:`spillover` apply to, resolved
    #: by the reader (by position where a $PnN is duplicated); use these, not the labels.
    spillover_columns: tuple[int, ...] | None = None
    #: Why the file's spillover keyword could not be applied (``spillover`` is then None), for
    #: causes that must stop compensation rather than let it silently skip a channel.
    spillover_error: str | None = None
    #: Non-finite (NaN/inf) values per channel label, only channels that have any; events with
    #: them must not be gated (see :attr:`finite_mask`).
    nonfinite: Mapping[str, int] = field(default_factory=dict)

    def finite_mask(self, columns: Sequence[int] | None = None) -> np.ndarray:
        """Events whose values are finite in ``columns`` (default: every channel)."""
        if not self.nonfinite:
            return np.ones(self.n_events, dtype=bool)
        data = self.events if columns is None else self.events[:, list(columns)]
        return np.isfinite(data).all(axis=1)

    @property
    def n_events(self) -> int:
        """Number of events (rows of :attr:`events`)."""
        return int(self.events.shape[0])

    @property
    def channel_names(self) -> list[str]:
        """The ``$PnN`` names in column order (may contain duplicates in odd files)."""
        return [str(name) for name in self.channels["pnn"]]

    def channel_index(self, pnn: str) -> int:
        """Column of :attr:`events` whose ``$PnN`` is ``pnn``.

        Raises ``KeyError`` naming the channel and listing the available ones when the name is
        absent, or when it is ambiguous (some files repeat a ``$PnN``): silently picking one of
        two identically named columns would gate on the wrong data.
        """
        names = self.channel_names
        hits = [i for i, name in enumerate(names) if name == pnn]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise KeyError(f"channel {pnn!r} not in {self.path.name}; channels ($PnN): {names}")
        numbers = ", ".join(f"$P{i + 1}N" for i in hits)
        raise KeyError(
            f"channel {pnn!r} is ambiguous in {self.path.name}: {len(hits)} channels share "
            f"that $PnN ({numbers}); select the column by position. Channels: {names}"
        )

    def __repr__(self) -> str:
        return (
            f"Sample({str(self.path)!r}, FCS{self.version}, {self.n_events} events x "
            f"{self.events.shape[1]} channels, data_sets={self.data_sets}, "
            f"warnings={len(self.warnings)})"
        )


class _Fail(Exception):
    """Internal: a cause; turned into FCSError with the file path (and data set) prefixed."""


@dataclass
class _DataSetMeta:
    """HEADER and TEXT of one data set; offsets are relative to ``base``."""

    base: int
    version: str
    text_begin: int
    text_end: int
    header_data: tuple[int, int] | None  # None when the HEADER leaves DATA offsets 0 / blank
    keywords: dict[str, str]
    warnings: list[str]
    nextdata: int


def read_fcs(path: str | os.PathLike[str], *, data_set: int = 0, scale: bool = True) -> Sample:
    """Read one data set of an FCS file.

    ``data_set`` selects a data set along the ``$NEXTDATA`` chain (0 = first); the number found
    is in :attr:`Sample.data_sets`. ``scale=False`` returns the values as stored (after the
    ``$PnR`` bitmask), without ``$PnE``/``$PnG`` conversion; this is what reference readers
    (flowio ``as_array(preprocess=False)``, fcsparser) return, so tests compare against it.

    Raises :class:`FCSError` (message starting with the path) for any unreadable file, including
    a missing one. A negative ``data_set`` is a programming error: ``ValueError``.
    """
    if data_set < 0:
        raise ValueError(f"data_set must be >= 0, got {data_set}")
    resolved = Path(os.fspath(path)).resolve()
    label = str(resolved)
    try:
        buf = resolved.read_bytes()
    except FileNotFoundError:
        raise FCSError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise FCSError(f"{label}: is a directory, not an FCS file") from None
    except OSError as exc:
        raise FCSError(f"{label}: cannot read file ({exc.strerror or exc})") from exc
    return _read_checked(resolved, label, buf, data_set, scale)


def read_fcs_bytes(
    buf: bytes, name: str | os.PathLike[str] = "<bytes>", *, data_set: int = 0, scale: bool = True
) -> Sample:
    """:func:`read_fcs` on a file's bytes already in memory (``name`` labels messages).

    For data that did not come from disk (an upload, an archive member) and for the fuzz tests,
    which read hundreds of thousands of mutated files without writing them.
    """
    if data_set < 0:
        raise ValueError(f"data_set must be >= 0, got {data_set}")
    return _read_checked(Path(os.fspath(name)), str(name), bytes(buf), data_set, scale)


def _read_checked(resolved: Path, label: str, buf: bytes, data_set: int, scale: bool) -> Sample:
    digest = _Sha256InBackground(buf)
    try:
        return _read(resolved, label, buf, digest, data_set, scale)
    except _Fail as exc:
        raise FCSError(f"{label}: {exc}") from None
    except (ArithmeticError, LookupError, ValueError, TypeError) as exc:  # pragma: no cover
        # Safety net: every known cause is checked explicitly above; this only keeps the
        # promise that a bad file never escapes as anything but FCSError.
        raise FCSError(
            f"{label}: unreadable FCS file (unexpected {type(exc).__name__}: {exc})"
        ) from exc


class _Sha256InBackground:
    """SHA-256 of a file's bytes, computed in a thread while the DATA segment is decoded.

    Hashing a 40 MB file costs about as much as decoding it; hashlib releases the GIL, so on
    a multi-core machine the two overlap. Small files are hashed inline (a thread costs more).
    """

    _THREAD_ABOVE = 1 << 20

    def __init__(self, buf: bytes) -> None:
        self._digest: str | None = None
        self._thread: threading.Thread | None = None
        if len(buf) < self._THREAD_ABOVE:
            self._digest = hashlib.sha256(buf).hexdigest()
        else:
            self._thread = threading.Thread(target=self._run, args=(buf,), daemon=True)
            self._thread.start()

    def _run(self, buf: bytes) -> None:
        self._digest = hashlib.sha256(buf).hexdigest()

    def hexdigest(self) -> str:
        if self._thread is not None:
            self._thread.join()
        assert self._digest is not None
        return self._digest


def read_keywords(path: str | os.PathLike[str]) -> dict[str, str]:
    """The first data set's keywords (upper-cased names), without decoding DATA.

    Used to build a run's design from keywords over thousands of files: the file is mapped,
    not read, so only the HEADER and TEXT pages are touched. Raises :class:`FCSError` like
    :func:`read_fcs`.
    """
    import mmap

    resolved = Path(os.fspath(path)).resolve()
    label = str(resolved)
    try:
        with open(resolved, "rb") as fh:
            if os.fstat(fh.fileno()).st_size < _HEADER_LEN:
                raise _Fail(f"file is shorter than the {_HEADER_LEN}-byte FCS HEADER")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return dict(_parse_meta(buf, 0).keywords)  # type: ignore[arg-type]
    except FileNotFoundError:
        raise FCSError(f"{label}: no such file") from None
    except OSError as exc:
        raise FCSError(f"{label}: cannot read file ({exc.strerror or exc})") from exc
    except _Fail as exc:
        raise FCSError(f"{label}: {exc}") from None
    except (ArithmeticError, LookupError, ValueError, TypeError) as exc:  # pragma: no cover
        raise FCSError(f"{label}: unreadable FCS TEXT (unexpected {type(exc).__name__})") from exc


# --------------------------------------------------------------------------------------------
# top level


def _read(
    resolved: Path,
    label: str,
    buf: bytes,
    digest: _Sha256InBackground,
    data_set: int,
    scale: bool,
) -> Sample:
    size = len(buf)
    if size == 0:
        raise _Fail("empty file (0 bytes); not an FCS file")
    if size < _HEADER_LEN:
        what = "" if buf.startswith(b"FCS") else "; not an FCS file (does not start with 'FCS')"
        raise _Fail(f"file is {size} bytes, shorter than the {_HEADER_LEN}-byte FCS HEADER{what}")

    meta, n_sets, chain_warnings = _walk_chain(buf, data_set)
    if meta is None:
        raise _Fail(f"data_set={data_set} requested but the file holds {n_sets} data set(s)")
    prefix = "" if data_set == 0 else f"data set {data_set} (at byte {meta.base}): "
    try:
        events, channels, spill, warns = _decode(buf, meta, scale)
    except _Fail as exc:
        raise _Fail(f"{prefix}{exc}") from None

    notes = list(meta.warnings) + warns + chain_warnings
    if n_sets > 1:
        which = "the first" if data_set == 0 else f"data set {data_set} (0-based)"
        notes.insert(0, f"file holds {n_sets} data sets; read {which}")
    nonfinite = _count_nonfinite(events, channels, notes)
    events.flags.writeable = False
    return Sample(
        path=resolved,
        sha256=digest.hexdigest(),
        version=meta.version,
        events=events,
        channels=channels,
        keywords=meta.keywords,
        spillover=spill.matrix,
        spillover_columns=spill.columns,
        spillover_error=spill.error,
        nonfinite=nonfinite,
        data_sets=n_sets,
        warnings=tuple(notes),
    )


def _walk_chain(buf: bytes, wanted: int) -> tuple[_DataSetMeta | None, int, list[str]]:
    """Walk the ``$NEXTDATA`` chain; return the wanted data set's HEADER+TEXT and the count.

    Only the wanted data set is kept (its keywords copied); the others are visited just to
    count them, so memory stays that of one TEXT. TEXT segments are parsed once per byte span
    (a file of thousands of headers sharing one TEXT parses it once), and the bytes parsed in
    all are bounded (:class:`_TextBudget`), so a crafted chain costs time linear in the file.
    A broken link or an exhausted budget *after* the wanted data set only ends the count with a
    warning. ``$NEXTDATA`` is relative to the current data set (FCS 2.0 wording; the Guava Muse
    file confirms) and must be positive, which also rules out loops.
    """
    budget = _TextBudget(len(buf))
    cur = _parse_meta(buf, 0, budget, keep=wanted == 0)
    chosen = cur if wanted == 0 else None
    count = 1
    notes: list[str] = []
    while cur.nextdata != 0:
        nxt = cur.base + cur.nextdata
        problem = None
        if count >= _MAX_DATA_SETS:
            problem = f"more than {_MAX_DATA_SETS} chained data sets"
        elif cur.nextdata < 0:
            problem = f"$NEXTDATA={cur.nextdata} is negative"
        elif nxt + _HEADER_LEN > len(buf):
            problem = f"$NEXTDATA points to byte {nxt}, past the end of the file ({len(buf)} bytes)"
        else:
            try:
                cur = _parse_meta(buf, nxt, budget, keep=count == wanted)
            except _Fail as exc:
                problem = f"data set {count} at byte {nxt} is unreadable: {exc}"
            else:
                if count == wanted:
                    chosen = cur
                count += 1
                continue
        if count <= wanted:
            raise _Fail(f"cannot reach data set {wanted}: {problem}")
        notes.append(f"$NEXTDATA chain broken after data set {count - 1} ({problem}); ignored")
        break
    return chosen, count, notes


class _TextBudget:
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
                raise _Fail(
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


def _parse_meta(
    buf: bytes, base: int, budget: _TextBudget | None = None, keep: bool = True
) -> _DataSetMeta:
    """HEADER and TEXT of the data set at ``base``.

    With ``keep=False`` (a data set only counted) the keywords are the shared parsed TEXT and
    supplemental TEXT is not read: only ``$NEXTDATA`` is used.
    """
    if budget is None:
        budget = _TextBudget(len(buf))
    size = len(buf) - base
    head = buf[base : base + _HEADER_LEN]
    if len(head) < _HEADER_LEN:
        raise _Fail(f"file shorter than the {_HEADER_LEN}-byte HEADER")
    if not head.startswith(b"FCS"):
        raise _Fail(f"not an FCS file (starts with {head[:6]!r}, expected b'FCS')")
    magic = head[:6].decode("latin-1")
    match = re.fullmatch(r"FCS(\d\.\d)", magic)
    if match is None:
        raise _Fail(f"not an FCS file (bad version field {magic!r} in HEADER)")
    version = match.group(1)
    if version not in _SUPPORTED_VERSIONS:
        supported = ", ".join(_SUPPORTED_VERSIONS)
        raise _Fail(f"unsupported FCS version {version} (supported: {supported})")

    fields = [_header_int(head[10 + 8 * i : 18 + 8 * i], i) for i in range(6)]
    text_begin, text_end, data_begin, data_end = (v if v is not None else 0 for v in fields[:4])
    if text_begin < _HEADER_LEN or text_end < text_begin:
        raise _Fail(f"garbage HEADER: TEXT offsets {text_begin}-{text_end} are not a valid segment")
    if text_end >= size:
        raise _Fail(
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
    parsed = _ascii_int(raw_next)
    if parsed is None:
        notes.append(f"$NEXTDATA={raw_next!r} is not an integer; treated as 0 (single data set)")
    else:
        nextdata = parsed
    return _DataSetMeta(base, version, text_begin, text_end, header_data, keywords, notes, nextdata)


def _header_int(raw: bytes, index: int) -> int | None:
    text = raw.decode("latin-1").strip()
    if not text:
        return None  # blank = not given (large files, empty ANALYSIS)
    if not (text.isascii() and text.isdigit()):
        if index >= 4:  # ANALYSIS offsets are not used; tolerate junk there
            return None
        raise _Fail(f"garbage HEADER: offset field {index + 1} is {raw!r}, not a number")
    return int(text)


def _merge_supplemental(
    buf: bytes, base: int, size: int, keywords: dict[str, str], delim: bytes, notes: list[str]
) -> None:
    raw_begin = keywords.get("$BEGINSTEXT", "").strip()
    raw_end = keywords.get("$ENDSTEXT", "").strip()
    if not raw_begin and not raw_end:
        return
    begin, end = _ascii_int(raw_begin or "0"), _ascii_int(raw_end or "0")
    if begin is None or end is None:
        notes.append(
            f"$BEGINSTEXT/$ENDSTEXT ({raw_begin!r}, {raw_end!r}) are not integers; "
            "supplemental TEXT ignored"
        )
        return
    if begin == 0 and end == 0:
        return
    if not (_HEADER_LEN <= begin <= end < size):
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
    except _Fail as exc:
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
        raise _Fail(f"{what} segment is empty")
    if not _valid_delimiter(raw[0]):
        raise _Fail(
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
        raise _Fail(f"garbage {what}: no keyword/value pairs")

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
        raise _Fail(f"garbage {what}: no keywords")
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
# keywords -> layout -> DATA


def _kw(keywords: dict[str, str], key: str) -> str:
    value = keywords.get(key)
    if value is None:
        raise _Fail(f"missing required keyword {key}")
    return value.strip()


# ASCII only: str.isdigit() accepts superscripts ("\u00b2"), and int()/float() accept every
# Unicode decimal digit (Arabic-Indic, fullwidth); the FCS standard's numbers are ASCII.
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Far above any count, width or offset a real file holds (2**53: exact in float64).
_MAX_NUMBER = 2**53


def _ascii_int(raw: str) -> int | None:
    """``raw`` (stripped) as an integer if it is ASCII digits with an optional sign, else None."""
    text = raw.strip()
    if len(text) > 30 or not _INT_RE.fullmatch(text):
        return None
    return int(text)


def _kw_int(keywords: dict[str, str], key: str, minimum: int = 0) -> int:
    """A required integer keyword, with a message naming the keyword and what is wrong."""
    raw = _kw(keywords, key)
    value = _ascii_int(raw)
    if value is None:
        if not raw.isascii():
            raise _Fail(f"garbage TEXT: {key}={raw!r} is not an integer (non-ASCII characters)")
        as_float = float(raw) if _FLOAT_RE.fullmatch(raw) else math.nan
        if not (math.isfinite(as_float) and as_float.is_integer()):
            raise _Fail(f"garbage TEXT: {key}={raw[:40]!r} is not an integer") from None
        value = int(as_float)
    if value < minimum:
        raise _Fail(f"invalid {key}={raw!r} (must be >= {minimum})")
    if value > _MAX_NUMBER:
        raise _Fail(f"invalid {key}={raw[:40]!r}: implausibly large (over 2**53)")
    return value


def _float_or(raw: str | None, default: float) -> float:
    """A float keyword (ASCII syntax only); ``default`` when absent/empty, NaN when garbage."""
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    if not _FLOAT_RE.fullmatch(text):
        return math.nan
    return float(text)


def _parse_pne(raw: str) -> tuple[float, float] | None:
    parts = raw.split(",")
    if len(parts) != 2:
        return None
    f1, f2 = _float_or(parts[0], math.nan), _float_or(parts[1], math.nan)
    if not (math.isfinite(f1) and math.isfinite(f2)) or f1 < 0:
        return None
    return f1, f2


def _byte_order(keywords: dict[str, str]) -> str:
    raw = _kw(keywords, "$BYTEORD")
    order = [_ascii_int(p) for p in raw.replace(" ", "").split(",")]
    if any(v is None for v in order) or len(order) > 16:
        raise _Fail(f"unsupported $BYTEORD={raw[:40]!r} (not a list of byte numbers)")
    ascending = list(range(1, len(order) + 1))
    if order == ascending:
        return "<"
    if order == ascending[::-1]:
        return ">"
    raise _Fail(f"unsupported $BYTEORD={raw!r} (only little- or big-endian orders are read)")


def _decode(
    buf: bytes, meta: _DataSetMeta, scale: bool
) -> tuple[np.ndarray, pd.DataFrame, _Spill, list[str]]:
    kw = meta.keywords
    notes: list[str] = []

    mode = kw.get("$MODE", "L").strip().upper()
    if mode != "L":
        raise _Fail(f"unsupported $MODE={mode!r} (only list mode 'L' is read)")
    datatype = _kw(kw, "$DATATYPE").upper()
    if datatype == "A":
        raise _Fail("unsupported $DATATYPE=A (ASCII data); convert the file to binary FCS")
    if datatype not in ("I", "F", "D"):
        raise _Fail(f"unsupported $DATATYPE={datatype!r} (expected I, F or D)")
    order = _byte_order(kw)
    n_par = _kw_int(kw, "$PAR", minimum=1)
    if n_par > len(kw):  # each parameter needs its own $PnB (and $PnR) keyword
        raise _Fail(f"invalid $PAR={n_par}: the TEXT holds only {len(kw)} keywords")

    table = _channel_table(kw, n_par, notes)
    bits = table["pnb"].to_numpy()

    if datatype == "I":
        bad = [int(b) for b in bits if b <= 0 or b > 64]
        if bad:
            raise _Fail(f"unsupported integer width $PnB={bad[0]} (1-64 bits are read)")
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
        limits = _bitmask_limits(table, widths, notes)
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
        raw = np.frombuffer(buf, dtype=dtype, count=tot * n_par, offset=start)
        with np.errstate(invalid="ignore"):  # a signalling NaN in the data is kept, as NaN
            events = raw.reshape(tot, n_par).astype(np.float64)

    if scale:
        _scale(events, table, datatype, notes)
    spillover = _spillover(kw, table, notes)
    dupes = sorted({n for n in table["pnn"] if (table["pnn"] == n).sum() > 1})
    if dupes:
        notes.append(f"duplicate $PnN names {dupes}; channel_index() refuses them")
    return np.ascontiguousarray(events), table, spillover, notes


def _count_nonfinite(events: np.ndarray, table: pd.DataFrame, notes: list[str]) -> dict[str, int]:
    """Per channel, how many values are NaN or inf (channels without any are left out)."""
    if events.size == 0:
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
        pnb = _kw_int(kw, f"$P{n}B")
        pnn = kw.get(f"$P{n}N")
        if pnn is None:
            notes.append(f"$P{n}N missing; channel named 'P{n}'")
            pnn = f"P{n}"
        pnr = _float_or(kw.get(f"$P{n}R"), math.nan)
        png = _float_or(kw.get(f"$P{n}G"), 1.0)
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
    table = pd.DataFrame(rows, columns=["n", "pnn", "pns", "pnr", "pnb", "pne", "png"])
    return table.astype(
        {"n": "int64", "pnr": "float64", "pnb": "int64", "png": "float64"}, copy=False
    )


def _tot(kw: dict[str, str], meta: _DataSetMeta, event_bytes: int, notes: list[str]) -> int:
    if "$TOT" in kw or meta.version != "2.0":
        return _kw_int(kw, "$TOT")
    # $TOT is optional in FCS 2.0: derive it from the DATA segment length.
    if meta.header_data is None:
        raise _Fail("missing required keyword $TOT (and no DATA offsets to derive it from)")
    begin, end = meta.header_data
    length = end - begin + 1
    if length < 0 or length % event_bytes not in (0, 1):
        raise _Fail(
            f"missing required keyword $TOT, and the DATA length ({length} bytes) is not a "
            f"multiple of the event size ({event_bytes} bytes)"
        )
    tot = length // event_bytes
    notes.append(f"$TOT missing (optional in FCS 2.0); {tot} events from the DATA length")
    return tot


def _locate_data(
    buf: bytes, meta: _DataSetMeta, kw: dict[str, str], needed: int, notes: list[str]
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
        parsed = (_ascii_int(raw_b), _ascii_int(raw_e))
        if parsed[0] is not None and parsed[1] is not None:
            text_pair = (parsed[0], parsed[1])
        else:
            notes.append(f"$BEGINDATA/$ENDDATA ({raw_b!r}, {raw_e!r}) are not integers; ignored")
    head_pair = meta.header_data

    def fitness(pair: tuple[int, int]) -> int:
        b, e = pair
        if b < _HEADER_LEN or b + needed > size:
            return 0
        return 2 if e - b + 1 in (needed, needed + 1) else 1

    if text_pair is None and head_pair is None:
        if needed == 0:
            return _HEADER_LEN
        raise _Fail(
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
    if begin < _HEADER_LEN or end < begin:
        raise _Fail(f"invalid DATA offsets {begin}-{end}")
    if begin >= size:
        raise _Fail(
            f"DATA offsets past end of file: DATA starts at byte {begin} but the file has only "
            f"{size} bytes (header-only or truncated file)"
        )
    if begin + needed > size:
        raise _Fail(
            f"truncated DATA: $TOT x event size = {needed} bytes from byte {begin}, but the file "
            f"ends after {size - begin} (offsets past end of file)"
        )
    if length < needed:
        raise _Fail(
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
    kw: dict[str, str], meta: _DataSetMeta, bits: np.ndarray, needed: int, notes: list[str]
) -> None:
    """Widths like $PnB=10 are either bit-packed (FCS 2.0) or padded to whole bytes.

    The DATA length tells which: byte-aligned storage is read (with a warning); bit-packed
    data are refused rather than guessed (bit order within packed words is not standardised).
    """
    odd = next(int(b) for b in bits if b % 8)
    pair = meta.header_data
    text_b, text_e = _ascii_int(kw.get("$BEGINDATA", "")), _ascii_int(kw.get("$ENDDATA", ""))
    if text_b is not None and text_e is not None and text_e > 0:
        pair = (text_b, text_e)
    length = None if pair is None else pair[1] - pair[0] + 1
    if length not in (needed, needed + 1):
        raise _Fail(
            f"unsupported: $PnB={odd} is not a whole number of bytes and the DATA length "
            f"({length} bytes) does not match byte-aligned storage ({needed} bytes); "
            "bit-packed integer DATA (FCS 2.0) is not read"
        )
    notes.append(
        f"$PnB={odd} is not a whole number of bytes; the DATA length matches byte-aligned "
        "storage, so each value was read from whole bytes"
    )


def _bitmask_limits(table: pd.DataFrame, widths: list[int], notes: list[str]) -> list[int]:
    """Per channel, the smallest power of two >= $PnR, or 0 when no mask applies.

    FCS 3.1 ($PnR): for integer data, bits at and above that power of two are ignored.
    A missing/invalid $PnR leaves the channel unmasked (with a warning).
    """
    limits: list[int] = []
    bad: list[str] = []
    for row, width in zip(table.itertuples(index=False), widths, strict=True):
        pnr = float(row.pnr)
        if not (math.isfinite(pnr) and pnr > 0):
            bad.append(f"$P{row.n}R")
            limits.append(0)
            continue
        limit = 1 << (max(1, math.ceil(pnr)) - 1).bit_length()
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
        pne = _parse_pne(str(row.pne))
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
class _Spill:
    matrix: pd.DataFrame | None = None
    columns: tuple[int, ...] | None = None
    error: str | None = None


def _spillover(kw: dict[str, str], table: pd.DataFrame, notes: list[str]) -> _Spill:
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
        return _Spill()
    raw = kw[key].strip()
    parts = [p.strip() for p in raw.split(",")]
    n = _ascii_int(parts[0])
    if n is None:
        notes.append(f"malformed {key}: count {parts[0][:40]!r} is not an integer; spillover=None")
        return _Spill()
    if n == 0:
        return _Spill()
    if n < 0 or len(parts) != 1 + n + n * n:
        notes.append(
            f"malformed {key}: {n} channels need {n} names and {n * n} values, found "
            f"{len(parts) - 1} items; spillover=None"
        )
        return _Spill()
    numbers = [_float_or(v, math.nan) for v in parts[1 + n :]]
    values = np.array(numbers, dtype=np.float64).reshape(n, n)
    if not np.isfinite(values).all():
        notes.append(f"malformed {key}: non-numeric or non-finite matrix values; spillover=None")
        return _Spill()
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
        elif (number := _ascii_int(name)) is not None and 1 <= number <= len(pnn):
            columns.append(number - 1)
        else:
            notes.append(
                f"malformed {key}: {name[:40]!r} is neither a $PnN, a unique $PnS nor a channel "
                "number; spillover=None"
            )
            return _Spill()
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
            return _Spill(error=error)
    if len(set(columns)) != n:
        names = [pnn[c] for c in columns]
        notes.append(f"malformed {key}: channels repeat ({names}); spillover=None")
        return _Spill()
    labels = pd.Index([pnn[c] for c in columns])
    return _Spill(pd.DataFrame(values, index=labels, columns=labels), tuple(columns))
