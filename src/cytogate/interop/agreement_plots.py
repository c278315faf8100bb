"""The numbers of a Bland–Altman comparison of % of parent (``cytogate compare``).

Only the arithmetic lives here, beside the scores; the plot is drawn in the viz layer
(:mod:`cytogate.viz.agreement_figures`), which may import interop but not the reverse.
Limits of agreement: bias ± 1.96 × the sample SD of the differences (Bland & Altman 1986),
i.e. where 95 % of the differences between the two methods are expected to fall.
"""

from __future__ import annotations

import numpy as np

__all__ = ["limits_of_agreement"]


def limits_of_agreement(diff: np.ndarray) -> tuple[float, float, float]:
    """(bias, lower, upper): mean difference and mean ± 1.96 SD (sample SD; NaN if < 2)."""
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return (float("nan"),) * 3
    bias = float(np.mean(diff))
    sd = float(np.std(diff, ddof=1)) if diff.size > 1 else float("nan")
    return bias, bias - 1.96 * sd, bias + 1.96 * sd
