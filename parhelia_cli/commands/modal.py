"""``parhelia modal setup``: get Modal ready for tasks (token, app, volume, secret, image).

The work is done by ``python -m parheliad.backends.modal.setup`` in a child process: the
CLI never imports the daemon's code nor the ``modal`` SDK. A token given here reaches the
child on its stdin, never on its command line.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click

from parhelia_cli.context import json_option, settings


@click.group()
def modal() -> None:
    """Run tasks in Modal sandboxes (CPU or GPU).

    \b
    parhelia modal setup --token-id ak-... # once: a token from modal.com/settings/tokens
    parhelia modal setup                   # app, volume, secret check, worker image
    parhelia task create "..." --gpu A10G
    """


@modal.command()
@click.option("--token-id", default=None, metavar="ID",
              help="A Modal token id (https://modal.com/settings/tokens) to store in Modal's "
                   "config file (~/.modal.toml) once Modal accepts it.")
@click.option("--token-secret", default=None, metavar="SECRET",
              help="Its secret; asked for without echo when --token-id is given alone.")
@json_option
def setup(token_id: str | None, token_secret: str | None) -> None:
    """Store a Modal token when one is given, check the SDK and the token, create or find
    the app and the v2 volume, check the Anthropic secret (`modal.secret_name`), build the
    worker image; print what was done. Safe to run again: it finds what exists and changes
    nothing. An unreachable Modal fails in about ten seconds. Exits 1 when a step fails
    (its line says how to fix it)."""
    if token_secret is not None and token_id is None:
        raise click.UsageError("--token-secret needs --token-id")
    if token_id is not None and token_secret is None:
        token_secret = click.prompt("Modal token secret", hide_input=True, err=True)
    argv = [sys.executable, "-m", "parheliad.backends.modal.setup"]
    if settings().json:
        argv.append("--json")
    given = None
    if token_id is not None:
        argv.append("--token-stdin")
        given = json.dumps({"token_id": token_id.strip(),
                            "token_secret": (token_secret or "").strip()})
    code = subprocess.run(argv, input=given, text=True, check=False).returncode
    if code:
        sys.exit(code)
