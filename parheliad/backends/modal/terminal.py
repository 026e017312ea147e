"""The Modal backend's terminal: ``session attach`` through the SDK (an exec with a PTY
running ``tmux attach`` on the TUI's socket, ADR 0022) or over SSH (a raw TCP tunnel to
the sandbox's sshd)."""

from __future__ import annotations

import builtins
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

from parhelia import tuisocket
from parhelia.errors import ParheliaError
from parheliad.backends.modal.client import SSH_PORT, ModalClient

TUNNEL_TIMEOUT_S = 50
SANDBOX_TMP = "/tmp"  # the sandbox's own temp dir, where the worker's TUI listens


class Terminals(ModalClient):
    """Attaching to a sandbox's interactive TUI: through the daemon
    (:class:`~parheliad.backends.base.DaemonTerminal`) or over SSH, interactive workers
    running sshd behind a raw TCP tunnel (:class:`~parheliad.backends.base.SshTunnel`)."""

    async def ssh_endpoint(self, backend_id: str) -> tuple[str, int]:
        """(host, port) of the raw TCP tunnel to the sandbox's port 22."""
        sb = await self._handle(backend_id)
        tunnels = await self.call(f"looking up the tunnels of {backend_id}",
                                   lambda: sb.tunnels.aio(timeout=TUNNEL_TIMEOUT_S))
        tunnel = dict(tunnels).get(SSH_PORT)
        if tunnel is None or not tunnel.unencrypted_host:
            raise ParheliaError("E601", f"sandbox {backend_id} has no SSH tunnel (it was started "
                                        "without one: `parhelia session attach` works without "
                                        "--ssh)")
        return str(tunnel.unencrypted_host), int(tunnel.unencrypted_port)

    def terminal_argv(self, container_id: str) -> builtins.list[str]:
        """``tmux attach`` on the interactive TUI's private socket inside the sandbox (the
        worker runs as root there; its temp dir is /tmp)."""
        return tuisocket.attach_argv(tuisocket.socket_path(container_id, tmp=SANDBOX_TMP, uid=0))

    async def open_terminal(self, backend_id: str, container_id: str, argv: Sequence[str],
                            rows: int, cols: int, term: str) -> ModalTerminal:
        """Run ``argv`` (``tmux attach`` on the TUI's socket) in an exec with a PTY, sized
        ``rows`` x ``cols`` by :mod:`modal_worker.ttyctl` (ADR 0022)."""
        sb = await self._handle(backend_id)
        attach_id = f"a-{secrets.token_hex(8)}"
        proc = await self.call(
            f"attaching to {container_id}",
            lambda: sb.exec.aio("python", "-m", "modal_worker", "tty", "attach", attach_id,
                                str(rows), str(cols), "--", *argv, pty=True, text=False,
                                env={"TERM": term}))
        return ModalTerminal(self, sb, proc, attach_id, container_id)


class ModalTerminal:
    """One attach: the PTY exec's bytes out, the user's keys in, resizes and the hang-up
    through :mod:`modal_worker.ttyctl` execs."""

    def __init__(self, backend: ModalClient, sb: Any, proc: Any, attach_id: str,
                 container_id: str) -> None:
        self._backend, self._sb, self._proc = backend, sb, proc
        self.attach_id, self.container_id = attach_id, container_id

    async def output(self) -> AsyncIterator[bytes]:
        async for chunk in self._proc.stdout:
            yield chunk if isinstance(chunk, bytes) else str(chunk).encode()

    async def write(self, data: bytes) -> None:
        self._proc.stdin.write(data)
        await self._backend.call(f"typing into {self.container_id}",
                                  lambda: self._proc.stdin.drain.aio())

    async def _tty(self, *args: str) -> int:
        proc = await self._backend.call(
            f"controlling the terminal of {self.container_id}",
            lambda: self._sb.exec.aio("python", "-m", "modal_worker", "tty", *args))
        code: int = await self._backend.call(
            f"controlling the terminal of {self.container_id}", lambda: proc.wait.aio())
        return code

    async def resize(self, rows: int, cols: int) -> None:
        await self._tty("resize", self.attach_id, str(rows), str(cols))

    async def close(self) -> None:
        """The user is gone: hang the attached client up (tmux detaches it)."""
        await self._tty("hangup", self.attach_id)

    async def wait(self) -> int:
        code: int = await self._backend.call(f"ending the attach to {self.container_id}",
                                              lambda: self._proc.wait.aio())
        return code
