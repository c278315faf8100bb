"""Output sets: published whole or not at all, one run per folder, leftovers of crashes undone."""

from __future__ import annotations

import os
import shutil

import pytest

from cytogate.study import output_set
from cytogate.study.lock import OutputError, RunLock
from cytogate.study.output_set import OutputSet


def _write_set(folder, tag, extra=()):
    for name in ("samples.csv", "populations.csv", "run.json", *extra):
        (folder / name).write_text(f"{tag} {name}\n")


def _contents(folder):
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def _siblings(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def test_new_set_replaces_the_old_one_as_a_whole(tmp_path):
    out = tmp_path / "out"
    with OutputSet(out) as staging:
        _write_set(staging, "old", extra=("report.html",))
    with OutputSet(out) as staging:  # the new run draws no report
        _write_set(staging, "new")
    assert _contents(out) == {
        n: f"new {n}\n" for n in ("populations.csv", "run.json", "samples.csv")
    }
    assert _siblings(out) == []  # no lock, no staging, no old set left


def test_a_failed_run_leaves_the_old_set_and_removes_its_staging(tmp_path):
    out = tmp_path / "out"
    with OutputSet(out) as staging:
        _write_set(staging, "old")
    before = _contents(out)
    with pytest.raises(KeyboardInterrupt), OutputSet(out) as staging:
        _write_set(staging, "new")
        raise KeyboardInterrupt
    assert _contents(out) == before and _siblings(out) == []


def test_second_run_on_the_same_folder_is_refused_while_the_first_holds_it(tmp_path):
    out = tmp_path / "out"
    first = OutputSet(out).open()
    try:
        with pytest.raises(OutputError, match=r"another cytogate run \(pid \d+"):
            OutputSet(out).open()
    finally:
        first.abort()
        first.close()
    OutputSet(out).open().close()  # free again


def test_stale_lock_of_a_dead_run_does_not_block(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "out.lock").write_text("999999 on elsewhere\n")  # left by a SIGKILLed run
    (tmp_path / "out.staging-999999").mkdir()  # and its half-written staging
    (tmp_path / "out.staging-999999" / ".samples.csv.1.tmp").write_text("half")
    oset = OutputSet(out).open()
    assert "stale lock of pid 999999 on elsewhere" in oset.recovered
    assert "removed out.staging-999999" in oset.recovered
    oset.commit()
    oset.close()
    assert _siblings(out) == []


def test_crash_after_exchange_before_cleanup_leaves_the_new_set(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with OutputSet(out) as staging:
        _write_set(staging, "old")
    oset = OutputSet(out).open()
    _write_set(oset.staging, "new")
    monkeypatch.setattr(output_set.shutil, "rmtree", lambda *a, **k: None)  # "killed" here
    oset.commit()
    oset.close()
    monkeypatch.undo()
    assert _contents(out)["samples.csv"] == "new samples.csv\n"
    assert (tmp_path / oset.staging.name / "samples.csv").read_text() == "old samples.csv\n"
    OutputSet(out).open().close()  # the next run removes the leftover old set
    assert _siblings(out) == []


def test_fallback_renames_crash_between_them_is_recovered_to_the_old_set(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with OutputSet(out) as staging:
        _write_set(staging, "old")
    monkeypatch.setattr(output_set, "_exchange", lambda a, b: False)  # a filesystem without it
    oset = OutputSet(out).open()
    _write_set(oset.staging, "new")
    real_rename, calls = os.rename, []

    def rename(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between out -> old and staging -> out
        real_rename(a, b)

    monkeypatch.setattr(output_set.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        oset.commit()
    oset.close()
    monkeypatch.setattr(output_set.os, "rename", real_rename)
    assert not out.exists()
    again = OutputSet(out).open()  # puts the old set back before anything else
    assert any(r.startswith("restored out.old-") for r in again.recovered)
    assert _contents(out)["samples.csv"] == "old samples.csv\n"
    _write_set(again.staging, "newer")
    again.commit()  # and the fallback path itself publishes a set
    again.close()
    assert _contents(out)["samples.csv"] == "newer samples.csv\n" and _siblings(out) == []


def test_refuses_a_folder_it_did_not_write_and_the_run_folder(tmp_path):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.docx").write_text("precious")
    with pytest.raises(OutputError, match="not a cytogate output folder"):
        OutputSet(foreign).open()
    assert (foreign / "chapter1.docx").read_text() == "precious"
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    for bad in (run, tmp_path):
        with pytest.raises(OutputError, match="would replace the run folder"):
            OutputSet(bad, inputs=run).open()
    OutputSet(run / "results", inputs=run).open().close()  # inside the run folder is fine
    (tmp_path / "empty").mkdir()
    OutputSet(tmp_path / "empty").open().close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_output_folder_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    with OutputSet(out) as staging:
        _write_set(staging, "old")
    out.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="not writable"):
            OutputSet(out).open()
    finally:
        out.chmod(0o755)


def test_lock_file_names_the_holder(tmp_path):
    lock = RunLock(tmp_path / "x.lock", "x")
    with lock:
        assert (tmp_path / "x.lock").read_text().startswith(f"{os.getpid()} on ")
    assert not (tmp_path / "x.lock").exists()
    shutil.rmtree(tmp_path / "x", ignore_errors=True)


def test_forked_workers_do_not_hold_the_lock(tmp_path):
    import multiprocessing

    out = tmp_path / "out"
    oset = OutputSet(out).open()
    ctx = multiprocessing.get_context("fork")
    gone, ready = ctx.Event(), ctx.Event()

    def worker() -> None:  # runs after the fork hooks: the child's copy of the fd is closed
        ready.set()
        gone.wait(30)

    child = ctx.Process(target=worker)
    child.start()  # a worker forked while the lock is held
    assert ready.wait(30)  # not before the child has run its after-fork hook (else a race)
    try:
        oset.abort()
        os.close(oset.lock.fd)  # the run dies (kill -9): lock file left, its fd gone
        OutputSet(out).open().close()  # free although the forked child still runs
    finally:
        gone.set()
        child.join()
