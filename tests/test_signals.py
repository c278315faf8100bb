"""Kill tests: a run stopped or killed at any stage leaves one complete set and no processes.

Each test runs the real CLI in a subprocess on a copy of part of the two-tube (SIMULATED) run42
study and stops it with a real signal: SIGTERM / SIGINT during gating (exit 143 / 130, workers
gone, no staging left, the previous set untouched), SIGKILL during table writing (the previous
set intact; the next run cleans up), SIGKILL of one worker (the run completes, exit 1, only that
draw failed, with the reason).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cytogate.study.batch import run_batch
from cytogate.study.lock import RunLock
from tests.run_copies import copy_run

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
RUN42: Path  # the two-tube SIMULATED study (tests/conftest.py two_tube_run42), set below


@pytest.fixture(scope="module", autouse=True)
def _two_tube_run42(two_tube_run42: Path) -> None:
    """This module's runs are two-tube draws; the bundled run42 is multi-tube."""
    global RUN42
    RUN42 = two_tube_run42


def small_run(tmp_path: Path, patients=("P02", "P03")) -> Path:
    return copy_run(RUN42, tmp_path / "run", patients)


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(out: Path) -> list[str]:
    names = [p.name for p in out.parent.iterdir() if p.name.startswith(f"{out.name}.")]
    tmps = [str(p) for p in out.parent.rglob("*.tmp")]
    return sorted(names + tmps)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cytogate", *args]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for_line(proc: subprocess.Popen, fragment: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if fragment in line:
            return line
    raise AssertionError(f"no {fragment!r} on stderr: {''.join(seen)[-2000:]}")


@pytest.fixture(scope="module")
def old_set(tmp_path_factory):
    """A run folder and a complete previous output set of it."""
    tmp = tmp_path_factory.mktemp("signals")
    run = small_run(tmp, patients=("P02",))
    out = tmp / "out"
    done = subprocess.run(
        cli("batch", str(run), "--out", str(out), "--jobs", "2", "--no-plots", "-q"), env=ENV
    )
    assert done.returncode == 0
    return run, out


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stop_signal_during_gating(old_set, sig, status):
    run, out = old_set
    before = digest(out)
    proc = subprocess.Popen(
        cli("batch", str(run), "--out", str(out), "--jobs", "2", "--no-plots"),
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_line(proc, "[1/")  # gating is under way
        workers = _children(proc.pid)
        assert len(workers) == 2
        proc.send_signal(sig)
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == status
    finally:
        proc.kill()
    assert "Traceback" not in rest
    assert (f"stopped by {sig.name}" if sig == signal.SIGTERM else "interrupted (SIGINT)") in rest
    time.sleep(0.2)
    assert not [p for p in workers if _alive(p)]
    assert digest(out) == before and leftovers(out) == []


def test_sigkill_during_table_writing_keeps_the_old_set(old_set):
    run, out = old_set
    before = digest(out)
    script = textwrap.dedent(
        f"""
        import os, signal
        import cytogate.study.batch as batch
        real, calls = batch.atomic_write, []

        def dying(path, write, **kw):
            calls.append(path)
            if len(calls) == 3:  # two tables written, the third half-way
                os.kill(os.getpid(), signal.SIGKILL)
            return real(path, write, **kw)

        batch.atomic_write = dying
        batch.run_batch({str(run)!r}, out={str(out)!r}, jobs=2)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env=ENV)
    assert proc.returncode == -signal.SIGKILL
    assert digest(out) == before  # the old set, whole
    assert any(".staging-" in name for name in leftovers(out))  # the dead run's staging
    again = subprocess.run(
        cli("batch", str(run), "--out", str(out), "--jobs", "2", "--no-plots", "-q"), env=ENV
    )
    assert again.returncode == 0 and leftovers(out) == []
    assert {k: v for k, v in digest(out).items() if k.endswith(".csv")} == {
        k: v for k, v in before.items() if k.endswith(".csv")
    }


def test_second_run_on_a_busy_output_folder_exits_2_in_one_line(old_set):
    run, out = old_set
    before = digest(out)
    with RunLock(out.with_name("out.lock"), str(out)):
        proc = subprocess.run(
            cli("batch", str(run), "--out", str(out), "--no-plots", "-q"),
            env=ENV,
            capture_output=True,
            text=True,
        )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "another cytogate run (pid" in lines[0]
    assert digest(out) == before


def test_a_killed_worker_loses_only_its_draw(tmp_path, monkeypatch):
    run = small_run(tmp_path, patients=("P02",))
    parent = os.getpid()
    import cytogate.io.fcs as fcs

    real = fcs.read_fcs

    def oom(path, *args, **kwargs):  # the OOM killer, every time this file is read in a worker
        if os.getpid() != parent and Path(path).name == "P02_day3_stained.fcs":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(fcs, "read_fcs", oom)  # workers are forked: they see the patch
    result = run_batch(run, jobs=2, out=tmp_path / "out")
    failed = result.failed
    assert result.exit_status == 1
    assert sorted(failed["file"]) == ["P02_day3_isotype.fcs", "P02_day3_stained.fcs"]
    assert set(failed["error"]) == {"worker process killed by SIGKILL (out of memory?)"}
    assert (result.samples["status"] == "ok").sum() == len(result.samples) - 2
    assert (tmp_path / "out" / "samples.csv").is_file()


def test_plot_workers_lost_twice_still_publish_the_tables(tmp_path, monkeypatch):
    import json

    import cytogate.viz.report as report
    from cytogate.study.executors import JobFailed

    def lost(*_args, **_kwargs):
        raise JobFailed("job 0: worker process killed by SIGKILL (out of memory?)")

    monkeypatch.setattr(report, "write_plots_and_report", lost)
    run = small_run(tmp_path, patients=("P02",))
    from cytogate.pipeline import run_batch as run_batch_with_plots

    result = run_batch_with_plots(run, jobs=1, out=tmp_path / "out", plots=True)
    assert result.exit_status == 0 and (tmp_path / "out" / "samples.csv").is_file()
    plots = json.loads((tmp_path / "out" / "run.json").read_text())["plots"]
    assert "SIGKILL" in plots["errors"][0]["error"] and plots["report"] is None
