"""The one kind of SSH public key Parhelia passes between processes: an ``ssh-ed25519``
line. The daemon puts a session's key in the worker spec (``ssh_authorized_key``) and pins
the host key the worker reports; the worker's sshd (``modal_worker.sshd``) authorises it."""

from __future__ import annotations

import re

KEY_RE = re.compile(r"^ssh-ed25519 [A-Za-z0-9+/]+={0,3}( [ -~]{0,200})?$")


class InvalidPublicKey(ValueError):
    """Not an ``ssh-ed25519`` public key line."""


def check_public_key(value: str) -> str:
    """An ``ssh-ed25519`` public key line (the only kind the daemon makes), stripped."""
    value = value.strip()
    if not KEY_RE.match(value):
        raise InvalidPublicKey("ssh_authorized_key: not an ssh-ed25519 public key")
    return value
