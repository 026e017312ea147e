"""The CLI's unary gRPC transport (parhelia_cli/unary.py): HPACK against RFC 7541's
examples, and calls against a real grpcio server in this process (flow control both
ways, errors with their metadata, deadlines, a connection shared by threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from parhelia_cli import unary
from parhelia_cli.unary import HpackDecoder, HpackError, RpcFailure, encode_headers

# RFC 7541, Appendix C: header blocks of three requests without Huffman (C.3), with
# Huffman (C.4), and three responses with Huffman and a 256-byte table (C.6).
C3 = ["828684410f7777772e6578616d706c652e636f6d", "828684be58086e6f2d6361636865",
      "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"]
C4 = ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf",
      "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"]
REQUESTS = [
    [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")],
    [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"),
     ("cache-control", "no-cache")],
    [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"),
     (":authority", "www.example.com"), ("custom-key", "custom-value")]]
C6 = ["488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad1718"
      "63c78f0b97c8e9ae82ae43d3",
      "4883640effc1c0bf",
      "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b3"
      "35dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"]
LOCATION = ("location", "https://www.example.com")
RESPONSES = [
    [(":status", "302"), ("cache-control", "private"),
     ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), LOCATION],
    [(":status", "307"), ("cache-control", "private"),
     ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), LOCATION],
    [(":status", "200"), ("cache-control", "private"),
     ("date", "Mon, 21 Oct 2013 20:13:22 GMT"), LOCATION, ("content-encoding", "gzip"),
     ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")]]


@pytest.mark.parametrize("blocks", [C3, C4], ids=["plain", "huffman"])
def test_rfc7541_requests(blocks: list[str]) -> None:
    decoder = HpackDecoder()
    assert [decoder.decode(bytes.fromhex(b)) for b in blocks] == REQUESTS
    assert decoder._table == [("custom-key", "custom-value"), ("cache-control", "no-cache"),
                              (":authority", "www.example.com")]
    assert decoder._size == 164


def test_rfc7541_responses_evict_from_a_small_table() -> None:
    decoder = HpackDecoder(256)
    assert [decoder.decode(bytes.fromhex(b)) for b in C6] == RESPONSES
    assert [name for name, _ in decoder._table] == ["set-cookie", "content-encoding", "date"]
    assert decoder._size == 215


def test_what_we_encode_decodes() -> None:
    headers = [(":path", "/parhelia.v1.TaskService/ListTasks"), ("x-long", "v" * 300),
               ("grpc-timeout", "60000m")]
    assert HpackDecoder().decode(encode_headers(headers)) == headers


@pytest.mark.parametrize("block", [
    "ff",             # an index with no end
    "be",             # index 62: past the static table, dynamic table empty
    "4188f1e3c2e5",   # a string longer than the block
    "4082ffff0100",   # a Huffman string with a bad end (not the EOS prefix)
    "3fe21f",         # a table size update to 4097, above what we allowed
])
def test_bad_header_blocks_are_refused(block: str) -> None:
    with pytest.raises(HpackError):
        HpackDecoder().decode(bytes.fromhex(block))


def test_grpc_message_is_percent_decoded() -> None:
    assert unary.percent_decode("caf%C3%A9 50%25") == "café 50%"
    assert unary.percent_decode("no escapes") == "no escapes"
    assert unary.percent_decode("bad %zz %") == "bad %zz %"


# -- against a real grpc server ----------------------------------------------------------

SERVICE = "test.Echo"


def _handlers() -> grpc.GenericRpcHandler:
    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    def big(request: bytes, context: grpc.ServicerContext) -> bytes:
        return b"x" * int(request.decode())

    def fail(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.set_trailing_metadata((("parhelia-error-code", "E201"),))
        context.abort(grpc.StatusCode.NOT_FOUND, "no task 'café' here: 100%")
        raise AssertionError

    def slow(request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(2)
        return b""

    def empty(request: bytes, context: grpc.ServicerContext) -> bytes:
        return b""

    methods = {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in
               (("Echo", echo), ("Big", big), ("Fail", fail), ("Slow", slow),
                ("Empty", empty))}
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def serve(path: Path) -> grpc.Server:
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20)])
    srv.add_generic_rpc_handlers((_handlers(),))
    srv.add_insecure_port(f"unix://{path}")
    srv.start()
    return srv


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "s.sock"
    srv = serve(path)
    yield path
    srv.stop(0)


def test_a_server_that_went_away_never_got_the_next_call(tmp_path: Path) -> None:
    """The daemon restarted between two calls: the old connection says so before
    sending anything (the call is safe to send again on a new connection)."""
    path = tmp_path / "r.sock"
    first = serve(path)
    conn = _conn(path)
    assert conn.call(f"/{SERVICE}/Echo", b"one", timeout=10) == b"one"
    first.stop(grace=1).wait()
    second = serve(path)
    try:
        time.sleep(0.2)
        with pytest.raises(RpcFailure) as caught:
            conn.call(f"/{SERVICE}/Echo", b"two", timeout=10)
        assert caught.value.code().name == "UNAVAILABLE" and caught.value.unprocessed
        fresh = _conn(path)
        assert fresh.call(f"/{SERVICE}/Echo", b"two", timeout=10) == b"two"
        fresh.close()
    finally:
        second.stop(0)


def _conn(path: Path, **kw: int) -> unary.Connection:
    return unary.Connection(str(path), **kw)


def test_calls_share_one_connection(server: Path) -> None:
    conn = _conn(server)
    try:
        for i in range(50):
            payload = f"call {i} ".encode() * i
            assert conn.call(f"/{SERVICE}/Echo", payload, timeout=10) == payload
        assert conn.call(f"/{SERVICE}/Empty", b"", timeout=10) == b""
    finally:
        conn.close()


def test_large_answers_and_requests_respect_flow_control(server: Path) -> None:
    conn = _conn(server)
    try:
        assert conn.call(f"/{SERVICE}/Big", b"20000000", timeout=30) == b"x" * 20_000_000
        request = bytes(range(256)) * 12_000  # 3 MB: many times the server's windows
        assert conn.call(f"/{SERVICE}/Echo", request, timeout=30) == request
    finally:
        conn.close()


def test_a_request_the_server_refuses_midway_gets_its_answer(server: Path) -> None:
    """The server answers (RESOURCE_EXHAUSTED) before it has read the whole request."""
    conn = _conn(server)
    try:
        with pytest.raises(RpcFailure) as caught:
            conn.call(f"/{SERVICE}/Echo", b"y" * (80 << 20), timeout=30)
        assert caught.value.code().name == "RESOURCE_EXHAUSTED"
        assert conn.call(f"/{SERVICE}/Echo", b"next", timeout=10) == b"next"
    finally:
        conn.close()


def test_an_answer_over_the_limit_is_refused(server: Path) -> None:
    conn = _conn(server, max_message=1000)
    with pytest.raises(RpcFailure) as caught:
        conn.call(f"/{SERVICE}/Big", b"5000", timeout=10)
    assert caught.value.code().name == "RESOURCE_EXHAUSTED"


def test_errors_carry_status_details_and_metadata(server: Path) -> None:
    conn = _conn(server)
    try:
        with pytest.raises(RpcFailure) as caught:
            conn.call(f"/{SERVICE}/Fail", b"", timeout=10)
        assert caught.value.code().name == "NOT_FOUND"
        assert caught.value.details() == "no task 'café' here: 100%"
        assert ("parhelia-error-code", "E201") in caught.value.trailing_metadata()
        with pytest.raises(RpcFailure) as caught:
            conn.call(f"/{SERVICE}/Nope", b"", timeout=10)
        assert caught.value.code().name == "UNIMPLEMENTED"
        assert conn.call(f"/{SERVICE}/Echo", b"still fine", timeout=10) == b"still fine"
    finally:
        conn.close()


def test_a_deadline_ends_the_call(server: Path) -> None:
    conn = _conn(server)
    started = time.monotonic()
    with pytest.raises(RpcFailure) as caught:
        conn.call(f"/{SERVICE}/Slow", b"", timeout=0.3)
    assert caught.value.code().name == "DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 1.9  # not the handler's 2 s


def test_threads_take_turns_on_one_connection(server: Path) -> None:
    conn = _conn(server)
    answers: dict[int, bytes] = {}

    def worker(n: int) -> None:
        for i in range(20):
            answers[n * 100 + i] = conn.call(f"/{SERVICE}/Echo", f"{n}-{i}".encode() * 50,
                                             timeout=10)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.close()
    assert answers == {n * 100 + i: f"{n}-{i}".encode() * 50 for n in range(4)
                       for i in range(20)}


def test_no_server_is_unavailable(tmp_path: Path, server: Path) -> None:
    with pytest.raises(RpcFailure) as caught:
        _conn(tmp_path / "missing.sock")
    assert caught.value.code().name == "UNAVAILABLE"
    conn = _conn(server)
    conn.close()
    with pytest.raises(RpcFailure) as caught:
        conn.call(f"/{SERVICE}/Echo", b"", timeout=5)
    assert caught.value.code().name == "UNAVAILABLE"
