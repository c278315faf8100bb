"""An output set is one unit: tables, run.json, plots and report replace the previous set at once.

A run writes its whole set into ``OUT.staging-<pid>`` beside ``OUT`` and then swaps the two
folders with one ``renameat2(RENAME_EXCHANGE)`` (Linux ≥ 3.15): the crash window is zero, a
reader or a crash sees the complete old set or the complete new one, never a mix (e.g. new
tables beside an old ``report.html`` from a run with plots). The old set, now in the staging
name, is then removed. Where the filesystem cannot exchange, the fallback is
``OUT → OUT.old-<pid>``, ``staging → OUT``, remove the old one; a crash between the two renames
leaves no ``OUT``, and the next run on ``OUT`` puts ``OUT.old-*`` back before doing anything.

One run per output folder: ``OUT.lock`` (see :mod:`cytogate.study.lock`). Holding it, a run
removes leftovers of killed runs (``OUT.staging-*``, ``OUT.old-*``, and the per-file outcomes a
run keeps on disk beside the set, ``OUT.outcomes-<pid>-*``, of processes no longer alive), so
no partial set or ``.tmp`` file outlives the next run. Only a folder cytogate wrote (it has
``run.json``) or an empty one is ever replaced, never the run folder itself or a folder that
contains it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import shutil
from pathlib import Path

from cytogate.study.lock import OutputError, RunLock

MARKER = "run.json"  # a folder holding this is a cytogate output set and may be replaced
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_SPILLS = itertools.count()  # this process's outcome folders (a process may run many batches)


class OutputSet:
    """Stage a run's outputs and publish them as one unit.

    ``open()`` (before any gating: it is also the "output folder is writable" check) takes the
    lock, cleans leftovers and creates :attr:`staging`; write everything there; ``commit()``
    publishes it; ``abort()`` removes it; ``close()`` releases the lock. As a context manager:
    commit on success, abort on any exception (a signal included), release always.
    """

    def __init__(self, out: str | os.PathLike[str], inputs: str | os.PathLike[str] | None = None):
        self.out = Path(os.path.abspath(out))
        self.inputs = Path(os.path.abspath(inputs)) if inputs is not None else None
        self.staging = self.out.with_name(f"{self.out.name}.staging-{os.getpid()}")
        self.lock = RunLock(self.out.with_name(f"{self.out.name}.lock"), str(self.out))
        self.recovered: list[str] = []  # what open() found and cleaned (for run.json)

    # ------------------------------------------------------------------ life cycle

    def open(self) -> OutputSet:
        self._check_target()
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.out.parent}: cannot create it: {exc.strerror}") from exc
        if not os.access(self.out.parent, os.W_OK | os.X_OK):
            raise OutputError(f"{self.out.parent}: not writable (the output set is staged here)")
        self.lock.acquire()
        try:
            if self.lock.stale:
                self.recovered.append(f"stale lock of pid {self.lock.stale}")
            self._recover()
            self._check_replaceable()
            self.staging.mkdir()
        except BaseException:
            self.lock.release()
            raise
        return self

    def commit(self) -> Path:
        """Publish the staging folder as ``out`` in one step; remove the previous set."""
        _fsync_tree(self.staging)
        if not self.out.exists():
            os.rename(self.staging, self.out)
        elif _exchange(self.staging, self.out):
            shutil.rmtree(self.staging, ignore_errors=True)  # now the old set
        else:  # no atomic exchange here: two renames, recovered by the next open()
            old = self.out.with_name(f"{self.out.name}.old-{os.getpid()}")
            os.rename(self.out, old)
            os.rename(self.staging, self.out)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(self.out.parent)
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def close(self) -> None:
        """Release the lock; a set never committed is removed first."""
        if self.staging.exists():
            self.abort()
        self.lock.release()

    def __enter__(self) -> Path:
        return self.open().staging

    def __exit__(self, exc_type: object, *_rest: object) -> None:
        try:
            if exc_type is None:
                self.commit()
            else:
                self.abort()
        finally:
            self.close()

    def spill_folder(self) -> Path:
        """A new folder beside ``out`` (not in the set) for what a run keeps on disk meanwhile:
        ``OUT.outcomes-<pid>-<n>``; its owner removes it, else the next run on ``out`` does."""
        return self.out.with_name(f"{self.out.name}.outcomes-{os.getpid()}-{next(_SPILLS)}")

    def final_path(self, path: str | os.PathLike[str]) -> Path:
        """Where a file written under :attr:`staging` lives after the commit."""
        p = Path(path)
        try:
            return self.out / p.relative_to(self.staging)
        except ValueError:
            return p

    # ------------------------------------------------------------------ checks

    def _check_target(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise OutputError(f"{self.out}: exists and is not a folder")
        if self.inputs is not None:
            real_out, real_in = self.out.resolve(), self.inputs.resolve()
            if real_out == real_in or real_out in real_in.parents:
                raise OutputError(
                    f"{self.out}: the output folder would replace the run folder {self.inputs}; "
                    "choose another --out"
                )

    def _check_replaceable(self) -> None:
        if not self.out.exists():
            return
        if not os.access(self.out, os.W_OK | os.X_OK):
            raise OutputError(f"{self.out}: not writable")
        if any(self.out.iterdir()) and not (self.out / MARKER).is_file():
            raise OutputError(
                f"{self.out}: not empty and not a cytogate output folder (no {MARKER}); a run "
                "replaces its output folder as a whole, so choose a new or empty one"
            )

    def _recover(self) -> None:
        """Undo what killed runs left (we hold the lock, so none of them is still running)."""
        parent, name = self.out.parent, self.out.name
        for old in sorted(parent.glob(f"{name}.old-*")):
            if not self.out.exists():
                os.rename(old, self.out)  # killed between the two fallback renames
                self.recovered.append(f"restored {old.name}")
            else:
                shutil.rmtree(old, ignore_errors=True)
                self.recovered.append(f"removed {old.name}")
        for staging in sorted(parent.glob(f"{name}.staging-*")):
            shutil.rmtree(staging, ignore_errors=True)
            self.recovered.append(f"removed {staging.name}")
        for spill in sorted(parent.glob(f"{name}.outcomes-*")):
            if not _alive(spill.name[len(name) + len(".outcomes-") :].split("-")[0]):
                shutil.rmtree(spill, ignore_errors=True)  # a live process may still read its own
                self.recovered.append(f"removed {spill.name}")


def _alive(pid: str) -> bool:
    """Whether process ``pid`` (a decimal string) exists; False for anything else."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False if this system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # pragma: no cover - not glibc/Linux
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_tree(folder: Path) -> None:
    """Flush every file of the set to disk before it is published (power loss, not just kill)."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
