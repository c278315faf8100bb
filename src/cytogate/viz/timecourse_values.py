"""Time courses of the measure itself (RMFI, % positive, cells/µL), as the study's Figure 1.

Beside the fold-change figures (:mod:`cytogate.viz.timecourse`), this draws per timepoint the
mean ± SEM of the per-patient values in ``timecourse.csv`` (every patient with a value at that
timepoint), with the stars of every comparison in ``stats.csv``: vs baseline above the point,
any other (consecutive ones such as 24h vs 6h) as a bracket between its two timepoints. The
tests in ``stats.csv`` are on the values themselves (paired t, ratio t on logs, or Wilcoxon,
over complete pairs), so its stars are the stars of this figure; no statistic is computed
here beyond the plotted mean and SEM. Treatment phases are marked on the time axis
(:mod:`cytogate.viz.phases`), and each panel's legend gives n = patients with that measure,
so partial panels (a marker measured in some patients only) show their own n.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from cytogate.model.measure import Measure, marker_label
from cytogate.viz.figure import add_footnote, draw_header, new_figure, with_text_style
from cytogate.viz.phases import Phase, draw_phases, study_phases
from cytogate.viz.significance import (
    TEST_NAMES,
    draw_brackets,
    place_brackets,
    significance_marks,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

_COLOUR = "#1f4e79"
SEM_TEXT = "mean ± SEM of per-patient values"


def value_summary(
    timecourse: pd.DataFrame, measure: str, timepoints: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Mean, SEM and n per timepoint of one measure's per-patient values; n patients in all.

    SEM = sample SD (ddof 1) / sqrt(n); NaN where n < 2. Non-finite values are missing.
    """
    rows = timecourse[timecourse["measure"] == measure]
    values = rows["value"].to_numpy(dtype=float)
    ok = np.isfinite(values)
    finite = rows.loc[ok, ["patient", "timepoint"]].assign(value=values[ok])
    grouped = finite.groupby("timepoint", sort=False)["value"]
    mean = grouped.mean().reindex(list(timepoints)).to_numpy(dtype=float)
    sd = grouped.std(ddof=1).reindex(list(timepoints)).to_numpy(dtype=float)
    n = grouped.count().reindex(list(timepoints)).fillna(0).to_numpy(dtype=int)
    with np.errstate(invalid="ignore", divide="ignore"):
        sem = np.where(n >= 2, sd / np.sqrt(np.maximum(n, 1)), np.nan)
    return mean, sem, n, int(finite["patient"].nunique())


def axis_label(measure: Measure, control: str) -> str:
    """What the y axis shows, in the measure's own unit, and that points are means ± SEM."""
    if measure.kind == "rmfi":
        name = "FMO" if control.lower() == "fmo" else control
        what = f"RMFI ({measure.statistic} MFI, stained ÷ {name} tube)"
    elif measure.kind == "pct_positive":
        what = f"{marker_label(measure.marker)}+ % of {measure.population}"
    else:
        what = f"{measure.population} per µL"
    return f"{what}\n{SEM_TEXT}"


def legend_label(measure: Measure, n_patients: int) -> str:
    """``CD114 RMFI on blasts, n = 4 patients``: the measure and how many patients have it."""
    return f"{measure.label}, n = {n_patients} patient{'s' if n_patients != 1 else ''}"


@with_text_style
def values_figure(
    timecourse: pd.DataFrame,
    stats: pd.DataFrame,
    measures: Sequence[Measure],
    timepoints: Sequence[str],
    baseline: str = "baseline",
    *,
    control: str = "isotype",
    controls: Mapping[str, str] | None = None,
    phases: Sequence[Phase] | None = None,
    simulated: bool = False,
    title: str | None = None,
) -> Figure:
    """One panel per measure: mean ± SEM of the per-patient values, stars and brackets.

    ``control``: the control an RMFI divides by, as its axis says (``controls``: per marker,
    where the run config gives a marker its own kind, e.g. FMO). ``phases``: treatment
    phases to mark; ``None`` derives them from the timepoints
    (:func:`~cytogate.viz.phases.study_phases`: the study's G-CSF and plerixafor phases, or
    none for another design); ``()`` marks none.
    """
    from matplotlib.patheffects import withStroke

    if phases is None:
        phases = study_phases(timepoints, baseline)
    n_panels = max(1, len(measures))
    panel_w, left, gap, right, top, bottom, height = 3.4, 0.95, 0.95, 0.2, 0.95, 1.1, 2.6
    width = left + n_panels * panel_w + (n_panels - 1) * gap + right
    fig_h = top + height + bottom
    fig = new_figure(width, fig_h)
    draw_header(
        fig,
        left / width,
        (title or ", ".join(m.label for m in measures))
        + (" (simulated data)" if simulated else ""),
        f"the measure itself per timepoint: {SEM_TEXT}",
        simulated,
    )
    x = np.arange(len(timepoints))
    used_tests: set[str] = set()
    corrections: set[str] = set()
    n_notes: list[str] = []
    any_bracket = False
    for k, measure in enumerate(measures):
        ax = fig.add_axes(
            (
                (left + k * (panel_w + gap)) / width,
                bottom / fig_h,
                panel_w / width,
                height / fig_h,
            )
        )
        rows = stats[stats["measure"] == measure.name]
        used_tests.update(str(t) for t in rows["test"].dropna())
        corrections.update(str(c) for c in rows["correction"].dropna())
        mean, sem, n, n_patients = value_summary(timecourse, measure.name, timepoints)
        ax.errorbar(
            x,
            mean,
            yerr=np.nan_to_num(sem, nan=0.0),
            color=_COLOUR,
            marker="o",
            ms=4.5,
            lw=1.5,
            capsize=3,
            label=legend_label(measure, n_patients),
            gid=f"mean:{measure.name}",
            zorder=3,
        )
        stars, brackets = significance_marks(stats, measure.name, timepoints, baseline)
        tops = mean + np.nan_to_num(sem, nan=0.0)
        finite_tops = tops[np.isfinite(tops)]
        high = float(finite_tops.max()) if finite_tops.size else 1.0
        low = min(0.0, float(np.nanmin(mean - np.nan_to_num(sem))) if finite_tops.size else 0.0)
        step = 0.1 * (high - low or 1.0)
        for i, tp in enumerate(timepoints):
            if tp in stars and np.isfinite(tops[i]):
                ax.text(
                    i,
                    tops[i] + 0.2 * step,
                    stars[tp],
                    ha="center",
                    va="bottom",
                    fontsize=9,
                    color=_COLOUR,
                    # a line from a higher neighbour may pass here: a halo keeps them legible
                    path_effects=[withStroke(linewidth=2.5, foreground="white")],
                    gid=f"stars:{measure.name}",
                )
        starred = {tp: True for tp in stars}
        placed = place_brackets(brackets, timepoints, tops, step, starred)
        draw_brackets(ax, placed, measure.name, step, "#333333")
        any_bracket = any_bracket or bool(placed)
        ceiling = max([high + (1.3 if stars else 0.4) * step] + [p.y + step for p in placed])
        ax.set_ylim(low, ceiling)
        ax.set_xlim(-0.4, len(timepoints) - 0.6)
        ax.set_xticks(x, list(timepoints), fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        own = (controls or {}).get(measure.marker, control)
        ax.set_ylabel(axis_label(measure, own), fontsize=7.5)
        ax.spines[["top", "right"]].set_visible(False)
        drawn = draw_phases(ax, phases, timepoints)
        ax.set_title(measure.label, fontsize=9, loc="left", pad=18 if drawn else 6)
        ax.legend(
            fontsize=7,
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(0.0, -0.12),
            borderaxespad=0.0,
            handlelength=1.6,
        )
        counted = n[n > 0]
        if counted.size and counted.min() != counted.max():
            n_notes.append(f"{measure.label}: n = {counted.min()}–{counted.max()} per timepoint")
    test = "; ".join(TEST_NAMES.get(t, t) for t in sorted(used_tests)) or "n/a"
    corr = ", ".join(sorted(corrections)) or "none"
    foot = (
        f"Points: {SEM_TEXT} at each timepoint (patients with a value there). Stars from "
        f"stats.csv ({test}, complete pairs; correction: {corr}): above a point, vs {baseline}"
        + ("; on a bracket, between the two timepoints it spans" if any_bracket else "")
        + ". * p<0.05, ** p<0.01, *** p<0.001; a comparison without a mark is not significant."
        + ("  " + "; ".join(n_notes) + "." if n_notes else "")
    )
    add_footnote(fig, foot, left=left, right=right, width=width, height=fig_h, gid="footnote")
    return fig
