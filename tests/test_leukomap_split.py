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
