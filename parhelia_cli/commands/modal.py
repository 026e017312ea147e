"""``parhelia modal setup``: get Modal ready for tasks (token, app, volume, secret, image).

The work is done by ``python -m parheliad.backends.modal.setup`` in a child process: the
CLI never imports the daemon's code nor the ``modal`` SDK.
"""

from __future__ import annotations

import subprocess
import sys

import click

from parhelia_cli.context import json_option, settings


@click.group()
def modal() -> None:
    """Run tasks in Modal sandboxes (CPU or GPU).

    \b
    modal token new              # once: a Modal token for this machine
    parhelia modal setup         # app, volume, secret check, worker image
    parhelia task create "..." --gpu A10G
    """


@modal.command()
@json_option
def setup() -> None:
    """Check the SDK and the Modal token, create or find the app and the v2 volume,
    check the Anthropic secret (`modal.secret_name`), build the worker image; print what
    was done. Safe to run again: it finds what exists and changes nothing.
    Exits 1 when a step fails (its line says how to fix it)."""
    argv = [sys.executable, "-m", "parheliad.backends.modal.setup"]
    if settings().json:
        argv.append("--json")
    code = subprocess.run(argv, check=False).returncode
    if code:
        sys.exit(code)
