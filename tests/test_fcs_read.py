"""read_fcs on the real-instrument corpus and on crafted files.

References: flowio live (raw arrays) for the files it reads; fcsparser 0.2.8 goldens
(tests/data/fcs_reference, made by tools/make_fcs_reference.py) for every file; flowkit live for
the scaled values. Crafted files (tests/fcs_fixtures.py) check the formulas with expectations
computed here independently of the reader.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cytogate.errors import FCSError
from cytogate.io.fcs import Sample, read_fcs
from tests.fcs_fixtures import build_fcs, build_multi, set_header_field, text_span

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "fcs_corpus"
REFERENCE = DATA / "fcs_reference"

FILES = sorted(
    p.relative_to(CORPUS).as_posix()
    for p in CORPUS.rglob("*")
    if p.suffix.lower() in (".fcs", ".lmd")
)

# Files no reader can read: cytogate must refuse them with this cause in the message.
EXPECTED_ERRORS = {
    "corrupted/corrupted.fcs": "shorter than the 58-byte FCS HEADER; not an FCS file",
    "cytek-nl-2000/sample_header.fcs": "DATA offsets past end of file",
}
# flowio 1.4 reads these (with ignore_offset_error=True); it cannot read the rest: Cytek_xP5
# (24-bit integers: events=None), fake_large_fcs (blank HEADER DATA offsets: ValueError),
# Guava Muse (several data sets: MultipleDataSetsError; read_multiple_data_sets works).
FLOWIO_READS = [
    "FACSCaliburHTS/Sample_Well_A02.fcs",
    "FACS_Diva/facs_diva_test.fcs",
    "Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs",
    "HTS_BD_LSR-II/HTS_BD_LSR_II_Mixed_Specimen_001_D6_D06.fcs",
    "MiltenyiBiotec/FCS2.0/EY_2013-07-19_PBS_FCS_2.0_Custom_Without_Add_Well_A1.001.fcs",
    "MiltenyiBiotec/FCS3.0/FCS3.0_Custom_Compatible.fcs",
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Custom_Add_Well_A1.001.fcs",
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Custom_Without_Add_Well_A1.001.fcs",
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Well_A1.001.fcs",
    "MiltenyiBiotec/FCS3.1/SG_2014-09-26_Duplicate_Names.fcs",
    "cyflow_cube_8/cyflow_cube_8.fcs",
    "fake_bitmask_error/fcs1_cleaned.lmd",
]
DIVA = CORPUS / "FACS_Diva/facs_diva_test.fcs"


def golden_name(rel: str) -> str:
    # same rule as tools/make_fcs_reference.py
    return "__".join(Path(rel).with_suffix("").parts) + ".json"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_corpus_is_complete() -> None:
    # the whole shared corpus was copied; a golden exists for every file
    assert len(FILES) == 17
    assert set(EXPECTED_ERRORS) <= set(FILES) and set(FLOWIO_READS) <= set(FILES)
    for rel in FILES:
        assert (REFERENCE / golden_name(rel)).is_file(), rel


# --------------------------------------------------------------------------------------------
# corpus against the references


@pytest.mark.parametrize("rel", FILES)
def test_corpus_file_matches_fcsparser_or_fails_clearly(rel: str) -> None:
    path = CORPUS / rel
    golden = json.loads((REFERENCE / golden_name(rel)).read_text())
    assert golden["sha256"] == file_sha256(path), "golden made from other bytes; regenerate"
    if rel in EXPECTED_ERRORS:
        with pytest.raises(FCSError) as info:
            read_fcs(path)
        message = str(info.value)
        assert message.startswith(f"{path.resolve()}: ")
        assert EXPECTED_ERRORS[rel] in message
        assert "error" in golden  # the reference refuses it too
        return
    assert "error" not in golden
    for ref in golden["data_sets"]:
        sample = read_fcs(path, data_set=ref["data_set"], scale=False)
        assert sample.n_events == ref["n_events"]
        assert sample.channel_names == ref["channels"]
        assert sample.data_sets == len(golden["data_sets"])
        np.testing.assert_array_equal(sample.events[:5], np.array(ref["head"]))
        np.testing.assert_array_equal(sample.events[-5:], np.array(ref["tail"]))
        np.testing.assert_allclose(sample.events.sum(axis=0), ref["sum"], rtol=1e-12)
        np.testing.assert_allclose((sample.events**2).sum(axis=0), ref["sum_sq"], rtol=1e-12)


@pytest.mark.parametrize("rel", FLOWIO_READS)
def test_corpus_file_matches_flowio_raw(rel: str) -> None:
    flowio = pytest.importorskip("flowio")
    path = CORPUS / rel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flow = flowio.FlowData(str(path), ignore_offset_error=True)
    sample = read_fcs(path, scale=False)
    np.testing.assert_array_equal(sample.events, flow.as_array(preprocess=False))
    assert sample.channel_names == flow.pnn_labels
    assert sample.channels["pns"].tolist() == flow.pns_labels


def test_guava_muse_every_data_set_matches_flowio() -> None:
    flowio = pytest.importorskip("flowio")
    path = CORPUS / "GuavaMuse/Guava Muse.fcs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flows = flowio.read_multiple_data_sets(str(path))
    assert len(flows) == 4
    for k, flow in enumerate(flows):
        sample = read_fcs(path, data_set=k, scale=False)
        assert sample.data_sets == 4
        np.testing.assert_array_equal(sample.events, flow.as_array(preprocess=False))
    with pytest.raises(FCSError, match="data_set=4 requested but the file holds 4 data set"):
        read_fcs(path, data_set=4)


def _flowkit_rule(sample: Sample, raw: Sample, i: int) -> tuple[np.ndarray, bool]:
    """flowkit's 'raw' (preprocessed) values for column i as flowkit/flowio compute them, and
    whether cytogate's documented rules give the same thing for this channel."""
    row = sample.channels.iloc[i]
    x = raw.events[:, i].copy()
    f1, f2 = (float(v) for v in row.pne.split(","))
    is_time = row.pnn.lower() == "time"
    has_timestep = is_time and "$TIMESTEP" in sample.keywords
    gain = 1.0 if is_time else row.png
    if has_timestep:
        x = x * float(sample.keywords["$TIMESTEP"])
    if f1 > 0:
        x = (f2 if f2 != 0 else 1.0) * 10 ** (f1 * x / row.pnr)
    if gain not in (0.0, 1.0):
        x = x / gain
    is_float = sample.keywords["$DATATYPE"].strip() in ("F", "D")
    same = not has_timestep and not (is_float and (f1 > 0 or row.png != 1.0))
    same = same and not (f1 > 0 and row.png != 1.0)
    return x, same


@pytest.mark.parametrize("rel", FLOWIO_READS)
def test_scaled_values_match_flowkit_except_documented_differences(rel: str) -> None:
    flowkit = pytest.importorskip("flowkit")
    path = CORPUS / rel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = flowkit.Sample(str(path), ignore_offset_error=True).get_events(source="raw")
    ours, raw = read_fcs(path), read_fcs(path, scale=False)
    compared = 0
    for i in range(ours.events.shape[1]):
        expected, same = _flowkit_rule(ours, raw, i)
        # our reading of what flowkit does is right ...
        np.testing.assert_allclose(theirs[:, i], expected, rtol=1e-12)
        if same:  # ... and where the rules coincide we give the same values
            np.testing.assert_allclose(ours.events[:, i], theirs[:, i], rtol=1e-12)
            compared += 1
        elif ours.keywords["$DATATYPE"].strip() in ("F", "D"):
            np.testing.assert_array_equal(ours.events[:, i], raw.events[:, i])
    assert compared >= ours.events.shape[1] - 1  # at most the Time channel differs here


def test_flowkit_difference_on_time_channel_is_timestep_only() -> None:
    ours = read_fcs(DIVA)
    t = ours.channel_index("Time")
    assert ours.keywords["$TIMESTEP"] == "0.01"
    assert ours.channels.loc[t, "png"] == 0.01  # a float channel: gain not applied
    assert ours.events[0, t] == np.float32(632.1)  # stored value, not 6.321 (flowkit) or 63210


# --------------------------------------------------------------------------------------------
# specific corpus files


def test_diva_spillover_and_panel() -> None:
    sample = read_fcs(DIVA)
    assert sample.version == "3.0" and sample.n_events == 83411 and sample.data_sets == 1
    names = [
        "FITC-A",
        "PE-A",
        "PerCP-A",
        "PE-Cy7-A",
        "PacificBlue-A",
        "APC-A",
        "Alexa700-A",
        "APC-Cy7-A",
    ]
    spill = sample.spillover
    assert spill is not None and spill.shape == (8, 8)
    assert list(spill.index) == names and list(spill.columns) == names
    np.testing.assert_array_equal(np.diag(spill.to_numpy()), np.ones(8))
    assert spill.loc["FITC-A", "PE-A"] == pytest.approx(0.1839411109727794, rel=1e-15)
    assert "SPILL" in sample.keywords and "$SPILLOVER" not in sample.keywords
    cd45 = sample.channels.loc[sample.channels["pns"] == "CD45", "pnn"].tolist()
    assert cd45 == ["PerCP-A"]
    assert sample.channel_index("PerCP-A") == 6


def test_diva_channel_table() -> None:
    table = read_fcs(DIVA).channels
    assert list(table.columns) == ["n", "pnn", "pns", "pnr", "pnb", "pne", "png"]
    assert table["n"].tolist() == list(range(1, 13))
    assert table["pnn"].tolist() == [
        "Time",
        "FSC-A",
        "FSC-W",
        "SSC-A",
        "FITC-A",
        "PE-A",
        "PerCP-A",
        "PE-Cy7-A",
        "PacificBlue-A",
        "APC-A",
        "Alexa700-A",
        "APC-Cy7-A",
    ]
    assert table["pns"].tolist() == [
        "",
        "",
        "",
        "",
        "CD20",
        "CD10",
        "CD45",
        "CD34",
        "Syto 41",
        "CD19",
        "CD38",
        "",
    ]
    assert table["pnr"].tolist() == [262144.0] * 12
    assert table["pnb"].tolist() == [32] * 12
    assert table["pne"].tolist() == ["0,0"] * 12
    assert table["png"].tolist() == [0.01] + [1.0] * 11


def test_sha256_path_and_events_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DIVA.parent)
    sample = read_fcs(DIVA.name)  # relative path: stored resolved and absolute
    assert sample.path == DIVA.resolve() and sample.path.is_absolute()
    assert sample.sha256 == hashlib.sha256(DIVA.read_bytes()).hexdigest()
    # the digest (hashed in a thread while the file is decoded) pickles as its value
    assert pickle.loads(pickle.dumps(sample.digest)).hexdigest() == sample.sha256
    assert sample.events.dtype == np.float64 and sample.events.flags.c_contiguous
    assert not sample.events.flags.writeable
    assert sample.events is sample.events  # widened once, then kept
    assert sample.data.dtype == np.float32  # $DATATYPE F: not widened until asked
    np.testing.assert_array_equal(sample.events, sample.data.astype(np.float64))
    assert "83411 events" in repr(sample)


def test_keywords_are_upper_cased() -> None:
    sample = read_fcs(CORPUS / "Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs")
    assert "SAMPLEID" in sample.keywords and "SampleID" not in sample.keywords
    assert all(key == key.upper() for key in sample.keywords)
    # values are not stripped: BD pads $ENDDATA with spaces
    assert sample.keywords["$ENDDATA"] == "512201             "


def test_miltenyi_31_off_by_one_and_names_only_spillover() -> None:
    path = CORPUS / "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Well_A1.001.fcs"
    sample = read_fcs(path)
    assert sample.n_events == 10000
    assert any("one byte past the data" in w for w in sample.warnings)
    # $SPILLOVER holds 6 names and no matrix values: events fine, spillover None + warning
    assert sample.spillover is None
    assert any("malformed $SPILLOVER" in w for w in sample.warnings)
    # supplemental TEXT (2722-127220) merged
    assert int(sample.keywords["$BEGINSTEXT"]) == 2722
    assert any(key.startswith("@MB_") for key in sample.keywords)


def test_duplicate_names_file_has_escaped_delimiters_not_duplicates() -> None:
    # The Miltenyi "Duplicate_Names" file writes $P8S/GFP//FITC-A/: a reader that ignores the
    # FCS 3.1 doubled-delimiter escape sees two channels named "GFP". It also repeats $VOL.
    path = CORPUS / "MiltenyiBiotec/FCS3.1/SG_2014-09-26_Duplicate_Names.fcs"
    sample = read_fcs(path)
    assert sample.channels["pns"].tolist()[-2:] == ["GFP/FITC-A", "GFP/FITC-H"]
    assert sample.keywords["$P4F"] == "561//10 nm"  # "////" = two escaped delimiters
    assert sample.channel_index("FL7-H") == 8
    assert any("repeats keywords ['$VOL']" in w for w in sample.warnings)


def test_fake_large_file_uses_text_offsets_and_equals_fortessa() -> None:
    large = read_fcs(CORPUS / "fake_large_fcs/fake_large_fcs.fcs")
    fortessa = read_fcs(CORPUS / "Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs")
    assert (CORPUS / "fake_large_fcs/fake_large_fcs.fcs").read_bytes()[26:42] == b" " * 16
    np.testing.assert_array_equal(large.events, fortessa.events)
    assert large.warnings == ()


def test_navios_lmd_bitmask() -> None:
    path = CORPUS / "fake_bitmask_error/fcs1_cleaned.lmd"
    sample = read_fcs(path, scale=False)
    stored = np.frombuffer(path.read_bytes(), "<u2", count=50000 * 7, offset=4232)
    assert (stored > 1023).all()  # every value has bits above $PnR=1024 set
    np.testing.assert_array_equal(sample.events.ravel(), stored & 1023)
    assert any("bitmask applied" in w for w in sample.warnings)
    scaled = read_fcs(path)
    # FS INT LIN: linear, $P1G=2 -> divided; FL1 INT LOG: $P3E " 4.0,0.1024"
    assert scaled.events[0, 0] == 528 / 2.0
    assert scaled.events[0, 2] == pytest.approx(0.1024 * 10 ** (4.0 * 528 / 1024), rel=1e-14)


def test_cytek_24_bit_big_endian() -> None:
    path = CORPUS / "Cytek_xP5/Cytek_xP5.fcs"
    sample = read_fcs(path, scale=False)
    blob = path.read_bytes()
    first = [int.from_bytes(blob[4096 + 3 * i : 4099 + 3 * i], "big") for i in range(16)]
    masks = [32767] + [1023] * 7  # $P1R=30000, others 1024
    expected = [v & masks[i % 8] for i, v in enumerate(first)]
    assert sample.events[:2].ravel().tolist() == expected
    scaled = read_fcs(path)
    fl1 = sample.channel_index("FL1")
    np.testing.assert_allclose(
        scaled.events[:, fl1], 10 ** (4.0 * sample.events[:, fl1] / 1024), rtol=1e-13
    )


def test_facscalibur_log_with_zero_f2_and_latin1_text() -> None:
    path = CORPUS / "FACSCaliburHTS/Sample_Well_A02.fcs"
    raw, scaled = read_fcs(path, scale=False), read_fcs(path)
    assert raw.channels.loc[0, "pne"] == "4,0"
    np.testing.assert_allclose(scaled.events[:, 0], 10 ** (4 * raw.events[:, 0] / 1024))
    assert scaled.keywords["CREATOR"] == "CellQuest Pro\u00aa 5.2.1"
    assert any("Latin-1" in w for w in scaled.warnings)


def test_cyflow_mixed_widths_and_zip_supplemental_text() -> None:
    sample = read_fcs(CORPUS / "cyflow_cube_8/cyflow_cube_8.fcs")
    assert sample.channels["pnb"].tolist() == [16] * 8 + [32, 8]
    assert any("supplemental TEXT" in w and "ignored" in w for w in sample.warnings)


def test_guava_float_log_claim_is_ignored_with_warning() -> None:
    path = CORPUS / "GuavaMuse/Guava Muse.fcs"
    sample, raw = read_fcs(path), read_fcs(path, scale=False)
    assert sample.data_sets == 4 and "file holds 4 data sets; read the first" in sample.warnings
    np.testing.assert_array_equal(sample.events, raw.events)  # no log, no gain on float data
    assert any("claim log amplification" in w for w in sample.warnings)


def test_channel_index_errors_name_the_channel() -> None:
    sample = read_fcs(DIVA)
    with pytest.raises(KeyError, match=r"'CD45'.*PerCP-A"):
        sample.channel_index("CD45")


# --------------------------------------------------------------------------------------------
# crafted files: round trips with independently computed expectations


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fcs")


def next_power_of_two(r: int) -> int:
    p = 1
    while p < r:
        p *= 2
    return p


@st.composite
def integer_files(draw: st.DrawFn) -> dict:
    n_par = draw(st.integers(1, 5))
    bits = draw(st.lists(st.sampled_from([8, 16, 24, 32, 64]), min_size=n_par, max_size=n_par))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_events = draw(st.integers(0, 40))
    values = np.column_stack(
        [rng.integers(0, 2**b - 1, size=n_events, endpoint=True, dtype=np.uint64) for b in bits]
    ).reshape(n_events, n_par)
    pnr = [draw(st.integers(1, 2**b)) for b in bits]
    pne = [draw(st.sampled_from(["0,0", "4,0", "4,1", "3,0.5", "1.5,2"])) for _ in bits]
    png = [draw(st.sampled_from([1.0, 2.5, 0.5, 10.0])) for _ in bits]
    return {
        "values": values,
        "datatype": "I",
        "bits": bits,
        "pnr": pnr,
        "pne": pne,
        "png": png,
        "big_endian": draw(st.booleans()),
        "version": draw(st.sampled_from(["2.0", "3.0", "3.1"])),
    }


def test_64_bit_range_above_float_precision_masks_by_its_exact_value(scratch: Path) -> None:
    """$PnR = 2**61 + 1 (as float: 2**61) needs the 2**62 mask, not 2**61 (found by hypothesis)."""
    values = np.array([[16837368535893154894], [11190454901533422207]], dtype=np.uint64)
    path = scratch / "int64.fcs"
    path.write_bytes(
        build_fcs(values=values, datatype="I", bits=[64], pnr=[2**61 + 1], pne=["0,0"], png=[1.0])
    )
    stored = [float(int(v) & (2**62 - 1)) for v in values[:, 0]]
    assert read_fcs(path, scale=False).events[:, 0].tolist() == stored


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=integer_files())
def test_integer_round_trip_bitmask_and_scaling(scratch: Path, spec: dict) -> None:
    path = scratch / "int.fcs"
    path.write_bytes(build_fcs(**spec))
    raw, scaled = read_fcs(path, scale=False), read_fcs(path)
    values = spec["values"]
    for i, (pnr, pne, png) in enumerate(zip(spec["pnr"], spec["pne"], spec["png"], strict=True)):
        mask = next_power_of_two(pnr) - 1
        stored = [int(v) & mask for v in values[:, i]]
        assert raw.events[:, i].tolist() == [float(v) for v in stored]
        f1, f2 = (float(x) for x in pne.split(","))
        if f1 > 0:
            expected = [(f2 if f2 > 0 else 1.0) * 10 ** (f1 * float(v) / pnr) for v in stored]
        else:
            expected = [float(v) / png for v in stored]
        np.testing.assert_allclose(scaled.events[:, i], expected, rtol=1e-12)
    assert raw.channels["pnb"].tolist() == spec["bits"]
    assert raw.version == spec["version"]


@settings(max_examples=60, deadline=None)
@given(
    datatype=st.sampled_from(["F", "D"]),
    big_endian=st.booleans(),
    version=st.sampled_from(["2.0", "3.0", "3.1"]),
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(0, 30), st.integers(1, 6)),
    claim_log=st.booleans(),
)
def test_float_round_trip(
    scratch: Path,
    datatype: str,
    big_endian: bool,
    version: str,
    seed: int,
    shape: tuple[int, int],
    claim_log: bool,
) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 1e4, size=shape)
    path = scratch / "float.fcs"
    pne = "4,1" if claim_log else "0,0"
    blob = build_fcs(
        values, datatype=datatype, big_endian=big_endian, version=version, pne=pne, png=2.0
    )
    path.write_bytes(blob)
    sample = read_fcs(path)
    expected = values.astype(np.float32) if datatype == "F" else values
    # float data are scale values already: no log, no gain
    np.testing.assert_array_equal(sample.events, expected.astype(np.float64))
    # kept at the file's precision, in native byte order, whatever the file's order and
    # DATA offset (unaligned native data is read in place); each column widened alone
    # equals the widened matrix's column
    if shape[0]:  # (no events: an empty float64 matrix)
        assert sample.data.dtype == np.dtype(np.float32 if datatype == "F" else np.float64)
    assert sample.data.dtype.isnative
    assert not sample.data.flags.writeable
    for j in range(shape[1]):
        column = sample.column(j)
        assert column.dtype == np.float64
        np.testing.assert_array_equal(column, expected[:, j].astype(np.float64))
    assert any("claim log" in w for w in sample.warnings) == claim_log


def test_mixed_widths_both_byte_orders(scratch: Path) -> None:
    values = np.array([[1, 300, 70000, 2**40 + 5], [255, 65535, 16777215, 2**63 + 1]])
    for big in (False, True):
        path = scratch / f"mixed{big}.fcs"
        path.write_bytes(build_fcs(values, datatype="I", bits=[8, 16, 24, 64], big_endian=big))
        got = read_fcs(path, scale=False).events
        assert got[:, :3].tolist() == values[:, :3].astype(float).tolist()
        assert got[:, 3].tolist() == [float(2**40 + 5), float(2**63 + 1)]


def test_several_data_sets(scratch: Path) -> None:
    a = np.arange(6.0).reshape(3, 2)
    b = np.arange(8).reshape(2, 4)
    path = scratch / "multi.fcs"
    path.write_bytes(
        build_multi(
            [
                {"values": a},
                {"values": b, "datatype": "I", "bits": 16, "pnn": ["A", "B", "C", "D"]},
                {"values": a * 2, "version": "3.0", "big_endian": True},
            ]
        )
    )
    first = read_fcs(path)
    assert first.data_sets == 3 and first.warnings[0] == "file holds 3 data sets; read the first"
    np.testing.assert_array_equal(first.events, a)
    second = read_fcs(path, data_set=1)
    assert second.channel_names == ["A", "B", "C", "D"]
    np.testing.assert_array_equal(second.events, b)
    np.testing.assert_array_equal(read_fcs(path, data_set=2).events, a * 2)
    with pytest.raises(ValueError):
        read_fcs(path, data_set=-1)


def test_header_data_offsets_zero_use_text(scratch: Path) -> None:
    path = scratch / "zero.fcs"
    values = np.arange(12.0).reshape(4, 3)
    blob = build_fcs(values, header_data_zero=True)
    assert blob[26:42] == b"       0       0"
    path.write_bytes(blob)
    sample = read_fcs(path)
    np.testing.assert_array_equal(sample.events, values)
    assert sample.warnings == ()  # 0 offsets in the HEADER are standard, not a disagreement


def test_header_and_text_disagree_prefers_consistent_offsets(scratch: Path) -> None:
    values = np.arange(12.0).reshape(4, 3)
    good = build_fcs(values)
    begin = int(good[26:34])
    # wrong HEADER (points into TEXT): TEXT is consistent -> TEXT used
    path = scratch / "bad_header.fcs"
    path.write_bytes(set_header_field(good, 2, begin - 8))
    sample = read_fcs(path)
    np.testing.assert_array_equal(sample.events, values)
    assert any("disagree" in w and "used TEXT" in w for w in sample.warnings)
    # wrong TEXT ($BEGINDATA beyond the end): HEADER is consistent -> HEADER used
    bad_text = build_fcs(values, override={"$BEGINDATA": "99999"}, header_data_zero=False)
    bad_text = set_header_field(bad_text, 2, int(bad_text[26:34]))
    path.write_bytes(bad_text)
    sample = read_fcs(path)
    np.testing.assert_array_equal(sample.events, values)
    assert any("disagree" in w and "used HEADER" in w for w in sample.warnings)


def test_fcs20_without_text_offsets_and_optional_tot(scratch: Path) -> None:
    values = np.arange(10).reshape(5, 2)
    path = scratch / "v20.fcs"
    path.write_bytes(build_fcs(values, version="2.0", datatype="I", bits=16, drop=["$TOT"]))
    sample = read_fcs(path)
    assert "$BEGINDATA" not in sample.keywords
    np.testing.assert_array_equal(sample.events, values)
    assert any("$TOT missing" in w for w in sample.warnings)


DELIMITERS = "/\\|*!\x0c"
KEY_CHARS = "ABZ09-_ \u00c9" + DELIMITERS  # upper case: the reader upper-cases keywords
VALUE_CHARS = "abZ09-_ ,.\u00e9\u00b5" + DELIMITERS


@settings(max_examples=80, deadline=None)
@given(
    delimiter=st.sampled_from(DELIMITERS),
    extra=st.dictionaries(
        st.text(KEY_CHARS, min_size=1, max_size=8),
        st.text(VALUE_CHARS, min_size=1, max_size=12),
        max_size=5,
    ),
)
def test_escaped_delimiters_round_trip(scratch: Path, delimiter: str, extra: dict) -> None:
    # FCS 3.1: a delimiter inside a keyword or value is doubled. A keyword or value may not
    # *start* with the delimiter (a run of three would be ambiguous) nor be empty; keywords are
    # compared stripped (the reader strips them), values exactly.
    extra = {
        k: v
        for k, v in extra.items()
        if k.strip() == k and not k.startswith(delimiter) and not v.startswith(delimiter)
    }
    values = np.ones((2, 2))
    path = scratch / "escaped.fcs"
    path.write_bytes(build_fcs(values, extra=extra, delimiter=delimiter))
    sample = read_fcs(path)
    for key, value in extra.items():
        assert sample.keywords[key] == value
    np.testing.assert_array_equal(sample.events, values)


def test_empty_values_are_read_as_empty(scratch: Path) -> None:
    # Pre-3.1 writers emit empty values ("/$KEY//"), which look like escaped delimiters.
    values = np.ones((2, 2))
    path = scratch / "empty.fcs"
    path.write_bytes(build_fcs(values, extra=[("$COM", ""), ("OPERATOR", "")], extra_first=True))
    sample = read_fcs(path)
    assert sample.keywords["$COM"] == "" and sample.keywords["OPERATOR"] == ""
    assert sample.keywords["$PAR"] == "2"
    np.testing.assert_array_equal(sample.events, values)


def test_text_without_final_delimiter_and_with_padding(scratch: Path) -> None:
    blob = build_fcs(np.ones((2, 1)), extra={"LAST": "v"})
    _, end = text_span(blob)
    assert blob[end : end + 1] == b"/"
    path = scratch / "nodelim.fcs"
    path.write_bytes(blob[:end] + b" " + blob[end + 1 :])  # final "/" replaced by padding
    sample = read_fcs(path)
    assert sample.keywords["LAST"] == "v"
    assert any("does not end with its delimiter" in w for w in sample.warnings)
    path.write_bytes(blob[: end - 1] + b"/ " + blob[end + 1 :])  # "v" -> "/ ": padded, no note
    sample = read_fcs(path)
    assert sample.keywords["LAST"] == "" and sample.warnings == ()


def test_non_utf8_keyword_value_decoded_as_latin1(scratch: Path) -> None:
    blob = build_fcs(np.ones((1, 1)), extra={"CREATOR": "XXXX"})
    path = scratch / "latin.fcs"
    path.write_bytes(blob.replace(b"XXXX", b"Caf\xe9"))
    sample = read_fcs(path)
    assert sample.keywords["CREATOR"] == "Café"


def test_supplemental_text_merged_primary_wins(scratch: Path) -> None:
    path = scratch / "stext.fcs"
    path.write_bytes(
        build_fcs(np.ones((2, 1)), supplemental={"EXTRA": "yes", "$PAR": "7"}, extra={"A": "1"})
    )
    sample = read_fcs(path)
    assert sample.keywords["EXTRA"] == "yes" and sample.keywords["$PAR"] == "1"
    assert any("supplemental TEXT repeats" in w for w in sample.warnings)


def test_lower_case_keywords_and_duplicate_pnn(scratch: Path) -> None:
    path = scratch / "dup.fcs"
    path.write_bytes(build_fcs(np.ones((3, 3)), pnn=["FSC-A", "CD4", "CD4"], extra={"myKey": "v"}))
    sample = read_fcs(path)
    assert sample.keywords["MYKEY"] == "v"
    assert sample.channel_names == ["FSC-A", "CD4", "CD4"]
    assert sample.channel_index("FSC-A") == 0
    with pytest.raises(KeyError, match=r"'CD4' is ambiguous"):
        sample.channel_index("CD4")
    assert any("duplicate $PnN" in w for w in sample.warnings)


@pytest.mark.parametrize(
    ("spill", "expect"),
    [
        ("2,CH1,CH2,1,0.1,0.2,1", ["CH1", "CH2"]),
        ("2,CD3,CD8,1,0.1,0.2,1", ["CH1", "CH2"]),  # $PnS names mapped to $PnN
        ("2,1,2,1,0.1,0.2,1", ["CH1", "CH2"]),  # channel numbers mapped to $PnN
        ("2,CH1,CH2,1,0.1,0.2", None),  # too few values
        ("2,CH1,NOPE,1,0.1,0.2,1", None),  # unknown channel
        ("x,CH1", None),
    ],
)
def test_spillover_parsing(scratch: Path, spill: str, expect: list[str] | None) -> None:
    path = scratch / "spill.fcs"
    path.write_bytes(build_fcs(np.ones((2, 2)), pns=["CD3", "CD8"], extra={"$SPILLOVER": spill}))
    sample = read_fcs(path)
    if expect is None:
        assert sample.spillover is None
        assert any("malformed $SPILLOVER" in w for w in sample.warnings)
    else:
        assert sample.spillover is not None
        assert list(sample.spillover.index) == expect == list(sample.spillover.columns)
        assert sample.spillover.to_numpy().tolist() == [[1.0, 0.1], [0.2, 1.0]]


def test_reads_million_events_fast(scratch: Path) -> None:
    values = np.random.default_rng(0).normal(size=(1_000_000, 10)).astype(np.float32)
    path = scratch / "big.fcs"
    path.write_bytes(build_fcs(values))
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        sample = read_fcs(path)
        best = min(best, time.perf_counter() - start)
    assert sample.events.shape == (1_000_000, 10)
    np.testing.assert_array_equal(sample.events[-1], values[-1])
    assert best < 1.0, f"reading 1M x 10 float32 took {best:.2f} s"
