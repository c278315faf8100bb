"""Treatment phases on a time-course axis: G-CSF (baseline → day 3), plerixafor (day 3 → 24 h).

In the study, G-CSF was given for two days between the baseline and the day-3 draws, and
plerixafor after the day-3 draw; the hours after it (2h, 4h, 6h, 24h) are counted from that
dose. A reader of Figure 1 needs to see which change happened under which drug, so the phases
are drawn as labelled bands. They are derived from the run's timepoints only when those are
the study's (a subset of ``baseline, day3, 2h, 4h, 6h, 24h`` holding baseline, day3 and a later
timepoint, in that order); other designs get no bands unless the caller passes its own
:class:`Phase` values, because a wrong drug label is worse than none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cytogate.study.design import STUDY_TIMEPOINTS

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

#: Band colours: light enough that points and error bars stay the strongest ink.
_COLOURS = ("#fdebd0", "#d6eaf8", "#e8daef", "#d5f5e3")
_TEXT_COLOURS = ("#935116", "#1b4f72", "#5b2c6f", "#186a3b")


@dataclass(frozen=True)
class Phase:
    """A treatment given between the draws ``start`` and ``end`` (timepoint names)."""

    label: str
    start: str
    end: str


def study_phases(timepoints: Sequence[str], baseline: str = "baseline") -> tuple[Phase, ...]:
    """The G-CSF and plerixafor phases when ``timepoints`` are the study's, else ``()``."""
    tps = list(timepoints)
    order = {t: i for i, t in enumerate(STUDY_TIMEPOINTS)}
    if baseline != "baseline" or any(t not in order for t in tps):
        return ()
    if [order[t] for t in tps] != sorted(order[t] for t in tps):
        return ()
    if "baseline" not in tps or "day3" not in tps or tps[-1] == "day3":
        return ()
    return (
        Phase("G-CSF", "baseline", "day3"),
        Phase("plerixafor (after the day-3 draw)", "day3", tps[-1]),
    )


def draw_phases(ax: Axes, phases: Sequence[Phase], timepoints: Sequence[str]) -> list[str]:
    """Shade each phase's span and label it in a strip just above the axes.

    The strip sits above the data area (axes fraction 1.0–1.07, not clipped), so a label can
    never cover a point, an error bar or a star. Returns the labels drawn; a phase naming a
    timepoint that is not on the axis is skipped.
    """
    from matplotlib.patches import Rectangle
    from matplotlib.transforms import blended_transform_factory

    index = {t: i for i, t in enumerate(timepoints)}
    strip = blended_transform_factory(ax.transData, ax.transAxes)
    drawn = []
    for k, phase in enumerate(phases):
        if phase.start not in index or phase.end not in index:
            continue
        x0, x1 = index[phase.start], index[phase.end]
        fill, ink = _COLOURS[k % len(_COLOURS)], _TEXT_COLOURS[k % len(_TEXT_COLOURS)]
        ax.axvspan(x0, x1, color=fill, alpha=0.45, lw=0, zorder=0, gid=f"phase:{phase.label}")
        ax.add_patch(
            Rectangle(
                (x0, 1.0),
                x1 - x0,
                0.075,
                transform=strip,
                color=fill,
                lw=0,
                clip_on=False,
                gid=f"phase-strip:{phase.label}",
            )
        )
        ax.text(
            (x0 + x1) / 2,
            1.0375,
            phase.label,
            transform=strip,
            ha="center",
            va="center",
            fontsize=6.5,
            color=ink,
            clip_on=False,
            gid=f"phase-label:{phase.label}",
        )
        drawn.append(phase.label)
    return drawn
