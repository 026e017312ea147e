"""The ``parhelia`` console script: ``parhelia --help`` answered without importing
Click, then the polled ``--json`` reads (:mod:`parhelia_cli.quick`), anything else
handed to :func:`parhelia_cli.main.main`.

The root help is the one invocation that needs nothing but text, and Click's import
alone costs a CLI call more than twice the interpreter's start (``bench/cli_latency.py``).
Its text is Click's own rendering, kept in :mod:`parhelia_cli.roothelp` (written by
``scripts/gen_root_help.py``; a test fails when it differs from what Click prints). Click
wraps help to the terminal's width up to 80 columns, so a narrower terminal (or
``COLUMNS`` below 80) goes through Click. This module imports only ``os`` and ``sys``.
"""

from __future__ import annotations

import os
import sys

HELP_ARGS = (["--help"], ["-h"])
WIDTH = 80


def columns() -> int:
    """The terminal's width as Click sees it (``shutil.get_terminal_size`` on stdout:
    ``COLUMNS`` first, else the terminal, else 80)."""
    try:
        value = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        value = 0
    if value > 0:
        return value
    stdout = sys.__stdout__
    try:
        return (os.get_terminal_size(stdout.fileno()).columns if stdout else 0) or WIDTH
    except (ValueError, OSError):
        return WIDTH


def main() -> None:
    if sys.argv[1:] in HELP_ARGS and columns() >= WIDTH:
        from parhelia_cli.roothelp import TEXT

        try:
            sys.stdout.write(TEXT)
            sys.stdout.flush()
        except BrokenPipeError:
            pass
        os._exit(0)
    from parhelia_cli.quick import answer

    code = answer(sys.argv[1:])
    if code is not None:
        os._exit(code)
    from parhelia_cli.main import main as run

    run()
