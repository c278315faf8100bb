"""Generate golden references for the FCS corpus with fcsparser 0.2.8.

Why: the tests compare cytogate's reader with an independent reader. flowio is used live in the
tests, but it cannot read every corpus file (24-bit integers, several data sets, a blank HEADER
DATA offset). fcsparser 0.2.8 reads those, but it pins numpy<2 and cannot be installed next to
cytogate, so its results are frozen here as small JSON files and the tests never need it.

Run it (only when the corpus changes) from the repository root with the separate venv:

    /tmp/venv_fcsparser/bin/python tools/make_fcs_reference.py

Options: ``--corpus DIR`` (default tests/data/fcs_corpus) and ``--out DIR`` (default
tests/data/fcs_reference). One ``<relative path with / -> __, no extension>.json`` is written per
FCS file, holding the file's sha256 (so a test can tell a stale golden), fcsparser's version and,
per data set, the event count, the $PnN names, per-channel sum and sum of squares (float64) and
the first/last 5 rows. Files fcsparser cannot read get ``"error"`` instead.

What fcsparser returns, so comparisons are fair (read from its source, fcsparser/api.py):

* values as stored, with the $PnR bitmask applied to integer data
  (``2**ceil(log2(PnR)) - 1``), and no $PnE / $PnG scaling: compare with
  ``read_fcs(path, scale=False)``;
* ``dtype=None`` keeps the stored dtype (no float32 cast) - we use the parser object directly;
* it reads $TOT events from the DATA start and ignores $ENDDATA (so off-by-one $ENDDATA does not
  matter to it); 3-byte integers are widened by inserting a zero byte at the front of each value,
  which is correct for big-endian data only (the corpus' 24-bit file, Cytek xP5, is big-endian);
* ``$NEXTDATA`` offsets are cumulative (relative to the current data set), as in flowio.

fcsparser imports ``six`` only for ``six.PY2``; when six is not installed a stub is injected so
the reference venv needs nothing beyond fcsparser and numpy<2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import types
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_DATA_SETS = 16


def _import_fcsparser():  # type: ignore[no-untyped-def]
    try:
        import six  # noqa: F401
    except ImportError:
        sys.modules["six"] = types.SimpleNamespace(PY2=False)  # type: ignore[assignment]
    import fcsparser
    from fcsparser.api import FCSParser

    return fcsparser, FCSParser


def golden_name(rel: Path) -> str:
    """File name of the golden for a corpus-relative path (kept in sync with the tests)."""
    return "__".join(rel.with_suffix("").parts) + ".json"


def _summarise(parser, np) -> dict:  # type: ignore[no-untyped-def]
    data = parser.data
    if data.dtype.names:  # mixed widths: a structured array, one field per channel
        values = np.column_stack([data[name].astype(np.float64) for name in data.dtype.names])
    else:
        values = np.asarray(data, dtype=np.float64)
    values = values.reshape(len(values), -1)
    return {
        "n_events": int(values.shape[0]),
        "channels": [str(n) for n in parser.channel_names_n],
        "sum": [float(x) for x in values.sum(axis=0)],
        "sum_sq": [float(x) for x in (values * values).sum(axis=0)],
        "head": values[:5].tolist(),
        "tail": values[-5:].tolist(),
    }


def build(path: Path, rel: Path) -> dict:
    fcsparser, FCSParser = _import_fcsparser()
    import numpy as np

    blob = path.read_bytes()
    out: dict = {
        "file": rel.as_posix(),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "reference": f"fcsparser {fcsparser.__version__} (numpy {np.__version__})",
        "values": "as stored, $PnR bitmask applied, no $PnE/$PnG scaling",
    }
    data_sets = []
    for k in range(MAX_DATA_SETS):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                parser = FCSParser(str(path), data_set=k)
                summary = _summarise(parser, np)
            except Exception as exc:  # the reference's own failure is what we record
                if k == 0:
                    message = str(exc).replace(str(path), rel.as_posix())
                    out["error"] = f"{type(exc).__name__}: {message}"
                break
        summary["data_set"] = k
        data_sets.append(summary)
        # after data_set=k, the annotation holds data set k's keywords: 0 marks the last one
        if int(parser.annotation.get("$NEXTDATA", 0)) == 0:
            break
    if data_sets:
        out["data_sets"] = data_sets
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=ROOT / "tests/data/fcs_corpus")
    ap.add_argument("--out", type=Path, default=ROOT / "tests/data/fcs_reference")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    files = sorted(
        p for p in args.corpus.rglob("*") if p.is_file() and p.suffix.lower() in (".fcs", ".lmd")
    )
    for path in files:
        rel = path.relative_to(args.corpus)
        golden = build(path, rel)
        target = args.out / golden_name(rel)
        target.write_text(json.dumps(golden, indent=1) + "\n")
        what = golden.get("error") or ", ".join(
            f"ds{d['data_set']}: {d['n_events']} events" for d in golden.get("data_sets", [])
        )
        print(f"{rel}: {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
