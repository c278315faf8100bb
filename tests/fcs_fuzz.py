"""Seeded mutations of real FCS files, shared by the suite's fuzz test and benchmarks/fuzz_fcs.py.

Each case takes one corpus file and applies one to three mutations of the kinds that broke
readers before: random bytes (anywhere, in the HEADER, in TEXT), keyword values replaced by
nasty ones (huge or negative numbers, superscript and other non-ASCII digits, NaN, empty), HEADER
and TEXT offsets moved, truncation, a $NEXTDATA link. A case *escapes* when anything but
:class:`~cytogate.errors.FCSError` leaves :func:`cytogate.io.fcs.read_fcs`; a case is *generic*
when the FCSError is the reader's safety-net "unexpected ..." message instead of a named cause.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytogate.errors import FCSError
from cytogate.io.fcs import read_fcs_bytes

CORPUS = Path(__file__).parent / "data" / "fcs_corpus"

NASTY_VALUES = (
    "",
    " ",
    "0",
    "-1",
    "-0",
    "1",
    "7",
    "3",
    "1e400",
    "1e18",
    "99999999999999999999999",
    "2147483648",
    "9" * 400,
    "\u00b2",  # superscript two: str.isdigit() says yes, int() says no
    "1\u00b3",
    "\u0663",  # Arabic-Indic three: int() accepts it
    "\uff11\uff12",  # fullwidth 12
    "nan",
    "inf",
    "-inf",
    "1.5",
    "0x10",
    "4,0",
    "0,0,0",
    ",",
    "$",
    "I",
    "F",
    "D",
    "A",
    "4,3,2,1",
    "1,2",
    "3,a,b,c,1,0,0,0,1,0,0,0,1",
    "2,FSC-A,FSC-A,1,0,0,1",
)

_KEY_RE = re.compile(rb"\$[A-Z0-9]+")


@dataclass(frozen=True)
class Outcome:
    """What one case did: ``ok`` (read), ``fcserror``, ``generic`` or ``escape``."""

    kind: str
    seconds: float
    detail: str


def corpus_files() -> list[Path]:
    """The corpus files that read (mutating an unreadable file tests little)."""
    out = []
    for path in sorted(CORPUS.rglob("*")):
        if path.suffix.lower() in (".fcs", ".lmd") and path.stat().st_size < 2_000_000:
            out.append(path)
    return out


def _text_range(blob: bytes) -> tuple[int, int]:
    try:
        begin = int(blob[10:18].strip() or 58)
        end = int(blob[18:26].strip() or 58)
    except ValueError:
        return 58, min(len(blob), 4096)
    if not (58 <= begin <= end < len(blob)):
        return 58, min(len(blob), 4096)
    return begin, end + 1


def mutate(blob: bytes, rng: np.random.Generator) -> bytes:
    """One to three random mutations of ``blob``."""
    data = bytearray(blob)
    for _ in range(int(rng.integers(1, 4))):
        data = bytearray(_mutate_once(bytes(data), rng))
        if len(data) < 8:
            break
    return bytes(data)


def _mutate_once(blob: bytes, rng: np.random.Generator) -> bytes:
    kind = int(rng.integers(0, 9))
    data = bytearray(blob)
    n = len(data)
    if n == 0:
        return blob
    t0, t1 = _text_range(blob)
    if kind == 0:  # random bytes anywhere
        for pos in rng.integers(0, n, size=int(rng.integers(1, 16))):
            data[int(pos)] = int(rng.integers(0, 256))
    elif kind == 1:  # HEADER bytes
        for pos in rng.integers(0, min(58, n), size=int(rng.integers(1, 4))):
            data[int(pos)] = int(rng.choice(list(b" 0123456789-\x00F")))
    elif kind == 2:  # TEXT bytes
        for pos in rng.integers(t0, max(t0 + 1, t1), size=int(rng.integers(1, 8))):
            if pos < n:
                data[int(pos)] = int(rng.integers(0, 256))
    elif kind in (3, 4, 5):  # a keyword's value replaced by a nasty one
        keys = list(_KEY_RE.finditer(blob, t0, t1))
        if not keys:
            return blob
        hit = keys[int(rng.integers(0, len(keys)))]
        delim = blob[t0 : t0 + 1]
        v0 = hit.end() + 1
        v1 = blob.find(delim, v0, t1)
        if v1 < 0:
            return blob
        value = str(rng.choice(NASTY_VALUES)).encode("utf-8")
        if kind == 5:  # keep the length: offsets stay right
            old = v1 - v0
            value = value[:old].rjust(old) if old else value
        return bytes(data[:v0]) + value + bytes(data[v1:])
    elif kind == 6:  # a HEADER offset field
        field = int(rng.integers(0, 6))
        choice = int(rng.integers(0, 4))
        number = [0, n, int(rng.integers(0, max(1, n * 2))), 99999999][choice]
        data[10 + 8 * field : 18 + 8 * field] = str(number).rjust(8)[:8].encode()
    elif kind == 7:  # truncate or extend
        if rng.random() < 0.7:
            return bytes(data[: int(rng.integers(0, n))])
        return bytes(data) + bytes(
            rng.integers(0, 256, size=int(rng.integers(1, 4096))).astype(np.uint8)
        )
    else:  # a duplicated HEADER+TEXT chained via $NEXTDATA
        head_text = bytes(data[:t1])
        return bytes(data) + head_text
    return bytes(data)


def run_case(blob: bytes, label: str = "fuzz.fcs") -> Outcome:
    """Read ``blob``; classify what came out."""
    start = time.perf_counter()
    try:
        read_fcs_bytes(blob, label)
        kind, detail = "ok", ""
    except FCSError as exc:
        detail = str(exc)
        kind = "generic" if "unexpected" in detail else "fcserror"
    except Exception as exc:  # the point is to catch anything that escapes
        kind, detail = "escape", f"{type(exc).__name__}: {exc}"
    return Outcome(kind, time.perf_counter() - start, detail)


def cases(seed: int, n: int, files: list[Path] | None = None) -> Iterator[tuple[str, bytes]]:
    """``n`` seeded mutated blobs (name of the source file, bytes)."""
    rng = np.random.default_rng(seed)
    sources = [(p.name, p.read_bytes()) for p in (files or corpus_files())]
    for _ in range(n):
        name, blob = sources[int(rng.integers(0, len(sources)))]
        yield name, mutate(blob, rng)
