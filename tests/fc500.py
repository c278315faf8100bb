"""A simulated Beckman FC500-era list-mode file (FCS 2.0) built from a cytogate simulation.

What such files look like: FCS 2.0, $DATATYPE I, 10-bit channel numbers ($PnR 1024) in 16-bit
words, forward scatter linear ("FS Lin", $PnE 0,0), side scatter and fluorescence log-amplified
over 4 decades ("SS Log", "FL3 Log", $PnE 4,0: value = 10^(4 x / 1024)), CD45 on ECD (FL3), no
height or width channels and no spillover keyword: such instruments compensated in hardware
before storing, so the fluorescence written here is the simulation's true (unmixed) signal plus
electronic noise. The events are the simulated ones mapped onto those channels, so the
simulation's per-event labels remain the ground truth.
"""

from __future__ import annotations

import numpy as np

from cytogate.sim.simulate import SCATTER_RANGE, STAINED_NAMES, SimulatedSample
from tests.fcs_fixtures import build_fcs

#: detector -> (simulated channel, marker); FC500 colours FITC, PE, ECD, PC5, PC7 (no BV421)
FC500_CHANNELS = {
    "FL1 Log": ("FITC-A", "FITC"),
    "FL2 Log": ("PE-A", "PE"),
    "FL3 Log": ("PerCP-Cy5-5-A", "ECD"),
    "FL4 Log": ("PE-Cy7-A", "PC5"),
    "FL5 Log": ("APC-A", "PC7"),
}
SSC_GAIN = 10**1.4 / (0.075 * SCATTER_RANGE)  # lymphocytes near channel 350 of SS Log
FL_GAIN = 1e4 / SCATTER_RANGE  # the simulator's full scale onto the 4th decade


def _log_channels(values: np.ndarray, gain: float) -> np.ndarray:
    decades = np.log10(np.maximum(values * gain, 1.0))
    return np.clip(np.round(decades * 1024 / 4), 0, 1023)


def fc500_bytes(sample: SimulatedSample, pne_log: str = "4,0", noise_sd: float = 30.0) -> bytes:
    """The FCS 2.0 bytes of ``sample`` as an FC500 would write it (stained tube naming).

    ``pne_log="0,0"`` writes the log channels without declaring the log amplifier, as some
    exports do (the template then reads them as log channel numbers by their "Log" name).
    """
    pnn = list(sample.pnn)
    ev = sample.events.astype(np.float64)
    rng = np.random.default_rng(0)
    fluorescence = sample.unmixed + noise_sd * rng.standard_normal(sample.unmixed.shape)
    markers = {ch: m for m, ch in _panel(sample).items()}
    columns = [
        np.clip(np.round(ev[:, pnn.index("FSC-A")] / SCATTER_RANGE * 1024), 0, 1023),
        _log_channels(ev[:, pnn.index("SSC-A")], SSC_GAIN),
    ]
    names, stains, amps = ["FS Lin", "SS Log"], ["", ""], ["0,0", pne_log]
    for detector, (source, dye) in FC500_CHANNELS.items():
        columns.append(_log_channels(fluorescence[:, pnn.index(source)], FL_GAIN))
        names.append(detector)
        stains.append(f"{STAINED_NAMES[markers[source]]}-{dye}")
        amps.append(pne_log)
    time = ev[:, pnn.index("Time")]
    columns.append(np.clip(np.round(time / max(time.max(), 1.0) * 1023), 0, 1023))
    names.append("TIME")
    stains.append("")
    amps.append("0,0")
    return build_fcs(
        np.column_stack(columns).astype(np.uint64),
        version="2.0",
        datatype="I",
        bits=16,
        pnn=names,
        pns=stains,
        pnr=1024,
        pne=amps,
        extra={"$CYT": "FC500 (simulated)", "$COM": "SIMULATED DATA - not a patient sample"},
    )


def _panel(sample: SimulatedSample) -> dict[str, str]:
    """marker -> simulated channel, from the sample's $PnS (stained tube)."""
    out = {}
    for pnn, pns in zip(sample.pnn, sample.pns, strict=True):
        for marker, name in STAINED_NAMES.items():
            if pns.startswith(f"{name} "):
                out[marker] = pnn
    return out
