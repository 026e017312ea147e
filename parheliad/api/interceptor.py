"""The server interceptor: request ids, request logging, and the error boundary.

Every RPC gets a request id (the client's ``x-request-id`` if well-formed, else a new
one), bound into structlog's contextvars for every log line of the request and
returned in trailing metadata. Every failure leaves as a gRPC status:
``ParheliaError`` -> its catalogue status, its message, and the E-code in trailing
metadata (``parhelia.errors.METADATA_KEY``); anything else -> ``INTERNAL`` with
``E900 internal error (request id X)`` — the exception is logged, never sent.
RPCs of ``parhelia.v1`` this daemon doesn't implement answer ``UNIMPLEMENTED``.
"""

from __future__ import annotations

import inspect
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
import structlog

from parhelia.errors import METADATA_KEY, ParheliaError

log = structlog.get_logger(__name__)

REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
PARHELIA_PREFIX = "/parhelia.v1."


def request_id_from(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY:
            text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            if _REQUEST_ID_RE.fullmatch(text):
                return text
    return uuid.uuid4().hex[:16]


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, rid: str,
                 started: float) -> NoReturn:
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    if isinstance(exc, ParheliaError):
        log.info("rpc.failed", code=exc.code, error=exc.message, ms=elapsed_ms)
        await context.abort(getattr(grpc.StatusCode, exc.spec.grpc_status), exc.message,
                            trailing_metadata=((METADATA_KEY, exc.code), (REQUEST_ID_KEY, rid)))
    log.error("rpc.internal_error", ms=elapsed_ms, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"E900 internal error (request id {rid})",
                        trailing_metadata=((METADATA_KEY, "E900"), (REQUEST_ID_KEY, rid)))
    raise AssertionError("unreachable")  # context.abort always raises


def _unimplemented(method: str) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            f"{method.lstrip('/')} is not implemented by this daemon yet")
    return handler


def _unimplemented_stream(method: str) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            f"{method.lstrip('/')} is not implemented by this daemon yet")
        yield  # pragma: no cover - makes this an async generator
    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, implemented: frozenset[str]) -> None:
        self.implemented = implemented

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler]],
            handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        rid = request_id_from(handler_call_details.invocation_metadata)  # type: ignore[attr-defined]
        if method.startswith(PARHELIA_PREFIX) and method not in self.implemented:
            # The handler's own kind (AttachTerminal streams both ways): its request
            # argument is a message or an iterator, never read.
            kind = ("stream_" if handler.request_streaming else "unary_") + (
                "stream" if handler.response_streaming else "unary")
            answer = _unimplemented_stream(method) if handler.response_streaming \
                else _unimplemented(method)
            return handler._replace(**{kind: answer})  # type: ignore[attr-defined,no-any-return]
        if handler.unary_unary is not None:
            return handler._replace(  # type: ignore[attr-defined,no-any-return]
                unary_unary=_wrap_unary(handler.unary_unary, method, rid))
        if handler.unary_stream is not None:
            return handler._replace(  # type: ignore[attr-defined,no-any-return]
                unary_stream=_wrap_stream(handler.unary_stream, method, rid))
        if handler.stream_unary is not None:
            return handler._replace(  # type: ignore[attr-defined,no-any-return]
                stream_unary=_wrap_unary(handler.stream_unary, method, rid))
        if handler.stream_stream is not None:
            return handler._replace(  # type: ignore[attr-defined,no-any-return]
                stream_stream=_wrap_stream(handler.stream_stream, method, rid))
        return handler


def _wrap_unary(behavior: Callable[..., Any], method: str,
                rid: str) -> Callable[..., Awaitable[Any]]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(request_id=rid, rpc=method):
            log.debug("rpc.start")
            try:
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    result = await result
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc, rid, started)
            context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
            log.debug("rpc.done", ms=round((time.monotonic() - started) * 1000, 1))
            return result
    return unary


def _wrap_stream(behavior: Callable[..., Any], method: str,
                 rid: str) -> Callable[..., AsyncIterator[Any]]:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(request_id=rid, rpc=method):
            log.debug("rpc.start")
            try:
                async for item in behavior(request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc, rid, started)
            context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
            log.debug("rpc.done", ms=round((time.monotonic() - started) * 1000, 1))
    return stream
