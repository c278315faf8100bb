"""Long seeded fuzz of the FCS reader: ``python benchmarks/fuzz_fcs.py --cases 100000``.

Mutates the corpus files (tests/data/fcs_corpus) as ``tests/fcs_fuzz.py`` does and reads each
case with :func:`cytogate.io.fcs.read_fcs_bytes` in worker processes whose address space is
capped (``--max-mb``), so a memory blow-up shows as an escape (MemoryError) instead of
swapping the machine, and whose cases are timed (``--hang-seconds``): a case over that is a
hang. Prints cases run, outcomes, escapes (anything but FCSError), generic FCSErrors (the
safety net's "unexpected ..." instead of a named cause), hangs, max RSS and the machine load.
Exit 1 if anything escaped, was generic or hung.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))


def _chunk(args: tuple[int, int, int, float]) -> tuple[Counter[str], list[str], list[str], int]:
    seed, n, max_mb, hang_seconds = args
    resource.setrlimit(resource.RLIMIT_AS, (max_mb << 20, max_mb << 20))
    from tests.fcs_fuzz import cases, run_case

    kinds: Counter[str] = Counter()
    bad: list[str] = []
    hangs: list[str] = []
    for i, (name, blob) in enumerate(cases(seed, n)):
        outcome = run_case(blob, name)
        kinds[outcome.kind] += 1
        if outcome.kind in ("escape", "generic"):
            bad.append(f"seed {seed} case {i} ({name}): {outcome.kind}: {outcome.detail[:300]}")
        if outcome.seconds > hang_seconds:
            hangs.append(f"seed {seed} case {i} ({name}): {outcome.seconds:.1f} s")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return kinds, bad, hangs, rss_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=2_000, help="cases per worker task")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-mb", type=int, default=1_500, help="address-space cap per worker")
    parser.add_argument("--hang-seconds", type=float, default=5.0)
    parser.add_argument(
        "--max-seconds", type=float, default=None, help="stop starting chunks after this long"
    )
    opts = parser.parse_args()

    start = time.perf_counter()
    tasks = []
    left, seed = opts.cases, opts.seed * 1_000_003
    while left > 0:
        n = min(opts.chunk, left)
        tasks.append((seed, n, opts.max_mb, opts.hang_seconds))
        left -= n
        seed += 1
    kinds: Counter[str] = Counter()
    bad: list[str] = []
    hangs: list[str] = []
    max_rss = 0
    deadline = None if opts.max_seconds is None else start + opts.max_seconds
    queue = iter(tasks)
    pending: set[Future[tuple[Counter[str], list[str], list[str], int]]] = set()
    with ProcessPoolExecutor(max_workers=opts.workers) as pool:
        while True:
            in_time = deadline is None or time.perf_counter() < deadline
            while len(pending) < opts.workers and in_time:
                task = next(queue, None)
                if task is None:
                    break
                pending.add(pool.submit(_chunk, task))
            if not pending:
                break
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            results = [f.result() for f in finished]
            for k, b, h, rss in results:
                kinds.update(k)
                bad += b
                hangs += h
                max_rss = max(max_rss, rss)
            done = sum(kinds.values())
            print(f"  {done} cases, {len(bad)} bad, {len(hangs)} hangs", file=sys.stderr)
    elapsed = time.perf_counter() - start
    escapes = kinds.get("escape", 0)
    generic = kinds.get("generic", 0)
    print(f"cases run: {sum(kinds.values())} (seed {opts.seed}) in {elapsed:.0f} s")
    print(f"outcomes: {dict(kinds)}")
    hang = f"hangs (> {opts.hang_seconds} s): {len(hangs)}"
    print(f"escapes: {escapes}  generic FCSError: {generic}  {hang}")
    print(f"max RSS per worker: {max_rss} MB (cap {opts.max_mb} MB)")
    print(f"load average: {os.getloadavg()}")
    for line in (bad + hangs)[:20]:
        print(line)
    return 1 if (escapes or generic or hangs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
