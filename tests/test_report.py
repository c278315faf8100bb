"""`cytogate batch` writes plots/ and report.html: links resolve, the page loads in a browser.

One small run (2 patients × 2 timepoints, one isotype file corrupted) goes through the CLI with
its defaults; the checks read the files it wrote. The browser test opens the page in headless
Chromium (Debian package ``chromium``); it is skipped where Chromium is missing unless the
environment variable ``CI`` is set, where it must run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
from click.testing import CliRunner

from cytogate.cli import cli
from cytogate.study.batch import run_batch
from tests.run_copies import copy_run

RUN42: Path  # the two-tube SIMULATED study (tests/conftest.py two_tube_run42), set below


@pytest.fixture(scope="module", autouse=True)
def _two_tube_run42(two_tube_run42: Path) -> None:
    """This module's tests need the two-tube design; the bundled run42 is multi-tube."""
    global RUN42
    RUN42 = two_tube_run42


BROKEN = "P01_6h_isotype.fcs"
VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


def _small_run(root: Path, patients, timepoints) -> Path:
    return copy_run(RUN42, root / "run", patients, timepoints)


@pytest.fixture(scope="module")
def batch_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    run = _small_run(root, ("P01", "P02"), ("baseline", "6h"))
    broken = run / BROKEN
    broken.write_bytes(broken.read_bytes()[:5000])  # truncated inside DATA
    out = root / "out"
    result = CliRunner().invoke(cli, ["batch", str(run), "-o", str(out), "-j", "2"])
    assert result.exit_code == 1, result.output  # one file failed, the rest reported
    return out, result


class _Page(HTMLParser):
    """Collects links and images, and checks that every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.images.append(a)
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_tables_come_first_and_run_json_records_the_plots(batch_out):
    out, result = batch_out
    tables = [
        out / f"{t}.csv" for t in ("samples", "populations", "markers", "timecourse", "stats")
    ]
    plots = [p for p in (out / "plots").rglob("*") if p.is_file()]
    assert plots and all(t.exists() for t in tables)
    assert max(t.stat().st_mtime_ns for t in tables) <= min(p.stat().st_mtime_ns for p in plots)
    assert "tables written to" in result.stderr  # said before drawing starts
    run = json.loads((out / "run.json").read_text())
    assert run["plots"]["timings"]["total_s"] > 0
    assert run["timings"]["plots_and_report_s"] == run["plots"]["timings"]["total_s"]
    assert run["plots"]["format"] == "png" and run["plots"]["dpi"] == 150
    assert [e["file"] for e in run["plots"]["errors"]] == [BROKEN]
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary files left


def test_report_is_well_formed_and_every_link_resolves(batch_out):
    out, _ = batch_out
    page = _parse(out / "report.html")
    assert page.problems == [] and page.stack == []
    assert len(page.images) >= 3 * 4 - 2 + 6  # gates ×2 + markers per group, 6 time course
    targets = [img["src"] for img in page.images] + page.links
    for target in targets:
        url = urlparse(target)
        assert not url.scheme and not url.netloc, f"external resource {target}"  # self-contained
        if target.startswith("#"):
            assert target[1:] in page.ids, target
            continue
        assert (out / unquote(url.path)).is_file(), target
    for img in page.images:
        assert img.get("alt"), img
        assert img["src"].startswith("plots/")


def test_report_shows_every_sample_the_failure_stats_and_the_banner(batch_out):
    out, _ = batch_out
    text = " ".join(_parse(out / "report.html").text)
    samples = pd.read_csv(out / "samples.csv")
    for name in samples["file"]:
        assert name in text
    error = samples.loc[samples["file"] == BROKEN, "error"].iloc[0]
    assert text.count(error) >= 2  # in "Failed files" and on the sample's card
    assert "SIMULATED DATA" in text
    html = (out / "report.html").read_text()
    stats = pd.read_csv(out / "stats.csv")
    assert html.count("<tr><td>") + html.count('<tr class="sig"><td>') >= len(stats)
    for name in ("mobilisation", "cxcr4", "markers"):
        assert f"plots/timecourse_{name}.png" in html
        assert f"plots/timecourse_{name}_patients.png" in html
        assert f"plots/timecourse_{name}_values.png" in html  # the measure itself
    # n per measure: patients with a value of that measure in timecourse.csv
    tc = pd.read_csv(out / "timecourse.csv")
    for measure, rows in tc[tc["value"].notna()].groupby("measure"):
        n = rows["patient"].nunique()
        label = "CXCR4 (12G5) RMFI on blasts" if measure == "blasts_CXCR4_12G5_rmfi_median" else ""
        if label:
            assert f"{label}, n = {n} patients" in text
    # thumbnails are real, smaller copies of the full-size figures
    from PIL import Image

    with (
        Image.open(out / "plots" / "thumbs" / "P02_6h_stained.png") as th,
        Image.open(out / "plots" / "gates" / "P02_6h_stained.png") as full,
    ):
        assert full.width > 1500 and th.width < full.width
        # readable: 7-pt text (the labels) is at least 8 px tall at the thumbnail's scale
        dpi = full.info["dpi"][0]
        pixels_per_inch = th.width / (full.width / dpi)
        assert 7 / 72 * pixels_per_inch >= 8


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name) or (
            f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
        )
        if path:
            return path
    return None


def _dump_dom(browser: str, page: Path, profile: Path) -> str:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _status(dom: str) -> dict[str, str]:
    tag = re.search(r'<p[^>]*id="image-status"[^>]*>', dom)
    assert tag, dom[:2000]
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tag.group(0)))


def test_report_loads_in_headless_chromium_and_shows_every_figure(batch_out, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: apt-get install -y chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    out, _ = batch_out
    n_images = len(_parse(out / "report.html").images)
    dom = _dump_dom(browser, out / "report.html", tmp_path / "profile")
    assert not re.search(r"<html[^>]*data-script-error", dom)  # no script error
    status = _status(dom)
    assert status == {"images": str(n_images), "loaded": str(n_images), "missing": "0"}
    assert 'id="simulated-banner"' in dom
    # the same page without its plots/ folder says so, instead of showing broken images
    alone = tmp_path / "mailed"
    alone.mkdir()
    shutil.copy(out / "report.html", alone / "report.html")
    status = _status(_dump_dom(browser, alone / "report.html", tmp_path / "profile2"))
    assert status["missing"] == str(n_images) and status["loaded"] == "0"


def test_no_plots_skips_plots_and_report(batch_out, tmp_path):
    out, _ = batch_out
    run = out.parent / "run"
    other = tmp_path / "tables_only"
    res = CliRunner().invoke(cli, ["batch", str(run), "-o", str(other), "-j", "1", "--no-plots"])
    assert res.exit_code == 1
    assert (other / "stats.csv").exists()
    assert not (other / "report.html").exists() and not (other / "plots").exists()
    assert "plots" not in json.loads((other / "run.json").read_text())


def test_pdf_figures_get_png_previews_and_qc_flags_show_in_the_report(tmp_path, monkeypatch):
    from cytogate.gating.engine import GatingResult
    from cytogate.study.design import RunConfig
    from cytogate.viz.report import write_plots_and_report

    def qc_flags(self):  # as an adaptive gate whose fit is in doubt reports it
        if "stained" not in self.sample.path.name:
            return {}
        return {"blasts": ("blasts: cluster overlaps monocytes",)}

    monkeypatch.setattr(GatingResult, "qc_flags", qc_flags, raising=False)

    run = _small_run(tmp_path, ("P03",), ("baseline", "2h"))
    out = tmp_path / "out"
    result = run_batch(run, jobs=1, out=out)  # the outcomes record the flags
    cfg = RunConfig()
    files, summary = write_plots_and_report(result, cfg, out, jobs=1, fmt="pdf")
    written = {p.relative_to(out).as_posix() for p in files}
    assert {
        "plots/gates/P03_2h_stained.pdf",
        "plots/gates/P03_2h_isotype.pdf",
        "plots/markers/P03_2h_stained_markers.pdf",
        "plots/thumbs/P03_2h_stained.png",
        "plots/timecourse_cxcr4.pdf",
        "plots/thumbs/timecourse_cxcr4.png",
        "report.html",
    } <= written
    assert all((out / w).is_file() for w in written)
    page = _parse(out / "report.html")
    assert page.images and all(img["src"].endswith(".png") for img in page.images)
    assert "plots/timecourse_cxcr4.pdf" in page.links
    assert (out / "plots/gates/P03_2h_stained.pdf").read_bytes()[:5] == b"%PDF-"
    assert summary["format"] == "pdf" and summary["errors"] == []
    flag = {"blasts": ["blasts: cluster overlaps monocytes"]}
    assert summary["qc_flags"] == [
        {"file": "P03_baseline_stained.fcs", "flags": flag},
        {"file": "P03_2h_stained.fcs", "flags": flag},
    ]
    text = " ".join(page.text)
    assert "Gates flagged by quality control" in text
    assert "QC flag: blasts: cluster overlaps monocytes" in text


def test_plots_are_drawn_from_the_outcomes_without_gating_and_label_underscored_populations(
    tmp_path, monkeypatch
):
    """Figures re-read events but never gate or fit; ``cd45_negative`` keeps its name in
    labels (parsing ``cd45_negative_CXCR4_12G5_rmfi_median`` back would give ``cd45``)."""
    import cytogate.gating.engine as engine
    from cytogate.study.design import RunConfig
    from cytogate.viz.report import write_plots_and_report

    run = _small_run(tmp_path, ("P02",), ("baseline", "6h"))
    out = tmp_path / "out"
    cfg = RunConfig(marker_populations=("blasts", "cd45_negative"), rmfi_markers=("CXCR4_12G5",))
    result = run_batch(run, config=cfg, jobs=1, out=out)
    label = "CXCR4 (12G5) RMFI on cd45_negative"
    assert result.measures["cd45_negative_CXCR4_12G5_rmfi_median"].label == label

    def no_gating(*_args, **_kwargs):
        raise AssertionError("a plot gated a file")

    monkeypatch.setattr(engine, "gate", no_gating)
    monkeypatch.setattr(engine, "_fit", no_gating)
    old_umask = os.umask(0o027)
    try:
        files, summary = write_plots_and_report(result, cfg, out, jobs=1)
    finally:
        os.umask(old_umask)
    assert summary["errors"] == [] and out / "report.html" in files
    assert (out / "plots/gates/P02_6h_stained.png").is_file()
    assert (out / "report.html").stat().st_mode & 0o777 == 0o640  # the umask's mode
    text = " ".join(_parse(out / "report.html").text)
    assert label in text and "RMFI on cd45 " not in text


def test_a_file_changed_after_the_run_is_not_drawn_with_other_gates(tmp_path):
    from cytogate.viz.events import EventView

    run = _small_run(tmp_path, ("P02",), ("baseline",))
    result = run_batch(run, jobs=1)
    outcome = result.outcomes[0]
    assert EventView.from_outcome(outcome).count("blasts") == outcome.counts["blasts"]
    shutil.copy(RUN42 / "P05_24h_stained.fcs", outcome.file)
    with pytest.raises(Exception, match="changed since it was gated"):
        EventView.from_outcome(outcome)
