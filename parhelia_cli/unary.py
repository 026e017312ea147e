"""One gRPC unary call at a time over HTTP/2 on the daemon's Unix socket, in the
standard library only.

Importing ``grpc`` costs a CLI call more than everything else it does (grpc's C core
loads asyncio and ``grpc.aio`` at import: 65 ms of a 124 ms ``status --json`` on the
2-core machine of ``bench/cli_latency.py``). A command that makes unary calls only
(``status``, ``task list``, ``task show``...) needs none of it: gRPC over HTTP/2 is
small when one client speaks to one local server (ADR 0040). This module speaks
exactly that:

- HTTP/2 with prior knowledge (RFC 9113) over a Unix socket: the connection preface,
  SETTINGS (no push, the largest receive windows: the server never waits for us), one
  HEADERS frame and the DATA frames of each request (send windows respected), and
  the answers: response HEADERS, DATA, trailers; PING and SETTINGS acknowledged.
- HPACK (RFC 7541): requests are encoded as literals without indexing; responses are
  decoded in full (static and dynamic tables, Huffman).
- gRPC (the PROTOCOL-HTTP2 spec of grpc/grpc): ``application/grpc``, ``te: trailers``,
  ``grpc-timeout``, one length-prefixed message each way, ``grpc-status`` /
  ``grpc-message`` (percent-decoded) and the trailing metadata.

Failures raise :class:`RpcFailure`, which answers ``code()``, ``details()`` and
``trailing_metadata()`` as ``grpc.RpcError`` does, so one error mapping serves both
transports. Server streams and calls that follow progress keep using grpcio.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

# Frame types and flags (RFC 9113, section 6).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9)
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20
SETTINGS_HEADER_TABLE_SIZE, SETTINGS_ENABLE_PUSH = 0x1, 0x2
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 0x4, 0x5
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_WINDOW = 65_535
MAX_WINDOW = 2**31 - 1
DEFAULT_MAX_FRAME = 16_384
MAX_FRAME = 2**24 - 1
MAX_HEADER_BLOCK = 64 << 10
"""A header block (with its CONTINUATIONs) longer than this ends the connection (grpc's
own limit on metadata is 16 KiB)."""

# grpc status codes (grpc/grpc doc/statuscodes.md), by number.
STATUS_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


class Status:
    """A gRPC status (``.name`` as ``grpc.StatusCode`` has it). A plain class: the
    ``dataclasses`` import (which loads ``inspect``) would cost a CLI call more than
    the whole of this module."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Status) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"Status({self.name!r})"


class RpcFailure(Exception):
    """A call that did not answer OK: the surface of ``grpc.RpcError`` the CLI reads.
    ``unprocessed``: the server never saw the request (it was going away, or refused
    the stream), so sending it again on a new connection is safe for any call."""

    def __init__(self, code: str, details: str = "",
                 metadata: tuple[tuple[str, str], ...] = (), *,
                 unprocessed: bool = False) -> None:
        super().__init__(f"{code}: {details}")
        self._code, self._details, self._metadata = Status(code), details, metadata
        self.unprocessed = unprocessed

    def code(self) -> Status:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


class Connection:
    """An HTTP/2 connection to a gRPC server on a Unix socket; :meth:`call` makes one
    unary call (calls from several threads take turns)."""

    def __init__(self, path: str, *, connect_timeout: float = 5.0,
                 max_message: int = 256 << 20, user_agent: str = "parhelia") -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(connect_timeout)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise RpcFailure("UNAVAILABLE", f"connect to {path}: {exc.strerror or exc}"
                             ) from None
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._decoder = HpackDecoder()
        self._next_stream = 1
        self._send_window = DEFAULT_WINDOW  # the connection's (stream 0)
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._stream_window: dict[int, int] = {}
        self._max_message = max_message
        self._user_agent = user_agent
        self._goaway: int | None = None
        self._early: tuple[int, int, int, bytes] | None = None
        self._received = 0  # DATA bytes since the connection's window was last topped up
        self._closed = False
        settings = struct.pack(">HIHIHI", SETTINGS_ENABLE_PUSH, 0,
                               SETTINGS_INITIAL_WINDOW_SIZE, MAX_WINDOW,
                               SETTINGS_MAX_FRAME_SIZE, DEFAULT_MAX_FRAME)
        self._send(PREFACE + _frame(SETTINGS, 0, 0, settings)
                   + _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - DEFAULT_WINDOW)))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()

    def call(self, path: str, request: bytes, *, timeout: float | None = None,
             metadata: tuple[tuple[str, str], ...] = ()) -> bytes:
        """Send ``request`` (a serialized message) to ``path`` (``/pkg.Service/Method``);
        the serialized answer, or :class:`RpcFailure`."""
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                return self._call(path, request, deadline, metadata)
            except TimeoutError:
                self.close()
                raise RpcFailure("DEADLINE_EXCEEDED", "Deadline Exceeded") from None
            except (OSError, ConnectionError) as exc:
                self.close()
                raise RpcFailure("UNAVAILABLE", f"the connection failed: {exc}") from None
            except HpackError as exc:
                self.close()
                raise RpcFailure("INTERNAL", f"bad header block from the server: {exc}"
                                 ) from None

    # -- one call -------------------------------------------------------------------------

    def _call(self, path: str, request: bytes, deadline: float | None,
              metadata: tuple[tuple[str, str], ...]) -> bytes:
        if self._closed:
            raise RpcFailure("UNAVAILABLE", "the connection is closed", unprocessed=True)
        if len(request) > self._max_message:
            raise RpcFailure("RESOURCE_EXHAUSTED", "the request is larger than allowed")
        stream = self._next_stream
        self._catch_up(stream, deadline)
        self._next_stream += 2
        headers = [(":method", "POST"), (":scheme", "http"), (":path", path),
                   (":authority", "localhost"), ("content-type", "application/grpc"),
                   ("te", "trailers"), ("user-agent", self._user_agent)]
        if deadline is not None:
            left_ms = max(1, int((deadline - time.monotonic()) * 1000))
            headers.append(("grpc-timeout", f"{min(left_ms, 99_999_999)}m"))
        headers.extend(metadata)
        block = encode_headers(headers)
        if len(block) > self._peer_max_frame:
            raise RpcFailure("INTERNAL", "request headers too large")
        self._stream_window[stream] = self._peer_initial_window
        try:
            self._send(_frame(HEADERS, END_HEADERS, stream, block), deadline)
            sent = self._send_data(stream, b"\0" + struct.pack(">I", len(request)) + request,
                                   deadline)
            try:
                return self._answer(stream, deadline)
            finally:
                if not sent:  # our half of the stream is still open: close it
                    self._send(_frame(RST_STREAM, 0, stream, struct.pack(">I", 0x8)),
                               deadline)
        finally:
            self._stream_window.pop(stream, None)

    def _send_data(self, stream: int, body: bytes, deadline: float | None) -> bool:
        """The request's DATA frames, as the send windows allow; a server that answers
        (or resets the call) before it has read everything ends the sending: its frame
        is kept for :meth:`_answer`. Whether everything was sent."""
        view = memoryview(body)
        while True:
            room = min(self._send_window, self._stream_window.get(stream, 0),
                       self._peer_max_frame)
            if room <= 0 and view:
                frame = self._read_frame(deadline)
                if frame[2] == stream and frame[0] in (DATA, HEADERS, RST_STREAM):
                    self._early = frame
                    return False
                self._handle(*frame, stream=stream, deadline=deadline)
                continue
            chunk, view = view[:room], view[room:]
            self._send_window -= len(chunk)
            self._stream_window[stream] -= len(chunk)
            self._send(_frame(DATA, 0 if view else END_STREAM, stream, bytes(chunk)),
                       deadline)
            if not view:
                return True

    def _answer(self, stream: int, deadline: float | None) -> bytes:
        body = bytearray()
        headers: list[tuple[str, str]] | None = None
        while True:
            if self._early is not None:
                (ftype, flags, sid, payload), self._early = self._early, None
            else:
                ftype, flags, sid, payload = self._read_frame(deadline)
            if sid != stream or ftype not in (DATA, HEADERS, RST_STREAM):
                self._handle(ftype, flags, sid, payload, stream=stream, deadline=deadline)
                continue
            if ftype == RST_STREAM:
                raise _reset(int.from_bytes(payload[:4], "big"), self._goaway is not None)
            if ftype == DATA:
                self._consumed(len(payload), deadline)
                body += _unpad(flags, payload)
                if len(body) > self._max_message + 5:
                    raise RpcFailure("RESOURCE_EXHAUSTED", "the answer is larger than allowed")
                if flags & END_STREAM:
                    raise RpcFailure("INTERNAL", "the server ended the call without a status")
                continue
            fields = self._header_block(flags, payload, stream, deadline)
            if headers is None and not flags & END_STREAM:
                headers = fields
                status = dict(fields).get(":status")
                if status != "200":
                    raise RpcFailure("UNKNOWN" if status is None else _http_status(status),
                                     f"HTTP status {status}")
                continue
            return _message(body, (headers or []) + fields)

    def _consumed(self, size: int, deadline: float | None) -> None:
        """Give the connection's receive window back once half of it was used (every
        call's stream has a fresh window; the connection's is shared by all calls)."""
        self._received += size
        if self._received >= MAX_WINDOW // 2:
            self._send(_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self._received)),
                       deadline)
            self._received = 0

    def _header_block(self, flags: int, payload: bytes, stream: int,
                      deadline: float | None) -> list[tuple[str, str]]:
        block = bytearray(_strip_priority(flags, _unpad(flags, payload)))
        while not flags & END_HEADERS:
            ftype, flags, sid, more = self._read_frame(deadline)
            if ftype != CONTINUATION or sid != stream:
                raise HpackError("header block interrupted")
            block += more
            if len(block) > MAX_HEADER_BLOCK:
                raise HpackError("header block too large")
        return self._decoder.decode(bytes(block))

    def _catch_up(self, stream: int, deadline: float | None) -> None:
        """Read what the server sent since the last call (a GOAWAY when it stops, its
        pings and settings) without waiting; :class:`RpcFailure` (``unprocessed``) when
        no new call may start here: the server is going away or has gone."""
        self._sock.settimeout(0)
        try:
            while True:
                chunk = self._sock.recv(65_536)
                if not chunk:
                    self.close()
                    raise RpcFailure("UNAVAILABLE", "the server closed the connection",
                                     unprocessed=True)
                self._buf += chunk
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self.close()
            raise RpcFailure("UNAVAILABLE", f"the connection failed: {exc}",
                             unprocessed=True) from None
        while len(self._buf) >= 9 + int.from_bytes(self._buf[:3], "big"):
            self._handle(*self._read_frame(deadline), stream=stream, deadline=deadline)
        if self._goaway is not None:
            # Any GOAWAY (also the first of a graceful two: "no new streams, please")
            # means new calls go to a new connection, as grpc's channels do.
            self.close()
            raise RpcFailure("UNAVAILABLE", "the server is going away", unprocessed=True)

    def _handle(self, ftype: int, flags: int, sid: int, payload: bytes, *, stream: int,
                deadline: float | None) -> None:
        """A frame that is not part of our answer: settings, pings, windows, goaway."""
        if ftype == SETTINGS and not flags & ACK:
            for i in range(0, len(payload) - 5, 6):
                key, value = struct.unpack(">HI", payload[i:i + 6])
                if key == SETTINGS_INITIAL_WINDOW_SIZE:
                    delta = value - self._peer_initial_window
                    self._peer_initial_window = value
                    for sid_ in self._stream_window:
                        self._stream_window[sid_] += delta
                elif key == SETTINGS_MAX_FRAME_SIZE:
                    self._peer_max_frame = min(max(value, DEFAULT_MAX_FRAME), MAX_FRAME)
            self._send(_frame(SETTINGS, ACK, 0, b""), deadline)
        elif ftype == PING and not flags & ACK:
            self._send(_frame(PING, ACK, 0, payload[:8]), deadline)
        elif ftype == WINDOW_UPDATE and len(payload) >= 4:
            (increment,) = struct.unpack(">I", payload[:4])
            increment &= MAX_WINDOW
            if sid == 0:
                self._send_window += increment
            elif sid in self._stream_window:
                self._stream_window[sid] += increment
        elif ftype == GOAWAY and len(payload) >= 8:
            last, error = struct.unpack(">II", payload[:8])
            self._goaway = last & MAX_WINDOW
            if self._goaway < stream and sid == 0 and stream in self._stream_window:
                raise RpcFailure("UNAVAILABLE", f"the server is going away (error {error})",
                                 unprocessed=True)
        elif ftype in (HEADERS, CONTINUATION) and sid != stream:
            # Another stream's header block still updates the shared HPACK table.
            self._header_block(flags, payload, sid, deadline)

    # -- bytes ------------------------------------------------------------------------------

    def _send(self, data: bytes, deadline: float | None = None) -> None:
        self._sock.settimeout(_left(deadline))
        self._sock.sendall(data)

    def _read_frame(self, deadline: float | None) -> tuple[int, int, int, bytes]:
        head = self._read(9, deadline)
        length = int.from_bytes(head[:3], "big")
        if length > DEFAULT_MAX_FRAME:
            raise ConnectionError(f"a frame of {length} bytes exceeds the agreed maximum")
        sid = int.from_bytes(head[5:9], "big") & MAX_WINDOW
        return head[3], head[4], sid, self._read(length, deadline)

    def _read(self, size: int, deadline: float | None) -> bytes:
        while len(self._buf) < size:
            self._sock.settimeout(_left(deadline))
            chunk = self._sock.recv(max(65_536, size - len(self._buf)))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buf += chunk
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out


def _reset(error: int, going_away: bool) -> RpcFailure:
    """The failure of a call the server reset (the gRPC spec's RST_STREAM mapping): a
    refused stream was never processed; a server going away cancels what it had."""
    detail = f"the server reset the call (HTTP/2 error {error})"
    if error == 0x7:  # REFUSED_STREAM
        return RpcFailure("UNAVAILABLE", detail, unprocessed=True)
    if going_away:
        return RpcFailure("UNAVAILABLE", detail + " while going away")
    return RpcFailure({0x8: "CANCELLED", 0xB: "RESOURCE_EXHAUSTED",
                       0xC: "PERMISSION_DENIED"}.get(error, "INTERNAL"), detail)


def _left(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + stream.to_bytes(
        4, "big") + payload


def _unpad(flags: int, payload: bytes) -> bytes:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise ConnectionError("bad padding")
    return payload[1:len(payload) - payload[0]]


def _strip_priority(flags: int, payload: bytes) -> bytes:
    return payload[5:] if flags & PRIORITY else payload


def _http_status(status: str) -> str:
    """The gRPC code of an HTTP status that is not 200 (the gRPC spec's mapping)."""
    return {"400": "INTERNAL", "401": "UNAUTHENTICATED", "403": "PERMISSION_DENIED",
            "404": "UNIMPLEMENTED", "429": "UNAVAILABLE", "502": "UNAVAILABLE",
            "503": "UNAVAILABLE", "504": "UNAVAILABLE"}.get(status, "UNKNOWN")


def _message(body: bytearray, fields: list[tuple[str, str]]) -> bytes:
    """The one message of an answer with ``grpc-status`` 0, else :class:`RpcFailure`."""
    status = next((v for k, v in fields if k == "grpc-status"), None)
    metadata = tuple((k, v) for k, v in fields
                     if not k.startswith(":") and k not in ("grpc-status", "grpc-message",
                                                            "content-type"))
    if status != "0":
        code = STATUS_NAMES[int(status)] if status is not None and status.isdigit() \
            and int(status) < len(STATUS_NAMES) else "UNKNOWN"
        details = percent_decode(next((v for k, v in fields if k == "grpc-message"), ""))
        raise RpcFailure(code, details, metadata)
    if len(body) < 5 or body[0] != 0:
        raise RpcFailure("INTERNAL", "the answer is not one uncompressed message")
    size = int.from_bytes(body[1:5], "big")
    if len(body) != 5 + size:
        raise RpcFailure("INTERNAL", "the answer is not exactly one message")
    return bytes(body[5:])


def percent_decode(value: str) -> str:
    """``grpc-message`` as sent: UTF-8 with ``%XX`` for what is not printable ASCII."""
    if "%" not in value:
        return value
    raw = bytearray()
    i = 0
    data = value.encode("ascii", errors="replace")
    while i < len(data):
        if data[i] == 0x25 and _is_hex(data[i + 1:i + 3]):
            raw.append(int(data[i + 1:i + 3], 16))
            i += 3
        else:
            raw.append(data[i])
            i += 1
    return raw.decode("utf-8", errors="replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


# -- HPACK (RFC 7541) -----------------------------------------------------------------------

class HpackError(Exception):
    pass


def _int(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (section 5.1) with ``first``'s high bits set."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_headers(headers: list[tuple[str, str]]) -> bytes:
    """Each field as a literal without indexing, new name, no Huffman (section 6.2.2)."""
    out = bytearray()
    for name, value in headers:
        raw_name, raw_value = name.encode(), value.encode()
        out += b"\x00" + _int(len(raw_name), 7, 0) + raw_name
        out += _int(len(raw_value), 7, 0) + raw_value
    return bytes(out)


STATIC_TABLE: tuple[tuple[str, str], ...] = (
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
    (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
    (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
    (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
    ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
    ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
    ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
    ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
    ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
    ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
    ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
    ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""))
"""Appendix A: indexes 1 to 61."""

HUFFMAN_LENGTHS = bytes.fromhex(
    "0d171c1c1c1c1c1c1c181e1c1c1e1c1c1c1c1c1c1c1c1e1c1c1c1c1c1c1c1c1c060a0a0c0d06080b0a0a080b"
    "080606060505050606060606060607080f060c0a0d06070707070707070707070707070707070707070707"
    "070807080d130d0e060f05060506050606060507070606060506070605050607070707070f0b0e0d1c1416"
    "14141616161716171717171718171818161718171717171516171617171816151416161717151716161815"
    "161717151516151716171714161616171616171a1a1413161716191a1a1a1b1b1a181913151a1b1b1a1b18"
    "15151a1a1c1b1b1b14181415161515171616191918181a171a1b1a1a1b1b1b1b1b1c1b1b1b1b1b1a1e")
"""Appendix B: the code length of each symbol 0-256 (256 is EOS). The code is canonical
(codes ascend with (length, symbol)), so the lengths define it."""


def _huffman_codes() -> dict[tuple[int, int], int]:
    """(length, code) -> symbol, rebuilt from :data:`HUFFMAN_LENGTHS`."""
    table: dict[tuple[int, int], int] = {}
    code, previous = -1, 0
    for symbol in sorted(range(257), key=lambda s: (HUFFMAN_LENGTHS[s], s)):
        length = HUFFMAN_LENGTHS[symbol]
        code = (code + 1) << (length - previous)
        previous = length
        table[(length, code)] = symbol
    return table


_HUFFMAN: dict[tuple[int, int], int] | None = None


def huffman_decode(data: bytes) -> bytes:
    global _HUFFMAN
    if _HUFFMAN is None:
        _HUFFMAN = _huffman_codes()
    table = _HUFFMAN
    out = bytearray()
    code = length = 0
    for byte in data:
        for shift in range(7, -1, -1):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            symbol = table.get((length, code))
            if symbol is not None:
                if symbol == 256:
                    raise HpackError("EOS in a Huffman string")
                out.append(symbol)
                code = length = 0
            elif length > 30:
                raise HpackError("bad Huffman code")
    # What is left must be at most 7 bits of padding, all ones (the EOS prefix).
    if length > 7 or code != (1 << length) - 1:
        raise HpackError("bad Huffman padding")
    return bytes(out)


class HpackDecoder:
    """Decodes header blocks in order; keeps the dynamic table between them."""

    def __init__(self, max_size: int = 4096) -> None:
        self._table: list[tuple[str, str]] = []  # newest first
        self._size = 0
        self._max = max_size
        self._limit = max_size  # what we allowed (SETTINGS_HEADER_TABLE_SIZE)

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        pos = 0
        while pos < len(block):
            first = block[pos]
            if first & 0x80:  # indexed
                index, pos = _read_int(block, pos, 7)
                out.append(self._get(index))
            elif first & 0x40:  # literal, incremental indexing
                field, pos = self._literal(block, pos, 6)
                out.append(field)
                self._add(field)
            elif first & 0x20:  # dynamic table size update
                size, pos = _read_int(block, pos, 5)
                if size > self._limit:
                    raise HpackError("table size update above the limit")
                self._max = size
                self._evict()
            else:  # literal without indexing / never indexed
                field, pos = self._literal(block, pos, 4)
                out.append(field)
        return out

    def _literal(self, block: bytes, pos: int, bits: int) -> tuple[tuple[str, str], int]:
        index, pos = _read_int(block, pos, bits)
        if index:
            name = self._get(index)[0]
        else:
            raw, pos = _read_string(block, pos)
            name = raw.decode("latin-1")
        raw, pos = _read_string(block, pos)
        return (name, raw.decode("utf-8", errors="replace")), pos

    def _get(self, index: int) -> tuple[str, str]:
        if 1 <= index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        dynamic = index - len(STATIC_TABLE) - 1
        if 0 <= dynamic < len(self._table):
            return self._table[dynamic]
        raise HpackError(f"index {index} out of range")

    def _add(self, field: tuple[str, str]) -> None:
        self._table.insert(0, field)
        self._size += _entry_size(field)
        self._evict()

    def _evict(self) -> None:
        while self._size > self._max and self._table:
            self._size -= _entry_size(self._table.pop())


def _entry_size(field: tuple[str, str]) -> int:
    return len(field[0].encode("latin-1", errors="replace")) + len(field[1].encode()) + 32


def _read_int(block: bytes, pos: int, bits: int) -> tuple[int, int]:
    limit = (1 << bits) - 1
    if pos >= len(block):
        raise HpackError("truncated integer")
    value = block[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        if pos >= len(block) or shift > 28:
            raise HpackError("bad integer")
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _read_string(block: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(block):
        raise HpackError("truncated string")
    huffman = block[pos] & 0x80
    length, pos = _read_int(block, pos, 7)
    if pos + length > len(block):
        raise HpackError("truncated string")
    raw = block[pos:pos + length]
    return (huffman_decode(raw) if huffman else raw), pos + length
