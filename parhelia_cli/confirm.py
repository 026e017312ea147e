"""Confirmation of destructive commands (``checkpoint rollback``, ``session kill``) and
the choice prompt of ``session recover``.

Rules: ``-y`` never asks. Without it a person at a terminal (stdin is a TTY) is asked on
stderr; a script (stdin not a TTY) is refused with E102 naming ``-y``, so that nothing
destructive happens because a pipe happened to supply a "y".
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from parhelia_cli import render
from parhelia_cli.errors import TaskOutcome, missing


def interactive() -> bool:
    """Whether a person can answer a prompt (stdin is a terminal)."""
    return render.is_tty(sys.stdin)


def confirm(question: str, yes: bool, what: str) -> None:
    """Return when the action may go ahead; refuse (E102) or give up (exit 1) otherwise.

    ``what`` names the action for the refusal message (``"rolling back"``).
    """
    if yes:
        return
    if not interactive():
        raise missing(f"{what} needs a confirmation and stdin is not a terminal; "
                      "pass -y to confirm")
    if not click.confirm(question, default=False, err=True):
        render.info("Nothing was done.")
        raise TaskOutcome(1)


def choose(question: str, choices: Sequence[str]) -> str | None:
    """Ask for one of ``choices`` at a terminal (empty answer = None: do nothing)."""
    if not choices:
        return None
    answer = click.prompt(question, type=click.Choice([*choices, "none"]), default="none",
                          show_choices=True, err=True)
    return None if answer == "none" else str(answer)
