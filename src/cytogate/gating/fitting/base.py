"""What every fit shares: the result type, the error a fit raises, what it may ask the engine
for, and seeded subsampling (fits are deterministic; see docs/adaptive_gating.md)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from cytogate.gating.gates import Geometry, Rectangle

MAD_TO_SD = 1.482602218505602  # MAD of a normal distribution × this = its SD
STAT_SAMPLE = 50_000  # reference-population statistics use at most this many events


@functools.cache
def _thread_pools() -> Any:
    """threadpoolctl's view of the loaded BLAS/OpenMP pools, taken once, after scikit-learn's
    mixtures (and the OpenMP runtime they bring) are loaded: a controller costs ~9 ms to build
    (it scans the process's libraries), applying its limit ~0.05 ms."""
    import sklearn.mixture  # noqa: F401  (loads the OpenMP runtime KMeans initialisation uses)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def one_native_thread() -> Iterator[None]:
    """Run scikit-learn fits with one BLAS/OpenMP thread. Why: the fits are small (thousands
    of points in 1-2 dimensions), and idle pool threads spinning beside them made a 5,000-point
    mixture 285 ms instead of 21 ms on a busy 2-core machine; results do not depend on it."""
    with _thread_pools().limit(limits=1):
        yield


class FitError(Exception):
    """A fit could not produce a gate (the message is the QC reason)."""


class FitContext(Protocol):
    """What a fit may ask the engine for."""

    def values(self, population: str, dim: str, limit: tuple[int, int] | None = None) -> np.ndarray:
        """Scaled values of ``dim`` on ``population``'s events; with ``limit = (n, seed)``, on
        at most n of them (a seeded subsample shared by every call with the same limit, so a
        statistic costs the same on a 10^6-event file as on a 10^5 one)."""
        ...

    def to_scaled(self, dim: str, linear: np.ndarray) -> np.ndarray:
        """Linear (compensated) values placed on ``dim``'s scale as used in this file — e.g.
        where zero lies, which a rule about over-compensation needs."""
        ...

    def mixture(self, key: tuple[Any, ...], fit: Any) -> Any:
        """The mixture fitted for ``key`` (memoised per file: sibling gates share one fit)."""
        ...

    def selection(self, population: str) -> tuple[tuple[Any, ...], tuple[int, ...]] | None:
        """(mixture key, cluster indices) a cluster gate chose, or None."""
        ...

    def record_selection(
        self, population: str, key: tuple[Any, ...], clusters: tuple[int, ...]
    ) -> None: ...

    def geometry(self, population: str) -> Geometry | None:
        """The geometry applied for ``population`` (None: not a geometric gate / skipped)."""
        ...


@dataclass
class Fit:
    """A fitted gate: its geometry (ordinary), diagnostics, and QC reasons (empty = fine)."""

    geometry: Geometry
    diagnostics: dict[str, Any] = field(default_factory=dict)
    qc: list[str] = field(default_factory=list)


def empty_gate(dims: tuple[str, ...]) -> Rectangle:
    """A gate no event can be in (``0 <= x < 0``), for a fit that found nothing."""
    return Rectangle(tuple(dims), (0.0,) * len(dims), (0.0,) * len(dims))


def sample_indices(m: int, n: int, seed: int) -> np.ndarray | None:
    """Sorted indices of ``n`` of ``m`` rows chosen by a seeded generator (None: all rows)."""
    if m <= n:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(m, n, replace=False))


def subsample(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """At most ``n`` rows of ``x``, chosen by a seeded generator, in their original order."""
    index = sample_indices(x.shape[0], n, seed)
    return x if index is None else x[index]


def spread(values: np.ndarray, kind: str) -> float:
    """``sd`` (sample SD) or ``mad`` (MAD scaled to a normal SD) of ``values``."""
    if kind == "sd":
        return float(values.std(ddof=1))
    return MAD_TO_SD * float(np.median(np.abs(values - np.median(values))))
