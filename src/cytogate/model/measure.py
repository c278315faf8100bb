"""A quantified measure: which population, marker and statistic, its column name and its label.

The batch builds :class:`Measure` values, the statistics and time-course tables key their rows
by :attr:`Measure.name`, and plots and the report label them with :attr:`Measure.label`, so a
name is never parsed back into its parts (a population such as ``cd45_negative`` holds an
underscore and cannot be split out of ``cd45_negative_CXCR4_12G5_rmfi_median`` reliably).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MeasureKind = Literal["per_ul", "rmfi", "pct_positive"]


@dataclass(frozen=True, kw_only=True)
class Measure:
    """One per-sample value the study follows over time.

    ``kind``: ``per_ul`` (absolute count of ``population``), ``rmfi`` (``marker``'s MFI
    ``statistic`` on ``population``, stained / control tube) or ``pct_positive`` (% of
    ``population`` above the control tube's threshold for ``marker``).
    """

    kind: MeasureKind
    population: str
    marker: str = ""
    statistic: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("per_ul", "rmfi", "pct_positive"):
            raise ValueError(f"unknown measure kind {self.kind!r}")
        if self.kind != "per_ul" and not self.marker:
            raise ValueError(f"a {self.kind} measure needs a marker")
        if self.kind == "rmfi" and not self.statistic:
            raise ValueError("an rmfi measure needs its MFI statistic")

    @classmethod
    def per_ul(cls, population: str) -> Measure:
        return cls(kind="per_ul", population=population)

    @classmethod
    def rmfi(cls, population: str, marker: str, statistic: str) -> Measure:
        return cls(kind="rmfi", population=population, marker=marker, statistic=statistic)

    @classmethod
    def pct_positive(cls, population: str, marker: str) -> Measure:
        return cls(kind="pct_positive", population=population, marker=marker)

    @property
    def name(self) -> str:
        """Column value in the values, time-course and statistics tables."""
        if self.kind == "per_ul":
            return f"{self.population}_per_ul"
        if self.kind == "rmfi":
            return f"{self.population}_{self.marker}_rmfi_{self.statistic}"
        return f"{self.population}_{self.marker}_pct_positive"

    @property
    def label(self) -> str:
        """Human label for figures and the report: ``CXCR4 (12G5) RMFI on blasts``."""
        if self.kind == "per_ul":
            return f"{self.population.capitalize()} /µL"
        if self.kind == "rmfi":
            return f"{marker_label(self.marker)} RMFI on {self.population}"
        return f"{marker_label(self.marker)}+ % of {self.population}"


def marker_label(marker: str) -> str:
    """``CXCR4_12G5`` -> ``CXCR4 (12G5)``: a clone written after its antigen."""
    antigen, sep, clone = marker.partition("_")
    if sep and antigen == "CXCR4" and clone:
        return f"CXCR4 ({clone})"
    return marker
