"""Drawing on worker processes: the same figures as drawing in-process, failures named.

A small part of the bundled multi-tube study (SIMULATED; P01 with CXCR4 and Ki67 tubes, P02
with a partial CXCR4 panel; baseline and 6 h) is gated once; its figures are then drawn with
``jobs=1`` (in this process) and ``jobs=2`` (worker processes). Also here: the density
binning against planted counts, and the PNG encoder against Pillow's decoder.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cytogate.study.batch import run_batch
from cytogate.viz.gate_plots import bin_counts, density_rgba
from cytogate.viz.png import encode_png
from cytogate.viz.report import write_plots_and_report

BUNDLED = Path(__file__).resolve().parents[1] / "sample_fcs" / "run42"


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """(BatchResult, RunConfig) of 12 bundled files, gated once, nothing drawn."""
    root = tmp_path_factory.mktemp("parallel")
    run = root / "run"
    run.mkdir()
    manifest = pd.read_csv(BUNDLED / "manifest.csv", keep_default_na=False)
    keep = manifest[
        manifest["patient"].isin(["P01", "P02"]) & manifest["timepoint"].isin(["baseline", "6h"])
    ]
    for name in keep["file"]:
        shutil.copy(BUNDLED / name, run / name)
    keep.to_csv(run / "manifest.csv", index=False)
    captured = {}

    def capture(result, config, out, *args, **kwargs):
        captured["r"] = (result, config)
        return [], {"report": None, "errors": [], "timings": {"total_s": 0.0}}

    run_batch(run, out=root / "tables", jobs=1, plots=True, renderer=capture)
    return captured["r"]


def _images(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.rglob("*.png")):
        with Image.open(path) as im:
            out[str(path.relative_to(folder))] = np.asarray(im.convert("RGB"))
    return out


def test_workers_write_the_same_figures_as_one_process(gated, tmp_path):
    result, config = gated
    serial, _ = write_plots_and_report(result, config, tmp_path / "serial", jobs=1)
    parallel, summary = write_plots_and_report(result, config, tmp_path / "parallel", jobs=2)
    assert summary["jobs"] == 2 and not summary["errors"]
    names = sorted(str(p.relative_to(tmp_path / "serial")) for p in serial)
    assert names == sorted(str(p.relative_to(tmp_path / "parallel")) for p in parallel)
    a, b = _images(tmp_path / "serial" / "plots"), _images(tmp_path / "parallel" / "plots")
    assert sorted(a) == sorted(b)
    # 6 draws: 6 stained + 6 control gate figures, 6 marker figures, each with a thumbnail,
    # and the 9 time-course figures (PNGs are their own previews)
    assert len(a) == 18 * 2 + 9
    for name in a:
        assert a[name].shape == b[name].shape, name
        # each worker draws its own first figure of a layout in full; the pixels agree
        assert np.any(a[name] != b[name], axis=2).mean() < 0.002, name
    # the two reports show the same images
    srcs = [
        set(re.findall(r'src="([^"]+)"', (tmp_path / d / "report.html").read_text()))
        for d in ("serial", "parallel")
    ]
    assert srcs[0] == srcs[1] and len(srcs[0]) >= 18


def test_a_figure_failing_in_a_worker_is_reported_with_its_file_and_the_rest_are_drawn(
    gated, tmp_path, monkeypatch
):
    """Workers are forked from this process, so a patched gate drawing reaches them."""
    import cytogate.viz.render as render

    result, config = gated
    victim = next(o.name for o in result.outcomes if o.role == "isotype")
    real = render.draw_gates

    def broken(fig, view, layout, **kwargs):
        if view.name == victim:
            raise RuntimeError("planted failure")
        return real(fig, view, layout, **kwargs)

    monkeypatch.setattr(render, "draw_gates", broken)
    _, summary = write_plots_and_report(result, config, tmp_path / "out", jobs=2)
    assert summary["errors"] == [
        {
            "file": victim,
            "kind": "gates",
            "error": "unexpected RuntimeError: planted failure (please report)",
        }
    ]
    gates = {p.stem for p in (tmp_path / "out" / "plots" / "gates").glob("*.png")}
    ok = {o.file.stem for o in result.outcomes if o.ok and o.name != victim}
    assert gates == ok  # every other file's gate figure was drawn
    assert victim in (tmp_path / "out" / "report.html").read_text()


def test_density_bins_hold_the_planted_events_and_edge_events():
    """Ground truth: events planted at bin centres of a 64 × 64 grid, plus events beyond the
    axes, which belong in the edge bins and are counted as off the axes."""
    rng = np.random.default_rng(7)
    bins, lo, hi = 64, -0.1, 1.0
    want = rng.integers(0, 5, size=(bins, bins))
    centres = lo + (np.arange(bins) + 0.5) * (hi - lo) / bins
    ix, iy = np.nonzero(want)
    reps = want[ix, iy]
    x, y = np.repeat(centres[ix], reps), np.repeat(centres[iy], reps)
    beyond_x = np.array([hi + 5.0, lo - 3.0, 0.5])
    beyond_y = np.array([0.5, hi + 1.0, lo - 9.0])
    hist, off = bin_counts(
        np.concatenate([x, beyond_x]), np.concatenate([y, beyond_y]), (lo, hi), (lo, hi), bins
    )
    expected = want.copy()
    for bx, by in zip(beyond_x, beyond_y, strict=True):
        i = int(np.clip((np.clip(bx, lo, hi) - lo) / (hi - lo) * bins, 0, bins - 1))
        j = int(np.clip((np.clip(by, lo, hi) - lo) / (hi - lo) * bins, 0, bins - 1))
        expected[i, j] += 1
    assert off == 3
    assert hist.sum() == x.size + 3
    assert np.array_equal(hist, expected)
    rgba = density_rgba(hist)
    assert rgba.shape == (bins, bins, 4)
    assert np.all(rgba[hist.T == 0] == 255)  # empty bins white
    assert not np.any(np.all(rgba[hist.T > 0][:, :3] == 255, axis=1))  # every filled bin coloured


def test_png_encoder_round_trips_through_pillow(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    pixels[10:20] = 255  # flat rows, as in a figure
    path = tmp_path / "x.png"
    path.write_bytes(encode_png(pixels, dpi=150))
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (53, 37)
        assert np.array_equal(np.asarray(im), pixels)
        assert im.info["dpi"][0] == pytest.approx(150, abs=0.1)
    assert encode_png(pixels, dpi=150) == path.read_bytes()  # deterministic
    with pytest.raises(ValueError, match="uint8"):
        encode_png(pixels.astype(np.float32))


def test_density_image_draws_the_pixels_matplotlib_draws():
    """BinImage (bin lookup) against imshow (Agg's resampler) of the same bins."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from cytogate.viz.density_image import BinImage

    rgba = np.random.default_rng(0).integers(0, 256, size=(97, 128, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    pixels = []
    for ours in (False, True):
        fig = Figure(figsize=(2.75, 2.4), dpi=150)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.13, 0.11, 0.8, 0.8))
        ax.set_xlim(-0.1, 1.0)
        ax.set_ylim(0.0, 1.0)
        extent = (-0.1, 1.0, 0.0, 1.0)
        if ours:
            image = BinImage(ax, origin="lower", extent=extent, interpolation="nearest")
            image.set_data(rgba)
            ax.add_image(image)
        else:
            ax.imshow(rgba, origin="lower", extent=extent, aspect="auto", interpolation="nearest")
        fig.canvas.draw()
        pixels.append(np.asarray(fig.canvas.buffer_rgba()).copy())
    differ = np.any(pixels[0] != pixels[1], axis=2)
    assert differ.mean() < 0.01  # a pixel row or column at some bin edges, no more
