"""A batch's timeline, for finding serial time: what the parent and each worker did, when.

Off unless the environment variable ``CYTOGATE_TIMELINE`` names a file. Then every
:func:`mark` appends one JSON line ``{"t": epoch s, "pid": …, "who": …, "event": …,
"rss_mb": …}`` to it; the file is opened with ``O_APPEND`` and each line written with one
``write``, so the parent and its workers share it without a lock. ``benchmarks/bench_batch.py``
reads it back and prints where the wall time of ``--jobs 1`` and ``--jobs 2`` goes. Nothing of
it reaches the output set: the tables and run.json are the same with and without it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

ENV = "CYTOGATE_TIMELINE"


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def mark(event: str, who: str = "parent", *, t: float | None = None, **fields: Any) -> None:
    """Append ``event`` at ``t`` (default now) to the timeline file, if one is set."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = {
        "t": time.time() if t is None else t,
        "pid": os.getpid(),
        "who": who,
        "event": event,
        "rss_mb": _rss_mb(),
        **fields,
    }
    data = (json.dumps(line, default=str) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError:
        return  # a diagnostic never stops a run
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def process_start_time() -> float | None:
    """When this process started (epoch seconds; Linux ``/proc``), before the interpreter ran."""
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def _rss_mb() -> float | None:
    """Resident set size now (``/proc/self/statm``), in MB."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The marks of a timeline file, in time order."""
    with open(path, encoding="utf-8") as fh:
        marks = [json.loads(line) for line in fh if line.strip()]
    return sorted(marks, key=lambda m: m["t"])
