"""Atomic file writes: readers see the old file or the complete new one, never a partial one.

Every output cytogate writes (FCS files, tables, run.json, figures, the report) goes through
here: written to a hidden temporary file in the same folder, then renamed over the final name,
so a crash never leaves a half-written file under a final name. The temporary file is created
with mode 0o666 so the umask applies as for any new file (``tempfile.mkstemp`` would make it
0o600, unreadable to the rest of a core facility's group).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[str], object], make_parents: bool = False
) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``."""
    target = Path(path)
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(str(tmp))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(path: str | os.PathLike[str], chunks: Sequence[bytes]) -> Path:
    """Write ``chunks`` to ``path`` atomically, flushed to disk before the rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write)
