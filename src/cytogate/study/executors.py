"""Run independent per-sample jobs serially, in worker processes, or on a Dask cluster.

Per-file work (read → gate → quantify) is independent, so it scales out. Results come back in
input order whatever order workers finish in, so outputs do not depend on scheduling; each job
returns only small tables, never event arrays, so memory stays bounded by one job per worker.

Local workers are our own processes, not a ``ProcessPoolExecutor``, because a run must survive a
worker killed by the OOM killer (the pool would break and lose every job in flight) and must
know which job that worker held: that job alone is retried once, then reported failed with the
reason. Each worker receives the function and the shared arguments (template, config) once at
start, holds native thread pools to one thread, dies with its parent (``PR_SET_PDEATHSIG``),
ignores Ctrl-C (the parent stops it), and is killed when its job passes the time limit.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

from cytogate.study.timeline import mark

T = TypeVar("T")
R = TypeVar("R")

#: environment that holds BLAS/OpenMP to one thread in each worker (and in its children)
ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
_PR_SET_PDEATHSIG = 1
_STOP_GRACE_S = 2.0


class JobFailed(RuntimeError):
    """A job could not complete (its worker died or it ran out of time) and no fallback exists."""


@dataclass(frozen=True)
class Failure(Generic[T]):
    """Why a job has no result: handed to ``on_failure(item, reason)``."""

    item: T
    reason: str


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
    *,
    on_failure: Callable[[T, str], R] | None = None,
    time_limit: float | Callable[[T], float] | None = None,
    retries: int = 1,
    client: Any = None,
    warm: Sequence[str] = (),
    preload: Sequence[str] = (),
    cost: Callable[[T], float] | None = None,
    keep: Callable[[R], Any] | None = None,
) -> list[Any]:
    """``[func(item, *args) for item in items]``, on ``jobs`` processes, in input order.

    ``on_done(index, result)`` is called in the parent as each job finishes (for progress);
    ``keep(result)`` is what of it the returned list holds (default: all of it), so a caller
    can put a large part of each result elsewhere as it arrives instead of holding every one.
    A job whose worker dies is retried ``retries`` times; a job still without a result (worker
    died again, or it ran past ``time_limit`` seconds — a number or ``item -> seconds``) gets
    ``on_failure(item, reason)`` as its result, or raises :class:`JobFailed` without one.
    An exception raised by ``func`` itself propagates. With ``client`` (a
    ``dask.distributed.Client``) the jobs run on that cluster instead (see :func:`run_on_dask`).

    ``warm``: modules the caller needs once the jobs are done (e.g. ``scipy.stats`` for the
    statistics), imported in a thread of this process while the jobs run, so the import is
    not serial time after them. Local workers are forked before the thread starts, and a
    replacement worker only once it has finished (forking mid-import would hand the child a
    half-imported module).

    ``preload``: modules every local worker needs, imported here before the workers are forked,
    so that they inherit them and the import is paid once, not once per worker (two workers
    importing scikit-learn cost 1.5 s of CPU each on the machine they share with the parent).
    ``cost(item)``: jobs are handed out largest first (results still come back in input
    order), so that no worker is left with a long job while the other has finished.
    """
    hold = keep or _same
    if client is not None:
        import_in_background(warm if len(items) > 1 else ())
        return run_on_dask(client, func, items, args, on_done, on_failure, retries, cost, hold)
    if not items:
        return []
    if (jobs <= 1 or len(items) <= 1) and time_limit is None:
        import_in_background(warm if len(items) > 1 else ())
        results = []
        for i, item in enumerate(items):
            mark("task start", task=i)
            cpu = time.process_time()
            value = func(item, *args)
            mark("task end", task=i, cpu_s=time.process_time() - cpu)
            if on_done:
                on_done(i, value)
            results.append(hold(value))
            del value
        return results
    limit = time_limit if callable(time_limit) or time_limit is None else _const(time_limit)
    for name in preload:
        importlib.import_module(name)
    mark("preloaded", modules=len(preload))
    pool = _Pool(func, args, min(max(1, jobs), len(items)))
    mark("workers forked", workers=len(pool.workers))
    pool.warming = import_in_background(warm if len(items) > 1 else ())
    try:
        return pool.run(items, on_done, on_failure, limit, retries, _order(items, cost), hold)
    finally:
        pool.stop()


def _same(value: Any) -> Any:
    return value


def _order(items: Sequence[Any], cost: Callable[[Any], float] | None) -> list[int]:
    """Indices of ``items``, largest ``cost`` first (ties in input order)."""
    if cost is None:
        return list(range(len(items)))
    costs = [cost(item) for item in items]
    return sorted(range(len(items)), key=lambda i: -costs[i])


def _const(seconds: float) -> Callable[[Any], float]:
    return lambda _item: seconds


def import_in_background(modules: Sequence[str]) -> threading.Thread | None:
    """Import ``modules`` in a daemon thread (an import that fails is left for the caller's own
    import to report); None when there is nothing to import."""
    missing = [m for m in modules if m not in sys.modules]
    if not missing:
        return None

    def run() -> None:
        for name in missing:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    thread = threading.Thread(target=run, name="cytogate-warm-imports", daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- local workers


def _worker_main(conn: Connection, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A worker's life: set up once, then run jobs until told to stop or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    limit_native_threads()
    mark("worker ready", "worker")
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        index, item = msg
        mark("task start", "worker", task=index)
        cpu = time.process_time()
        try:
            reply = (index, True, func(item, *args))
        except BaseException as exc:
            reply = (index, False, exc)
        mark("task end", "worker", task=index, cpu_s=time.process_time() - cpu)
        try:
            conn.send(reply)
        except Exception as exc:  # the result or the exception does not pickle
            conn.send((index, False, RuntimeError(f"{type(exc).__name__}: {exc}")))


def limit_native_threads() -> None:
    """Hold BLAS/OpenMP to one thread in this process: one worker = one core.

    The environment covers libraries loaded later and child processes; threadpoolctl the ones
    already loaded (numpy's OpenBLAS, loaded before the fork, would otherwise start a thread per
    core in every worker and its spinning threads compete with the other workers).
    """
    os.environ.update(ONE_THREAD_ENV)
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)


def hold_native_threads_from_the_start() -> None:
    """Set :data:`ONE_THREAD_ENV` (values the user set are kept) in a process that has not
    loaded numpy yet, so every BLAS/OpenMP pool starts with one thread here and in the workers
    forked from it (the CLI calls this first; a library caller has usually loaded numpy)."""
    for name, value in ONE_THREAD_ENV.items():
        os.environ.setdefault(name, value)


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, even by SIGKILL; elsewhere: nothing."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


class _Worker:
    def __init__(self, ctx: Any, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, func, args), daemon=True)
        self.proc.start()
        child.close()
        self.task: int | None = None
        self.deadline = float("inf")

    def give(self, index: int, item: Any, seconds: float | None) -> None:
        self.task = index
        self.deadline = time.monotonic() + seconds if seconds else float("inf")
        self.conn.send((index, item))


def _death(proc: Any) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker process killed by {name}{hint}"
    return f"worker process exited with status {code}"


class _Pool:
    """Worker processes, one job each at a time, replaced when they die."""

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], n: int) -> None:
        self.ctx = multiprocessing.get_context()
        self.func, self.args = func, args
        self.workers: list[_Worker] = []
        self.warming: threading.Thread | None = None  # see run_jobs(warm=...)
        for _ in range(n):
            self.workers.append(_Worker(self.ctx, func, args))

    def run(
        self,
        items: Sequence[Any],
        on_done: Callable[[int, Any], None] | None,
        on_failure: Callable[[Any, str], Any] | None,
        limit: Callable[[Any], float] | None,
        retries: int,
        order: Sequence[int] | None = None,
        keep: Callable[[Any], Any] = _same,
    ) -> list[Any]:
        results: list[Any] = [None] * len(items)
        queue: deque[int] = deque(range(len(items)) if order is None else order)
        attempts = [0] * len(items)
        left = len(items)

        def finish(i: int, value: Any) -> None:
            nonlocal left
            left -= 1
            if on_done:
                on_done(i, value)
            results[i] = keep(value)

        def lost(i: int, reason: str, retry: bool) -> None:
            attempts[i] += 1
            if retry and attempts[i] <= retries:
                queue.appendleft(i)
            elif on_failure is None:
                raise JobFailed(f"job {i}: {reason}")
            else:
                finish(i, on_failure(items[i], reason))

        while left:
            for w in self.workers:
                if w.task is None and queue:
                    i = queue.popleft()
                    mark("task sent", task=i)
                    w.give(i, items[i], limit(items[i]) if limit else None)
            busy = [w for w in self.workers if w.task is not None]
            deadline = min(w.deadline for w in busy)
            timeout = None if deadline == float("inf") else max(0.0, deadline - time.monotonic())
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout))
            for w in busy:
                i = w.task
                assert i is not None
                if w.conn in ready or w.conn.poll():
                    try:
                        index, ok, value = w.conn.recv()
                    except (EOFError, OSError):
                        w.proc.join()
                        self._replace(w)
                        lost(i, _death(w.proc), retry=True)
                        continue
                    w.task = None
                    if not ok:
                        raise value
                    mark("result received", task=index)
                    finish(index, value)
                elif w.proc.sentinel in ready or not w.proc.is_alive():
                    w.proc.join()
                    self._replace(w)
                    lost(i, _death(w.proc), retry=True)
                elif time.monotonic() >= w.deadline:
                    seconds = limit(items[i]) if limit else 0.0
                    self._kill(w)
                    self._replace(w)
                    lost(i, f"exceeded the time limit of {seconds:g} s", retry=False)
        return results

    def _replace(self, dead: _Worker) -> None:
        if self.warming is not None:  # never fork while a thread is importing
            self.warming.join()
        self.workers[self.workers.index(dead)] = _Worker(self.ctx, self.func, self.args)
        dead.conn.close()

    @staticmethod
    def _kill(w: _Worker) -> None:
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join()

    def stop(self) -> None:
        """Stop every worker: idle ones are asked, busy ones terminated, stragglers killed."""
        for w in self.workers:
            with contextlib.suppress(OSError, ValueError):
                if w.task is None:
                    w.conn.send(None)
                else:
                    w.proc.terminate()
        end = time.monotonic() + _STOP_GRACE_S
        for w in self.workers:
            w.proc.join(max(0.0, end - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
            w.conn.close()


# --------------------------------------------------------------------------- Dask


def run_on_dask(
    client: Any,
    func: Callable[..., R],
    items: Sequence[T],
    args: tuple[Any, ...] = (),
    on_done: Callable[[int, R], None] | None = None,
    on_failure: Callable[[T, str], R] | None = None,
    retries: int = 1,
    cost: Callable[[T], float] | None = None,
    keep: Callable[[R], Any] = _same,
) -> list[Any]:
    """The same contract as :func:`run_jobs`, on a ``dask.distributed`` cluster.

    The shared arguments are scattered to every worker once; each job is one task with
    ``retries`` (a worker lost mid-task has its task rescheduled by the scheduler, up to its
    ``distributed.scheduler.allowed-failures``); a task that still fails — ``KilledWorker`` or
    an exception — gets ``on_failure(item, reason)``. Workers read input files by path, so
    they need the same shared storage as the client.
    """
    from distributed import as_completed

    if not items:
        return []
    client.run(limit_native_threads)  # on every worker now connected
    shared = client.scatter(list(args), broadcast=True, hash=False) if args else []
    # with a cost, larger jobs first (a higher priority runs earlier); else in input order
    rank = {i: len(items) - r for r, i in enumerate(_order(items, cost))} if cost else {}
    futures: dict[int, Any] = {
        i: client.submit(func, item, *shared, retries=retries, pure=False, priority=rank.get(i, 0))
        for i, item in enumerate(items)
    }
    index = {f.key: i for i, f in futures.items()}
    results: list[Any] = [None] * len(items)
    try:
        for future in as_completed(list(futures.values())):
            i = index[future.key]
            try:
                # not future.status: a result held by a worker that dies before it is fetched
                # turns "lost" and is recomputed by the scheduler; result() waits for that
                value = future.result()
            except Exception as exc:  # the task's own error, or KilledWorker
                reason = f"on the Dask cluster: {type(exc).__name__}: {exc}"
                if on_failure is None:
                    raise JobFailed(f"job {i}: {reason}") from exc
                value = on_failure(items[i], reason)
            del futures[i]  # released: the cluster need not hold the result any longer
            if on_done:
                on_done(i, value)
            results[i] = keep(value)
            del value, future
    finally:
        client.cancel([f for f in futures.values() if not f.done()])
    return results
