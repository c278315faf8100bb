"""The reader stays linear and names every cause (issue 13, item 5): chained data sets sharing
one TEXT, TEXT full of escaped delimiters, numbers that only look like numbers, duplicate $PnN
in the spillover, NaN/inf events."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from cytogate.errors import FCSError, GatingError
from cytogate.gating.engine import gate
from cytogate.gating.template import parse_template
from cytogate.io.fcs import read_fcs, read_fcs_bytes
from tests.fcs_fixtures import HEADER_LEN, build_fcs, render_text

VALUES = np.arange(24.0).reshape(8, 3)


def _chained_headers(n_headers: int, n_keywords: int) -> bytes:
    """``n_headers`` HEADERs in a row, every one pointing at the same TEXT, chained by
    $NEXTDATA = 58 (the reproducer of issue 13: 1.2 MB took 3 GiB and a MemoryError)."""
    payload = VALUES.astype("<f4").tobytes()
    text_at = n_headers * HEADER_LEN
    filler = [(f"$X{i}", "v" * 20) for i in range(n_keywords)]

    def text(data_begin: int) -> bytes:
        items = [
            ("$BEGINDATA", f"{data_begin:>12}"),
            ("$ENDDATA", f"{data_begin + len(payload) - 1:>12}"),
            ("$BYTEORD", "1,2,3,4"),
            ("$DATATYPE", "F"),
            ("$MODE", "L"),
            ("$NEXTDATA", str(HEADER_LEN)),
            ("$PAR", "3"),
            ("$TOT", "8"),
        ]
        for n in (1, 2, 3):
            items += [(f"$P{n}B", "32"), (f"$P{n}E", "0,0"), (f"$P{n}N", f"CH{n}")]
            items += [(f"$P{n}R", "1024")]
        return render_text(items + filler)

    length = len(text(0))
    body = text(text_at + length)
    headers = []
    for k in range(n_headers):
        begin = text_at - k * HEADER_LEN
        fields = (begin, begin + len(body) - 1, 0, 0, 0, 0)
        headers.append(b"FCS3.1    " + b"".join(f"{x:>8}".encode() for x in fields))
    return b"".join(headers) + body + payload


def test_many_chained_headers_sharing_one_text_stay_bounded():
    blob = _chained_headers(10_000, 22_000)
    assert 1_000_000 < len(blob) < 1_500_000  # the size of the reproducer
    tracemalloc.start()
    start = time.perf_counter()
    sample = read_fcs_bytes(blob, "chain.fcs")
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sample.data_sets == 10_000
    assert np.array_equal(sample.events, VALUES)
    assert seconds < 30, seconds  # before: minutes and a MemoryError; 6 s at load 13 (traced)
    assert peak < 200 * 2**20, peak  # was 3 GiB


def test_text_with_many_escaped_delimiters_parses_in_linear_time():
    def blob(repeats: int) -> bytes:
        extra = {"$COM": "a/" * repeats, "NOTE": "x//y/" * (repeats // 4)}
        return build_fcs(VALUES, extra=extra)

    big = blob(2_500_000)  # about 8 MB of TEXT
    assert len(big) > 8_000_000
    start = time.perf_counter()
    sample = read_fcs_bytes(big, "escaped.fcs")
    seconds = time.perf_counter() - start
    assert sample.keywords["$COM"] == "a/" * 2_500_000
    assert np.array_equal(sample.events, VALUES)
    # quadratic before: over 60 s for 8 MB; 0.8 s for 12 MB measured at load 2.9
    assert seconds < 20, seconds


@pytest.mark.parametrize(
    ("override", "cause"),
    [
        ({"$P1B": "1e400"}, "$P1B='1e400' is not an integer"),
        ({"$P1B": "99999999999999999999999"}, "$P1B='99999999999999999999999': implausibly"),
        ({"$TOT": "\u00b2"}, "$TOT='\u00b2' is not an integer (non-ASCII"),
        ({"$PAR": "\u0663"}, "$PAR='\u0663' is not an integer (non-ASCII"),
        ({"$TOT": "\uff18"}, "$TOT='\uff18' is not an integer (non-ASCII"),
        ({"$PAR": "900000"}, "invalid $PAR=900000: the TEXT holds only"),
        ({"$P2B": "nan"}, "$P2B='nan' is not an integer"),
        ({"$BYTEORD": "\u00b9,\u00b2,3,4"}, "unsupported $BYTEORD="),
    ],
)
def test_fuzz_causes_are_named(override: dict[str, str], cause: str):
    with pytest.raises(FCSError) as info:
        read_fcs_bytes(build_fcs(VALUES, override=override), "named.fcs")
    message = str(info.value)
    assert "unexpected" not in message, message
    assert cause in message, message


def test_non_ascii_digits_in_data_offsets_are_not_numbers():
    # int() would read the Arabic-Indic digits as a valid offset; the reader must not.
    blob = build_fcs(VALUES, override={"$BEGINDATA": "\u0661\u0662"})
    sample = read_fcs_bytes(blob, "offsets.fcs")  # the HEADER offsets are right: read those
    assert np.array_equal(sample.events, VALUES)
    assert any("$BEGINDATA/$ENDDATA" in w and "not integers" in w for w in sample.warnings)


def test_zero_events_with_offsets_past_the_end_read_as_empty():
    blob = build_fcs(
        np.zeros((0, 3)), override={"$BEGINDATA": "999999999", "$ENDDATA": "999999998"}
    )
    sample = read_fcs_bytes(blob, "empty.fcs")
    assert sample.events.shape == (0, 3)


# ---------------------------------------------------------------- duplicate $PnN + spillover

SPILL_VALUES = np.array([[100.0, 10.0, 20.0, 5.0], [200.0, 30.0, 40.0, 6.0]])
DUP_NAMES = ["FSC-A", "FL1", "FL1", "FL2"]


def _spill_file(spill: str) -> bytes:
    return build_fcs(
        SPILL_VALUES, pnn=DUP_NAMES, pns=["", "CD1", "CD2", "CD3"], extra={"$SPILLOVER": spill}
    )


def test_duplicate_pnn_in_spillover_resolves_by_position():
    sample = read_fcs_bytes(_spill_file("3,FL1,FL1,FL2,1,0,0,0.5,1,0,0,0,1"), "dup.fcs")
    assert sample.spillover_columns == (1, 2, 3)
    assert sample.spillover_error is None
    assert any("matched by position" in w and "$P2N, $P3N" in w for w in sample.warnings)


def test_ambiguous_duplicate_pnn_refuses_to_compensate():
    # FL1 is named once but two channels carry it: which one the matrix means is unknowable.
    sample = read_fcs_bytes(_spill_file("2,FL1,FL2,1,0.2,0,1"), "ambiguous.fcs")
    assert sample.spillover is None
    assert sample.spillover_error is not None
    assert "'FL1' = $P2N, $P3N" in sample.spillover_error
    template = parse_template(
        "name: c\npanel: {A: 'CD3'}\ncompensation: file\n"
        "scales: {default: {kind: linear, top: 1}}\n"
        "gates:\n  - {name: a_pos, kind: range, dims: [A], min: 1}\n",
        Path("c.yaml"),
    )
    with pytest.raises(GatingError, match="cannot be compensated"):
        gate(sample, template)


def test_compensation_by_position_uses_the_second_duplicate():
    # dye of channel 3 (second FL1) spills 50% into FL2: compensated FL2 of event 0 is 5 - 10
    sample = read_fcs_bytes(_spill_file("3,FL1,FL1,FL2,1,0,0,0,1,0.5,0,0,1"), "dup2.fcs")
    template = parse_template(
        "name: c\npanel: {A: 'CD3'}\ncompensation: file\n"
        "scales: {default: {kind: linear, top: 1}}\n"
        "gates:\n  - {name: a_pos, kind: range, dims: [A], min: 1}\n",
        Path("c.yaml"),
    )
    result = gate(sample, template)
    assert np.allclose(result.values("A"), [5.0 - 0.5 * 20.0, 6.0 - 0.5 * 40.0])


# ---------------------------------------------------------------- NaN / inf events


def test_nonfinite_values_are_counted_per_channel_and_excluded_from_gating():
    values = np.arange(30.0).reshape(10, 3)
    values[2, 0] = np.nan
    values[5, 0] = np.inf
    values[7, 2] = -np.inf
    sample = read_fcs_bytes(build_fcs(values, pnn=["X", "Y", "Z"]), "nan.fcs")
    assert dict(sample.nonfinite) == {"X": 2, "Z": 1}
    assert any("non-finite values" in w and "X 2, Z 1" in w for w in sample.warnings)
    assert sample.finite_mask().tolist() == [i not in (2, 5, 7) for i in range(10)]
    template = parse_template(
        "name: n\npanel: {Y: '^Y$'}\ncompensation: none\n"
        "scales: {default: {kind: linear, top: 1}}\n"
        "gates:\n  - {name: all_y, kind: range, dims: [Y], min: -1}\n",
        Path("n.yaml"),
    )
    result = gate(sample, template)
    assert result.excluded_nonfinite == 3
    assert "3 events with NaN/inf values excluded before gating" in result.gate_of("all_y").qc
    assert result.count("all_y") == 7  # Y itself is finite: the events go for X and Z


def test_huge_finite_values_whose_sum_overflows_are_still_finite():
    """The one-pass check sums the values; a sum that overflows to inf must fall back to
    counting, not report finite values as NaN/inf (and a real inf among them is still found)."""
    values = np.full((6, 2), 1.5e308)
    sample = read_fcs_bytes(build_fcs(values, datatype="D", pnn=["A", "B"]), "huge.fcs")
    assert dict(sample.nonfinite) == {}
    values[3, 1] = -np.inf
    sample = read_fcs_bytes(build_fcs(values, datatype="D", pnn=["A", "B"]), "huge_inf.fcs")
    assert dict(sample.nonfinite) == {"B": 1}


def test_finite_file_reports_nothing():
    sample = read_fcs(
        Path(__file__).parent / "data/fcs_corpus/Fortessa/"
        "FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs"
    )
    assert dict(sample.nonfinite) == {}
    assert sample.finite_mask().all()
