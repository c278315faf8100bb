"""Print the README's excerpt of stats.csv as a Markdown table.

Usage: python tools/readme_stats.py sample_fcs/run42/cytogate_results/stats.csv
"""

from __future__ import annotations

import sys

import pandas as pd

MEASURES = [
    "leukocytes_per_ul",
    "blasts_per_ul",
    "blasts_CXCR4_12G5_rmfi_median",
    "blasts_CXCR4_1D9_rmfi_median",
    "blasts_CD114_rmfi_median",  # partial panel: its own n
    "blasts_Ki67_pct_positive",  # the Ki67 tube, in some patients only
]
COMPARISONS = ["day3 vs baseline", "2h vs baseline", "6h vs baseline", "24h vs 6h"]
COLUMNS = [
    "measure",
    "comparison",
    "n_pairs",
    "n_patients",
    "mean_fc",
    "sem_fc",
    "median_fc",
    "test",
    "p",
    "stars",
]


def main(path: str) -> None:
    stats = pd.read_csv(path)
    rows = stats[stats["measure"].isin(MEASURES) & stats["comparison"].isin(COMPARISONS)]
    rows = rows.assign(
        _m=rows["measure"].map(MEASURES.index), _c=rows["comparison"].map(COMPARISONS.index)
    )
    rows = rows.sort_values(["_m", "_c"])[COLUMNS]
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for rec in rows.itertuples(index=False):
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in rec]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
