"""``ast.parse`` for the guard tests, proof against CPython 3.11's AST converter.

CPython 3.11 keeps the AST converter's recursion depth in state shared by the threads of
the process; a parse that overlaps another thread's can fail with ``SystemError: AST
constructor recursion depth mismatch`` (python/cpython gh-106905; seen in this suite's
CI once, with the Modal SDK's threads of an earlier test alive in the same worker). The
source is fine: parsing it again succeeds.
"""

from __future__ import annotations

import ast

ATTEMPTS = 5


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    for attempt in range(ATTEMPTS):
        try:
            return ast.parse(source, filename)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
