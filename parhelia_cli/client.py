"""The daemon connection: socket resolution, autostart, version check, error mapping.

Imported only by commands that talk to the daemon. Unary calls go over
:mod:`parhelia_cli.calls` and :mod:`parhelia_cli.unary` (HTTP/2 in the standard
library, ADR 0040); ``grpc`` and its generated stubs are imported only by a command
that follows a server stream or a call's progress. The generated messages are
imported when a call runs.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parhelia import __version__, ownership, paths
from parhelia_cli import calls, lean, render, unary
from parhelia_cli.api import DEFAULT_TIMEOUT, Api, Stream
from parhelia_cli.calls import (
    MAX_MESSAGE_BYTES,
    STUBS,
    address,
    pb2,
    rpc_error,
    unary_call,
    unavailable,
)
from parhelia_cli.errors import CliError

if TYPE_CHECKING:
    import subprocess

AUTOSTART_WAIT = 5.0

def autostart_enabled() -> bool:
    return os.environ.get("PARHELIA_NO_AUTOSTART", "") != "1"


def _grpc() -> Any:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
    import grpc

    return grpc


def _channel(socket: Path) -> Any:
    grpc = _grpc()
    return grpc.insecure_channel(address(socket), options=[
        ("grpc.enable_http_proxy", 0),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ])


def _connect(socket: Path) -> unary.Connection:
    """A new connection to ``socket``, after the same ownership check as :func:`dial`
    (a reconnect must not talk to a socket another user put in its place)."""
    _check_owner(socket)
    return calls.connect(socket)


def _check_owner(socket: Path) -> None:
    why = ownership.socket_problem(socket)
    if why is not None:
        raise CliError("E401", f"refusing to talk to {address(socket)}: {why}. Another user "
                               "could read your prompts and workspaces through it; check "
                               "PARHELIA_SOCKET / --socket.")


def dial(socket: Path) -> tuple[Any, unary.Connection] | None:
    """``(GetVersionResponse, open connection)`` of the daemon on ``socket``, or None when
    nothing answers (E401 when the socket is not this user's)."""
    if not socket.exists():
        return None
    _check_owner(socket)
    return calls.hello(socket)


def probe(socket: Path) -> Any | None:
    """``GetVersionResponse`` of the daemon on ``socket``, or None when nothing answers."""
    answer = dial(socket)
    if answer is None:
        return None
    answer[1].close()
    return answer[0]


def spawn_daemon(p: paths.Paths, stderr: Any = None) -> subprocess.Popen[bytes]:
    """Start ``parheliad`` in the background, detached (it writes its own log file);
    ``stderr`` receives why it refused to start, if it does (default: nowhere)."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "parheliad", "--socket", str(p.socket)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if stderr is None else stderr,
        start_new_session=True, close_fds=True, cwd="/",
    )


def _said(stderr: Any) -> str:
    """The last lines a daemon that exited wrote on its stderr (an unlinked temp file)."""
    stderr.seek(0)
    lines = [ln.strip() for ln in stderr.read().decode(errors="replace").splitlines()
             if ln.strip()]
    return " ".join(lines[-3:])[-1500:]


def wait_for_daemon(socket: Path, proc: subprocess.Popen[bytes] | None,
                    timeout: float = AUTOSTART_WAIT) -> Any | None:
    """Poll ``socket`` in 100-250 ms steps until the daemon answers (or ``proc`` dies)."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        version = probe(socket)
        if version is not None:
            return version
        if proc is not None and proc.poll() is not None:
            # It exited: maybe another daemon won the start race; one last look.
            return probe(socket)
        if time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay + 0.05, 0.25)


def check_version(version: Any, socket: Path) -> None:
    """Warn (once per invocation) when the daemon runs another version than this CLI."""
    daemon_version = getattr(version, "version", "")
    if daemon_version and daemon_version != __version__:
        render.warn(f"parhelia {__version__} is talking to parheliad {daemon_version} at "
                    f"{address(socket)}; restart the daemon (`parhelia daemon stop`) so both "
                    "run the same version.")
    check_budget(version)


def check_budget(version: Any) -> None:
    """The budget banner: the daemon says (in GetVersion) when spending crossed the
    warning threshold or reached the ceiling; one line on stderr per command (again only
    if the state changes, from warning to exceeded)."""
    detail = getattr(version, "budget_detail", "")
    if detail:
        # Once per command and state: the amounts in the text move while a command runs
        # (each reconnection asks again), the news does not.
        render.warn(detail, key="budget:" + getattr(version, "budget_state", ""))


class CallStream:
    """One server-streaming call: iterating yields its messages; failures become
    :class:`CliError`; :meth:`close` cancels it from any thread (the iterating thread
    then stops as at the stream's end), and so does dropping the last reference (a
    consumer that breaks out of its loop, Ctrl-C)."""

    def __init__(self, call: Any, socket: Path, method: str) -> None:
        self._call, self._socket, self._method = call, socket, method

    def __iter__(self) -> CallStream:
        return self

    def __next__(self) -> Any:
        grpc = _grpc()
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise rpc_error(exc, self._socket, self._method) from None

    def close(self) -> None:
        self._call.cancel()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._call.cancel()


class Client:
    """A connection to ``parheliad`` with error mapping around every call; its typed
    methods are :attr:`api` (:class:`parhelia_cli.api.Api`). Unary calls share one
    :class:`unary.Connection`; a grpc channel is opened for streams (and calls that
    follow their progress) when one is first needed."""

    def __init__(self, p: paths.Paths, version: Any,
                 connection: unary.Connection | None = None) -> None:
        lean.defer_python_backend()  # before any generated module is imported
        self.paths = p
        self.socket = p.socket
        self.version = version
        self._connection = connection
        self._grpc_channel: Any = None
        self._stubs: dict[str, Any] = {}
        self.api = Api(self)

    @property
    def _channel(self) -> Any:
        if self._grpc_channel is None:
            self._grpc_channel = _channel(self.socket)
        return self._grpc_channel

    @staticmethod
    def resolve(socket: str | None) -> paths.Paths:
        p = paths.resolve(socket)
        problem = paths.socket_path_problem(p.socket)
        if problem:
            raise CliError("E101", problem)
        return p

    @classmethod
    def connect(cls, socket: str | None, autostart: bool = True) -> Client:
        """Connect, starting the daemon in the background when nothing answers."""
        p = cls.resolve(socket)
        answer = dial(p.socket)
        if answer is not None:
            check_version(answer[0], p.socket)
            return cls(p, answer[0], answer[1])
        if not (autostart and autostart_enabled()):
            raise unavailable(p.socket)
        import tempfile

        with tempfile.TemporaryFile() as stderr:
            proc = spawn_daemon(p, stderr)
            version = wait_for_daemon(p.socket, proc)
            if version is None:
                code = proc.poll()
                said = _said(stderr) if code is not None else ""
                detail = (f"the daemon exited with code {code}" + (f": {said}" if said else "")
                          if code is not None
                          else f"it did not answer within {AUTOSTART_WAIT:.0f} s of autostart")
                raise unavailable(p.socket, detail)
        render.info(f"Started parheliad (pid {proc.pid}) on {address(p.socket)}.")
        check_version(version, p.socket)
        return cls(p, version)

    def stub(self, service: str) -> Any:
        """The generated stub of ``service`` (``tasks``, ``events``...)."""
        if service not in self._stubs:
            module, name = STUBS[service]
            grpc_module = importlib.import_module(f"parhelia.v1.{module}_pb2_grpc")
            self._stubs[service] = getattr(grpc_module, f"{name}Stub")(self._channel)
        return self._stubs[service]

    def call(self, service: str, method: str, request: Any, *,
             timeout: float | None = DEFAULT_TIMEOUT, idempotent: bool = False,
             on_progress: Callable[[Any], None] | None = None) -> Any:
        """One unary RPC (the transport of :class:`Api`); failures become
        :class:`CliError`. One attempt, ``idempotent`` or not. ``on_progress`` follows
        the call's progress reports meanwhile (``SystemService.WatchOperation``)."""
        if on_progress is not None:
            return self._call_with_progress(service, method, request, on_progress, timeout)
        for attempt in (1, 2):
            try:
                if self._connection is None:
                    self._connection = _connect(self.socket)
                return unary_call(self._connection, service, method, request, timeout)
            except unary.RpcFailure as exc:
                if exc.code().name == "UNAVAILABLE":
                    self._connection = None  # connect afresh
                    if exc.unprocessed and attempt == 1:
                        continue  # the server never saw it (a daemon that restarted)
                raise rpc_error(exc, self.socket, method) from None
        raise AssertionError("unreachable")

    def _call_with_progress(self, service: str, method: str, request: Any,
                            on_progress: Callable[[Any], None],
                            timeout: float | None) -> Any:
        """One unary RPC tagged with a fresh operation id, following its progress
        (``SystemService.WatchOperation``) meanwhile: ``on_progress`` gets each
        ``OperationProgress`` until the call ends. A daemon that cannot report progress
        just answers the call."""
        import secrets

        from parhelia import progress

        grpc = _grpc()
        op_id = secrets.token_urlsafe(24)
        future = getattr(self.stub(service), method).future(
            request, timeout=timeout, metadata=((progress.METADATA_KEY, op_id),))
        watch = self.stub("system").WatchOperation(
            pb2("system").WatchOperationRequest(operation_id=op_id))
        future.add_done_callback(lambda _f: watch.cancel())
        try:
            for state in watch:
                if state.finished:
                    break
                on_progress(state)
        except grpc.RpcError:
            pass  # cancelled as the call ended, or an older daemon: no progress
        except KeyboardInterrupt:
            future.cancel()
            raise
        finally:
            watch.cancel()
        try:
            return future.result()
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.socket, method) from None

    def stream(self, service: str, method: str, request: Any) -> Stream[Any]:
        """Follow a server stream (see :class:`CallStream`)."""
        return CallStream(getattr(self.stub(service), method)(request), self.socket, method)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._grpc_channel is not None:
            self._grpc_channel.close()
            self._grpc_channel = None
