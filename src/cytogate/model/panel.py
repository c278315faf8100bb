"""Resolve the marker names a template uses (``CD45``, ``CXCR4_12G5``, ``FSC-A``) to channels.

Instruments and operators spell the same marker differently ("CXCR4 (12G5)", "CD184 12G5 PE",
"12G5"), so a template names markers, and each marker carries regular-expression patterns that
are searched (case-insensitively) first in the channels' $PnS (stain) and then in their $PnN
(detector) keywords. One template therefore serves several instruments.

When a marker's patterns find nothing, two built-in vocabularies are tried
(:mod:`cytogate.model.channel_names`): scatter markers (``FSC-A``, ``SSC-H``, ...) resolve to
every vendor's scatter channels (``FS INT LIN``, ``SS Log``, ``FSC-HLin``, ``BSC-A``), area before
height before width/peak/TOF, and other markers match a $PnS that is the marker's name plus a
fluorochrome (``CD 45 PerCP``, ``Anti-CD45 APC-H7``). :attr:`ResolvedMarker.note` says which.

An isotype-control tube labels its channels by the control antibody ("IgG2a PE"), not by the
marker. Such a tube resolves a marker through the *stained* tube's resolution: the channel with
the same $PnN as the stained tube's channel for that marker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cytogate.errors import PanelError
from cytogate.model.channel_names import (
    parse_scatter,
    rank_scatter,
    scatter_request,
    stain_names_marker,
)
from cytogate.userregex import UserRegex, compile_user_regex

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.io.fcs import Sample

ResolvedVia = Literal["pns", "pnn", "reference", "scatter", "stain"]


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
    note: str = ""  # why this channel, when a built-in vocabulary chose it


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
        request = scatter_request(marker.name)
        if len(hits) > 1 and request is not None:
            # e.g. FS Lin and FS Log both match '^FS( Lin| Log)?$': rank them as scatter
            best = resolve_scatter(sample, *request, among=hits)
            if best is not None:
                i, note = best
                return ResolvedMarker(marker.name, i, pnn[i], pns[i], via, note)  # type: ignore[arg-type]
        if len(hits) > 1:
            found = ", ".join(f"{pnn[i]} ({pns[i]})" if pns[i] else pnn[i] for i in hits)
            raise PanelError(
                f"{sample.path.name}: marker '{marker.name}' matches {len(hits)} channels by "
                f"${'PnS' if via == 'pns' else 'PnN'}: {found}; make its patterns "
                f"{list(marker.patterns)} more specific"
            )
    found = _by_vocabulary(sample, marker, pnn, pns)
    if found is not None:
        return found
    hint = f", nor the stained tube's channel {reference_pnn!r}" if reference_pnn else ""
    raise PanelError(
        f"{sample.path.name}: marker '{marker.name}' matches no channel (patterns "
        f"{list(marker.patterns)} on $PnS then $PnN{hint}). Channels in file: "
        f"{describe_channels(sample)}"
    )


def _by_vocabulary(
    sample: Sample, marker: Marker, pnn: list[str], pns: list[str]
) -> ResolvedMarker | None:
    """The built-in fallbacks: vendor scatter names, then $PnS = marker name + fluorochrome."""
    request = scatter_request(marker.name)
    if request is not None:
        hit = resolve_scatter(sample, *request)
        if hit is None:
            return None
        i, note = hit
        return ResolvedMarker(marker.name, i, pnn[i], pns[i], "scatter", note)
    hits = [i for i, v in enumerate(pns) if v and stain_names_marker(v, marker.name)]
    if len(hits) > 1:
        found = ", ".join(f"{pnn[i]} ({pns[i]})" for i in hits)
        raise PanelError(
            f"{sample.path.name}: marker '{marker.name}' is named by the $PnS of "
            f"{len(hits)} channels: {found}; give it patterns that pick one"
        )
    if hits:
        i = hits[0]
        note = f"$PnS {pns[i]!r} is {marker.name} + fluorochrome"
        return ResolvedMarker(marker.name, i, pnn[i], pns[i], "stain", note)
    return None


def resolve_scatter(
    sample: Sample, kind: str, measure: str = "area", among: Sequence[int] | None = None
) -> tuple[int, str] | None:
    """Column of the ``kind`` ("FSC"/"SSC") scatter channel best serving ``measure``.

    ``measure`` "area" takes area, else the instrument's only pulse measure, else height, peak,
    width or TOF (in that order); "height" and "width" take only those, and only when the file
    also has a separate area-like channel of that scatter (a pulse-shape ratio of a channel with
    itself is no doublet test). Returns (column, note saying what was chosen over what), or
    None. Two equally good candidates are an error, never a silent pick. ``among`` limits the
    candidates to those columns (channels a template's patterns matched).
    """
    pnn = [str(v) for v in sample.channels["pnn"]]
    pns = [str(v) for v in sample.channels["pns"]]
    ranked: list[tuple[float, int]] = []
    area_like: list[int] = []
    for i, (name, stain) in enumerate(zip(pnn, pns, strict=True)):
        parsed = parse_scatter(name) or (parse_scatter(stain) if stain else None)
        if parsed is None or parsed.kind != kind or (among is not None and i not in among):
            continue
        if parsed.measure in ("area", "none"):
            area_like.append(i)
        rank = rank_scatter(parsed, measure)
        if rank is not None:
            ranked.append((rank, i))
    if not ranked:
        return None
    ranked.sort()
    best_rank, best = ranked[0]
    ties = [i for r, i in ranked if r == best_rank]
    if len(ties) > 1:
        raise PanelError(
            f"{sample.path.name}: {len(ties)} channels are equally good {kind} ({measure}): "
            f"{', '.join(pnn[i] for i in ties)}; name one in the template's panel"
        )
    if measure != "area" and not [i for i in area_like if i != best]:
        return None
    others = [pnn[i] for _, i in ranked[1:]]
    note = f"{kind} {measure}: {pnn[best]!r}" + (f" (over {', '.join(others)})" if others else "")
    return best, note


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
