"""The daemon connection the tools share: one lazily opened client, reconnected (and
the daemon restarted, unless autostart is off) when the daemon goes away."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from parhelia_cli.api import DEFAULT_TIMEOUT, Api, Progress, Stream
from parhelia_cli.client import Client
from parhelia_cli.errors import CliError
from parhelia_cli.mcp_server import live


class Bridge:
    """The transport of the tools' :class:`Api`: one lazily opened :class:`Client` shared
    by all tool calls (which run on worker threads). A call that finds the daemon gone
    (E504) drops the connection, so the next call reconnects and, unless autostart is
    off, starts the daemon again; an idempotent call (a read) is tried once more at
    once."""

    def __init__(self, socket: str | None, autostart: bool) -> None:
        self._socket = socket
        self._autostart = autostart
        self._lock = threading.Lock()
        self._client: Client | None = None
        self.api = Api(self)
        self.subscriptions = live.Subscriptions(self.api)
        self.notifier = live.Notifier()

    def client(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = Client.connect(self._socket, autostart=self._autostart)
            return self._client

    def forget(self, stale: Client) -> None:
        """Drop ``stale`` (the daemon went away) so the next call connects afresh."""
        with self._lock:
            if self._client is stale:
                self._client = None
        with contextlib.suppress(Exception):
            stale.close()

    def call(self, service: str, method: str, request: Any, *,
             timeout: float | None = DEFAULT_TIMEOUT, idempotent: bool = False,
             on_progress: Progress | None = None) -> Any:
        client = self.client()
        try:
            return client.call(service, method, request, timeout=timeout,
                               on_progress=on_progress)
        except CliError as exc:
            if exc.code != "E504":
                raise
            self.forget(client)
            if not idempotent:
                raise
        return self.client().call(service, method, request, timeout=timeout,
                                  on_progress=on_progress)

    def stream(self, service: str, method: str, request: Any) -> Stream[Any]:
        """A server stream whose loss of the daemon (E504) drops the connection."""
        client = self.client()
        return _Forgetting(self, client, client.stream(service, method, request))

    def close(self) -> None:
        self.subscriptions.close_all()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class _Forgetting:
    """A stream of ``client`` that drops it from the bridge when the daemon goes away."""

    def __init__(self, bridge: Bridge, client: Client, stream: Stream[Any]) -> None:
        self._bridge, self._client, self._stream = bridge, client, stream

    def __iter__(self) -> _Forgetting:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._stream)
        except CliError as exc:
            if exc.code == "E504":
                self._bridge.forget(self._client)
            raise

    def close(self) -> None:
        self._stream.close()

