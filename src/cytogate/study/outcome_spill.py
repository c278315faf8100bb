"""Per-file outcomes kept on disk during a batch, so the parent's memory does not grow with them.

A :class:`~cytogate.study.outcome.FileOutcome` carries every gate's fitted geometry (polygons
of hundreds of vertices): about 200 KB per file in memory against ~13 KB for its table rows,
so a parent holding every outcome of a 1,000-file run until the end grew to ~470 MB. The batch
hands each worker result's outcomes to an :class:`OutcomeSpill` as it arrives (one pickle per
result, written once, never changed) and keeps only the table rows, pickled
(:class:`HeldOutput`); ``BatchResult.outcomes`` is
then a :class:`SpilledOutcomes`, a read-only sequence in the order of ``samples`` that loads a
result's outcomes when they are first asked for (the renderer and the FlowJo export read them
draw by draw, so a few results are in memory at a time).

Where: a run that writes an output set spills into ``OUT.outcomes-<pid>-<n>`` beside ``OUT``
(see :meth:`cytogate.study.output_set.OutputSet.spill_folder`): never inside the set, so the
published set is exactly the tables, run.json, plots and report; a killed run's folder is
removed by the next run on ``OUT``. A run without ``out`` spills into a temporary folder. The
folder is removed when the sequence is garbage-collected or the interpreter exits.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from cytogate.study.outcome import FileOutcome, GroupOutput
from cytogate.study.timeline import mark

#: results whose outcomes stay loaded at once when a spilled sequence is read
CACHED_RESULTS = 4


class OutcomeSpill:
    """Writes each result's outcomes to ``folder`` and remembers where each file's is."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        if folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="cytogate-outcomes-"))
        else:
            self.folder = Path(folder)
            self.folder.mkdir(parents=True, exist_ok=True)
        self._where: dict[tuple[str, str], tuple[int, int]] = {}  # (name, tube) -> (part, pos)
        self._parts = 0
        # the folder goes with the last object that can read it (this one or its sequences)
        self._cleanup = weakref.finalize(self, _remove, self.folder, os.getpid())

    def hold(self, output: GroupOutput | PackedOutput) -> HeldOutput:
        """Write ``output``'s outcomes to disk; return what the parent keeps of it."""
        packed = output if isinstance(output, PackedOutput) else PackedOutput.pack(output)
        if not packed.keys:
            return packed.held
        part = self._parts
        self._parts += 1
        (self.folder / f"{part}.pkl").write_bytes(packed.outcomes)
        for pos, key in enumerate(packed.keys):
            self._where[key] = (part, pos)  # a file named twice: the last one, as before
        return packed.held

    def sequence(self, keys: Iterable[tuple[str, str]]) -> SpilledOutcomes:
        """The outcomes of the files ``keys`` ((name, tube), e.g. samples.csv's order)."""
        refs = tuple(self._where[key] for key in keys)
        seq = SpilledOutcomes(self.folder, refs)
        # the sequence now owns the folder: it outlives this spill, which the batch drops
        self._cleanup.detach()
        seq._cleanup = weakref.finalize(seq, _remove, self.folder, os.getpid())
        return seq

    def remove(self) -> None:
        """Remove the folder now (a run that failed or was stopped)."""
        self._cleanup()


@dataclass(frozen=True)
class HeldOutput:
    """A worker result as the parent keeps it until the tables are built: its table rows
    pickled into one bytes object (~2 KB per file instead of ~13 KB of dicts), its timings
    and pins; the rows are unpickled when the tables are assembled."""

    rows: bytes
    seconds: Mapping[str, float] = field(default_factory=dict)
    pins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @staticmethod
    def of(output: GroupOutput) -> HeldOutput:
        rows = (output.samples, output.populations, output.markers)
        return HeldOutput(
            pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL),
            dict(output.seconds),
            dict(output.pins),
        )

    @property
    def samples(self) -> tuple[dict[str, Any], ...]:
        return pickle.loads(self.rows)[0]

    @property
    def populations(self) -> tuple[dict[str, Any], ...]:
        return pickle.loads(self.rows)[1]

    @property
    def markers(self) -> tuple[dict[str, Any], ...]:
        return pickle.loads(self.rows)[2]


@dataclass(frozen=True)
class PackedOutput:
    """A worker's result pickled in the worker (:func:`pack_result`): the parent receives two
    bytes objects and writes the outcomes to disk as they are, instead of rebuilding ~200 KB
    of objects per file only to pickle them again while the workers need the cores."""

    held: HeldOutput
    outcomes: bytes  # pickled tuple[FileOutcome, ...]
    keys: tuple[tuple[str, str], ...]  # (name, tube) of each outcome, in order

    @staticmethod
    def pack(output: GroupOutput) -> PackedOutput:
        return PackedOutput(
            HeldOutput.of(output),
            pickle.dumps(output.outcomes, protocol=pickle.HIGHEST_PROTOCOL),
            tuple((o.name, o.tube) for o in output.outcomes),
        )

    @property
    def samples(self) -> tuple[dict[str, Any], ...]:  # what progress reports show
        return self.held.samples


def pack_result(func: Callable[..., GroupOutput], item: Any, *args: Any) -> PackedOutput:
    """``func(item, *args)``, packed where it ran (use as ``partial(pack_result, func)``)."""
    packed = PackedOutput.pack(func(item, *args))
    mark(
        "result packed",
        "worker",
        outcomes_bytes=len(packed.outcomes),
        rows_bytes=len(packed.held.rows),
    )
    return packed


class SpilledOutcomes(Sequence[FileOutcome]):
    """A read-only sequence of outcomes loaded from an :class:`OutcomeSpill` as asked for."""

    def __init__(self, folder: Path, refs: tuple[tuple[int, int], ...]) -> None:
        self.folder = folder
        self._refs = refs
        self._cache: OrderedDict[int, tuple[FileOutcome, ...]] = OrderedDict()
        self._cleanup: weakref.finalize | None = None

    def __len__(self) -> int:
        return len(self._refs)

    @overload
    def __getitem__(self, index: int) -> FileOutcome: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[FileOutcome, ...]: ...

    def __getitem__(self, index: int | slice) -> FileOutcome | tuple[FileOutcome, ...]:
        if isinstance(index, slice):
            return tuple(self._load(*self._refs[i]) for i in range(*index.indices(len(self))))
        part, pos = self._refs[index]
        return self._load(part, pos)

    def __iter__(self) -> Iterator[FileOutcome]:
        for part, pos in self._refs:
            yield self._load(part, pos)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SpilledOutcomes({len(self)} files in {self.folder})"

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (e.g. sent to a process): as a tuple
        return (tuple, (tuple(self),))

    def _load(self, part: int, pos: int) -> FileOutcome:
        outcomes = self._cache.get(part)
        if outcomes is None:
            with open(self.folder / f"{part}.pkl", "rb") as fh:
                outcomes = pickle.load(fh)
            self._cache[part] = outcomes
            if len(self._cache) > CACHED_RESULTS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(part)
        return outcomes[pos]


def _remove(folder: Path, owner: int) -> None:
    """Remove ``folder`` in the process that made it, never in a forked child dropping its copy."""
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)
