"""Each gate geometry against memberships computed by hand."""

import numpy as np
import pytest

from cytogate.gating.gates import Boolean, Ellipse, Polygon, Quadrant, Rectangle


def test_rectangle_is_half_open_like_gatingml():
    gate = Rectangle(("x", "y"), (0.0, 0.0), (1.0, 1.0))
    pts = np.array([[0.0, 0.0], [1.0, 0.5], [0.5, 0.5], [0.5, 1.0], [-0.1, 0.5], [0.999, 0.999]])
    assert gate.contains(pts).tolist() == [True, False, True, False, False, True]


def test_range_with_open_upper_bound():
    gate = Rectangle(("x",), (0.4,), (None,))
    assert gate.kind == "range"
    pts = np.array([[0.39], [0.4], [5.0], [-1.0]])
    assert gate.contains(pts).tolist() == [False, True, True, False]


def test_polygon_triangle():
    gate = Polygon(("x", "y"), ((0.0, 0.0), (4.0, 0.0), (0.0, 4.0)))
    pts = np.array([[1.0, 1.0], [3.0, 3.0], [2.0, 1.9], [2.0, 2.1], [-0.5, 1.0]])
    assert gate.contains(pts).tolist() == [True, False, True, False, False]


def test_concave_polygon_notch_is_outside():
    # a "U": the notch (1..2 x 1..3) is outside although inside the bounding box
    u = ((0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3))
    gate = Polygon(("x", "y"), tuple((float(a), float(b)) for a, b in u))
    pts = np.array([[0.5, 2.0], [1.5, 2.0], [2.5, 2.0], [1.5, 0.5]])
    assert gate.contains(pts).tolist() == [True, False, True, True]


def test_ellipse_rotated_major_axis():
    # half-axes 2 (major) and 1, rotated 90 degrees: the long axis lies along y
    gate = Ellipse.from_axes(("x", "y"), (1.0, 1.0), (2.0, 1.0), 90.0)
    pts = np.array([[1.0, 2.9], [2.9, 1.0], [1.0, 3.0], [1.9, 1.0], [1.6, 2.6]])
    # (1.6, 2.6): (0.6/1)^2 + (1.6/2)^2 = 0.36 + 0.64 = 1.0 -> on the boundary, inside
    assert gate.contains(pts).tolist() == [True, False, True, True, True]
    assert not gate.contains(np.array([[1.7, 2.6]]))[0]


def test_ellipse_covariance_form_matches_axes_form():
    a = Ellipse.from_axes(("x", "y"), (0.0, 0.0), (3.0, 1.0), 30.0)
    b = Ellipse(("x", "y"), (0.0, 0.0), a.covariance, 4.0)  # D^2 = 4 doubles the half-axes
    rng = np.random.default_rng(0)
    pts = rng.normal(scale=3, size=(2000, 2))
    inside_a, inside_b = a.contains(pts), b.contains(pts)
    assert np.all(inside_b[inside_a])  # the bigger ellipse contains the smaller
    assert inside_b.sum() > inside_a.sum()
    assert np.array_equal(b.contains(pts * 2), inside_a)  # (2p)' inv(S) (2p) <= 4 iff p in a


def test_ellipse_outline_points_lie_on_boundary():
    gate = Ellipse.from_axes(("x", "y"), (0.3, -1.0), (2.0, 0.5), 25.0)
    outline = gate.outline(64)
    d = outline - np.array(gate.center)
    inv = np.linalg.inv(np.array(gate.covariance))
    assert np.allclose(np.einsum("ij,jk,ik->i", d, inv, d), 1.0)


def test_quadrant_assigns_each_point_once():
    gate = Quadrant(("x", "y"), (0.5, 0.5), {"pp": "++", "pm": "+-", "mp": "-+", "mm": "--"})
    pts = np.array([[0.6, 0.6], [0.6, 0.4], [0.4, 0.6], [0.4, 0.4], [0.5, 0.5]])
    masks = gate.assign(pts)
    assert masks["pp"].tolist() == [True, False, False, False, True]
    assert masks["pm"].tolist() == [False, True, False, False, False]
    assert masks["mp"].tolist() == [False, False, True, False, False]
    assert masks["mm"].tolist() == [False, False, False, True, False]
    assert np.all(sum(m.astype(int) for m in masks.values()) == 1)


@pytest.mark.parametrize(
    ("op", "expected"),
    [("and", [True, False, False, False]), ("or", [True, True, True, False])],
)
def test_boolean_and_or(op, expected):
    a = np.array([True, True, False, False])
    b = np.array([True, False, True, False])
    assert Boolean(op, ("a", "b")).combine([a, b]).tolist() == expected


def test_boolean_not():
    assert Boolean("not", ("a",)).combine([np.array([True, False])]).tolist() == [False, True]
