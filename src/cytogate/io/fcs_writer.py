"""Write FCS 3.1 list-mode files (float32, little-endian).

Why our own writer rather than ``flowio.create_fcs``: we need byte-identical output for the same
input (the simulator's reproducibility promise), a ``$SPILLOVER`` keyword, escaping of the
delimiter, explicit validation with clear errors, and an atomic write (a crash or a concurrent
reader never sees a half-written file under its final name).

Layout of a file written here::

    HEADER (58 bytes) | TEXT (starts at byte 58) | DATA (float32, '<f4') | CRC "00000000"

* HEADER: ``FCS3.1``, four spaces, then six 8-character right-justified ASCII offsets (TEXT,
  DATA, ANALYSIS begin/end, end offsets inclusive). A DATA segment that reaches past byte
  99,999,999 gets ``0`` offsets in the HEADER, as the standard prescribes; the TEXT keywords
  ``$BEGINDATA``/``$ENDDATA`` always hold the real offsets.
* TEXT: delimiter ``/``; a ``/`` inside a keyword or value is written doubled. The chicken-and-egg
  of ``$BEGINDATA``/``$ENDDATA`` (their digit count changes the TEXT length, which moves DATA) is
  solved by iterating to a fixed point: offsets only grow, so it converges in a few rounds, and the
  offsets are written as plain integers without padding.
* FCS forbids empty keyword values (``//`` would read as an escaped delimiter), so an empty
  ``$PnS`` is left out (it is optional) and empty user keyword values are skipped.
* CRC: FCS 3.1 allows ``00000000`` for "not computed".
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cytogate.atomic import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["atomic_write_bytes", "format_spillover", "write_fcs"]

DELIMITER = "/"
_HEADER_LEN = 58
_HEADER_LIMIT = 99_999_999  # largest offset the 8-character HEADER fields can hold
_CRC = b"00000000"

# Keywords the writer owns: they describe the file's layout, so a caller may not override them.
_RESERVED = {
    "$BEGINANALYSIS",
    "$ENDANALYSIS",
    "$BEGINSTEXT",
    "$ENDSTEXT",
    "$BEGINDATA",
    "$ENDDATA",
    "$BYTEORD",
    "$DATATYPE",
    "$MODE",
    "$NEXTDATA",
    "$PAR",
    "$TOT",
    "$SPILLOVER",
}
_RESERVED_PARAM = re.compile(r"^\$P\d+[BENRS]$")


def _fmt_number(value: float) -> str:
    """Shortest text that round-trips the float; integers without a decimal point."""
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"cannot write non-finite number {value!r} to FCS TEXT")
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def format_spillover(spillover: pd.DataFrame, pnn: Sequence[str]) -> str:
    """Format a spillover matrix as the FCS 3.1 ``$SPILLOVER`` value.

    ``n,name_1,…,name_n,s_11,s_12,…,s_nn`` with rows = source dye (FCS convention), so
    ``observed = true @ S``. Column names must be $PnN names of the file, the row names (if they
    are names at all) must equal the column names: a matrix whose rows are in another order than
    its columns would be silently wrong after writing.
    """
    names = [str(c) for c in spillover.columns]
    n = len(names)
    if spillover.shape != (n, n):
        raise ValueError(f"spillover must be square, got shape {spillover.shape}")
    if n == 0:
        raise ValueError("spillover matrix is empty")
    index = [str(i) for i in spillover.index]
    if not isinstance(spillover.index[0], int | np.integer) and index != names:
        raise ValueError(
            f"spillover rows {index} must be the same channels, in the same order, as its "
            f"columns {names}"
        )
    unknown = [name for name in names if name not in set(pnn)]
    if unknown:
        raise ValueError(f"spillover channels {unknown} are not $PnN names of the file ({pnn})")
    if len(set(names)) != n:
        raise ValueError(f"spillover channel names are not unique: {names}")
    for name in names:
        if "," in name:
            raise ValueError(f"spillover channel name {name!r} contains a comma")
    values = np.asarray(spillover, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("spillover matrix has non-finite values")
    return ",".join([str(n), *names, *(_fmt_number(v) for v in values.ravel())])


def _escape(text: str, what: str) -> str:
    """Double the delimiter; reject text the delimiter would make ambiguous.

    A key or value that starts or ends with the delimiter is legal for a strict left-to-right
    parser but is misread by common readers (flowio splits TEXT with a regular expression that
    cannot tell ``a///b`` apart), so we refuse it rather than write a file others misread.
    """
    if text.startswith(DELIMITER) or text.endswith(DELIMITER):
        raise ValueError(f"{what} {text!r} may not start or end with {DELIMITER!r}")
    return text.replace(DELIMITER, DELIMITER * 2)


def _build_text(pairs: list[tuple[str, str]]) -> bytes:
    parts = [DELIMITER]
    for key, value in pairs:
        parts.append(_escape(key, "keyword"))
        parts.append(DELIMITER)
        parts.append(_escape(value, f"value of {key}"))
        parts.append(DELIMITER)
    return "".join(parts).encode("utf-8")


def write_fcs(
    path: str | os.PathLike[str],
    events: np.ndarray,
    pnn: Sequence[str],
    pns: Sequence[str] | None = None,
    pnr: Sequence[float] | float = 262144,
    keywords: Mapping[str, str] | None = None,
    spillover: pd.DataFrame | None = None,
) -> Path:
    """Write ``events`` (n events × p parameters) as an FCS 3.1 list-mode file.

    Values are stored as float32 (``$DATATYPE F``, ``$BYTEORD 1,2,3,4``, ``$PnB 32``,
    ``$PnE 0,0``), which is what digital cytometers write and what every reader supports.

    Args:
        path: destination; written atomically (temporary file + ``os.replace``).
        events: 2-D array, one row per event (at least one), one column per parameter; values
            are cast to float32.
        pnn: ``$PnN`` short names (unique, non-empty, no commas as FCS 3.1 requires).
        pns: ``$PnS`` stain names, or None; empty entries are omitted.
        pnr: ``$PnR`` ranges, one per parameter or one for all.
        keywords: extra keywords (e.g. ``$CYT``, ``$DATE``, ``$FIL``, custom ones). Layout
            keywords the writer owns (``$BEGINDATA``, ``$PnN``…) raise ``ValueError``.
        spillover: square DataFrame, columns (and index) = $PnN names, rows = source dye;
            written as ``$SPILLOVER``.

    Returns:
        The path written.
    """
    data = np.asarray(events)
    if data.ndim != 2:
        raise ValueError(f"events must be 2-D (events × parameters), got shape {data.shape}")
    n_events, n_par = data.shape
    if n_events == 0:
        # Inclusive end offsets cannot describe an empty DATA segment in a way readers accept
        # (flowio reports an off-by-one offset error), so refuse rather than write such a file.
        raise ValueError("cannot write an FCS file with no events")
    names = [str(n) for n in pnn]
    if len(names) != n_par:
        raise ValueError(f"{len(names)} $PnN names for {n_par} parameters")
    if len(set(names)) != n_par:
        raise ValueError(f"$PnN names are not unique: {names}")
    for name in names:
        if not name or "," in name:
            raise ValueError(f"$PnN name {name!r} must be non-empty and contain no comma")
    stains = [""] * n_par if pns is None else [str(s) for s in pns]
    if len(stains) != n_par:
        raise ValueError(f"{len(stains)} $PnS names for {n_par} parameters")
    ranges = [float(pnr)] * n_par if isinstance(pnr, int | float) else [float(r) for r in pnr]
    if len(ranges) != n_par:
        raise ValueError(f"{len(ranges)} $PnR values for {n_par} parameters")

    fixed: list[tuple[str, str]] = []
    for i, (name, stain, rng) in enumerate(zip(names, stains, ranges, strict=True), start=1):
        fixed.append((f"$P{i}N", name))
        if stain:
            fixed.append((f"$P{i}S", stain))
        fixed += [(f"$P{i}B", "32"), (f"$P{i}E", "0,0"), (f"$P{i}R", _fmt_number(rng))]
    if spillover is not None:
        fixed.append(("$SPILLOVER", format_spillover(spillover, names)))
    seen = {key for key, _ in fixed}
    for key, value in (keywords or {}).items():
        key = str(key).upper() if str(key).startswith("$") else str(key)
        if key.upper() in _RESERVED or _RESERVED_PARAM.match(key.upper()):
            raise ValueError(f"keyword {key} is set by the writer and cannot be given")
        if key.upper() in {k.upper() for k in seen}:
            raise ValueError(f"keyword {key} given twice")
        if not key:
            raise ValueError("empty keyword name")
        value = str(value)
        if value == "":
            continue  # FCS cannot represent an empty value
        seen.add(key)
        fixed.append((key, value))

    payload = np.ascontiguousarray(data, dtype="<f4").tobytes()
    n_bytes = len(payload)

    # Fixed point: DATA starts right after TEXT, whose length depends on the DATA offsets.
    begin_data = _HEADER_LEN
    for _ in range(10):
        end_data = begin_data + n_bytes - 1
        layout = [
            ("$BEGINANALYSIS", "0"),
            ("$ENDANALYSIS", "0"),
            ("$BEGINSTEXT", "0"),
            ("$ENDSTEXT", "0"),
            ("$BEGINDATA", str(begin_data)),
            ("$ENDDATA", str(end_data)),
            ("$BYTEORD", "1,2,3,4"),
            ("$DATATYPE", "F"),
            ("$MODE", "L"),
            ("$NEXTDATA", "0"),
            ("$PAR", str(n_par)),
            ("$TOT", str(n_events)),
        ]
        text = _build_text(layout + fixed)
        needed = _HEADER_LEN + len(text)
        if needed == begin_data:
            break
        begin_data = needed
    else:  # pragma: no cover - offsets only grow, so this cannot happen
        raise RuntimeError("FCS TEXT offsets did not converge")

    text_end = _HEADER_LEN + len(text) - 1
    if text_end > _HEADER_LIMIT:
        raise ValueError("FCS TEXT segment too large for the HEADER")
    if end_data > _HEADER_LIMIT:
        h_data = (0, 0)
    else:
        h_data = (begin_data, end_data)
    header = b"FCS3.1    " + b"".join(
        f"{v:>8d}".encode("ascii") for v in (_HEADER_LEN, text_end, *h_data, 0, 0)
    )
    assert len(header) == _HEADER_LEN
    return atomic_write_bytes(path, [header, text, payload, _CRC])
