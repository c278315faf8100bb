"""Stained vs control tube of one draw: blast shares must agree within the stated tolerance."""

from __future__ import annotations

from cytogate.analysis.draw_agreement import draw_disagreement


class Counts:
    """Stands in for a GatingResult: only counts are read."""

    def __init__(self, blasts: int, leukocytes: int) -> None:
        self._n = {"blasts": blasts, "leukocytes": leukocytes}

    def count(self, population: str) -> int:
        return self._n[population]


def test_agreeing_tubes_are_not_flagged() -> None:
    # 30.0 % vs 28.5 %: 5 % apart, inside 10 %
    assert draw_disagreement(Counts(3000, 10000), Counts(2850, 10000), "P01 baseline") == ""


def test_share_not_count_is_compared() -> None:
    # the control tube acquired half the events: same share, no flag
    assert draw_disagreement(Counts(3000, 10000), Counts(1500, 5000), "P01 baseline") == ""


def test_disagreeing_tubes_are_flagged_in_words() -> None:
    why = draw_disagreement(Counts(3000, 10000), Counts(2100, 10000), "P01 baseline")
    assert why.startswith("blast count differs 30% between the stained and isotype tubes")
    assert "P01 baseline" in why


def test_few_blasts_get_a_wider_tolerance() -> None:
    # 20 vs 14 blasts: 30 % apart is within 3 SD of counting noise (about 103 %)
    assert draw_disagreement(Counts(20, 10000), Counts(14, 10000), "P02 day3") == ""
