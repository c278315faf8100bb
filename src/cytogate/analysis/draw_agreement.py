"""Do the stained and control tubes of one blood draw agree on the blast count?

Both tubes hold the same cells with the same CD45/SSC staining, so their blast share of the
leukocytes must agree up to counting noise; when it does not, one tube's blast gate went
wrong (typically blasts taken with the monocytes in one tube only), and every ratio of the
two tubes (RMFI, % positive above the control) is doubtful. The tolerance is stated: 10 %, or
3 SD of the counting noise of the two blast counts when that is larger.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cytogate.gating.engine import GatingResult

TOLERANCE = 0.10  # relative difference of the blast share of leukocytes
NOISE_SD = 3.0  # ... or this many SDs of counting noise, when larger


def draw_disagreement(
    stained: GatingResult,
    control: GatingResult,
    label: str,
    control_tube: str = "isotype",
    blasts: str = "blasts",
    leukocytes: str = "leukocytes",
) -> str:
    """The QC reason when the two tubes' blast shares differ beyond the tolerance, else ''."""
    try:
        counts = [(r.count(blasts), r.count(leukocytes)) for r in (stained, control)]
    except KeyError:
        return ""
    (ns, ls), (nc, lc) = counts
    if min(ls, lc) == 0 or max(ns, nc) == 0:
        return ""
    ps, pc = ns / ls, nc / lc
    diff = abs(ps - pc) / max(ps, pc)
    limit = max(TOLERANCE, NOISE_SD * math.sqrt(1 / max(ns, 1) + 1 / max(nc, 1)))
    if diff <= limit:
        return ""
    return (
        f"blast count differs {100 * diff:.0f}% between the stained and {control_tube} tubes "
        f"of {label} ({100 * ps:.1f}% vs {100 * pc:.1f}% of leukocytes; "
        f"tolerance {100 * limit:.0f}%)"
    )
