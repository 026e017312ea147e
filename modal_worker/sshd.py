"""An SSH server for `session attach --ssh` (Modal; ADR 0022).

The daemon makes a key pair per session and puts only its public key in the spec
(``ssh_authorized_key``). The worker makes a fresh host key, writes a config of its own
(key-only login for root, no forwarding of any kind, no PAM), starts ``sshd -D`` on port
22 (the sandbox's raw TCP tunnel), and reports the host key in an ``ssh_host_key`` event:
the daemon pins it in the session's known_hosts, so the user's ssh refuses any other
server behind the tunnel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from parhelia.sshkey import InvalidPublicKey, check_public_key

PORT = 22
START_TIMEOUT_S = 10.0
CONFIG = """\
# Written by Parhelia for `session attach --ssh`: the only configuration this sshd reads.
Port {port}
ListenAddress 0.0.0.0
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
AllowTcpForwarding no
AllowStreamLocalForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTunnel no
PermitUserEnvironment no
ClientAliveInterval 15
ClientAliveCountMax 4
"""


class SshdError(Exception):
    pass


@dataclass
class Sshd:
    process: subprocess.Popen[bytes]
    host_key: str  # "ssh-ed25519 AAAA..." (the public half)
    fingerprint: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def prepare(directory: Path, authorized_key: str, port: int = PORT) -> Path:
    """Host key, authorized_keys and config in ``directory`` (0700); the config's path."""
    try:
        key = check_public_key(authorized_key)
    except InvalidPublicKey as exc:
        raise SshdError(str(exc)) from None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    host_key = directory / "host_ed25519"
    for stale in (host_key, host_key.with_suffix(".pub")):
        stale.unlink(missing_ok=True)
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise SshdError("ssh-keygen is not installed")
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "parhelia-sandbox", "-f",
                    str(host_key)], check=True, capture_output=True, timeout=30)
    authorized = directory / "authorized_keys"
    authorized.write_text(key + "\n")
    os.chmod(authorized, 0o600)
    config = directory / "sshd_config"
    config.write_text(CONFIG.format(port=port, host_key=host_key, authorized_keys=authorized,
                                    pid_file=directory / "sshd.pid"))
    os.chmod(config, 0o600)
    return config


def host_key_of(config: Path) -> tuple[str, str]:
    """(public host key line without comment, SHA256 fingerprint) of a prepared config."""
    pub = (config.parent / "host_ed25519.pub").read_text().split()
    line = f"{pub[0]} {pub[1]}"
    keygen = shutil.which("ssh-keygen") or "ssh-keygen"
    out = subprocess.run([keygen, "-l", "-E", "sha256", "-f", str(config.parent /
                                                                   "host_ed25519.pub")],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return line, out.split()[1]


def start(directory: Path, authorized_key: str, *, port: int = PORT) -> Sshd:
    """Prepare and start ``sshd -D``; SshdError when it is missing or exits at once."""
    config = prepare(directory, authorized_key, port)
    binary = shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/usr/bin/sshd") if os.access(p, os.X_OK)), None)
    if binary is None:
        raise SshdError("sshd is not installed where the worker runs")
    if os.geteuid() == 0:  # Debian's sshd wants its privilege separation directory
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        proc.wait(0.5)
    except subprocess.TimeoutExpired:
        line, fingerprint = host_key_of(config)
        return Sshd(proc, line, fingerprint)
    err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")[-300:]
    raise SshdError(f"sshd exited at once ({proc.returncode}): {err.strip()}")
