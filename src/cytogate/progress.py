"""Progress reporting for batch runs: a bar on a terminal, plain log lines otherwise.

Pipelines capture stderr into logs, where a redrawn bar is noise; people at a terminal want
the bar. Both get one line per failed file as it happens.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ProgressCallback = Callable[[int, int, Any], None]


def _describe(output: Any) -> tuple[str, list[str]]:
    """File names and failure lines of a worker's :class:`~cytogate.study.outcome.GroupOutput`."""
    samples = output.samples
    names = ", ".join(s["file"] for s in samples)
    failures = [f"failed: {s['file']}: {s['error']}" for s in samples if s["status"] == "failed"]
    return names, failures


@contextmanager
def batch_progress(enabled: bool = True) -> Iterator[ProgressCallback | None]:
    """Yield a ``progress(done_index, total, group_output)`` callback (or None if disabled)."""
    if not enabled:
        yield None
        return
    stream = sys.stderr
    if not stream.isatty():
        count = 0

        def log_line(_i: int, total: int, output: Any) -> None:
            nonlocal count
            count += 1
            names, failures = _describe(output)
            print(f"[{count}/{total}] {names}", file=stream, flush=True)
            for line in failures:
                print(line, file=stream, flush=True)

        yield log_line
        return

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("gating samples", total=None)

        def update(_i: int, total: int, output: Any) -> None:
            bar.update(task, total=total, advance=1)
            for line in _describe(output)[1]:
                bar.console.print(line, markup=False)

        yield update
