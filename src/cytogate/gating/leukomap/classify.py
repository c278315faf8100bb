"""Name the CD45/SSC clusters the way a cytometrist reads the plot.

Positions are judged relative to the lymphocytes (the brightest-CD45, lowest-SSC cluster), in
units of the lymphocytes' own spread, so the rules do not depend on a detector's gain or on
the scale's absolute numbers:

* over-compensated: a cluster lying mostly below CD45 zero (``below_zero`` of its events) —
  correctly compensated CD45-negative events scatter around zero, so only a spillover into
  CD45's channel that was over-estimated puts a whole population below it (events bright in
  the spilling marker, e.g. CD10-PE-bright B-ALL blasts with a PE -> PerCP coefficient set too
  high). Their CD45 cannot be read; at blast SSC they are counted as blasts, flagged;
* CD45-negative: far below the lymphocytes in CD45 (``negative_gap`` scaled units), or the
  lowest of two clusters that are both well below the bright band;
* granulocytes: every cluster over ``gran_decades`` above the lymphocytes in SSC (SSC is
  judged in decades: its spread grows with its level);
* monocytes: CD45 as bright as the lymphocytes (within ``bright_sd``), SSC ``mono_decades``
  above them;
* blasts: CD45dim (more than ``dim_sd`` below the lymphocytes), SSC below the granulocytes —
  every such cluster, however small, from just above the CD45-negative events up to the
  monocytes;
* any other cluster (bright, low SSC) is counted with the lymphocytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEGATIVE, LYMPHOCYTES, MONOCYTES, GRANULOCYTES, BLASTS = 0, 1, 2, 3, 4
NAMES = {
    NEGATIVE: "cd45_negative",
    LYMPHOCYTES: "lymphocytes",
    MONOCYTES: "monocytes",
    GRANULOCYTES: "granulocytes",
    BLASTS: "blasts",
}


@dataclass(frozen=True)
class Cluster:
    """One merged basin: its peak, share of events and core spread (working space)."""

    label: int
    x: float
    y: float
    mass: float
    sd_x: float
    sd_y: float
    below_zero: float = 0.0  # share of its events below CD45 = 0 (linear)


@dataclass(frozen=True)
class Rules:
    negative_gap: float = 0.44  # CD45 scaled units below the lymphocytes: CD45-negative
    dim_sd: float = 2.5  # CD45 more than this many lymphocyte SDs below them: CD45dim
    bright_sd: float = 3.0  # monocytes: CD45 within this many lymphocyte SDs
    mono_decades: float = 0.2  # monocytes: SSC this many decades above the lymphocytes (x1.6)
    gran_decades: float = 0.55  # granulocytes: SSC this many decades above them (x3.5)
    min_lymph_mass: float = 0.005
    min_valley: float = 0.3  # blasts/monocytes: a shallower valley is flagged
    max_monocytes: float = 0.2  # no blasts and more monocytes than this: blasts hidden there?
    wide_monocytes: float = 1.6  # ... or monocytes' CD45 SD this many times the lymphocytes'
    many_negatives: float = 0.1  # no blasts and this share CD45-negative: say so
    below_zero: float = 0.85  # a cluster with this share below CD45 zero: over-compensated
    maturation_decades: float = 0.3  # a CD45dim cluster this far above the blasts: maturation?
    split_d: float = 0.8  # no monocyte cluster: split blasts/monocytes at this Ashman's D
    blast_ssc_sd: float = 3.5  # the blast region ends this many of its SDs above its SSC peak


def classify(
    clusters: list[Cluster], rules: Rules, decade: float = 1.0
) -> tuple[dict[int, int], dict[str, list[str]]]:
    """Population code of each cluster label, and QC reasons per population (what was not
    seen, in a cytometrist's words).

    ``decade``: working-space SSC units per decade (1 on log10 SSC; 0.25 on a 4-decade log
    channel stored as its channel fraction)."""
    qc: dict[str, list[str]] = {}
    xs = np.array([c.x for c in clusters])
    ys = np.array([c.y for c in clusters])
    span_x = max(float(np.ptp(xs)), 1e-9)
    span_y = max(float(np.ptp(ys)), 1e-9)
    candidates = [c for c in clusters if c.mass >= rules.min_lymph_mass] or clusters
    lymph = max(candidates, key=lambda c: (c.x - xs.min()) / span_x - (c.y - ys.min()) / span_y)
    out = {lymph.label: LYMPHOCYTES}
    sdx = max(lymph.sd_x, 1e-6)
    rest = [c for c in clusters if c.label != lymph.label]
    gran_cut = lymph.y + rules.gran_decades * decade

    over = [c for c in rest if c.below_zero >= rules.below_zero]
    for c in over:
        out[c.label] = GRANULOCYTES if c.y > gran_cut else BLASTS
    if over:
        share = sum(c.mass for c in over)
        why = (
            f"CD45 of {100 * share:.0f}% of events lies below zero (a cluster, not noise): the "
            "spillover into CD45's channel looks over-estimated; those events are gated by "
            "SSC (blasts if low) — check the compensation"
        )
        for pop in ("blasts", "leukocytes"):
            qc.setdefault(pop, []).append(why)
    rest = [c for c in rest if c.label not in out]

    low = [c for c in rest if lymph.x - c.x > rules.dim_sd * sdx]
    negative = [c for c in low if lymph.x - c.x >= rules.negative_gap]
    # granulocytes are CD45-lower than the lymphocytes by nature: only clusters at blast SSC
    # compete for "the lower of two CD45-low clusters"
    low = [c for c in low if c.y <= gran_cut]
    if not negative and len(low) >= 2:
        lowest = min(low, key=lambda c: c.x)
        others = [c for c in low if c is not lowest]
        # the lowest of two CD45dim-or-lower clusters is negative when it is as far below the
        # next one as that one is below the lymphocytes' lower edge
        nxt = min(others, key=lambda c: c.x)
        if nxt.x - lowest.x > max(rules.dim_sd * sdx, 0.5 * (lymph.x - nxt.x)):
            negative = [lowest]
    for c in negative:
        out[c.label] = NEGATIVE
    rest = [c for c in rest if c.label not in out]

    high = [c for c in rest if c.y > gran_cut]
    for c in high:  # granulocytes, eosinophils and the high-SSC rest: above every other cluster
        out[c.label] = GRANULOCYTES
    if high:
        gran_y = min(c.y for c in high)
    else:
        qc.setdefault("granulocytes", []).append(
            "no granulocyte cluster (no cluster of high SSC above the lymphocytes)"
        )
        gran_y = np.inf
    rest = [c for c in rest if c.label not in out]

    bright = [
        c
        for c in rest
        if c.x >= lymph.x - rules.bright_sd * sdx and c.y > lymph.y + rules.mono_decades * decade
    ]
    if bright:
        mono = max(bright, key=lambda c: c.mass)
        out[mono.label] = MONOCYTES
        for c in bright:
            if c is not mono:
                out[c.label] = MONOCYTES
    rest = [c for c in rest if c.label not in out]

    for c in rest:
        if lymph.x - c.x > rules.dim_sd * sdx and c.y < gran_y:
            out[c.label] = BLASTS
        elif c.y > gran_cut:
            out[c.label] = GRANULOCYTES
        else:
            out[c.label] = LYMPHOCYTES
    found = set(out.values())
    if MONOCYTES not in found:
        qc.setdefault("monocytes", []).append(
            "no monocyte cluster (CD45 as bright as the lymphocytes, SSC above them)"
        )
        if BLASTS in found:
            qc.setdefault("blasts", []).append(
                "no monocyte cluster separate from the CD45dim blasts: blasts may include monocytes"
            )
    if BLASTS not in found:
        monos = [c for c in clusters if out[c.label] == MONOCYTES]
        mono_mass = sum(c.mass for c in monos)
        wide = any(c.sd_x > rules.wide_monocytes * sdx for c in monos)
        negatives = sum(c.mass for c in clusters if out[c.label] == NEGATIVE)
        if monos and (mono_mass > rules.max_monocytes or wide):
            spread = ", CD45 spread wider than the lymphocytes'" if wide else ""
            why = (
                "no CD45dim cluster separate from the monocytes (monocyte cluster "
                f"{100 * mono_mass:.0f}% of events{spread}): blasts may be counted as monocytes"
            )
        else:
            why = "no CD45dim cluster between the CD45-negative events and the lymphocytes"
            if negatives > rules.many_negatives:
                why += f" ({100 * negatives:.0f}% of events CD45-negative: CD45-negative blasts?)"
        qc.setdefault("blasts", []).append(why)
    return out, qc
