"""A density panel's image: histogram bins shown as rectangles of pixels, nearest neighbour.

matplotlib resamples an image through Agg's general resampler (and its masked-array and
colour plumbing) each time it is drawn: 10 ms per panel, 50 ms of a five-panel gate figure.
A histogram on an axes that shows its whole extent needs only each output pixel's bin, so
this image picks them with two index arrays (4 ms). Anything else — vector output (PDF and
SVG embed the bins as an image at their own magnification), a clipped or non-affine image —
goes through matplotlib's own path. Imported only when a figure is drawn (it loads
matplotlib).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.image import AxesImage
from matplotlib.transforms import Affine2D


class BinImage(AxesImage):
    """An ``AxesImage`` (origin lower, nearest neighbour) drawn by bin lookup on Agg."""

    def make_image(self, renderer: Any, magnification: float = 1.0, unsampled: bool = False):
        trans = self.get_transform()
        if unsampled or magnification != 1.0 or not trans.is_affine or self.origin != "lower":
            return super().make_image(renderer, magnification, unsampled)
        x1, x2, y1, y2 = self.get_extent()
        (ex0, ey0), (ex1, ey1) = trans.transform([(x1, y1), (x2, y2)])
        clip = self.axes.bbox
        tol = 1e-6
        if (
            ex0 < clip.x0 - tol
            or ey0 < clip.y0 - tol
            or ex1 > clip.x1 + tol
            or ey1 > clip.y1 + tol
            or ex1 <= ex0
            or ey1 <= ey0
        ):
            return super().make_image(renderer, magnification, unsampled)
        # the output pixels matplotlib would cover (its rounding to the pixel border)
        px0, py0 = math.floor(ex0 + 0.5), math.ceil(ey0 - 0.5 - 1e-8)
        px1, py1 = math.floor(ex1 + 0.5 + 1e-8), math.ceil(ey1 - 0.5)
        if px1 <= px0 or py1 <= py0:
            return None, 0, 0, None
        data = self.get_array()
        ny, nx = data.shape[:2]
        # the bin under each pixel's centre; rows bottom-up, as Agg reads them
        cols = np.floor((px0 + np.arange(px1 - px0) + 0.5 - ex0) / (ex1 - ex0) * nx)
        rows = np.floor((py0 + np.arange(py1 - py0) + 0.5 - ey0) / (ey1 - ey0) * ny)
        cols = np.clip(cols, 0, nx - 1).astype(np.intp)
        rows = np.clip(rows, 0, ny - 1).astype(np.intp)
        return np.asarray(data)[rows][:, cols], px0, py0, Affine2D()
