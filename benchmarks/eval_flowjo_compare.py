"""Check the compare harness on a real FlowJo workspace, and score cytogate's default template.

Data (GPL-2+, so read from its path, never copied into tests/data): the FlowSOM package's
mouse lung lavage sample with its FlowJo 10 workspace and per-event labels, by default
``../shared/data/real/flowjo_workspaces/flowsom_68983`` (pass another folder as argv[1]).

Prints three tables:
1. the workspace used as cytogate's template against the same workspace (exact FlowKit
   evaluation): every F1 must be 1.0, and FlowJo's recorded counts are shown beside;
2. the workspace used as template against the per-event labels (``gatingResult.csv``, made
   by FlowSOM's R code from the same gates);
3. cytogate's default template (``aml_blasts_cd45_ssc``) against the workspace, for the
   populations that mean the same thing.

Usage: PYTHONPATH=src python benchmarks/eval_flowjo_compare.py [FOLDER]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pandas as pd

from cytogate.interop.agreement import compare_files, load_reference

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
FOLDER = DEFAULT / "flowjo_workspaces" / "flowsom_68983"
SHOW = [
    "population",
    "reference_population",
    "count_cytogate",
    "count_reference",
    "count_flowjo",
    "f1",
    "precision",
    "recall",
    "pct_parent_cytogate",
    "pct_parent_reference",
    "pct_parent_diff",
]
LABELS = ["B cells", "CD4 T cells", "CD8 T cells", "NK T cells", "NK cells", "gd T cells"]
# the workspace's populations that mean what a default-template population means
DEFAULT_MAP = {"Singlets": "singlets", "Lymphocytes": "cells"}


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER
    if not folder.is_dir():
        folder = Path("/work/shared/data/real/flowjo_workspaces/flowsom_68983")
    fcs, wsp, labels = folder / "68983.fcs", folder / "gating.wsp", folder / "gatingResult.csv"
    pd.set_option("display.width", 200)
    start = time.perf_counter()
    workspace = load_reference(wsp)
    table = compare_files([fcs], wsp, workspace, {})
    print("1. workspace as template vs the workspace (exact FlowKit evaluation)")
    print(table[SHOW].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"   all F1 == 1.0: {bool((table['f1'] == 1.0).all())}")
    for note in table["note"][table["note"] != ""]:
        print(f"   note: {note}")
    table = compare_files([fcs], wsp, load_reference(labels), {p: p for p in LABELS})
    print("\n2. workspace as template vs per-event labels (gatingResult.csv)")
    print(table[SHOW].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    table = compare_files([fcs], "aml_blasts_cd45_ssc", workspace, DEFAULT_MAP)
    print("\n3. cytogate's default template (aml_blasts_cd45_ssc) vs the workspace")
    print(table[SHOW].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\n{time.perf_counter() - start:.1f} s, load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
