"""Figure of a CD34 run: collection yield per patient group with the transplant minimum.

A view of ``cd34.csv`` (via :func:`cytogate.analysis.cd34.patient_table`): one dot per patient
(cumulative CD34+ ×10⁶/kg over the collection days), the group median as a bar, the minimum
for one transplant (2 ×10⁶/kg) as a dashed line and the collection target as a dotted one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cytogate.analysis.cd34 import CD34Thresholds, patient_table
from cytogate.atomic import atomic_write

FIGURE_NAME = "cd34_yield_by_group.png"


def yield_by_group_figure(
    cd34: pd.DataFrame,
    path: str | os.PathLike[str],
    thresholds: CD34Thresholds | None = None,
    simulated: bool = False,
    dpi: int = 200,
) -> Path:
    """Draw cumulative yield per patient by cohort to ``path`` (PNG, SVG or PDF by suffix)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    th = thresholds or CD34Thresholds()
    patients = patient_table(cd34, th)
    groups = sorted(str(g) for g in patients["cohort"].dropna().unique())
    fig = Figure(figsize=(1.6 + 1.3 * max(1, len(groups)), 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # jitter only, fixed so the figure is reproducible
    for i, g in enumerate(groups):
        y = patients.loc[patients["cohort"] == g, "cd34_e6_per_kg"].to_numpy(dtype=float)
        y = y[np.isfinite(y)]
        failed = y < th.minimum_e6_per_kg
        x = i + rng.uniform(-0.15, 0.15, y.size)
        ax.scatter(x[~failed], y[~failed], s=22, color="#1f77b4", zorder=3)
        ax.scatter(x[failed], y[failed], s=26, color="#d62728", marker="v", zorder=3)
        if y.size:
            ax.hlines(np.median(y), i - 0.3, i + 0.3, color="black", lw=2, zorder=2)
        ax.annotate(
            f"n={y.size}",
            (i, 0),
            xytext=(0, -28),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            annotation_clip=False,
        )
    ax.axhline(
        th.minimum_e6_per_kg,
        color="#d62728",
        ls="--",
        lw=1,
        label=f"minimum {th.minimum_e6_per_kg:g} ×10⁶/kg",
    )
    ax.axhline(
        th.target_e6_per_kg,
        color="#2ca02c",
        ls=":",
        lw=1,
        label=f"target {th.target_e6_per_kg:g} ×10⁶/kg",
    )
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("cumulative CD34+ ×10⁶/kg")
    ax.set_title(
        "Collection yield per group" + (" (SIMULATED data)" if simulated else ""), fontsize=10
    )
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fmt = final.suffix.lstrip(".").lower() or "png"
    return atomic_write(final, lambda p: fig.savefig(p, dpi=dpi, format=fmt))


def write_cd34_figures(
    cd34: pd.DataFrame, fcs_files: list[Path], out: str | os.PathLike[str]
) -> list[Path]:
    """The CD34 run's figures under ``out/plots/``; titled SIMULATED when its files say so."""
    from cytogate.io.fcs import read_keywords

    simulated = False
    for f in fcs_files[:1]:
        kw = read_keywords(f)
        simulated = kw.get("CYTOGATE_SIMULATED") == "TRUE" or "SIMULATED" in kw.get("$COM", "")
    return [yield_by_group_figure(cd34, Path(out) / "plots" / FIGURE_NAME, simulated=simulated)]
