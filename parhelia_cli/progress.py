"""Progress bars for long work (upload, rollback, pull, config sync): on stderr, only
when stderr is a terminal and the output is not JSON; gone when the work ends.

The daemon reports ``(phase, done, total, unit)`` (``SystemService.WatchOperation``,
units from ``parhelia.progress``); :func:`reporting` gives a long call a bar fed by it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from parhelia.progress import BYTES
from parhelia_cli import render
from parhelia_cli.api import Progress
from parhelia_cli.durations import human_bytes


def wanted(quiet: bool) -> bool:
    """A bar is drawn only on a terminal's stderr, and never with --json."""
    return not quiet and render.is_tty(sys.stderr)


class Bar:
    """A transient bar on stderr, started at the first update (nothing when not
    :func:`wanted`)."""

    def __init__(self, quiet: bool = False) -> None:
        self.enabled = wanted(quiet)
        self._progress: Any = None
        self._task: Any = None

    def update(self, phase: str, done: int, total: int, unit: str = BYTES) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            from rich.progress import BarColumn, Progress, TextColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.fields[amount]}"),
                                      console=render.console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task("", total=None, amount="")
        if unit == BYTES:
            amount = human_bytes(done) + (f"/{human_bytes(total)}" if total else "")
        else:
            amount = f"{done}/{total} {unit}" if total else f"{done} {unit}"
        self._progress.update(self._task, description=render.clip(render.safe(phase), 40),
                              completed=done, total=total or None, amount=amount)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@contextmanager
def reporting(quiet: bool) -> Iterator[Progress | None]:
    """The ``on_progress`` of a long call (:mod:`parhelia_cli.api`): a bar of the daemon's
    reports when one is :func:`wanted`, else None (the call is made without them)."""
    if not wanted(quiet):
        yield None
        return
    with Bar() as bar:
        yield lambda p: bar.update(p.phase, p.done, p.total, p.unit) if p.phase else None
