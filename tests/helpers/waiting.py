"""The one polling helper of the tests: wait until something becomes true."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.1) -> T:
    """Call ``predicate`` until it returns something truthy and return that; fail the
    test (AssertionError naming ``what``) when ``timeout`` seconds pass first. The
    predicate is always called once more at the deadline, so a slow machine that gets
    there just in time still passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
