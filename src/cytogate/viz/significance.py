"""Significance marks of a time course, read from ``stats.csv``: stars over points, brackets.

A comparison against the baseline is a star above the later timepoint's point (as in the
fold-change figures); any other comparison (consecutive ones such as ``24h vs 6h``, or
``6h vs day3`` when configured) is a bracket spanning its two timepoints with the stars on it.
Only significant rows (stars starting with ``*``) are drawn; the figure's footnote says that a
comparison without a mark is not significant. Brackets are stacked so that none crosses
another or a point's error bar: each sits just above the highest point (and star) it spans,
and above every narrower bracket it overlaps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes

#: Test names as a figure states them (stats.csv ``test`` column).
TEST_NAMES = {
    "paired_t": "paired t-test on the per-patient values",
    "ratio_t": "ratio t-test (paired t on log values)",
    "wilcoxon": "Wilcoxon signed-rank test on the per-patient values",
}

#: Bracket ends stop short of the timepoint by this much (x units), so brackets of two
#: consecutive comparisons sharing a timepoint do not touch and can sit at the same height.
_INSET = 0.12


@dataclass(frozen=True)
class Bracket:
    """A significant comparison between two timepoints other than the baseline comparison."""

    timepoint: str
    reference: str
    stars: str

    @property
    def label(self) -> str:
        return f"{self.timepoint} vs {self.reference}"


@dataclass(frozen=True)
class PlacedBracket:
    bracket: Bracket
    x0: float
    x1: float
    y: float


def significance_marks(
    stats: pd.DataFrame, measure: str, timepoints: Sequence[str], baseline: str
) -> tuple[dict[str, str], list[Bracket]]:
    """Stars per timepoint (its comparison vs baseline) and the other significant comparisons.

    Rows whose timepoints are not both on the axis are left out (they cannot be drawn).
    """
    rows = stats[stats["measure"] == measure]
    on_axis = set(timepoints)
    stars: dict[str, str] = {}
    brackets: list[Bracket] = []
    for r in rows.itertuples():
        mark = r.stars if isinstance(r.stars, str) else ""
        if not mark.startswith("*") or r.timepoint not in on_axis or r.reference not in on_axis:
            continue
        if r.reference == baseline:
            stars[str(r.timepoint)] = mark
        else:
            brackets.append(Bracket(str(r.timepoint), str(r.reference), mark))
    return stars, brackets


def place_brackets(
    brackets: Sequence[Bracket],
    timepoints: Sequence[str],
    tops: np.ndarray,
    step: float,
    starred: Mapping[str, bool] | None = None,
) -> list[PlacedBracket]:
    """Heights of the brackets (data units).

    ``tops[i]``: the top of timepoint i's error bar; ``step``: the height of one bracket with
    its stars. A bracket sits ``step`` above the highest top it spans (two steps where a
    baseline star stands on that point), and above every narrower bracket it overlaps.
    Narrow brackets first, so a wide one arches over them.
    """
    index = {t: i for i, t in enumerate(timepoints)}
    starred = starred or {}
    tops = np.where(np.isfinite(tops), tops, np.nan)
    order = sorted(
        brackets,
        key=lambda b: (abs(index[b.timepoint] - index[b.reference]), index[b.reference]),
    )
    placed: list[PlacedBracket] = []
    for b in order:
        i0, i1 = sorted((index[b.timepoint], index[b.reference]))
        span = tops[i0 : i1 + 1]
        base = float(np.nanmax(span)) if np.isfinite(span).any() else float(np.nanmax(tops))
        if any(starred.get(timepoints[i], False) for i in range(i0, i1 + 1)):
            base += step
        y = base + step * 0.6
        x0, x1 = i0 + _INSET, i1 - _INSET
        for other in placed:
            if other.x0 < x1 and x0 < other.x1:  # overlapping in x
                y = max(y, other.y + step)
        placed.append(PlacedBracket(b, x0, x1, y))
    return placed


def draw_brackets(
    ax: Axes, placed: Sequence[PlacedBracket], measure: str, step: float, colour: str
) -> None:
    """Draw each bracket (a line with short legs) with its stars centred on it."""
    leg = step * 0.25
    for p in placed:
        ax.plot(
            [p.x0, p.x0, p.x1, p.x1],
            [p.y - leg, p.y, p.y, p.y - leg],
            color=colour,
            lw=0.9,
            solid_capstyle="butt",
            gid=f"bracket:{measure}:{p.bracket.label}",
            zorder=4,
        )
        ax.text(
            (p.x0 + p.x1) / 2,
            p.y,
            p.bracket.stars,
            ha="center",
            va="bottom",
            fontsize=9,
            color=colour,
            gid=f"bracket-stars:{measure}:{p.bracket.label}",
            zorder=4,
        )
