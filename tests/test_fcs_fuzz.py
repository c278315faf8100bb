"""Seeded fuzz of the reader over mutated corpus files (issue 13, item 6): only FCSError escapes,
each FCSError names its cause (never the safety net's "unexpected ..."), no case hangs, and
memory stays bounded. The long run is ``benchmarks/fuzz_fcs.py --cases N``."""

from __future__ import annotations

import resource
import time

from tests.fcs_fuzz import cases, corpus_files, run_case

N_CASES = 250  # about 3 s on an idle machine
PER_CASE_SECONDS = 2.0


def test_seeded_fuzz_only_named_fcserrors_escape():
    files = corpus_files()
    assert len(files) >= 10
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kinds: dict[str, int] = {}
    bad: list[str] = []
    slow: list[str] = []
    start = time.perf_counter()
    for name, blob in cases(seed=20261201, n=N_CASES, files=files):
        outcome = run_case(blob, name)
        kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
        if outcome.kind in ("escape", "generic"):
            bad.append(f"{name}: {outcome.detail}")
        if outcome.seconds > PER_CASE_SECONDS:
            slow.append(f"{name}: {outcome.seconds:.1f} s")
    elapsed = time.perf_counter() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert not bad, bad[:5]
    assert not slow, slow
    # the mutations must exercise both outcomes, or the test proves nothing
    assert kinds.get("ok", 0) > 20 and kinds.get("fcserror", 0) > 20, kinds
    assert grown_mb < 500, grown_mb
    assert elapsed < 60, elapsed
