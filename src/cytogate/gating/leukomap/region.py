"""Outline of one population's bins as a polygon on the scaled axes (what gates store).

The outline is the 0.5 contour of the population's indicator on the bin centres, so two
touching populations share the same boundary (midway between their bins) and stay disjoint.
Regions touching the grid's edge are extended a quarter of the grid's span beyond it, so
the few events outside the fitted range still fall in the population next to them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

PAD = 0.25  # extension beyond the grid, as a fraction of its span


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: what ``ndimage.binary_fill_holes`` gives (background
    4-connected to the border stays), by labelling the background once instead of dilating it
    from the border until nothing changes (a hundred passes on a 128 x 128 map)."""
    background, _ = ndimage.label(~mask)  # 4-connected, as binary_fill_holes' default
    border = np.unique(
        np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    )
    return mask | ~np.isin(background, border[border > 0])


def outline(mask: np.ndarray, xc: np.ndarray, yc: np.ndarray) -> np.ndarray:
    """Vertices (k × 2) of the outer boundary of ``mask`` (bins × bins) over centres xc, yc
    (both increasing, in the coordinates the polygon is wanted in). Empty mask: ValueError."""
    import contourpy

    if not mask.any():
        raise ValueError("empty region")
    filled = fill_holes(mask)
    # copy the edge rows once (extension), then a zero ring to close every contour
    ext = np.pad(filled, 1, mode="edge").astype(np.float64)
    ext = np.pad(ext, 1, constant_values=0.0)

    def axis(c: np.ndarray) -> np.ndarray:
        span = float(c[-1] - c[0]) or 1.0
        lo, hi = c[0] - PAD * span, c[-1] + PAD * span
        step = span / max(c.size - 1, 1)
        return np.concatenate([[lo - step, lo], c, [hi, hi + step]])

    xs, ys = axis(xc), axis(yc)
    # contourpy wants z[y, x]
    lines = contourpy.contour_generator(xs, ys, ext.T).lines(0.5)
    rings = [np.asarray(line, dtype=np.float64) for line in lines if len(line) >= 4]
    if not rings:
        raise ValueError("no outline")

    def area(r: np.ndarray) -> float:
        return 0.5 * abs(
            float(np.dot(r[:, 0], np.roll(r[:, 1], 1)) - np.dot(r[:, 1], np.roll(r[:, 0], 1)))
        )

    ring = max(rings, key=area)
    if np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]
    return ring
