"""Local worker processes: order, retry of a killed worker's job, time limit, clean ends.

Each job function is module level and deterministic; a "crash" is a real SIGKILL of the worker
process (what the OOM killer sends), made once or always through a marker file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cytogate.study.executors import JobFailed, run_jobs


def double(x: int) -> int:
    return 2 * x


def pid_of(_x: int) -> int:
    time.sleep(0.05)
    return os.getpid()


def kill_once(item: tuple[int, str]) -> int:
    """Kill this worker the first time ``item`` runs (a marker file remembers)."""
    x, folder = item
    marker = Path(folder) / f"{x}.seen"
    if x == 3 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def kill_always(x: int) -> int:
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def sleep_if(x: int) -> int:
    if x == 1:
        time.sleep(60)
    return x


def boom(x: int) -> int:
    if x == 1:
        raise ValueError("bad item 1")
    return x


def thread_limits(_x: int) -> tuple[str | None, list[int]]:
    # libraries loaded only now, after the worker set its limits (scipy's and scikit-learn's
    # own OpenBLAS / OpenMP), must start with one thread as well
    import scipy.linalg  # noqa: F401
    import sklearn.mixture  # noqa: F401
    from threadpoolctl import threadpool_info

    return os.environ.get("OPENBLAS_NUM_THREADS"), [p["num_threads"] for p in threadpool_info()]


def test_results_come_back_in_input_order_on_two_workers():
    done = []
    out = run_jobs(double, list(range(20)), 2, on_done=lambda i, r: done.append(i))
    assert out == [2 * x for x in range(20)]
    assert sorted(done) == list(range(20))


def test_workers_start_once_and_are_reused():
    pids = run_jobs(pid_of, list(range(12)), 2)
    assert len(set(pids)) == 2 and os.getpid() not in pids


def test_killed_worker_loses_only_its_job_which_is_retried(tmp_path):
    items = [(x, str(tmp_path)) for x in range(8)]
    assert run_jobs(kill_once, items, 2) == list(range(8))
    assert (tmp_path / "3.seen").exists()  # it really was killed once


def test_job_killing_its_worker_twice_is_reported_failed_and_the_rest_complete():
    failures = []

    def failed(item, reason):
        failures.append((item, reason))
        return -1

    out = run_jobs(kill_always, list(range(6)), 2, on_failure=failed)
    assert out == [0, 1, -1, 3, 4, 5]
    assert failures == [(2, "worker process killed by SIGKILL (out of memory?)")]
    with pytest.raises(JobFailed, match="SIGKILL"):
        run_jobs(kill_always, list(range(4)), 2)


def test_time_limit_turns_a_hung_job_into_a_failed_one():
    start = time.monotonic()
    out = run_jobs(sleep_if, [0, 1, 2], 2, time_limit=1.0, on_failure=lambda i, why: why)
    assert time.monotonic() - start < 20
    assert out[0] == 0 and out[2] == 2 and "time limit of 1 s" in out[1]
    # jobs=1 with a time limit still runs in a worker, so it can be stopped
    assert "time limit" in run_jobs(sleep_if, [1], 1, time_limit=0.5, on_failure=lambda i, w: w)[0]


def test_exception_in_a_job_propagates():
    with pytest.raises(ValueError, match="bad item 1"):
        run_jobs(boom, [0, 1, 2], 2)


def test_workers_hold_native_thread_pools_to_one_thread():
    env, threads = run_jobs(thread_limits, [0, 1], 2)[0]
    assert env == "1" and threads and all(n == 1 for n in threads)


def test_warm_imports_run_in_the_parent_while_workers_work(tmp_path):
    """``warm`` modules are imported in the parent (in a thread) during the jobs, never forked
    into a worker half-imported; a worker replaced meanwhile still runs its job."""
    sys.modules.pop("colorsys", None)
    items = [(x, str(tmp_path)) for x in range(6)]
    assert run_jobs(kill_once, items, 2, warm=("colorsys",)) == list(range(6))
    deadline = time.monotonic() + 10
    while "colorsys" not in sys.modules and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "colorsys" in sys.modules
    sys.modules.pop("colorsys", None)
    assert run_jobs(double, [1, 2], 1, warm=("colorsys",)) == [2, 4]  # in-process path too
    from cytogate.study.executors import import_in_background

    thread = import_in_background(["colorsys", "no_such_module_here"])  # a failure is silent
    assert thread is not None
    thread.join(10)
    assert "colorsys" in sys.modules and "no_such_module_here" not in sys.modules
    assert import_in_background(["colorsys"]) is None  # already there: no thread


def test_workers_die_with_a_parent_killed_by_sigkill(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from cytogate.study.executors import run_jobs

        def work(x):
            Path({str(tmp_path)!r}, f"{{os.getpid()}}.pid").touch()
            time.sleep(120)

        run_jobs(work, [0, 1], 2)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 30
        while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
        assert len(pids) == 2
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
    finally:
        proc.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_cli_starts_blas_with_one_thread_and_keeps_a_users_setting(monkeypatch):
    """``cytogate`` sets the one-thread variables before numpy loads, so numpy's (and every
    later) BLAS pool starts with one thread in the CLI process and its forked workers."""
    script = textwrap.dedent(
        """
        import os, sys
        sys.argv = ["cytogate", "--help"]
        from cytogate.cli import main
        try:
            main()
        except SystemExit:
            pass
        import numpy  # noqa: F401
        from threadpoolctl import threadpool_info
        most = max(p["num_threads"] for p in threadpool_info())
        print("THREADS", most, os.environ["OMP_NUM_THREADS"])
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "THREADS 1 1" in out
    env["OMP_NUM_THREADS"] = "3"  # a user's own setting is kept
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith(" 3")
