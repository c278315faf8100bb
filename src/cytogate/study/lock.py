"""One run per output folder: an advisory lock file beside it, holding the owner's pid.

``flock`` rather than "the file exists": the kernel drops the lock when its holder dies, even by
SIGKILL, so a stale lock file from a killed run never blocks the next one and nobody has to
guess from a pid whether its owner is still alive (pids are reused). The pid in the file is
only there to name the holder in the refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from cytogate.errors import CytogateError

_HELD: set[int] = set()  # lock fds this process holds


def _close_in_child() -> None:
    """A forked worker must not keep the run's lock alive after the run (flock: the lock lives
    until every copy of the fd is closed; closing the child's copy leaves the parent's lock)."""
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class OutputError(CytogateError):
    """The output folder cannot be used (busy, unwritable, or not cytogate's to replace)."""


class RunLock:
    """``with RunLock(path, what):`` — refuses with :class:`OutputError` if another holds it."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self.fd: int | None = None
        self.stale: str | None = None  # the previous holder's line, when it died holding it

    def acquire(self) -> RunLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise OutputError(
                    f"{self.path}: cannot create the lock file: {exc.strerror}"
                ) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OutputError(
                    f"{self.what}: another cytogate run (pid {holder}) is writing it; wait for "
                    "it to finish or choose another --out"
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed it between our open and our lock: retry
                os.close(fd)
                continue
            previous = os.read(fd, 200).decode(errors="replace").strip()
            self.stale = previous or None
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode())
            self.fd = fd
            _HELD.add(fd)
            return self

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # before unlocking, so a waiter re-checks and retries
        _HELD.discard(self.fd)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()
