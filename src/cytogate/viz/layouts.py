"""Figure layouts reused across files: the static part is drawn once, each file only its own.

A run's gate plots share their layout (same panels, scales, ticks and axis labels); drawing
those axes and tick labels was most of the time of a figure. :class:`LayoutCache` builds a
layout's static figure once per process, keeps its pixels, and for each file restores them,
adds that file's artists (densities, outlines, labels, titles), draws only those (in z-order,
with the axes' spines again on top, as a full draw would) and removes them again. Per-file
pixels match a full draw of the same figure (a test compares them).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cytogate.viz.figure import canvas_rgb

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure


@dataclass
class _Layout:
    figure: Figure
    background: Any  # the canvas region with the static artists
    children: dict[int, set[int]]  # axes index -> ids of its static children
    texts: dict[int, str]  # id of a static Text -> its text (a title set per file differs)
    fig_texts: set[int]


class LayoutCache:
    """Static figures by layout key, per process (``max_layouts`` most recent kept)."""

    def __init__(self, max_layouts: int = 8) -> None:
        self._layouts: OrderedDict[tuple[Hashable, int], _Layout] = OrderedDict()
        self._max = max_layouts

    def render(
        self,
        key: Hashable,
        build: Callable[[], Figure],
        draw: Callable[[Figure], object],
        dpi: int,
    ) -> np.ndarray:
        """The pixels of ``draw(build())`` at ``dpi``, reusing ``build()``'s for ``key``."""
        layout = self._layout(key, build, dpi)
        fig = layout.figure
        canvas = fig.canvas
        canvas.restore_region(layout.background)  # type: ignore[attr-defined]
        draw(fig)
        to_draw, added, changed = self._dynamic(layout)
        try:
            for artist in to_draw:
                fig.draw_artist(artist)
            return canvas_rgb(fig)
        finally:
            for artist in added:
                artist.remove()
            for text in changed:
                text.set_text(layout.texts[id(text)])  # type: ignore[attr-defined]

    def _layout(self, key: Hashable, build: Callable[[], Figure], dpi: int) -> _Layout:
        full_key = (key, dpi)
        if full_key in self._layouts:
            self._layouts.move_to_end(full_key)
            return self._layouts[full_key]
        from matplotlib.text import Text

        fig = build()
        fig.set_dpi(dpi)
        spines = [sp for ax in fig.axes for sp in ax.spines.values() if sp.get_visible()]
        for spine in spines:  # drawn per file, over its densities: not in the background
            spine.set_visible(False)
        fig.canvas.draw()
        for spine in spines:
            spine.set_visible(True)
        children = {i: {id(a) for a in ax.get_children()} for i, ax in enumerate(fig.axes)}
        texts = {
            id(a): a.get_text() for ax in fig.axes for a in ax.get_children() if isinstance(a, Text)
        }
        layout = _Layout(
            figure=fig,
            background=fig.canvas.copy_from_bbox(fig.bbox),  # type: ignore[attr-defined]
            children=children,
            texts=texts,
            fig_texts={id(t) for t in fig.texts},
        )
        self._layouts[full_key] = layout
        if len(self._layouts) > self._max:
            self._layouts.popitem(last=False)
        return layout

    @staticmethod
    def _dynamic(layout: _Layout) -> tuple[list[Artist], list[Artist], list[Artist]]:
        """What to draw over the static pixels, in order; the artists added for this file (to
        remove afterwards); the static texts it changed (panel titles, to reset).

        Per axes, in z-order: the added artists, the changed texts and the spines (left out of
        the background so that they lie over a density, as in a full draw); then the figure's
        added texts.
        """
        from matplotlib.text import Text

        to_draw: list[Artist] = []
        added: list[Artist] = []
        changed: list[Artist] = []
        for i, ax in enumerate(layout.figure.axes):
            static = layout.children[i]
            children = ax.get_children()
            new = [a for a in children if id(a) not in static]
            retitled = [
                a
                for a in children
                if isinstance(a, Text) and id(a) in static and a.get_text() != layout.texts[id(a)]
            ]
            spines = [sp for sp in ax.spines.values() if sp.get_visible()]
            to_draw += sorted(new + retitled + spines, key=lambda a: a.get_zorder())
            added += new
            changed += retitled
        fig_new = [t for t in layout.figure.texts if id(t) not in layout.fig_texts]
        return to_draw + fig_new, added + fig_new, changed
