"""The model credential, kept outside the local agent's container (docs/adr/0030).

The contained agent gets ``ANTHROPIC_BASE_URL=http://127.0.0.1:PORT`` and, in place of
its credential, a placeholder (:data:`parhelia.sandbox.PLACEHOLDER_PREFIX` and random
hex) in the same variable. This proxy, a thread of the worker (which the agent cannot
see: its own PID namespace, none of the worker's files), accepts a request only when it
carries that placeholder in the credential's header (``x-api-key`` for
``ANTHROPIC_API_KEY``, ``Authorization: Bearer`` for the token variables), swaps in the
real value and forwards the request to the real API (the worker's own
``ANTHROPIC_BASE_URL``, else ``https://api.anthropic.com``), streaming the answer back
as it comes (server-sent events). The agent can call the API -- it must -- but never
read the credential; another task's agent does not know this placeholder. It is what
Modal's outbound header policy does for a Modal sandbox.

Standard library only (the worker is shipped into images): ``http.server`` threads, and
``http.client`` upstream (``HTTPS_PROXY`` honoured through a CONNECT tunnel).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import secrets
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from parhelia.credentials import CREDENTIAL_VARS
from parhelia.sandbox import PLACEHOLDER_PREFIX

log = logging.getLogger(__name__)

DEFAULT_UPSTREAM = "https://api.anthropic.com"
BASE_URL_VAR = "ANTHROPIC_BASE_URL"
UPSTREAM_TIMEOUT_SECONDS = 900.0
"""A streamed answer may take minutes between chunks on a long generation."""
MAX_REQUEST_BYTES = 64 << 20
CHUNK = 64 << 10
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding",
                        "upgrade", "host", "content-length"})


@dataclass(frozen=True)
class Credential:
    """Which variable holds the credential, and the header that carries it."""

    variable: str
    value: str

    @property
    def header(self) -> str:
        return "x-api-key" if self.variable == "ANTHROPIC_API_KEY" else "authorization"

    def header_value(self, secret: str) -> str:
        return secret if self.header == "x-api-key" else f"Bearer {secret}"


def credential_of(env: Mapping[str, str]) -> Credential | None:
    """The first credential variable set in ``env`` (the order Claude Code reads them)."""
    for name in CREDENTIAL_VARS:
        value = env.get(name, "").strip()
        if value:
            return Credential(name, value)
    return None


class KeyProxy:
    """A running proxy; :meth:`agent_env` is what the contained agent gets instead."""

    def __init__(self, credential: Credential, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"{BASE_URL_VAR} is not an http(s) URL: {upstream!r}")
        self.credential = credential
        self.upstream = parsed
        self.placeholder = PLACEHOLDER_PREFIX + secrets.token_hex(24)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="keyproxy",
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def agent_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with every credential variable removed, the placeholder in the one the
        worker uses, and the API reached through this proxy."""
        out = {k: v for k, v in env.items() if k not in CREDENTIAL_VARS}
        out[self.credential.variable] = self.placeholder
        out[BASE_URL_VAR] = self.url
        return out

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- one request ---------------------------------------------------------------------

    def admits(self, headers: Mapping[str, str]) -> bool:
        got = headers.get(self.credential.header, "")
        return secrets.compare_digest(got.encode(),
                                      self.credential.header_value(self.placeholder).encode())

    def connect(self) -> tuple[http.client.HTTPConnection, str]:
        """A connection towards the API and the request target to send on it: straight,
        or through the user's proxy (``HTTPS_PROXY``: a CONNECT tunnel for https)."""
        host = self.upstream.hostname or ""
        https = self.upstream.scheme == "https"
        port = self.upstream.port or (443 if https else 80)
        path = self.upstream.path.rstrip("/")
        proxy = _proxy_for(self.upstream.geturl())
        if proxy is None:
            return _connection(https, host, port), path
        conn = _connection(https, proxy.hostname or "", proxy.port or 8080)
        if https:
            conn.set_tunnel(host, port)
            return conn, path
        return conn, f"http://{host}:{port}{path}"  # a plain proxy takes the absolute form


def _connection(https: bool, host: str, port: int) -> http.client.HTTPConnection:
    if https:
        return http.client.HTTPSConnection(host, port, timeout=UPSTREAM_TIMEOUT_SECONDS,
                                           context=ssl.create_default_context())
    return http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT_SECONDS)


def _proxy_for(url: str) -> urllib.parse.SplitResult | None:
    host = urllib.parse.urlsplit(url).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    proxy = urllib.request.getproxies().get(urllib.parse.urlsplit(url).scheme)
    return urllib.parse.urlsplit(proxy) if proxy else None


def _handler_for(proxy: KeyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "parhelia-keyproxy"

        def log_message(self, format: str, *args: object) -> None:
            return  # requests are not logged: their headers carry the placeholder

        def _refuse(self, status: int, kind: str, message: str) -> None:
            body = json.dumps({"type": "error", "error": {"type": kind,
                                                          "message": message}}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def _body(self) -> bytes | None:
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline().strip():
                            pass
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
                    if len(out) > MAX_REQUEST_BYTES:
                        return None
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_REQUEST_BYTES:
                return None
            return self.rfile.read(length) if length else b""

        def _forward(self) -> None:
            if not proxy.admits({k.lower(): v for k, v in self.headers.items()}):
                self._refuse(401, "authentication_error",
                             "parhelia: this request does not carry the task's credential "
                             "placeholder")
                return
            try:
                body = self._body()
            except (ValueError, OSError):
                body = None
            if body is None:
                self._refuse(413, "request_too_large", "parhelia: request body too large")
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            for name in [k for k in headers if k.lower() == proxy.credential.header]:
                del headers[name]
            headers[proxy.credential.header] = proxy.credential.header_value(
                proxy.credential.value)
            headers["content-length"] = str(len(body))
            conn, prefix = proxy.connect()
            target = prefix + (self.path if self.path.startswith("/") else "/" + self.path)
            try:
                conn.request(self.command, target, body=body, headers=headers)
                answer = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self._refuse(502, "api_error",
                             f"parhelia: the API could not be reached ({type(exc).__name__})")
                return
            try:
                self._relay(answer)
            finally:
                conn.close()

        def _relay(self, answer: http.client.HTTPResponse) -> None:
            self.send_response(answer.status, answer.reason)
            length = answer.getheader("content-length")
            for name, value in answer.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            if length is not None and self.command != "HEAD":
                self.send_header("content-length", length)
            self.send_header("connection", "close")
            self.end_headers()
            self.close_connection = True
            if self.command == "HEAD":
                return
            with contextlib.suppress(OSError, http.client.HTTPException):
                while chunk := answer.read1(CHUNK):
                    self.wfile.write(chunk)
                    self.wfile.flush()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

    return Handler


def start(env: Mapping[str, str]) -> KeyProxy | None:
    """A proxy for the credential in ``env`` (None when there is none: the credential
    check reports that)."""
    credential = credential_of(env)
    if credential is None:
        return None
    return KeyProxy(credential, env.get(BASE_URL_VAR) or DEFAULT_UPSTREAM)

