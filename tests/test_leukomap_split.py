"""The blast/monocyte split's statistics: the closed-form one-Gaussian BIC and the bounded fit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from cytogate.gating.leukomap.refine import one_gaussian_bic


@pytest.mark.parametrize(("n", "seed"), [(200, 0), (5_000, 1), (20_000, 2)])
def test_one_gaussian_bic_equals_sklearns_fit(n: int, seed: int) -> None:
    """The closed form is what sklearn's one-component mixture reaches by EM (same reg_covar),
    on correlated, unequal-spread points, to 1e-9 relative."""
    rng = np.random.default_rng(seed)
    points = rng.normal([0.5, 0.1], [0.03, 0.01], (n, 2)) @ np.array([[1.0, 0.4], [0.0, 1.0]])
    theirs = GaussianMixture(1, covariance_type="full", random_state=0).fit(points).bic(points)
    assert one_gaussian_bic(points) == pytest.approx(theirs, rel=1e-9)


def test_two_clusters_beat_one_gaussian_and_one_does_not() -> None:
    """The split's test on planted truth: two separated clusters lower the BIC by far more than
    the threshold of 10; a single Gaussian's points do not favour two components."""
    rng = np.random.default_rng(5)
    one = rng.normal([0.5, 0.1], [0.03, 0.02], (5_000, 2))
    two = np.vstack([one[:3_500], rng.normal([0.65, 0.22], [0.03, 0.02], (1_500, 2))])
    for points, split in ((one, False), (two, True)):
        gm = GaussianMixture(2, covariance_type="full", random_state=0).fit(points)
        assert (gm.bic(points) < one_gaussian_bic(points) - 10.0) == split


def test_fits_hold_native_pools_to_one_thread_and_restore_them() -> None:
    """Inside one_native_thread every BLAS/OpenMP pool threadpoolctl sees (OpenMP included:
    scikit-learn's KMeans initialisation uses it) runs one thread; after it, as before."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from cytogate.gating.fitting.base import one_native_thread

    with threadpool_limits(limits=2):  # a known outer setting, whatever the machine's
        before = {(p["user_api"], p["filepath"]): p["num_threads"] for p in threadpool_info()}
        with one_native_thread():
            inside = threadpool_info()
        after = {(p["user_api"], p["filepath"]): p["num_threads"] for p in threadpool_info()}
    assert any(p["user_api"] == "openmp" for p in inside)
    assert all(p["num_threads"] == 1 for p in inside)
    assert after == before
