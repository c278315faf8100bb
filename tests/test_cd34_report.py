"""An ISHAGE run's report carries the CD34 section, and its figure is inside the output set."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from cytogate.pipeline import run_batch

DEMO = Path(__file__).resolve().parents[1] / "sample_fcs" / "cd34_demo"


def test_cd34_section_and_figure_are_in_the_published_set(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    manifest = pd.read_csv(DEMO / "manifest.csv")
    keep = manifest[manifest["patient"].isin(sorted(manifest["patient"].unique())[:2])]
    for name in keep["file"]:
        shutil.copy(DEMO / name, run / name)
    keep.to_csv(run / "manifest.csv", index=False)
    if (DEMO / "cytogate.yaml").exists():
        shutil.copy(DEMO / "cytogate.yaml", run / "cytogate.yaml")
    out = tmp_path / "out"
    result = run_batch(run, template="ishage_cd34", out=out, jobs=1, plots=True)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "CD34+ enumeration (ISHAGE)" in page
    assert (out / "plots" / "cd34_yield_by_group.png").stat().st_size > 1000
    for tube in keep["file"]:  # every tube's row is in the section's table
        assert Path(tube).stem in page or tube in page
    assert len(result.extra["cd34"]) == len(keep)
