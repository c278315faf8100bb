"""Time-course figures: mean fold change from baseline ± SEM per timepoint, with stars.

Points, error bars and stars are read from the ``stats`` table (the "<timepoint> vs
<baseline>" rows), per-patient lines from ``timecourse``; measures are :class:`Measure`
values, so labels never come from parsing a column name. Each figure of a run is drawn in
three versions (:func:`draw_timecourse`): mean fold change, the same with each patient's
line, and the measure itself (:mod:`cytogate.viz.timecourse_values`); treatment phases are
marked on the time axis (:mod:`cytogate.viz.phases`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cytogate.model.measure import Measure
from cytogate.viz.figure import (
    DPI,
    add_footnote,
    draw_header,
    new_figure,
    save_figure,
    with_text_style,
)
from cytogate.viz.phases import Phase, draw_phases, study_phases

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

THUMBS_DIR = "thumbs"
TITLES = {
    "mobilisation": "Mobilisation: leukocytes and blasts per µL",
    "cxcr4": "CXCR4 on blasts: 12G5 and 1D9 RMFI",
    "markers": "Other markers on blasts",
}


def timecourse_groups(measures: Iterable[Measure]) -> dict[str, list[Measure]]:
    """Figures of the report: mobilisation (counts), CXCR4 (12G5 | 1D9), other markers."""
    ordered = sorted(set(measures), key=lambda m: m.name)
    counts = [m for m in ordered if m.kind == "per_ul"]
    # leukocytes first, then blasts, as in the study's figure
    counts.sort(key=lambda m: (0 if m.population.startswith("leuko") else 1, m.name))
    cxcr4 = sorted(
        (m for m in ordered if m.kind != "per_ul" and m.marker.startswith("CXCR4")),
        key=lambda m: ("1D9" in m.marker, m.name),
    )
    others = [m for m in ordered if m not in counts and m not in cxcr4]
    groups = {}
    if counts:
        groups["mobilisation"] = counts
    if cxcr4:
        groups["cxcr4"] = cxcr4
    if others:
        groups["markers"] = others
    return groups


_SERIES_COLOURS = ("#1f4e79", "#c0392b", "#27ae60", "#8e44ad")
_SERIES_MARKERS = ("o", "s", "^", "D")


@with_text_style
def timecourse_figure(
    timecourse: pd.DataFrame,
    stats: pd.DataFrame,
    measures: Sequence[Measure],
    timepoints: Sequence[str],
    baseline: str = "baseline",
    *,
    overlay: bool = False,
    per_patient: bool = False,
    simulated: bool = False,
    title: str | None = None,
    phases: Sequence[Phase] | None = None,
) -> Figure:
    """Mean fold change from baseline ± SEM per timepoint, with stars, like the study's Fig. 1.

    ``overlay``: every measure on one axes (leukocytes and blasts); otherwise one panel per
    measure side by side (12G5 | 1D9). Mean, SEM and stars are read from the ``stats`` table's
    "<timepoint> vs <baseline>" rows (baseline is 1 by definition); ``per_patient`` adds each
    patient's fold changes from ``timecourse`` as thin lines. ``phases``: treatment phases
    marked above the time axis (``None``: the study's, when the timepoints are the study's).
    """
    if phases is None:
        phases = study_phases(timepoints, baseline)
    n_panels = 1 if overlay else max(1, len(measures))
    panel_w, left, gap, right, top, bottom, height = 3.4, 0.7, 0.75, 0.2, 0.85, 0.8, 2.7
    if phases:
        top += 0.2
    if overlay:
        panel_w = 5.0
    width = left + n_panels * panel_w + (n_panels - 1) * gap + right
    fig_h = top + height + bottom
    fig = new_figure(width, fig_h)
    draw_header(
        fig,
        left / width,
        title or ", ".join(m.label for m in measures),
        f"fold change from {baseline}, mean ± SEM over patients",
        simulated,
    )
    x = np.arange(len(timepoints))
    axes = []
    for i in range(n_panels):
        axes.append(
            fig.add_axes(
                (
                    (left + i * (panel_w + gap)) / width,
                    bottom / fig_h,
                    panel_w / width,
                    height / fig_h,
                )
            )
        )
    used_tests: set[str] = set()
    corrections: set[str] = set()
    n_info: list[str] = []
    for k, item in enumerate(measures):
        ax = axes[0] if overlay else axes[k]
        rows = stats[(stats["measure"] == item.name) & (stats["reference"] == baseline)]
        used_tests.update(str(t) for t in rows["test"].dropna())
        corrections.update(str(c) for c in rows["correction"].dropna())
        n_text = _draw_series(
            ax,
            timecourse,
            stats,
            item,
            k,
            len(measures),
            timepoints,
            baseline,
            overlay,
            per_patient,
        )
        if n_text:
            n_info.append(n_text)
    for k, ax in enumerate(axes):
        ax.axhline(1.0, color="#888888", lw=0.8, ls="--", zorder=0)
        ax.set_xticks(x, list(timepoints), fontsize=8)
        ax.set_xlim(-0.4, len(timepoints) - 0.6)
        ax.set_ylabel("fold change vs " + baseline + " (mean ± SEM)", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        lo, hi = ax.get_ylim()
        ax.set_ylim(min(0, lo), hi * 1.12)
        ax.spines[["top", "right"]].set_visible(False)
        drawn = draw_phases(ax, phases, timepoints)  # after the limits: bands span them
        if not overlay and k < len(measures):
            ax.set_title(measures[k].label, fontsize=9, loc="left", pad=18 if drawn else 6)
        if overlay:
            ax.legend(fontsize=8, frameon=False, loc="upper left")
    test = ", ".join(sorted(used_tests)) or "n/a"
    corr = ", ".join(sorted(corrections)) or "none"
    foot = (
        f"Stars: {test} vs {baseline} (correction: {corr}) from stats.csv; "
        "* p<0.05, ** p<0.01, *** p<0.001; no star = not significant."
        + ("  Thin lines: individual patients." if per_patient else "")
        + ("  " + "; ".join(n_info) + "." if n_info else "")
    )
    add_footnote(fig, foot, left=left, right=right, width=width, height=fig_h)
    return fig


def _draw_series(
    ax: Axes,
    timecourse: pd.DataFrame,
    stats: pd.DataFrame,
    item: Measure,
    k: int,
    n_measures: int,
    timepoints: Sequence[str],
    baseline: str,
    overlay: bool,
    per_patient: bool,
) -> str:
    """One measure's mean ± SEM, stars and (optionally) patients' lines; returns its "n = " note."""
    measure, label = item.name, item.label
    x = np.arange(len(timepoints))
    colour = _SERIES_COLOURS[k % len(_SERIES_COLOURS)] if overlay else _SERIES_COLOURS[0]
    marker = _SERIES_MARKERS[k % len(_SERIES_MARKERS)] if overlay else "o"
    mean, sem, stars, npairs = _series(stats, measure, timepoints, baseline)
    if per_patient and not timecourse.empty:
        tc = timecourse[timecourse["measure"] == measure]
        for _patient, rows_p in tc.groupby("patient", sort=True):
            fc = rows_p.set_index("timepoint")["fold_change"].reindex(list(timepoints))
            ax.plot(
                x,
                fc.to_numpy(dtype=float),
                color=colour,
                alpha=0.3,
                lw=0.7,
                marker=".",
                ms=2.5,
                gid=f"patient:{measure}:{_patient}",
                zorder=1,
            )
    offset = (k - (n_measures - 1) / 2) * 0.06 if overlay else 0.0
    ax.errorbar(
        x + offset,
        mean,
        yerr=sem,
        color=colour,
        marker=marker,
        ms=4.5,
        lw=1.5,
        capsize=3,
        label=label,
        gid=f"mean:{measure}",
        zorder=3,
    )
    for xi, m, s, st in zip(x + offset, mean, sem, stars, strict=True):
        if st and st != "ns" and math.isfinite(m):
            top_y = m + (s if math.isfinite(s) else 0)
            ax.annotate(
                st,
                (xi, top_y),
                xytext=(0, 3 + (8 * k if overlay else 0)),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=9,
                color=colour,
                gid=f"stars:{measure}",
            )
    finite_n = sorted({int(v) for v in npairs if math.isfinite(v)})
    if not finite_n:
        return ""
    if len(finite_n) > 1:
        return f"{label}: n = {finite_n[0]}–{finite_n[-1]}"
    return f"{label}: n = {finite_n[0]}"


def _series(
    stats: pd.DataFrame, measure: str, timepoints: Sequence[str], baseline: str
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Mean fold change, SEM, stars and n per timepoint from the stats table (baseline = 1)."""
    rows = stats[(stats["measure"] == measure) & (stats["reference"] == baseline)]
    by_tp = {r.timepoint: r for r in rows.itertuples()}
    mean, sem, npairs, stars = [], [], [], []
    for tp in timepoints:
        if tp == baseline:
            mean.append(1.0)
            sem.append(0.0)
            stars.append("")
            npairs.append(float("nan"))
            continue
        r = by_tp.get(tp)
        mean.append(float(r.mean_fc) if r is not None else float("nan"))
        sem.append(float(r.sem_fc) if r is not None else float("nan"))
        stars.append(str(r.stars) if r is not None and isinstance(r.stars, str) else "")
        npairs.append(float(r.n_fc) if r is not None else float("nan"))
    return np.array(mean), np.array(sem), stars, np.array(npairs)


@dataclass(frozen=True, kw_only=True)
class TimecourseEntry:
    """One time-course figure of a run, in two versions (means; means with patients' lines).

    Paths are relative to the output folder; ``preview`` is a PNG the report can show (the
    figure itself unless it is a PDF).
    """

    name: str
    title: str
    measures: tuple[Measure, ...]
    width_in: float
    path: str
    preview: str
    patients_path: str
    patients_preview: str
    #: the measure itself (mean ± SEM of per-patient values), :mod:`~cytogate.viz.timecourse_values`
    values_path: str = ""
    values_preview: str = ""
    values_width_in: float = 0.0
    #: (measure label, patients with that measure) in the figure's order
    n_patients: tuple[tuple[str, int], ...] = ()
    seconds: float = 0.0  # drawing time, in the process that drew it


@dataclass(frozen=True, kw_only=True)
class TimecourseTask:
    """One time-course figure to draw (both versions), with the tables it reads."""

    name: str
    measures: tuple[Measure, ...]
    timecourse: pd.DataFrame
    stats: pd.DataFrame
    timepoints: tuple[str, ...]
    baseline: str
    simulated: bool
    control: str = "isotype"  # the control tube RMFI divides by, as the axis states it
    controls: tuple[tuple[str, str], ...] = ()  # marker -> its own control kind, if configured
    phases: tuple[Phase, ...] | None = None  # None: derived from the timepoints


def timecourse_tasks(
    timecourse: pd.DataFrame,
    stats: pd.DataFrame,
    measures: Iterable[Measure],
    timepoints: Sequence[str],
    baseline: str,
    simulated: bool = False,
    control: str = "isotype",
    phases: Sequence[Phase] | None = None,
    controls: Mapping[str, str] | None = None,
) -> list[TimecourseTask]:
    """The run's time-course figures, each with only its measures' rows."""
    if timecourse.empty or stats.empty:
        return []
    present = set(timecourse["measure"].unique())
    tasks = []
    for name, group in timecourse_groups(m for m in measures if m.name in present).items():
        names = [m.name for m in group]
        tasks.append(
            TimecourseTask(
                name=name,
                measures=tuple(group),
                timecourse=timecourse[timecourse["measure"].isin(names)],
                stats=stats[stats["measure"].isin(names)],
                timepoints=tuple(timepoints),
                baseline=baseline,
                simulated=simulated,
                control=control,
                controls=tuple(sorted((controls or {}).items())),
                phases=None if phases is None else tuple(phases),
            )
        )
    return tasks


@with_text_style
def draw_timecourse(
    task: TimecourseTask, plots_dir: str | os.PathLike[str], fmt: str = "png", dpi: int = DPI
) -> TimecourseEntry:
    """Write one time-course figure's three versions into plots_dir: mean fold change ± SEM,
    the same with per-patient lines, and the measure itself (``_values``)."""
    import time

    from cytogate.viz.timecourse_values import value_summary, values_figure

    start = time.perf_counter()
    root = Path(plots_dir)
    paths: dict[str, str] = {}
    widths: dict[str, float] = {}
    title = TITLES.get(task.name)
    for key in ("", "patients_", "values_"):
        if key == "values_":
            fig = values_figure(
                task.timecourse,
                task.stats,
                task.measures,
                task.timepoints,
                task.baseline,
                control=task.control,
                controls=dict(task.controls),
                phases=task.phases,
                simulated=task.simulated,
                title=title,
            )
        else:
            fig = timecourse_figure(
                task.timecourse,
                task.stats,
                task.measures,
                task.timepoints,
                task.baseline,
                overlay=(task.name == "mobilisation"),
                per_patient=(key == "patients_"),
                simulated=task.simulated,
                title=title,
                phases=task.phases,
            )
        stem = f"timecourse_{task.name}{'_' + key.rstrip('_') if key else ''}"
        full = root / f"{stem}.{fmt}"
        preview = root / THUMBS_DIR / f"{stem}.png" if fmt == "pdf" else None
        save_figure(fig, full, dpi=dpi, thumbnail=preview, thumbnail_width=1200)
        widths[key] = fig.get_figwidth()
        paths[f"{key}path"] = f"{root.name}/{full.name}"
        paths[f"{key}preview"] = (
            f"{root.name}/{THUMBS_DIR}/{preview.name}" if preview else paths[f"{key}path"]
        )
    n_patients = tuple(
        (m.label, value_summary(task.timecourse, m.name, task.timepoints)[3]) for m in task.measures
    )
    return TimecourseEntry(
        name=task.name,
        title=TITLES.get(task.name, task.name),
        measures=task.measures,
        width_in=widths[""],
        values_width_in=widths["values_"],
        n_patients=n_patients,
        seconds=time.perf_counter() - start,
        **paths,
    )


def plot_timecourses(
    timecourse: pd.DataFrame,
    stats: pd.DataFrame,
    measures: Iterable[Measure],
    timepoints: Sequence[str],
    baseline: str,
    plots_dir: str | os.PathLike[str],
    fmt: str = "png",
    dpi: int = DPI,
    simulated: bool = False,
) -> list[TimecourseEntry]:
    """Write every time-course figure of a run into plots_dir (in this process)."""
    tasks = timecourse_tasks(timecourse, stats, measures, timepoints, baseline, simulated)
    return [draw_timecourse(t, plots_dir, fmt, dpi) for t in tasks]
