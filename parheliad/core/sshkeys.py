"""Per-session SSH material for `session attach --ssh` (ADR 0022).

``<state>/ssh/<session>/``: the session's key pair (``id_ed25519``, 0600, made by
``ssh-keygen``; only its public half leaves this machine, in the worker spec) and the
``known_hosts`` pinning the host key the worker reported for the container, at the
tunnel's address. Nothing here is ever written with ``StrictHostKeyChecking=no``: a
server behind the tunnel with another key is refused by ssh itself.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from parhelia.errors import ParheliaError
from parhelia.sshkey import InvalidPublicKey, check_public_key

KEY_NAME = "id_ed25519"
KEEPALIVE_INTERVAL_S = 15
KEEPALIVE_COUNT = 3


@dataclass(frozen=True)
class SessionKey:
    private: Path
    public: str


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise ParheliaError("E601", f"{path} is not a directory of this user")
    os.chmod(path, 0o700)
    return path


def session_key(state_dir: Path, session_id: str) -> SessionKey:
    """The session's key pair, made on first use (0600 private key)."""
    directory = _private_dir(state_dir / "ssh" / session_id)
    private = directory / KEY_NAME
    if not private.exists():
        keygen = shutil.which("ssh-keygen")
        if keygen is None:
            raise ParheliaError("E500", "ssh-keygen is not installed on this machine "
                                        "(openssh-client); `session attach` without --ssh works")
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C",
                        f"parhelia-{session_id}", "-f", str(private)],
                       check=True, capture_output=True, timeout=30)
    st = os.lstat(private)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        raise ParheliaError("E601", f"{private} is not this user's key file")
    os.chmod(private, 0o600)
    public = private.with_name(KEY_NAME + ".pub").read_text().strip()
    return SessionKey(private, public)


def pin_host_key(state_dir: Path, session_id: str, host: str, port: int,
                 host_key: str) -> Path:
    """Write the session's known_hosts: ``[host]:port <key>`` only (0600)."""
    try:
        line = check_public_key(host_key)
    except InvalidPublicKey:
        raise ParheliaError("E601", "the worker reported a host key that is not an "
                                    "ssh-ed25519 key; refusing to pin it") from None
    if not host or any(c in host for c in " \t\n,[]") or not 0 < port < 65536:
        raise ParheliaError("E601", f"the tunnel's address {host!r}:{port} is not usable")
    path = _private_dir(state_dir / "ssh" / session_id) / "known_hosts"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"[{host}]:{port} {' '.join(line.split()[:2])}\n")
    os.replace(tmp, path)
    return path


def ssh_argv(key: SessionKey, known_hosts: Path, host: str, port: int,
             remote: list[str]) -> list[str]:
    """The user's ``ssh``: the session's key only, the pinned known_hosts only, strict
    host key checking, keep-alives, a terminal, and ``remote`` (tmux attach)."""
    return ["ssh", "-i", str(key.private), "-p", str(port),
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no",
            "-o", "CheckHostIP=no", "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no", "-o", "BatchMode=yes",
            "-o", f"ServerAliveInterval={KEEPALIVE_INTERVAL_S}",
            "-o", f"ServerAliveCountMax={KEEPALIVE_COUNT}", "-o", "ConnectTimeout=20",
            "-o", "ForwardAgent=no", "-o", "ForwardX11=no", "-o", "ClearAllForwardings=yes",
            "-t", f"root@{host}", "--", *remote]
