"""Shared test helpers: build in-memory samples with known events and channels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

from cytogate.io.fcs import FileDigest, Sample

DATA = Path(__file__).parent / "data"

# Property tests explore new random inputs on a developer's machine; in CI (CI set) they run a
# fixed, reproducible set, so a landing is not decided by which random inputs a run drew. An
# input that fails locally goes into the test as a plain regression test.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def make_sample(
    events: np.ndarray,
    pnn: Sequence[str],
    pns: Sequence[str] | None = None,
    pnr: float = 262144.0,
    spillover: pd.DataFrame | None = None,
    name: str = "memory.fcs",
) -> Sample:
    """A Sample built from arrays, as read_fcs would return it for such a file."""
    events = np.ascontiguousarray(events, dtype=np.float64)
    p = events.shape[1]
    channels = pd.DataFrame(
        {
            "n": np.arange(1, p + 1),
            "pnn": list(pnn),
            "pns": list(pns) if pns is not None else [""] * p,
            "pnr": [float(pnr)] * p,
            "pnb": [32] * p,
            "pne": ["0,0"] * p,
            "png": [1.0] * p,
        }
    )
    return Sample(
        path=Path(name).absolute(),
        digest=FileDigest.known("0" * 64),
        version="3.1",
        data=events,
        channels=channels,
        keywords={"$PAR": str(p), "$TOT": str(events.shape[0])},
        spillover=spillover,
    )


@pytest.fixture
def sample_factory():
    return make_sample


@pytest.fixture(scope="session")
def two_tube_study(tmp_path_factory: pytest.TempPathFactory):
    """Today's two-tube study (stained + isotype per draw; SIMULATED, seed 42), written once.

    The bundled ``sample_fcs/run42`` is the multi-tube design; tests of features that need the
    two-tube design (and the files and truths they name, e.g. ``P02_baseline_stained.fcs``)
    read this copy, which ``simulate_study`` with its defaults writes byte for byte as the
    bundled run was before it became multi-tube. Tests copy files out of it; none writes in it.
    """
    from cytogate.sim.simulate import simulate_study

    return simulate_study(tmp_path_factory.mktemp("two_tube") / "run42")


@pytest.fixture(scope="session")
def two_tube_run42(two_tube_study) -> Path:
    """The folder of :func:`two_tube_study`."""
    return two_tube_study.outdir
