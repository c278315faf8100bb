"""Bland–Altman plot of % of parent, cytogate against the reference (``cytogate compare``).

Why Bland–Altman rather than a scatter of one against the other: agreement is about the
difference, and whether it depends on the size of the population; a correlation looks good for
any two methods that both follow the biology. Points: one per file × population; lines: mean
difference (bias) and bias ± 1.96 SD (limits of agreement).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cytogate.atomic import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["bland_altman", "limits_of_agreement"]


def limits_of_agreement(diff: np.ndarray) -> tuple[float, float, float]:
    """(bias, lower, upper): mean difference and mean ± 1.96 SD (sample SD; NaN if < 2)."""
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return (float("nan"),) * 3
    bias = float(np.mean(diff))
    sd = float(np.std(diff, ddof=1)) if diff.size > 1 else float("nan")
    return bias, bias - 1.96 * sd, bias + 1.96 * sd


def bland_altman(table: pd.DataFrame, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Draw ``agreement.csv``'s rows as a Bland–Altman plot at ``path`` (PNG/SVG/PDF)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = table["pct_parent_cytogate"].to_numpy(dtype=float)
    theirs = table["pct_parent_reference"].to_numpy(dtype=float)
    mean, diff = (ours + theirs) / 2, ours - theirs
    bias, low, high = limits_of_agreement(diff)
    basis = "% of all events" if set(table["pct_basis"]) == {"total"} else "% of parent"
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    for pop, rows in table.groupby("population", sort=True):
        idx = rows.index.to_numpy()
        ax.scatter(mean[idx], diff[idx], s=18, alpha=0.8, label=str(pop))
    for value, style, text in (
        (bias, "-", "bias"),
        (low, "--", "−1.96 SD"),
        (high, "--", "+1.96 SD"),
    ):
        if np.isfinite(value):
            ax.axhline(value, color="0.3", linestyle=style, linewidth=1)
            ax.annotate(
                f"{text} {value:+.2f}",
                (1.0, value),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize=8,
            )
    ax.axhline(0.0, color="0.7", linewidth=0.8)
    ax.set_xlabel(f"mean of cytogate and reference ({basis})")
    ax.set_ylabel(f"cytogate − reference ({basis})")
    ax.set_title(f"Agreement with the reference: {len(table)} file × population pairs", fontsize=10)
    if table["population"].nunique() <= 12:
        ax.legend(fontsize=7, frameon=False, loc="best")
    target = Path(path)
    try:
        atomic_write(
            target, lambda tmp: fig.savefig(tmp, dpi=dpi, format=target.suffix.lstrip(".") or "png")
        )
    finally:
        plt.close(fig)
    return target
