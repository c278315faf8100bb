"""write_fcs: files that flowio, FlowKit and our reader all read back to the same values."""

from __future__ import annotations

import os
import string
from pathlib import Path

import flowio
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cytogate.io.fcs import read_fcs
from cytogate.io.fcs_writer import format_spillover, write_fcs

PNN = ["FSC-A", "SSC-A", "FITC-A", "PE-A", "Time"]


def _spill() -> pd.DataFrame:
    names = ["FITC-A", "PE-A"]
    return pd.DataFrame([[1.0, 0.15], [0.012345678901234, 1.0]], index=names, columns=names)


def _events(n: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = rng.normal(1000.0, 3000.0, (n, len(PNN)))
    ev[:, -1] = np.arange(n)
    return ev


def test_round_trip_flowio_flowkit_and_reader(tmp_path: Path) -> None:
    import flowkit as fk

    ev = _events()
    pns = ["", "", "CD114 FITC", "CD184 (CXCR4 12G5) PE", ""]
    path = write_fcs(
        tmp_path / "a.fcs",
        ev,
        PNN,
        pns,
        pnr=[262144, 262144, 262144, 262144, 1024.5],
        keywords={"$CYT": "sim", "$FIL": "a.fcs", "MY_KEY": "x"},
        spillover=_spill(),
    )
    expected = ev.astype(np.float32).astype(np.float64)

    fd = flowio.FlowData(str(path))
    assert fd.version == "3.1"
    assert fd.pnn_labels == PNN
    assert fd.pns_labels == pns
    np.testing.assert_array_equal(fd.as_array(preprocess=False), expected)
    assert fd.text["datatype"] == "F" and fd.text["byteord"] == "1,2,3,4"
    assert fd.text["mode"] == "L" and fd.text["nextdata"] == "0"
    assert fd.text["p5r"] == "1024.5" and fd.text["p1r"] == "262144"
    assert all(fd.text[f"p{i}b"] == "32" and fd.text[f"p{i}e"] == "0,0" for i in range(1, 6))

    sample = fk.Sample(str(path))
    np.testing.assert_array_equal(sample.get_events(source="raw")[:, :4], expected[:, :4])
    assert sample.pnn_labels == PNN
    # FlowKit parses our $SPILLOVER into the same matrix and compensates with it.
    sample.apply_compensation(sample.metadata["spillover"])
    comp = sample.get_events(source="comp")
    inv = np.linalg.inv(_spill().to_numpy())
    np.testing.assert_allclose(comp[:, 2:4], expected[:, 2:4] @ inv, rtol=1e-9, atol=1e-6)

    ours = read_fcs(path)
    assert ours.warnings == ()
    np.testing.assert_array_equal(ours.events, expected)
    assert list(ours.channels["pnn"]) == PNN
    assert list(ours.channels["pns"]) == pns
    assert list(ours.channels["pnr"]) == [262144.0, 262144.0, 262144.0, 262144.0, 1024.5]
    pd.testing.assert_frame_equal(ours.spillover, _spill())
    assert ours.keywords["$CYT"] == "sim" and ours.keywords["MY_KEY"] == "x"


def test_header_and_text_offsets_are_consistent(tmp_path: Path) -> None:
    ev = _events(123)
    path = write_fcs(tmp_path / "b.fcs", ev, PNN)
    raw = path.read_bytes()
    assert raw[:10] == b"FCS3.1    "
    text_begin, text_end, data_begin, data_end, ana_begin, ana_end = (
        int(raw[10 + 8 * i : 18 + 8 * i]) for i in range(6)
    )
    assert (text_begin, ana_begin, ana_end) == (58, 0, 0)
    assert data_begin == text_end + 1
    assert data_end - data_begin + 1 == ev.size * 4
    assert raw[-8:] == b"00000000"  # CRC "not computed"
    assert len(raw) == data_end + 1 + 8
    kw = read_fcs(path).keywords
    assert int(kw["$BEGINDATA"]) == data_begin and int(kw["$ENDDATA"]) == data_end
    assert kw["$TOT"] == "123" and kw["$PAR"] == "5"
    data = np.frombuffer(raw[data_begin : data_end + 1], dtype="<f4").reshape(-1, len(PNN))
    np.testing.assert_array_equal(data, ev.astype(np.float32))


@pytest.mark.parametrize("n_keywords", [0, 1, 5, 40, 300])
def test_offset_digit_boundaries(tmp_path: Path, n_keywords: int) -> None:
    """TEXT growing across a power of ten moves DATA: offsets must still agree with the bytes."""
    kw = {f"K{i}": "v" * (i % 7 + 1) for i in range(n_keywords)}
    for n in (1, 2, 3):
        path = write_fcs(tmp_path / f"c{n_keywords}_{n}.fcs", _events(n), PNN, keywords=kw)
        fd = flowio.FlowData(str(path))  # raises on any HEADER/TEXT offset discrepancy
        np.testing.assert_array_equal(
            fd.as_array(preprocess=False)[:, :4], _events(n)[:, :4].astype(np.float32)
        )


def test_large_data_segment_uses_zero_header_offsets(tmp_path: Path) -> None:
    """DATA past byte 99,999,999: HEADER offsets 0, the TEXT keywords hold the real ones."""
    n = 100_000_000 // (4 * 2) + 10
    ev = np.zeros((n, 2), dtype=np.float32)
    ev[-1] = (1.5, -2.5)
    path = write_fcs(tmp_path / "big.fcs", ev, ["A", "B"])
    raw = path.open("rb").read(58)
    assert int(raw[26:34]) == 0 and int(raw[34:42]) == 0
    sample = read_fcs(path)
    assert sample.n_events == n
    np.testing.assert_array_equal(sample.events[-1], [1.5, -2.5])


def test_delimiter_in_values_is_escaped(tmp_path: Path) -> None:
    pns = ["", "", "CD4/CD8 FITC", "a//b", ""]
    kw = {"$COM": "one/two / three", "$SRC": "ü ∂ unicode"}
    path = write_fcs(tmp_path / "d.fcs", _events(10), PNN, pns, keywords=kw)
    assert b"CD4//CD8 FITC" in path.read_bytes()
    for reader in (
        lambda p: flowio.FlowData(str(p)).pns_labels,
        lambda p: list(read_fcs(p).channels["pns"]),
    ):
        assert reader(path) == pns
    ours = read_fcs(path).keywords
    assert ours["$COM"] == "one/two / three" and ours["$SRC"] == "ü ∂ unicode"


@pytest.mark.parametrize("bad", ["/start", "end/"])
def test_values_starting_or_ending_with_delimiter_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="may not start or end"):
        write_fcs(tmp_path / "e.fcs", _events(5), PNN, keywords={"X": bad})
    assert list(tmp_path.iterdir()) == []


def test_empty_pns_and_keyword_values_are_omitted(tmp_path: Path) -> None:
    path = write_fcs(tmp_path / "f.fcs", _events(5), PNN, keywords={"EMPTY": ""})
    kw = read_fcs(path).keywords
    assert "EMPTY" not in kw and "$P1S" not in kw


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pnn": ["A", "A", "B", "C", "D"]}, "not unique"),
        ({"pnn": ["A,1", "B", "C", "D", "E"]}, "comma"),
        ({"pnn": PNN[:4]}, "4 \\$PnN names for 5"),
        ({"pns": ["x"]}, "1 \\$PnS names"),
        ({"pnr": [1.0, 2.0]}, "2 \\$PnR values"),
        ({"keywords": {"$TOT": "5"}}, "set by the writer"),
        ({"keywords": {"$p2n": "x"}}, "set by the writer"),
        ({"keywords": {"$SPILLOVER": "x"}}, "set by the writer"),
    ],
)
def test_invalid_arguments_raise_and_write_nothing(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    args = {"pnn": PNN, **kwargs}
    with pytest.raises(ValueError, match=message):
        write_fcs(tmp_path / "g.fcs", _events(5), **args)
    assert list(tmp_path.iterdir()) == []


def test_no_events_and_bad_shapes_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no events"):
        write_fcs(tmp_path / "h.fcs", np.zeros((0, 5)), PNN)
    with pytest.raises(ValueError, match="2-D"):
        write_fcs(tmp_path / "h.fcs", np.zeros(5), PNN)


def test_spillover_validation() -> None:
    spill = _spill()
    assert format_spillover(spill, PNN) == "2,FITC-A,PE-A,1,0.15,0.012345678901234,1"
    with pytest.raises(ValueError, match="not \\$PnN names"):
        format_spillover(spill.rename(columns={"PE-A": "APC-A"}, index={"PE-A": "APC-A"}), PNN)
    with pytest.raises(ValueError, match="same order"):
        format_spillover(spill.iloc[::-1], PNN)
    with pytest.raises(ValueError, match="square"):
        format_spillover(spill.iloc[:1], PNN)


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    path = write_fcs(tmp_path / "i.fcs", _events(5), PNN)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_fcs(path, _events(5), PNN, keywords={"X": "/bad"})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["i.fcs"]  # no temporary left behind


def test_written_file_honours_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_fcs(tmp_path / "j.fcs", _events(5), PNN)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    a = write_fcs(tmp_path / "k1.fcs", _events(50), PNN, keywords={"$DATE": "01-JAN-2024"})
    b = write_fcs(tmp_path / "k2.fcs", _events(50), PNN, keywords={"$DATE": "01-JAN-2024"})
    assert a.read_bytes() == b.read_bytes()


_text = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + " -_()/.,:ü"),
    min_size=1,
    max_size=20,
).filter(lambda s: s == s.strip() and not s.startswith("/") and not s.endswith("/"))
# (read_fcs strips blanks around values, as many writers pad them; the writer keeps them)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 40),
    p=st.integers(1, 6),
    values=st.lists(_text, min_size=1, max_size=6),
    data=st.data(),
)
def test_property_round_trip(tmp_path: Path, n: int, p: int, values: list[str], data) -> None:
    ev = data.draw(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=n * p, max_size=n * p)
    )
    ev = np.asarray(ev, dtype=np.float32).reshape(n, p)
    pnn = [f"Ch{i}" for i in range(p)]
    pns = [values[i % len(values)] for i in range(p)]
    kw = {f"K{i}": v for i, v in enumerate(values)}
    path = write_fcs(tmp_path / "prop.fcs", ev, pnn, pns, keywords=kw)
    fd = flowio.FlowData(str(path))
    np.testing.assert_array_equal(fd.as_array(preprocess=False), ev)
    assert fd.pns_labels == pns
    ours = read_fcs(path)
    np.testing.assert_array_equal(ours.events, ev)
    assert list(ours.channels["pns"]) == pns
    assert all(ours.keywords[k] == v for k, v in kw.items())
