"""Run independent per-sample jobs serially or in worker processes.

Per-file work (read → gate → quantify) is independent, so it scales out over processes on one
machine. Results come back in input order whatever order workers finish in, so outputs do not
depend on scheduling. Each job returns only small tables, never event arrays, so memory per
worker stays bounded by one sample group.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """Worker processes to use by default: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_jobs(
    func: Callable[..., R],
    items: Sequence[T],
    jobs: int,
    args: tuple[Any, ...] = (),
    on_done: Callable[[int, R], None] | None = None,
) -> list[R]:
    """``[func(item, *args) for item in items]``, on ``jobs`` processes, in input order.

    ``on_done(index, result)`` is called in the parent as each job finishes (for progress).
    """
    results: list[R | None] = [None] * len(items)
    if jobs <= 1 or len(items) <= 1:
        for i, item in enumerate(items):
            results[i] = func(item, *args)
            if on_done:
                on_done(i, results[i])  # type: ignore[arg-type]
        return results  # type: ignore[return-value]
    # At most 2 jobs in flight per worker keeps memory bounded for runs of thousands of files.
    with ProcessPoolExecutor(max_workers=min(jobs, len(items))) as pool:
        pending: dict[Future[R], int] = {}
        queue = iter(enumerate(items))
        for i, item in queue:
            pending[pool.submit(func, item, *args)] = i
            if len(pending) >= 2 * jobs:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                i = pending.pop(future)
                results[i] = future.result()
                if on_done:
                    on_done(i, results[i])  # type: ignore[arg-type]
                nxt = next(queue, None)
                if nxt is not None:
                    pending[pool.submit(func, nxt[1], *args)] = nxt[0]
    return results  # type: ignore[return-value]
