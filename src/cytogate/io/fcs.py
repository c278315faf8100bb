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
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cytogate.errors import FCSError
from cytogate.io.fcs_data import count_nonfinite, decode_data
from cytogate.io.fcs_text import HEADER_LEN, FCSCause, parse_meta, walk_chain

__all__ = ["FCSError", "FileDigest", "Sample", "read_fcs", "read_fcs_bytes", "read_keywords"]


@dataclass(frozen=True, eq=False)
class Sample:
    """One data set of an FCS file, decoded.

    ``data`` holds the values as decoded, read-only, in native byte order (possibly unaligned,
    read in place): float32 when the file stores float32 (``$DATATYPE F``), else float64.
    ``events`` is the same values as float64, C-contiguous and read-only (several analyses may
    share one Sample), widened on first use; ``column(j)`` widens one channel only, which is
    what gating needs.
    ``channels`` has one row per column of ``events`` with columns n, pnn, pns, pnr, pnb, pne,
    png. ``warnings`` lists everything that was tolerated or repaired while reading, so a
    pipeline can surface it instead of silently trusting an odd file.
    """

    path: Path
    digest: FileDigest  # of the whole file; see :attr:`sha256`
    version: str
    data: np.ndarray
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

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the file's bytes, as read (waits for the hashing thread)."""
        return self.digest.hexdigest()

    @property
    def events(self) -> np.ndarray:
        """Every channel as float64 (n_events x n_channels), C-contiguous and read-only;
        widened from :attr:`data` on first use and kept."""
        wide = self.__dict__.get("_events")
        if wide is None:
            wide = self.data
            if wide.dtype != np.float64:
                wide = np.ascontiguousarray(wide, dtype=np.float64)
                wide.flags.writeable = False
            object.__setattr__(self, "_events", wide)  # a cache, not state: frozen otherwise
        return wide

    def column(self, index: int) -> np.ndarray:
        """Channel ``index`` as float64: a view of :attr:`events` once widened (or when the
        data is float64), else this channel alone widened, without widening the others."""
        wide = self.__dict__.get("_events")
        if wide is not None or self.data.dtype == np.float64:
            return self.events[:, index]
        return self.data[:, index].astype(np.float64)

    def finite_mask(self, columns: Sequence[int] | None = None) -> np.ndarray:
        """Events whose values are finite in ``columns`` (default: every channel)."""
        if not self.nonfinite:
            return np.ones(self.n_events, dtype=bool)
        data = self.data if columns is None else self.data[:, list(columns)]
        return np.isfinite(data).all(axis=1)

    @property
    def n_events(self) -> int:
        """Number of events (rows of :attr:`events`)."""
        return int(self.data.shape[0])

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
            f"{self.data.shape[1]} channels, data_sets={self.data_sets}, "
            f"warnings={len(self.warnings)})"
        )


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
    digest = FileDigest(buf)
    try:
        return _read(resolved, label, buf, digest, data_set, scale)
    except FCSCause as exc:
        raise FCSError(f"{label}: {exc}") from None
    except (ArithmeticError, LookupError, ValueError, TypeError) as exc:  # pragma: no cover
        # Safety net: every known cause is checked explicitly above; this only keeps the
        # promise that a bad file never escapes as anything but FCSError.
        raise FCSError(
            f"{label}: unreadable FCS file (unexpected {type(exc).__name__}: {exc})"
        ) from exc


class FileDigest:
    """SHA-256 of a file's bytes, computed in a thread while the file is decoded and gated.

    Hashing a 40 MB file costs more than decoding it; hashlib releases the GIL, so on a
    multi-core machine the hash overlaps the decoding and the gating, and whoever first asks
    for :attr:`Sample.sha256` (the batch, recording the outcome) waits only for what is left.
    Small files are hashed inline (a thread costs more). ``FileDigest.known(hex)`` wraps a
    digest already at hand.
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

    @classmethod
    def known(cls, hexdigest: str) -> FileDigest:
        digest = cls(b"")
        digest._digest = hexdigest
        return digest

    def _run(self, buf: bytes) -> None:
        self._digest = hashlib.sha256(buf).hexdigest()

    def hexdigest(self) -> str:
        if self._thread is not None:
            self._thread.join()
        assert self._digest is not None
        return self._digest

    def __reduce__(self) -> tuple[Any, ...]:  # pickled as the digest itself (no thread)
        return (FileDigest.known, (self.hexdigest(),))


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
            if os.fstat(fh.fileno()).st_size < HEADER_LEN:
                raise FCSCause(f"file is shorter than the {HEADER_LEN}-byte FCS HEADER")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return dict(parse_meta(buf, 0).keywords)  # type: ignore[arg-type]
    except FileNotFoundError:
        raise FCSError(f"{label}: no such file") from None
    except OSError as exc:
        raise FCSError(f"{label}: cannot read file ({exc.strerror or exc})") from exc
    except FCSCause as exc:
        raise FCSError(f"{label}: {exc}") from None
    except (ArithmeticError, LookupError, ValueError, TypeError) as exc:  # pragma: no cover
        raise FCSError(f"{label}: unreadable FCS TEXT (unexpected {type(exc).__name__})") from exc


# --------------------------------------------------------------------------------------------
# top level


def _read(
    resolved: Path,
    label: str,
    buf: bytes,
    digest: FileDigest,
    data_set: int,
    scale: bool,
) -> Sample:
    size = len(buf)
    if size == 0:
        raise FCSCause("empty file (0 bytes); not an FCS file")
    if size < HEADER_LEN:
        what = "" if buf.startswith(b"FCS") else "; not an FCS file (does not start with 'FCS')"
        raise FCSCause(f"file is {size} bytes, shorter than the {HEADER_LEN}-byte FCS HEADER{what}")

    meta, n_sets, chain_warnings = walk_chain(buf, data_set)
    if meta is None:
        raise FCSCause(f"data_set={data_set} requested but the file holds {n_sets} data set(s)")
    prefix = "" if data_set == 0 else f"data set {data_set} (at byte {meta.base}): "
    try:
        events, channels, spill, warns = decode_data(buf, meta, scale)
    except FCSCause as exc:
        raise FCSCause(f"{prefix}{exc}") from None

    notes = list(meta.warnings) + warns + chain_warnings
    if n_sets > 1:
        which = "the first" if data_set == 0 else f"data set {data_set} (0-based)"
        notes.insert(0, f"file holds {n_sets} data sets; read {which}")
    nonfinite = count_nonfinite(events, channels, notes)
    events.flags.writeable = False
    return Sample(
        path=resolved,
        digest=digest,
        version=meta.version,
        data=events,
        channels=channels,
        keywords=meta.keywords,
        spillover=spill.matrix,
        spillover_columns=spill.columns,
        spillover_error=spill.error,
        nonfinite=nonfinite,
        data_sets=n_sets,
        warnings=tuple(notes),
    )
