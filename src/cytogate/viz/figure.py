"""Figure plumbing shared by every plot: Agg figures, atomic saving, thumbnails, headers.

Everything is headless: figures are built on :class:`matplotlib.figure.Figure` with the Agg
canvas (pyplot and the global backend are never touched), and matplotlib is imported inside
the functions, so ``import cytogate`` does not load it. Figures from simulated files carry a
red "SIMULATED DATA" banner. See docs/plots_and_report.md.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cytogate.atomic import atomic_write
from cytogate.errors import CytogateError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

FORMATS = ("png", "svg", "pdf")
DPI = 300  # PNG resolution of single figures and of the time-course figures
SAMPLE_DPI = 150  # per-sample gate and marker plots of a batch (2,000 px wide; see docs)
#: Gallery thumbnails: 90 pixels per inch of figure, so 7-pt label text is ~9 px tall (readable;
#: a 660-px thumbnail of a five-panel gate figure had 5-px text).
THUMB_PPI = 90
CMAP = "turbo"  # the one colour map of every density plot
GATE_COLOUR = "black"
STAINED_COLOUR = "#c0392b"
CONTROL_COLOUR = "#7f8c8d"
SIMULATED_TEXT = "SIMULATED DATA \N{EM DASH} not patient samples"
#: PNG compression: level 1 is ~5x faster to encode than the default 6, ~20% larger files.
PNG_COMPRESS_LEVEL = 1
#: Thumbnail resampling: Hamming (support 1) is twice as fast as Lanczos (support 3) and, at the
#: gallery's 90 px per inch, as legible (the text is ~9 px tall either way; compared by eye).
THUMB_FILTER = "HAMMING"
#: Text drawn without hinting: hinting (the font's bytecode run per glyph) was a quarter of the
#: time of a gate figure, and at 150-300 dpi unhinted glyphs read the same. Applied around
#: drawing and text measurement only (:func:`text_style`); the user's rcParams are untouched.
TEXT_STYLE = {"text.hinting": "no_hinting"}


@contextlib.contextmanager
def text_style() -> Iterator[None]:
    """Draw and measure text with :data:`TEXT_STYLE` inside the block."""
    import matplotlib

    with matplotlib.rc_context(TEXT_STYLE):
        yield


F = TypeVar("F", bound=Callable[..., Any])


def with_text_style(func: F) -> F:
    """``func`` run inside :func:`text_style` (figures that measure text as they are built)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with text_style():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class PlotError(CytogateError):
    """A plot cannot be written (bad output name or format, unwritable folder)."""


def is_simulated(keywords: Mapping[str, str]) -> bool:
    """True when an FCS file's keywords say it was written by the simulator."""
    return str(keywords.get("CYTOGATE_SIMULATED", "")).strip().upper() == "TRUE"


# --------------------------------------------------------------------------- figure plumbing


def new_figure(width: float, height: float) -> Figure:
    """A Figure on the Agg canvas (no pyplot, no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


@with_text_style
def save_figure(
    fig: Figure,
    path: str | os.PathLike[str],
    dpi: int = DPI,
    thumbnail: str | os.PathLike[str] | None = None,
    thumbnail_width: int = 520,
) -> list[Path]:
    """Save ``fig`` atomically (format from the suffix: png, svg or pdf), optionally a thumbnail.

    A PNG is rendered once: the thumbnail (a PNG ``thumbnail_width`` pixels wide) is a
    downsampled copy of the same pixels. Returns the files written.
    """
    final = Path(path)
    fmt = final.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"{final}: plot format must be one of {', '.join(FORMATS)}")
    if fmt == "png":
        return save_image(_render(fig, dpi), final, dpi, thumbnail, thumbnail_width)
    metadata = {"Date": None} if fmt == "svg" else {"CreationDate": None}
    written = [_atomic(final, lambda p: fig.savefig(p, format=fmt, dpi=dpi, metadata=metadata))]
    if thumbnail is not None:
        image = _render(fig, max(40, int(thumbnail_width / fig.get_figwidth()) + 1))
        written += save_image(image, None, dpi, thumbnail, thumbnail_width)
    return written


def thumbnail_width(figure_width_in: float) -> int:
    """Width in pixels of a readable thumbnail of a figure (see :data:`THUMB_PPI`)."""
    return round(figure_width_in * THUMB_PPI)


def save_image(
    image: Any,
    path: str | os.PathLike[str] | None,
    dpi: int,
    thumbnail: str | os.PathLike[str] | None = None,
    thumbnail_width: int = 520,
) -> list[Path]:
    """Write rendered pixels (a PIL image) as PNG, and a thumbnail of them, atomically.

    Encoded by :func:`cytogate.viz.png.encode_png` (one row filter, zlib level
    :data:`PNG_COMPRESS_LEVEL`): a third of the time of Pillow's encoder for the same pixels.
    """
    import numpy as np

    from cytogate.viz.png import encode_png

    written = []
    if path is not None:
        data = encode_png(np.asarray(image), dpi, PNG_COMPRESS_LEVEL)
        written.append(_atomic(Path(path), lambda p: Path(p).write_bytes(data)))
    if thumbnail is not None:
        thumb = encode_png(np.asarray(_thumbnail(image, thumbnail_width)), None, PNG_COMPRESS_LEVEL)
        written.append(_atomic(Path(thumbnail), lambda p: Path(p).write_bytes(thumb)))
    return written


def _render(fig: Figure, dpi: int):
    """The figure's pixels at ``dpi`` as an RGB PIL image (white background)."""
    from PIL import Image

    fig.set_dpi(dpi)
    fig.canvas.draw()
    width, height = fig.canvas.get_width_height(physical=True)
    rgba = Image.frombuffer("RGBA", (width, height), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    return rgba.convert("RGB")


def _thumbnail(image, width: int):
    from PIL import Image

    if image.width <= width:
        return image
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling[THUMB_FILTER])


def _atomic(final: Path, write: Callable[[str], object]) -> Path:
    return atomic_write(final, write, make_parents=True)


def draw_header(
    fig: Figure, left: float, title: str, subtitle: str = "", simulated: bool = False
) -> None:
    """Bold title and a smaller subtitle at the top left; the SIMULATED banner at the top right.

    ``left`` is in figure fraction. When the banner would overlap the title (a narrow figure),
    the banner goes to the top left and the title and subtitle move down a line.
    """
    h = fig.get_figheight()
    title_artist = fig.text(
        left, 1 - 0.08 / h, title, ha="left", va="top", fontsize=9, fontweight="bold", gid="title"
    )
    sub_artist = fig.text(
        left,
        1 - 0.28 / h,
        subtitle,
        ha="left",
        va="top",
        fontsize=7,
        color="#333333",
        gid="subtitle",
    )
    if not simulated:
        return
    banner = fig.text(
        0.995,
        1 - 0.06 / h,
        SIMULATED_TEXT,
        ha="right",
        va="top",
        fontsize=8,
        color="white",
        fontweight="bold",
        bbox={"boxstyle": "square,pad=0.3", "fc": "#c0392b", "ec": "none"},
        gid="simulated-banner",
    )
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    if banner.get_window_extent(renderer).overlaps(title_artist.get_window_extent(renderer)):
        banner.set_position((left, 1 - 0.06 / h))
        banner.set_ha("left")
        title_artist.set_y(1 - 0.30 / h)
        sub_artist.set_y(1 - 0.48 / h)


def wrap_text(
    paragraphs: Iterable[str], width_in: float, fontsize: float, max_lines: int = 8
) -> str:
    """Wrap text to about ``width_in`` inches (matplotlib's own wrap measures every word)."""
    chars = max(20, int(width_in * 72 / (fontsize * 0.55)))
    lines = [line for p in paragraphs for line in textwrap.wrap(p, chars)]
    return "\n".join(lines[:max_lines])


def add_footnote(
    fig: Any,
    text: str,
    *,
    left: float,
    right: float,
    width: float,
    height: float,
    fontsize: float = 6.5,
    max_lines: int = 4,
    gid: str | None = None,
) -> None:
    """The grey footnote under a figure's panels (what was drawn, which statistic, which
    test), wrapped to the panels' width; margins and sizes in inches."""
    fig.text(
        left / width,
        0.04 / height,
        wrap_text([text], width - left - right, fontsize, max_lines),
        ha="left",
        va="bottom",
        fontsize=fontsize,
        color="#444444",
        gid=gid,
    )


def fmt_pct(value: float) -> str:
    if not math.isfinite(value):
        return "n/a %"
    return f"{value:.1f}%" if value >= 0.1 or value == 0 else f"{value:.2f}%"


def fmt_num(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits and thousands separators ("n/a" if NaN)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(v):
        return "n/a"
    if v == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{v:,.{decimals}f}"


def error_text(exc: BaseException) -> str:
    """One line for a plot that could not be drawn."""
    if isinstance(exc, CytogateError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc} (please report)"
