"""The one polling helper of the tests: wait until something becomes true."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.1, detail: Callable[[], str] | None = None) -> T:
    """Call ``predicate`` until it returns something truthy and return that; fail the
    test (AssertionError naming ``what``, with what ``detail`` says of the state then)
    when ``timeout`` seconds pass first. The predicate is always called once more at the
    deadline, so a slow machine that gets there just in time still passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            said = ""
            if detail is not None:
                try:
                    said = "\n" + detail()
                except Exception as exc:  # the state could not be read: say so, keep the timeout
                    said = f"\n(the detail could not be read: {exc!r})"
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{said}")
        time.sleep(interval)
