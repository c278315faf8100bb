"""Broken files: every one raises FCSError whose message starts with the path and names the
cause; random corruption never lets another exception type escape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cytogate.errors import FCSError
from cytogate.io.fcs import read_fcs
from tests.fcs_fixtures import build_fcs, build_multi, set_header_field, text_span

VALUES = np.arange(24.0).reshape(8, 3)


def good(**kwargs: object) -> bytes:
    return build_fcs(VALUES, **kwargs)  # type: ignore[arg-type]


def refuse(path: Path, blob: bytes, *causes: str) -> str:
    path.write_bytes(blob)
    with pytest.raises(FCSError) as info:
        read_fcs(path)
    message = str(info.value)
    assert message.startswith(f"{path.resolve()}: "), message
    for cause in causes:
        assert cause in message, message
    return message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.fcs"
    with pytest.raises(FCSError, match=r"nope\.fcs: no such file"):
        read_fcs(missing)
    with pytest.raises(FCSError, match="is a directory"):
        read_fcs(tmp_path)


def test_zero_bytes(tmp_path: Path) -> None:
    refuse(tmp_path / "empty.fcs", b"", "empty file (0 bytes)")


def test_shorter_than_header(tmp_path: Path) -> None:
    refuse(tmp_path / "short.fcs", good()[:40], "shorter than the 58-byte FCS HEADER")


def test_bad_magic(tmp_path: Path) -> None:
    refuse(tmp_path / "png.fcs", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "not an FCS file")
    refuse(tmp_path / "ver.fcs", b"FCSx.y" + good()[6:], "not an FCS file", "version")
    refuse(tmp_path / "v9.fcs", b"FCS9.9" + good()[6:], "unsupported FCS version 9.9")


def test_garbage_header_offsets(tmp_path: Path) -> None:
    refuse(tmp_path / "hdr.fcs", set_header_field(good(), 0, "abc"), "garbage HEADER")
    refuse(tmp_path / "hdr0.fcs", set_header_field(good(), 0, 0), "garbage HEADER", "TEXT")


def test_text_offsets_past_end(tmp_path: Path) -> None:
    blob = set_header_field(good(), 1, 9_999_999)
    refuse(tmp_path / "text_end.fcs", blob, "TEXT offsets", "past end of file")


def test_data_offsets_past_end(tmp_path: Path) -> None:
    blob = good(override={"$BEGINDATA": "5000", "$ENDDATA": "5095"}, header_data_zero=True)
    refuse(tmp_path / "data_end.fcs", blob, "DATA offsets past end of file")


def test_truncated_data(tmp_path: Path) -> None:
    blob = good(crc=False)
    msg = refuse(tmp_path / "cut.fcs", blob[:-10], "truncated DATA")
    assert "offsets past end of file" in msg  # the file ends inside the DATA segment
    # $TOT promises more events than the DATA segment holds
    padded = good(override={"$TOT": "9"}) + b"\0" * 64  # the file itself is long enough
    refuse(tmp_path / "tot.fcs", padded, "truncated DATA", "holds only 96 bytes")


def test_garbage_text(tmp_path: Path) -> None:
    blob = bytearray(good())
    begin, end = text_span(bytes(blob))
    rng = np.random.default_rng(1)
    letters = rng.integers(65, 90, size=end - begin - 1, dtype=np.uint8)
    blob[begin + 1 : end] = letters.tobytes()
    refuse(tmp_path / "garbage.fcs", bytes(blob), "garbage TEXT: no keyword/value pairs")
    letters[::7] = ord("/")  # delimiters sprinkled in: pairs, but none of the required ones
    blob[begin + 1 : end] = letters.tobytes()
    refuse(tmp_path / "garbage2.fcs", bytes(blob), "missing required keyword")


@pytest.mark.parametrize("delimiter", [b"A", b"7", b"$", b",", b"\xff"])
def test_bad_delimiter(tmp_path: Path, delimiter: bytes) -> None:
    blob = bytearray(good())
    begin, _ = text_span(bytes(blob))
    blob[begin : begin + 1] = delimiter
    refuse(tmp_path / "delim.fcs", bytes(blob), "garbage TEXT", "bad delimiter")


@pytest.mark.parametrize(
    ("kwargs", "causes"),
    [
        ({"mode": "C"}, ["unsupported $MODE='C'"]),
        ({"mode": "U"}, ["unsupported $MODE='U'"]),
        ({"override": {"$DATATYPE": "A"}}, ["unsupported $DATATYPE=A", "ASCII"]),
        ({"override": {"$DATATYPE": "Q"}}, ["unsupported $DATATYPE='Q'"]),
        ({"byteord": "3,4,1,2"}, ["unsupported $BYTEORD='3,4,1,2'"]),
        ({"drop": ["$TOT"]}, ["missing required keyword $TOT"]),
        ({"drop": ["$PAR"]}, ["missing required keyword $PAR"]),
        ({"drop": ["$DATATYPE"]}, ["missing required keyword $DATATYPE"]),
        ({"drop": ["$BYTEORD"]}, ["missing required keyword $BYTEORD"]),
        ({"drop": ["$P2B"]}, ["missing required keyword $P2B"]),
        ({"override": {"$TOT": "many"}}, ["$TOT='many' is not an integer"]),
        ({"override": {"$PAR": "0"}}, ["invalid $PAR='0'"]),
        ({"datatype": "I", "bits": [16, 72, 16]}, ["unsupported integer width $PnB=72"]),
    ],
)
def test_keyword_problems(tmp_path: Path, kwargs: dict, causes: list[str]) -> None:
    refuse(tmp_path / "kw.fcs", good(**kwargs), *causes)


def test_bit_packed_widths_are_unsupported(tmp_path: Path) -> None:
    # $PnB=10 with a DATA length of 10 bits per value (packed): refused, not guessed
    blob = good(datatype="I", bits=16, override={"$P1B": "10", "$P2B": "10", "$P3B": "12"})
    begin = int(blob[26:34])
    packed_end = begin + (8 * 32 + 7) // 8 - 1
    blob = blob.replace(f"$ENDDATA/{begin + 47}/".encode(), f"$ENDDATA/{packed_end}/".encode())
    blob = set_header_field(blob, 3, packed_end)
    refuse(tmp_path / "packed.fcs", blob, "unsupported", "bit-packed")


def test_odd_widths_stored_in_whole_bytes_are_read(tmp_path: Path) -> None:
    # $PnB=12 but every value occupies two bytes (DATA length says so): read, with a warning
    path = tmp_path / "aligned.fcs"
    path.write_bytes(good(datatype="I", bits=16, override={"$P1B": "12"}, pnr=4096))
    sample = read_fcs(path)
    np.testing.assert_array_equal(sample.events, VALUES)
    assert any("not a whole number of bytes" in w for w in sample.warnings)


def test_data_set_out_of_range_and_broken_chain(tmp_path: Path) -> None:
    blob = build_multi([{"values": VALUES}, {"values": VALUES * 2}])
    refuse_path = tmp_path / "multi.fcs"
    refuse_path.write_bytes(blob)
    with pytest.raises(FCSError, match="data_set=2 requested but the file holds 2 data set"):
        read_fcs(refuse_path, data_set=2)
    # chopping the second data set: the first still reads (warning), the second cannot
    first_len = len(build_fcs(VALUES, nextdata=1))
    cut = blob[: first_len + 30]
    refuse_path.write_bytes(cut)
    sample = read_fcs(refuse_path)
    assert sample.data_sets == 1
    assert any("$NEXTDATA chain broken" in w for w in sample.warnings)
    with pytest.raises(FCSError, match="cannot reach data set 1"):
        read_fcs(refuse_path, data_set=1)


# --------------------------------------------------------------------------------------------
# fuzzing: corruption and truncation never raise anything but FCSError

SEEDS = [
    good(),
    good(datatype="I", bits=[8, 16, 24], big_endian=True, pne=["0,0", "4,1", "2,0"], png=2.0),
    good(version="2.0", datatype="D", extra={"$SPILLOVER": "2,CH1,CH2,1,0.1,0.2,1"}),
    build_multi([{"values": VALUES, "supplemental": {"X": "y"}}, {"values": VALUES[:2]}]),
]


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    blob = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["byte", "digit", "delete", "insert", "truncate"]))
        if not blob:
            break
        # bias towards the HEADER and TEXT, where the parsing happens
        limit = min(len(blob), draw(st.sampled_from([58, 400, len(blob)])))
        at = draw(st.integers(0, max(0, limit - 1)))
        if kind == "byte":
            blob[at] = draw(st.integers(0, 255))
        elif kind == "digit":
            blob[at] = draw(st.sampled_from(b"0123456789 /-"))
        elif kind == "delete":
            del blob[at : at + draw(st.integers(1, 20))]
        elif kind == "insert":
            blob[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del blob[at:]
    return bytes(blob)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(blob=corrupted())
def test_corruption_raises_only_fcserror(fuzz_dir: Path, blob: bytes) -> None:
    path = fuzz_dir / "fuzzed.fcs"
    path.write_bytes(blob)
    for data_set in (0, 1):
        try:
            sample = read_fcs(path, data_set=data_set)
        except FCSError as exc:
            message = str(exc)
            assert message.startswith(f"{path.resolve()}: ")
            assert "unexpected" not in message, message  # not the catch-all safety net
        else:
            assert sample.events.shape == (sample.n_events, len(sample.channels))
            assert sample.events.dtype == np.float64
