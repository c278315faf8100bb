"""Resolve the marker names a template uses (``CD45``, ``CXCR4_12G5``, ``FSC-A``) to channels.

Instruments and operators spell the same marker differently ("CXCR4 (12G5)", "CD184 12G5 PE",
"12G5"), so a template names markers, and each marker carries regular-expression patterns that
are searched (case-insensitively) first in the channels' $PnS (stain) and then in their $PnN
(detector) keywords. One template therefore serves several instruments.

An isotype-control tube labels its channels by the control antibody ("IgG2a PE"), not by the
marker. Such a tube resolves a marker through the *stained* tube's resolution: the channel with
the same $PnN as the stained tube's channel for that marker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cytogate.errors import PanelError
from cytogate.userregex import UserRegex, compile_user_regex

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.io.fcs import Sample

ResolvedVia = Literal["pns", "pnn", "reference"]


@dataclass(frozen=True)
class Marker:
    """A marker name and the patterns that find its channel."""

    name: str
    patterns: tuple[str, ...]

    def compiled(self) -> tuple[UserRegex, ...]:
        # linear-time engine: a template's pattern cannot hang a run (cytogate.userregex)
        return tuple(
            compile_user_regex(p, f"panel marker '{self.name}'", True) for p in self.patterns
        )


@dataclass(frozen=True)
class ResolvedMarker:
    """Where a marker was found in one file."""

    marker: str
    index: int  # column of Sample.events
    pnn: str
    pns: str
    via: ResolvedVia


def describe_channels(sample: Sample) -> str:
    """``FSC-A, SSC-A, PE-A (CD184 12G5 PE), …``: the channel list error messages show."""
    parts = []
    for pnn, pns in zip(sample.channels["pnn"], sample.channels["pns"], strict=True):
        parts.append(f"{pnn} ({pns})" if pns and pns != pnn else str(pnn))
    return ", ".join(parts)


def _matches(values: Sequence[str], patterns: Iterable[UserRegex]) -> list[int]:
    pats = list(patterns)
    return [i for i, v in enumerate(values) if v and any(p.search(v) for p in pats)]


def find_marker(sample: Sample, marker: Marker, reference_pnn: str | None = None) -> ResolvedMarker:
    """Find the single channel of ``marker`` in ``sample``.

    With a reference $PnN (the matched stained tube's channel, for an isotype tube) the channel
    with that $PnN wins: RMFI is only meaningful when stained and isotype tubes are read on the
    same detector. Otherwise: patterns on $PnS; if none match, patterns on $PnN. Several matches
    at one level is an error, never a silent first pick: a template that could measure the wrong
    channel must say so.
    """
    pnn = [str(v) for v in sample.channels["pnn"]]
    pns = [str(v) for v in sample.channels["pns"]]
    if reference_pnn is not None:
        hits = [i for i, v in enumerate(pnn) if v == reference_pnn]
        if len(hits) == 1:
            i = hits[0]
            return ResolvedMarker(marker.name, i, pnn[i], pns[i], "reference")
    patterns = marker.compiled()
    for via, values in (("pns", pns), ("pnn", pnn)):
        hits = _matches(values, patterns)
        if len(hits) == 1:
            i = hits[0]
            return ResolvedMarker(marker.name, i, pnn[i], pns[i], via)  # type: ignore[arg-type]
        if len(hits) > 1:
            found = ", ".join(f"{pnn[i]} ({pns[i]})" if pns[i] else pnn[i] for i in hits)
            raise PanelError(
                f"{sample.path.name}: marker '{marker.name}' matches {len(hits)} channels by "
                f"${'PnS' if via == 'pns' else 'PnN'}: {found}; make its patterns "
                f"{list(marker.patterns)} more specific"
            )
    hint = f", nor the stained tube's channel {reference_pnn!r}" if reference_pnn else ""
    raise PanelError(
        f"{sample.path.name}: marker '{marker.name}' matches no channel (patterns "
        f"{list(marker.patterns)} on $PnS then $PnN{hint}). Channels in file: "
        f"{describe_channels(sample)}"
    )


def resolve_panel(
    sample: Sample,
    panel: Mapping[str, Sequence[str] | Marker] | Iterable[Marker],
    markers: Iterable[str] | None = None,
    reference: Mapping[str, str] | None = None,
) -> dict[str, ResolvedMarker]:
    """Resolve ``markers`` (default: every marker of ``panel``) in ``sample``.

    ``reference`` maps marker name -> $PnN in the matched stained tube, used for isotype tubes.
    Raises :class:`PanelError` naming the file, the marker and the file's channels.
    """
    by_name = _as_markers(panel)
    wanted = list(by_name) if markers is None else list(markers)
    resolved: dict[str, ResolvedMarker] = {}
    for name in wanted:
        if name not in by_name:
            raise PanelError(f"marker '{name}' is not in the panel ({', '.join(by_name)})")
        ref = reference.get(name) if reference else None
        resolved[name] = find_marker(sample, by_name[name], ref)
    return resolved


def _as_markers(
    panel: Mapping[str, Sequence[str] | Marker] | Iterable[Marker],
) -> dict[str, Marker]:
    if not isinstance(panel, Mapping):
        return {m.name: m for m in panel}
    out = {}
    for name, pats in panel.items():
        if isinstance(pats, Marker):
            out[name] = pats
        else:
            out[name] = Marker(name, (pats,) if isinstance(pats, str) else tuple(pats))
    return out
