"""The same run on a two-worker dask.distributed LocalCluster: identical tables, lost workers.

Workers are separate processes (``processes=True``) reading the files by path, as on a cluster
with shared storage. ``allowed-failures`` is 1 here so that a job which kills its worker every
time is given up after one retry, quickly.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from cytogate.study.batch import run_batch  # noqa: E402
from cytogate.study.executors import run_jobs  # noqa: E402

RUN42: Path  # the two-tube SIMULATED study (tests/conftest.py two_tube_run42), set below


@pytest.fixture(scope="module", autouse=True)
def _two_tube_run42(two_tube_run42: Path) -> None:
    """This module's tests need the two-tube design; the bundled run42 is multi-tube."""
    global RUN42
    RUN42 = two_tube_run42


@pytest.fixture(scope="module")
def client():
    import dask

    # worker-saturation 1.0: one task at a time per one-thread worker, so a task that kills
    # its worker takes no innocent queued task down with it (each would count a failure)
    with dask.config.set(
        {
            "distributed.scheduler.allowed-failures": 1,
            "distributed.scheduler.worker-saturation": 1.0,
            "distributed.worker.daemon": False,
        }
    ):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        with distributed.Client(cluster) as c:
            yield c
        cluster.close()


def kill_once(item: tuple[int, str]) -> int:
    x, folder = item
    marker = Path(folder) / f"{x}.seen"
    if x == 1 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def kill_always(x: int) -> int:
    if x == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def test_dask_run_gives_the_same_tables_as_local_runs_on_one_and_two_workers(tmp_path, client):
    run = tmp_path / "run"
    run.mkdir()
    manifest = pd.read_csv(RUN42 / "manifest.csv")
    keep = manifest[manifest["patient"].isin(["P02", "P05"])]
    for name in keep["file"]:
        shutil.copy(RUN42 / name, run / name)
    keep.to_csv(run / "manifest.csv", index=False)
    local = run_batch(run, jobs=1, out=tmp_path / "local")
    run_batch(run, jobs=2, out=tmp_path / "local2")
    remote = run_batch(run, out=tmp_path / "dask", client=client)
    for name in ("samples", "populations", "markers", "timecourse", "stats"):
        serial = (tmp_path / "local" / f"{name}.csv").read_bytes()
        assert serial == (tmp_path / "local2" / f"{name}.csv").read_bytes(), name
        assert serial == (tmp_path / "dask" / f"{name}.csv").read_bytes(), name
    assert remote.run["scheduler"].startswith("tcp://") and local.exit_status == 0
    # the outcomes came back from the cluster too, in the order of samples.csv
    assert [o.name for o in remote.outcomes] == list(remote.samples["file"])
    assert all(o.ok and o.gates for o in remote.outcomes)


def test_lost_worker_task_is_retried(tmp_path, client):
    items = [(x, str(tmp_path)) for x in range(4)]
    assert run_jobs(kill_once, items, 2, client=client) == [0, 1, 2, 3]
    assert (tmp_path / "1.seen").exists()


def test_task_killing_its_worker_again_is_reported_failed_and_the_run_completes(client):
    out = run_jobs(kill_always, [0, 1, 2], 2, client=client, on_failure=lambda i, why: why)
    assert out[0] == 0 and out[2] == 2
    assert "KilledWorker" in out[1]
