"""The local sandbox's ``sshd`` (``python -m tests.modal_host.sshd SB_ID -D -e -f CONFIG``).

Stands in for OpenSSH's sshd in the image: reads the config the worker wrote (HostKey,
AuthorizedKeysFile), serves SSH with paramiko on a local port that the fakes'
``Sandbox.tunnels()`` reports as the raw TCP tunnel of port 22, accepts only the
authorized key for root, and runs the requested command under ``sh -c`` in a PTY (window
changes applied), as sshd does. The switch ``ssh_mitm`` makes it present another host
key: a server behind the tunnel that is not the worker's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shlex
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

import paramiko

from tests.modal_host import state

CLIENT_CLOSE_WAIT_S = 10.0


def _config(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and not parts[0].startswith("#"):
            out[parts[0].lower()] = parts[1].strip()
    return out


class _Server(paramiko.ServerInterface):
    def __init__(self, authorized: list[str], env: dict[str, str]) -> None:
        self.authorized = authorized
        self.env = env
        self.pty: tuple[str, int, int] | None = None
        self.command: bytes | None = None
        self.ready = threading.Event()
        self.master: int | None = None

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: Any) -> int:
        if username == "root" and key.get_base64() in self.authorized:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else \
            paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, channel: Any, term: bytes, width: int, height: int,
                                  pixelwidth: int, pixelheight: int, modes: bytes) -> bool:
        name = term.decode() if isinstance(term, bytes) else str(term)
        self.pty = (name, height, width)
        return True

    def check_channel_window_change_request(self, channel: Any, width: int, height: int,
                                            pixelwidth: int, pixelheight: int) -> bool:
        if self.master is not None:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width,
                                                                       0, 0))
        return True

    def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
        self.command = command
        self.ready.set()
        return True

    def check_channel_env_request(self, channel: Any, name: bytes, value: bytes) -> bool:
        return False


def _mapped(sb_id: str, command: str) -> str:
    """The command with the sandbox's paths in its words mapped (the process runs on this
    machine, not in the container); left as it is when it does not split as words."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    return shlex.join(state.map_path(sb_id, w) for w in words)


def _session(conn: socket.socket, host_key: paramiko.PKey, authorized: list[str],
             env: dict[str, str], sb_id: str) -> None:
    transport = paramiko.Transport(conn)
    transport.add_server_key(host_key)
    server = _Server(authorized, env)
    try:
        transport.start_server(server=server)
    except (paramiko.SSHException, EOFError, OSError):
        return
    channel = transport.accept(30)
    if channel is None or not server.ready.wait(30) or server.command is None:
        transport.close()
        return
    term, rows, cols = server.pty or ("dumb", 24, 80)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    server.master = master

    def controlling() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(["/bin/sh", "-c", _mapped(sb_id, server.command.decode())],
                            stdin=slave, stdout=slave, stderr=slave,
                            env={**env, "TERM": term}, preexec_fn=controlling)  # noqa: PLW1509
    os.close(slave)
    try:
        while True:
            ready, _, _ = select.select([master, channel], [], [], 0.5)
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                channel.sendall(data)
            if channel in ready:
                data = channel.recv(65536)
                if not data:
                    break
                os.write(master, data)
            if proc.poll() is not None and not select.select([master], [], [], 0)[0]:
                break
    finally:
        code = proc.wait(5) if proc.poll() is None else proc.returncode
        with contextlib.suppress(Exception):
            channel.send_exit_status(code if code is not None else 255)
            channel.close()
        with contextlib.suppress(OSError):
            os.close(master)
        # As sshd does: the client closes the connection once it has read the exit status.
        # Closing first, with the client's last packets (window adjusts, keep-alives) unread,
        # makes the kernel answer with a reset that can overtake the exit status: the client
        # then sees a dropped connection (ssh exits 255) instead of the command's end.
        deadline = time.monotonic() + CLIENT_CLOSE_WAIT_S
        while transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.05)
        transport.close()


def main(argv: list[str]) -> int:
    sb_id = argv[0]
    config_path = Path(argv[argv.index("-f") + 1])
    config = _config(config_path)
    host_key = paramiko.Ed25519Key.from_private_key_file(config["hostkey"])
    other_file = config_path.parent / "other_host_key"  # another server's, of the same type
    with contextlib.suppress(FileNotFoundError):
        os.unlink(other_file)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_file)],
                   check=True, capture_output=True)
    other_key = paramiko.Ed25519Key.from_private_key_file(str(other_file))
    authorized = [line.split()[1] for line in Path(config["authorizedkeysfile"]).read_text()
                  .splitlines() if len(line.split()) >= 2]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    tunnels = state.sandbox_dir(sb_id) / "tunnels"
    tunnels.mkdir(exist_ok=True)
    (tunnels / config.get("port", "22")).write_text(str(listener.getsockname()[1]))
    env = dict(os.environ)
    while True:
        conn, _ = listener.accept()
        key = other_key if state.switch_on("ssh_mitm") else host_key
        threading.Thread(target=_session, args=(conn, key, authorized, env, sb_id),
                         daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
