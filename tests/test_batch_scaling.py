"""A batch over many files: the parent holds a few outcomes at a time, jobs go largest first,
workers import once and run one BLAS thread, and the outcomes on disk never enter the set.

Runs on part of the two-tube SIMULATED run42 study (tests/conftest.py ``two_tube_run42``).
Nothing here asserts a time: what is checked are counts, orders and files.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cytogate.study import timeline
from cytogate.study.batch import run_batch
from cytogate.study.executors import run_jobs
from cytogate.study.outcome import FileOutcome
from cytogate.study.output_set import OutputSet
from tests.run_copies import copy_run

RUN42: Path


@pytest.fixture(scope="module", autouse=True)
def _two_tube_run42(two_tube_run42: Path) -> None:
    global RUN42
    RUN42 = two_tube_run42


def small_run(tmp_path: Path, patients: tuple[str, ...]) -> Path:
    return copy_run(RUN42, tmp_path / "run", patients)


def live_outcomes() -> int:
    return sum(isinstance(o, FileOutcome) for o in gc.get_objects())


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_parent_holds_a_few_outcomes_at_a_time_and_reads_them_back(tmp_path, jobs):
    run = small_run(tmp_path, ("P01", "P02", "P03"))
    n_files = len(pd.read_csv(run / "manifest.csv"))
    before = live_outcomes()
    seen: list[int] = []

    def progress(_i: int, _total: int, _output: object) -> None:
        seen.append(live_outcomes() - before)

    out = tmp_path / "out"
    result = run_batch(run, jobs=jobs, out=out, progress=progress)
    assert len(seen) == n_files // 2  # one call per draw
    # the draw just finished (2 files) and, serially, the one being gated: never the run's
    assert max(seen) <= 4 < n_files
    spills = [p for p in tmp_path.iterdir() if p.name.startswith("out.outcomes-")]
    assert len(spills) == 1 and len(list(spills[0].iterdir())) == n_files // 2
    assert not [p for p in out.rglob("*") if "outcome" in p.name or p.suffix == ".pkl"]
    # read back in the order of samples.csv, with what the tables say about each file
    outcomes = list(result.outcomes)
    assert [o.name for o in outcomes] == list(result.samples["file"])
    pops = result.populations.set_index(["file", "population"])["count"]
    for o in outcomes:
        assert o.ok and o.counts["blasts"] == pops[(o.name, "blasts")]
    again = [(o.name, dict(o.counts)) for o in reversed(result.outcomes)]  # read again
    assert again[::-1] == [(o.name, dict(o.counts)) for o in outcomes]
    assert result.outcomes[1:3] == tuple(outcomes[1:3]) and len(result.outcomes) == n_files
    del result, outcomes
    gc.collect()
    assert not spills[0].exists()  # removed with the last sequence that could read it


def test_a_run_that_fails_removes_its_outcomes_and_those_of_dead_runs(tmp_path):
    run = small_run(tmp_path, ("P02",))
    dead = tmp_path / "out.outcomes-999999999-0"  # a killed run's (no such process)
    dead.mkdir()
    (dead / "0.pkl").write_bytes(b"")
    mine = tmp_path / f"out.outcomes-{os.getpid()}-999"  # a live process's: still in use
    mine.mkdir()

    def broken(i: int, _total: int, _output: object) -> None:
        if i >= 0:
            raise RuntimeError("the caller's progress callback broke")

    with pytest.raises(RuntimeError, match="progress callback broke"):
        run_batch(run, jobs=2, out=tmp_path / "out", progress=broken)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out."))
    assert left == [mine.name]  # the dead run's removed, ours too, the live one kept


def test_recovery_keeps_outcome_folders_of_live_processes(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / "out.outcomes-999999999-3"
    live = tmp_path / f"out.outcomes-{os.getppid()}-0"
    for folder in (dead, live):
        folder.mkdir()
    output = OutputSet(out).open()
    try:
        assert not dead.exists() and live.exists()
        assert "removed out.outcomes-999999999-3" in output.recovered
        assert output.spill_folder().parent == tmp_path
    finally:
        output.close()


def record_start(item: tuple[int, str]) -> int:
    x, log = item
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()} {x}\n")
    time.sleep(0.05)
    return x


def test_jobs_are_handed_out_largest_first_and_come_back_in_input_order(tmp_path):
    log = tmp_path / "starts.txt"
    sizes = [3, 50, 7, 40, 1, 20]
    items = [(x, str(log)) for x in range(len(sizes))]
    out = run_jobs(record_start, items, 2, cost=lambda item: sizes[item[0]])
    assert out == list(range(len(sizes)))  # back in input order
    starts = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    assert sorted(job for _, job in starts) == list(range(len(sizes)))
    # each worker takes the largest job left when it asks: its own jobs start in decreasing
    # size (which worker gets which depends on who is free first, a race under load)
    for pid in {pid for pid, _ in starts}:
        mine = [sizes[job] for p, job in starts if p == pid]
        assert mine == sorted(mine, reverse=True)
    assert sizes[starts[0][1]] in (50, 40)  # the very first start is one of the two largest


def test_keep_holds_only_what_the_caller_keeps_of_each_result():
    seen = []
    out = run_jobs(double_list, [1, 2, 3], 2, on_done=lambda i, r: seen.append(len(r)), keep=len)
    assert out == [2, 4, 6] and sorted(seen) == [2, 4, 6]


def double_list(x: int) -> list[int]:
    return [x] * (2 * x)


def thread_pools(_x: int) -> list[int]:
    from threadpoolctl import threadpool_info

    return [p["num_threads"] for p in threadpool_info()]


def test_workers_run_one_native_thread_with_the_parents_preloaded_libraries():
    # preloaded here, before the fork (this process's own pools keep their threads)
    results = run_jobs(thread_pools, [0, 1, 2, 3], 2, preload=("sklearn.mixture", "scipy.linalg"))
    for threads in results:
        assert threads and set(threads) == {1}


PRELOAD_SCRIPT = """
import sys
from cytogate.study.executors import run_jobs

def imported(_x):
    return "sklearn.mixture" in sys.modules  # before this job imports anything

preload = ("sklearn.mixture",) if sys.argv[1] == "yes" else ()
print(run_jobs(imported, [0, 1], 2, preload=preload) == [True, True])
"""


@pytest.mark.parametrize("preload", ["yes", "no"])
def test_workers_inherit_what_the_parent_preloaded(preload):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, "-c", PRELOAD_SCRIPT, preload],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("True" if preload == "yes" else "False")


def test_the_timeline_records_each_task_on_its_worker(tmp_path, monkeypatch):
    path = tmp_path / "timeline.jsonl"
    monkeypatch.setenv(timeline.ENV, str(path))
    run = small_run(tmp_path, ("P02",))
    result = run_batch(run, jobs=2, out=tmp_path / "out")
    marks = timeline.read(path)
    events = [m["event"] for m in marks if m["who"] == "parent"]
    for event in ("run_batch", "design read", "workers forked", "all jobs done", "tables written"):
        assert event in events
    starts = [m for m in marks if m["who"] == "worker" and m["event"] == "task start"]
    assert sorted(m["task"] for m in starts) == list(range(len(result.samples) // 2))
    assert len({m["pid"] for m in starts}) == 2 and os.getpid() not in {m["pid"] for m in starts}
    run_json = json.loads((tmp_path / "out" / "run.json").read_text())
    assert path.name not in json.dumps(run_json)  # nothing of it reaches the output set
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [
            *(f"{t}.csv" for t in ("samples", "populations", "markers", "timecourse", "stats")),
            "run.json",
        ]
    )
