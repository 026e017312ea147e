"""`session attach --ssh`: a real SSH session through the sandbox's tunnel (ADR 0022).

The daemon gives the argv (the session's key, a known_hosts pinning the host key the
worker reported, strict host key checking, keep-alives). A dropped connection (ssh exits
255 for other reasons) is reconnected, asking the daemon again (the tunnel may have
moved); a server with another host key is refused at once with E601, never retried.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from parhelia_cli.api import Api

from parhelia_cli import render
from parhelia_cli.errors import CliError

RECONNECTS = 5
BACKOFF_MAX_S = 15.0
SSH_FAILED = 255
HOST_KEY_REFUSED = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED")
AUTH_REFUSED = ("Permission denied",)
STDERR_KEPT = 8192


def _tee(src: IO[bytes], kept: bytearray) -> None:
    """ssh's own messages: shown as they come, the tail kept to tell why it ended."""
    for chunk in iter(lambda: src.read1(4096), b""):  # type: ignore[attr-defined]
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()
        kept.extend(chunk)
        del kept[:-STDERR_KEPT]


def run(api: Api, session_id: str, *, sleep: Callable[[float], None] = time.sleep) -> int:
    """Run ssh until the user detaches (its exit code); reconnect a dropped connection up
    to :data:`RECONNECTS` times."""
    drops = 0
    while True:
        got = api.sessions.ssh_session(session_id)
        kept = bytearray()
        proc = subprocess.Popen(list(got.argv), stderr=subprocess.PIPE)
        assert proc.stderr is not None
        tee = threading.Thread(target=_tee, args=(proc.stderr, kept), daemon=True)
        tee.start()
        code = proc.wait()
        tee.join(5)
        if code != SSH_FAILED:
            return code
        said = kept.decode(errors="replace")
        if any(m in said for m in HOST_KEY_REFUSED):
            raise CliError("E601", f"the SSH server behind the tunnel of session {session_id} "
                                   f"({got.host}:{got.port}) does not hold the host key its "
                                   f"worker reported ({got.host_key_fingerprint}): refused, "
                                   "nothing was sent. Something else answers at that address",
                           hint=f"`parhelia session attach {session_id}` (without --ssh) "
                                "attaches through the Modal SDK")
        if any(m in said for m in AUTH_REFUSED):
            raise CliError("E601", f"the sandbox's SSH server refused the key of session "
                                   f"{session_id}")
        drops += 1
        if drops > RECONNECTS:
            raise CliError("E502", f"the SSH connection to session {session_id} dropped "
                                   f"{RECONNECTS + 1} times; it goes on running",
                           hint=f"`parhelia session attach {session_id}` attaches again")
        render.info(f"The SSH connection dropped; reconnecting ({drops}/{RECONNECTS})...")
        sleep(min(2.0 ** drops, BACKOFF_MAX_S))
