"""Scales and compensation against hand-computed values and flowkit's own transforms."""

import numpy as np
import pytest

from cytogate.errors import TemplateError
from cytogate.model.transforms import Scale, compensate


def test_compensation_recovers_a_hand_built_spill():
    spill = np.array([[1.0, 0.2, 0.0], [0.1, 1.0, 0.05], [0.0, 0.3, 1.0]])
    true = np.array([[100.0, 50.0, 10.0], [0.0, 1000.0, 0.0], [20.0, -5.0, 300.0]])
    observed = true @ spill
    # first event by hand: FITC 100 + 0.1*50 = 105; PE 0.2*100 + 50 + 0.3*10 = 73
    assert observed[0, :2].tolist() == pytest.approx([105.0, 73.0])
    # compensate only columns 1..3 of a 4-column array; column 0 (scatter) is untouched
    events = np.column_stack([np.array([7.0, 8.0, 9.0]), observed])
    out = compensate(events, [1, 2, 3], spill)
    assert np.allclose(out[:, 1:], true)
    assert out[:, 0].tolist() == [7.0, 8.0, 9.0]
    assert np.allclose(events[:, 1:], observed)  # input untouched


def test_compensation_follows_column_order():
    spill = np.array([[1.0, 0.25], [0.0, 1.0]])
    true = np.array([[400.0, 100.0]])
    observed = true @ spill
    events = observed[:, ::-1].copy()  # file stores the second dye first
    out = compensate(events, [1, 0], spill)
    assert np.allclose(out[:, ::-1], true)


def test_linear_scale_uses_channel_range():
    scale = Scale.from_spec({"kind": "linear", "top": "range"}, "t")
    assert scale.apply(np.array([0.0, 512.0, 1024.0]), 1024).tolist() == [0.0, 0.5, 1.0]
    assert scale.apply(np.array([131072.0]), 262144)[0] == 0.5
    assert np.allclose(scale.inverse(scale.apply(np.array([3.0, 77.0]), 1024), 1024), [3, 77])


def test_arcsinh_cofactor():
    scale = Scale.from_spec({"kind": "arcsinh", "cofactor": 5}, "t")
    x = np.array([-50.0, 0.0, 5.0, 500.0])
    assert np.allclose(scale.apply(x), np.arcsinh(x / 5))
    assert np.allclose(scale.inverse(scale.apply(x)), x)


def test_log_scale_decades_and_non_positive_values():
    scale = Scale.from_spec({"kind": "log", "T": 10000, "M": 4}, "t")
    y = scale.apply(np.array([10000.0, 1000.0, 1.0, 0.0, -5.0]))
    assert y[:3].tolist() == pytest.approx([1.0, 0.75, 0.0])
    assert np.all(np.isfinite(y)) and y[3] < 0 and y[4] < 0


def test_logicle_matches_flowkit():
    flowkit = pytest.importorskip("flowkit")
    params = {"T": 262144.0, "W": 0.5, "M": 4.5, "A": 0.0}
    ours = Scale.from_spec({"kind": "logicle", **params}, "t")
    theirs = flowkit.transforms.LogicleTransform(
        param_t=262144, param_w=0.5, param_m=4.5, param_a=0
    )
    x = np.array([-1000.0, -10.0, 0.0, 10.0, 300.0, 5000.0, 100000.0, 262144.0])
    assert np.allclose(ours.apply(x), theirs.apply(x.reshape(-1, 1)).ravel(), atol=1e-9)
    assert ours.apply(np.array([262144.0]))[0] == pytest.approx(1.0)
    assert np.allclose(ours.inverse(ours.apply(x)), x, rtol=1e-6, atol=1e-6)


def test_logicle_top_follows_range():
    scale = Scale.from_spec({"kind": "logicle", "T": "range", "M": 4.5, "W": 0.5}, "t")
    assert scale.apply(np.array([1024.0]), 1024)[0] == pytest.approx(1.0)
    assert scale.apply(np.array([1024.0]), 262144)[0] < 0.5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "bogus"}, "unknown scale"),
        ({"kind": "arcsinh", "cofactor": 0}, "cofactor"),
        ({"kind": "logicle", "W": 3, "M": 4.5}, "0 <= W <= M/2"),
        ({"kind": "linear", "slope": 2}, "'slope' is not a parameter"),
        ({"kind": "logicle", "T": "big"}, "number or 'range'"),
    ],
)
def test_bad_scale_specs_are_named(spec, message):
    with pytest.raises(TemplateError, match=message):
        Scale.from_spec(spec, "tmpl.yaml: scale of 'CD45'")


@pytest.mark.parametrize(
    ("t", "m", "w", "a"),
    [
        (262144.0, 4.5, 0.5, 0.0),
        (262144.0, 4.5, 0.0, 0.0),
        (1024.0, 4.0, 1.0, 0.5),
        (1e4, 5.0, 2.0, -1.0),
    ],
)
def test_tabled_logicle_matches_flowutils_over_the_full_range(t, m, w, a):
    """The table (from the exact inverse) is within 1e-8 of flowutils (the goal: 1e-6),
    negatives included; values beyond the table (and NaN) are passed to flowutils itself."""
    from flowutils import transforms as fu

    from cytogate.model.transforms import LogicleTable

    rng = np.random.default_rng(3)
    x = np.concatenate(
        [
            np.linspace(-2 * t, 4 * t, 200_001),  # every region, both signs
            rng.normal(0, t / 100, 100_000),  # dense around zero (the linear region)
            np.geomspace(1e-3, t, 10_000),
            -np.geomspace(1e-3, t, 10_000),
            [-10 * t, 9 * t, 0.0, np.nan],  # beyond the table
        ]
    )
    ours = LogicleTable(t, m, w, a).apply(x)
    theirs = fu.logicle(x, None, t=t, m=m, w=w, a=a)
    finite = np.isfinite(theirs)
    assert np.array_equal(finite, np.isfinite(ours))
    assert np.max(np.abs(ours[finite] - theirs[finite])) < 1e-8
    # the scale uses the table
    scale = Scale.from_spec({"kind": "logicle", "T": t, "M": m, "W": w, "A": a}, "t")
    assert np.array_equal(scale.apply(x[:1000]), ours[:1000])


@pytest.mark.parametrize("n", [1, 8191, 8192, 20_001])
def test_lazy_compensation_column_matches_the_full_solve(n):
    """Compensation.column (block-wise weighted sums, only the columns asked for) equals the
    full solve by flowutils, on event counts around its block size, and leaves scatter alone."""
    from cytogate.model.transforms import Compensation

    rng = np.random.default_rng(n)
    spill = np.eye(4) + rng.uniform(0, 0.2, (4, 4)) * (1 - np.eye(4))
    true = rng.gamma(2.0, 300.0, (n, 4))
    events = np.column_stack([rng.uniform(0, 1e5, n), true @ spill, rng.uniform(0, 9, n)])
    full = compensate(events, [1, 2, 3, 4], spill)
    lazy = Compensation(events, [1, 2, 3, 4], spill)
    for j in range(events.shape[1]):
        np.testing.assert_allclose(lazy.column(j), full[:, j], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(lazy.column(2), true[:, 1], rtol=1e-9, atol=1e-8)
    assert lazy.column(0) is not None and np.shares_memory(lazy.column(0), events)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "linear", "top": 262144.0},
        {"kind": "linear", "top": 1000.0, "bottom": -50.0},
        {"kind": "log", "T": 262144.0, "M": 4.5},
        {"kind": "logicle", "T": 262144.0, "W": 0.5, "M": 4.5, "A": 0.0},
        {"kind": "arcsinh", "cofactor": 150.0},
    ],
)
def test_scales_read_float32_exactly_as_widened_float64(spec):
    """A channel as the file stores it (float32) scales to the same float64 bits as the
    channel widened first: the widening happens inside the scale's first operation."""
    rng = np.random.default_rng(7)
    x32 = np.concatenate(
        [rng.normal(0, 300, 5_000), rng.lognormal(7, 2, 5_000), [0.0, -1e6, 3e6]]
    ).astype(np.float32)
    scale = Scale.from_spec(spec, "t")
    stored = np.stack([x32, 2 * x32], axis=1)  # a strided column, as Sample.data gives it
    ours = scale.apply(stored[:, 0])
    widened = scale.apply(x32.astype(np.float64))
    assert ours.dtype == np.float64
    np.testing.assert_array_equal(ours, widened)
