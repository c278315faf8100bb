"""Channels and fitted scales on real instruments' files (not in tests/data: GPL or large).

``python benchmarks/check_real_channels.py [--real ../shared/data/real]`` resolves FSC-A, SSC-A
and CD45 with the default template's panel on the real samples (BD FACSCanto marrow, BD
FACSLyric AML, Beckman FC 500 tube, and that tube re-encoded as the FlowCAP-II exports store it:
linear values up to 10^4 with $PnR 1024 and $PnE 0,0) and prints each channel's estimated scale
with the fraction of events at or below its top. Exit 1 if a marker fails to resolve.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.io.fcs import Sample

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

FILES = {
    "BD FACSCanto marrow": "marrow_canto_508/tube1_001.fcs",
    "BD FACSLyric AML": "aml_lyric/Sample_patient.fcs",
    "Beckman FC 500": "fc500_flowcap2_type/UP00_000399_001_tube1.FCS",
}


def _flowcap_export(sample: Sample) -> Sample:
    """The FC 500 tube as FlowCAP-II stores it: 10^(4 x/1024) as floats, header unchanged."""
    from tests.fcs_fixtures import build_fcs

    from cytogate.io.fcs import read_fcs, read_fcs_bytes

    raw = read_fcs(sample.path, scale=False)
    values = raw.events.copy()
    logs = [i for i, n in enumerate(raw.channel_names) if n.endswith("Log")]
    values[:, logs] = 10.0 ** (4 * values[:, logs] / 1024)
    blob = build_fcs(
        values,
        version="2.0",
        pnn=raw.channel_names,
        pns=[str(s) for s in raw.channels["pns"]],
        pnr=1024,
    )
    return read_fcs_bytes(blob, "fc500_flowcap2_export (re-encoded)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=Path("/work/shared/data/real"))
    opts = parser.parse_args()

    from cytogate.errors import PanelError
    from cytogate.gating.template import load_template
    from cytogate.io.fcs import read_fcs
    from cytogate.model.panel import resolve_panel
    from cytogate.model.scale_estimation import estimate_scale

    panel = load_template("aml_blasts_cd45_ssc").panel
    failed = 0
    samples = []
    for label, rel in FILES.items():
        path = opts.real / rel
        if not path.exists():
            print(f"{label}: {path} not found; skipped")
            continue
        samples.append((label, read_fcs(path)))
        if "FC 500" in label:
            samples.append((label + ", FlowCAP-II export", _flowcap_export(samples[-1][1])))
    for label, sample in samples:
        print(f"== {label}: {sample.path.name} ({sample.n_events} events)")
        for marker in ("FSC-A", "SSC-A", "CD45"):
            try:
                r = resolve_panel(sample, panel, [marker])[marker]
            except PanelError as exc:
                print(f"  {marker:6} FAILED: {exc}")
                failed += 1
                continue
            est = estimate_scale(sample, r.index)
            note = f" [{r.note}]" if r.note else ""
            print(f"  {marker:6} -> {r.pnn!r} via {r.via}{note}")
            print(f"         scale {est.describe()}; covers {100 * est.covered:.2f}% of events")
    print(f"load average: {os.getloadavg()}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
