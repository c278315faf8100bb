"""Scales fitted to the data (issue 9, item 2): synthetic channels whose right scale is known
by construction, FC 500-style files (simulated, with the FlowCAP-II export quirk of linear
values beyond $PnR), and real corpus files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cytogate.io.fcs import read_fcs, read_fcs_bytes
from cytogate.model.scale_estimation import estimate_scale, estimate_scales
from tests.fcs_fixtures import build_fcs

CORPUS = Path(__file__).parent / "data" / "fcs_corpus"
RNG = np.random.default_rng(20261201)


def _one(values: np.ndarray, **kwargs) -> object:
    return read_fcs_bytes(build_fcs(values.reshape(-1, 1), **kwargs), "synthetic.fcs")


def test_logicle_width_follows_the_negative_tail():
    # 30% unstained events: pure electronic noise N(0, sd); the rest lognormal positive cells.
    # Negatives come from the noise, whose 5% quantile among negatives is -1.96 sd, so
    # estimateLogicle's W = (M - log10(T / (1.96 sd))) / 2 is known from sd alone.
    n, t = 200_000, 262144.0
    for sd in (20.0, 80.0, 300.0):
        noise = RNG.normal(0.0, sd, size=int(0.3 * n))
        cells = RNG.lognormal(math.log(5000), 0.8, size=n - noise.size) + RNG.normal(
            0, sd, n - noise.size
        )
        values = np.minimum(np.concatenate([noise, cells]), t - 1)  # detector saturates
        est = estimate_scale(_one(values, pnn=["PE-A"], pnr=t), 0)
        expected = (4.5 - math.log10(t / (1.96 * sd))) / 2
        assert est.kind == "logicle"
        assert est.params["T"] == t and est.params["M"] == 4.5 and est.params["A"] == 0.0
        # cells' own noise adds a few negatives closer to 0: W is within 0.05 of the truth
        assert abs(est.params["W"] - max(expected, 0.0)) < 0.05, (sd, est.params, expected)


def test_logicle_without_negatives_has_zero_width():
    est = estimate_scale(_one(RNG.lognormal(8, 1, 5000), pnn=["FITC-A"], pnr=262144), 0)
    assert est.kind == "logicle" and est.params["W"] == 0.0


def test_logicle_top_follows_data_beyond_range():
    values = np.concatenate([RNG.normal(0, 50, 1000), RNG.uniform(1e3, 1.2e6, 5000)])
    est = estimate_scale(_one(values, pnn=["APC-A"], pnr=262144), 0)
    assert est.kind == "logicle"
    assert est.params["T"] == pytest.approx(values.max(), rel=1e-6)  # float32 storage
    assert est.covered == 1.0 and "data max" in est.reason


def test_log_amplified_integer_channel_uses_pne():
    channels = RNG.integers(0, 1024, size=(4000, 1))
    sample = read_fcs_bytes(
        build_fcs(
            channels, datatype="I", bits=16, pnn=["FL1 Log"], pnr=1024, pne="4,0", version="2.0"
        ),
        "fc500.fcs",
    )
    est = estimate_scale(sample, "FL1 Log")
    assert (est.kind, est.params) == ("log", {"T": 1e4, "M": 4.0})
    assert est.covered == 1.0 and "$PnE 4,0" in est.reason
    # the scale maps the channel numbers back to their fraction of $PnR
    scaled = est.to_scale().apply(sample.events[:, 0])
    assert np.allclose(scaled, channels[:, 0] / 1024)


def test_legacy_log_values_stored_linear_beyond_pnr_get_a_log_scale():
    # FlowCAP-II FC 500 export: 4-decade log channels converted to linear 1..10^4 and stored
    # as floats, while the header still says $PnR 1024 and $PnE 0,0.
    channel_numbers = RNG.integers(0, 1024, size=20000)
    values = 10.0 ** (4 * channel_numbers / 1024)
    est = estimate_scale(_one(values, pnn=["FL3 Log"], pnr=1024, version="2.0"), 0)
    assert est.kind == "log"
    assert est.params == {"T": 1e4, "M": 4.0}
    assert est.covered >= 0.999
    assert "exceed $PnR 1,024" in est.reason
    assert np.allclose(est.to_scale().apply(values), channel_numbers / 1024, atol=1e-6)


def test_log_channel_numbers_stored_linearly_stay_linear():
    channels = RNG.integers(0, 1024, size=(3000, 1))
    sample = read_fcs_bytes(
        build_fcs(channels, datatype="I", bits=16, pnn=["SS Log"], pnr=1024, version="2.0"),
        "ch.fcs",
    )
    est = estimate_scale(sample, 0)
    assert (est.kind, est.params) == ("linear", {"top": 1024.0, "bottom": 0.0})
    assert "log channel numbers" in est.reason


def test_integer_channel_numbers_and_scatter_are_linear_to_range():
    channels = RNG.integers(0, 1024, size=(3000, 1))
    sample = read_fcs_bytes(
        build_fcs(channels, datatype="I", bits=16, pnn=["FL2"], pnr=1024), "int.fcs"
    )
    est = estimate_scale(sample, 0)
    assert (est.kind, est.params["top"]) == ("linear", 1024.0)
    assert "integer channel numbers" in est.reason
    scatter = estimate_scale(_one(RNG.uniform(0, 300_000, 4000), pnn=["FSC-A"], pnr=262144), 0)
    assert scatter.kind == "linear" and scatter.params["top"] > 262144  # data beyond $PnR
    assert scatter.covered == 1.0 and "beyond $PnR" in scatter.reason


# ------------------------------------------------------------------ FC 500-style and real files


@pytest.mark.parametrize("pne_log", ["4,0", "0,0"])
def test_simulated_fc500_fl3_log_top_covers_the_events(pne_log):
    from cytogate.sim.simulate import StudyConfig, make_patients, simulate_sample
    from tests.fc500 import fc500_bytes

    config = StudyConfig(n_patients=2, events_per_file=10000, seed=5, atypical_patients=0)
    patient = make_patients(config)[0]
    sim = simulate_sample(config, patient, "baseline", "stained", 10000, np.random.default_rng(9))
    sample = read_fcs_bytes(fc500_bytes(sim, pne_log=pne_log), "FC500_sim.LMD")
    est = estimate_scale(sample, "FL3 Log")
    assert est.covered >= 0.999
    if pne_log == "4,0":
        assert (est.kind, est.params) == ("log", {"T": 1e4, "M": 4.0})
    else:
        assert (est.kind, est.params["top"]) == ("linear", 1024.0)
    assert estimate_scale(sample, "FS Lin").kind == "linear"


def test_simulated_fc500_exported_linear_beyond_range():
    from cytogate.sim.simulate import StudyConfig, make_patients, simulate_sample
    from tests.fc500 import fc500_bytes

    config = StudyConfig(n_patients=2, events_per_file=10000, seed=5, atypical_patients=0)
    patient = make_patients(config)[0]
    sim = simulate_sample(config, patient, "baseline", "stained", 10000, np.random.default_rng(9))
    raw = read_fcs_bytes(fc500_bytes(sim, pne_log="0,0"), "FC500_sim.LMD")
    log_cols = [i for i, n in enumerate(raw.channel_names) if n.endswith("Log")]
    values = raw.events.copy()
    values[:, log_cols] = 10.0 ** (4 * values[:, log_cols] / 1024)  # the FlowCAP-II export
    flowcap = read_fcs_bytes(
        build_fcs(values, version="2.0", pnn=raw.channel_names, pnr=1024), "flowcap.fcs"
    )
    est = estimate_scale(flowcap, "FL3 Log")
    assert est.kind == "log" and est.params["T"] == 1e4
    assert est.covered >= 0.999
    # on that scale the events sit where the instrument put them: their channel fraction
    fraction = est.to_scale().apply(flowcap.events[:, raw.channel_names.index("FL3 Log")])
    expected = raw.events[:, raw.channel_names.index("FL3 Log")] / 1024
    assert np.allclose(fraction, expected, atol=2e-3)


def test_corpus_files():
    diva = read_fcs(CORPUS / "FACS_Diva/facs_diva_test.fcs")
    by_name = {e.channel: e for e in estimate_scales(diva)}
    assert by_name["FSC-A"].kind == "linear" and by_name["Time"].kind == "linear"
    assert by_name["PerCP-A"].kind == "logicle"
    assert 0.2 < by_name["PerCP-A"].params["W"] < 1.0  # compensated data: a real negative tail
    assert all(e.covered == 1.0 for e in by_name.values())
    xp5 = read_fcs(CORPUS / "Cytek_xP5/Cytek_xP5.fcs")
    fl3 = estimate_scale(xp5, "FL3")
    assert (fl3.kind, fl3.params) == ("log", {"T": 1e4, "M": 4.0})
    guava = read_fcs(CORPUS / "GuavaMuse/Guava Muse.fcs")
    hlog = estimate_scale(guava, "RED-HLog")
    assert (hlog.kind, hlog.params) == ("linear", {"top": 4.0, "bottom": 0.0})
