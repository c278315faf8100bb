"""The figures of cytogate in one import: gate plots, marker plots, time courses, saving.

Each figure kind lives in its own module (:mod:`~cytogate.viz.gate_plots`,
:mod:`~cytogate.viz.marker_plots`, :mod:`~cytogate.viz.timecourse`); figures are views of a
batch's recorded outcomes (:mod:`~cytogate.viz.events`). See docs/plots_and_report.md.
"""

from __future__ import annotations

from cytogate.viz.axes import AxisInfo, axis_for, data_ticks
from cytogate.viz.events import EventView, view_of
from cytogate.viz.figure import (
    CMAP,
    DPI,
    FORMATS,
    SAMPLE_DPI,
    SIMULATED_TEXT,
    THUMB_PPI,
    PlotError,
    is_simulated,
    new_figure,
    save_figure,
)
from cytogate.viz.gate_plots import GateFigure, PanelInfo, gate_figure, gate_outline, plan_panels
from cytogate.viz.marker_plots import marker_figure
from cytogate.viz.render import PlotEntry, PlotJob, plot_group, plot_jobs, plot_sample
from cytogate.viz.timecourse import (
    TimecourseEntry,
    plot_timecourses,
    timecourse_figure,
    timecourse_groups,
)

__all__ = [
    "CMAP",
    "DPI",
    "FORMATS",
    "SAMPLE_DPI",
    "SIMULATED_TEXT",
    "THUMB_PPI",
    "AxisInfo",
    "EventView",
    "GateFigure",
    "PanelInfo",
    "PlotEntry",
    "PlotError",
    "PlotJob",
    "TimecourseEntry",
    "axis_for",
    "data_ticks",
    "gate_figure",
    "gate_outline",
    "is_simulated",
    "marker_figure",
    "new_figure",
    "plan_panels",
    "plot_group",
    "plot_jobs",
    "plot_sample",
    "plot_timecourses",
    "save_figure",
    "timecourse_figure",
    "timecourse_groups",
    "view_of",
]
