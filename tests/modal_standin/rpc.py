"""How the stand-in answers gRPC: every call is counted, authenticated and passed through
the fault model, then handled by a method of the same name; an RPC the stand-in does not
implement answers UNIMPLEMENTED and is recorded, so that a test can name it.

A handler is ``async def Name(self, req, call) -> reply`` (unary) or an async generator
of replies (server streaming); ``call.metadata`` holds the request's metadata.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpclib import GRPCError, Status
from grpclib.server import Stream

from tests.modal_host import state
from tests.modal_standin.faults import Faults

UNIMPLEMENTED_LOG = "unimplemented.log"
ERRORS_LOG = "standin-errors.log"


@dataclass
class Call:
    name: str
    metadata: Any
    claims: dict[str, Any] = field(default_factory=dict)
    """What the caller's JWT says (the router's calls)."""


def record_unimplemented(name: str) -> None:
    with open(state.root() / UNIMPLEMENTED_LOG, "a") as fh:
        fh.write(name + "\n")


def standin_errors(root: Path) -> str:
    try:
        return (root / ERRORS_LOG).read_text()
    except FileNotFoundError:
        return ""


def unimplemented_calls(root: Path) -> list[str]:
    try:
        return (root / UNIMPLEMENTED_LOG).read_text().split()
    except FileNotFoundError:
        return []


def implemented(cls: type, base: type) -> list[str]:
    """The RPCs of ``base`` that ``cls`` answers."""
    return sorted(n for n in base.__abstractmethods__ if getattr(cls, n, None) is not None
                  and getattr(getattr(cls, n), "_standin_rpc", False))


def serve(base: type, faults_of: Callable[[Any], Faults],
          check: Callable[[Any, Call], None]) -> Callable[[type], type]:
    """Class decorator: ``cls`` answers every RPC of the generated ``base``."""

    def wrap(cls: type) -> type:
        for name in sorted(base.__abstractmethods__):
            impl = cls.__dict__.get(name)
            setattr(cls, name, _handler(name, impl, faults_of, check) if impl is not None
                    else _unimplemented(name))
        cls.__abstractmethods__ = frozenset()  # type: ignore[attr-defined]
        return cls

    return wrap


def _handler(name: str, impl: Callable[..., Any], faults_of: Callable[[Any], Faults],
             check: Callable[[Any, Call], None]) -> Callable[..., Any]:
    streaming = inspect.isasyncgenfunction(impl)

    async def handle(self: Any, stream: Stream[Any, Any]) -> None:
        try:
            await serve_one(self, stream)
        except (GRPCError, asyncio.CancelledError):
            raise
        except Exception:
            # A bug of the stand-in, never a fault of Modal's: recorded for the fixture to
            # fail the test with (the SDK sees UNKNOWN).
            with open(state.root() / ERRORS_LOG, "a") as fh:
                fh.write(f"{name}: {traceback.format_exc()}\n")
            raise

    async def serve_one(self: Any, stream: Stream[Any, Any]) -> None:
        state.log_call(name)
        call = Call(name, stream.metadata)
        req = await stream.recv_message()
        check(self, call)
        faults = faults_of(self)
        await faults.before(name)
        if streaming:
            sent = 0
            async for reply in impl(self, req, call):
                await stream.send_message(reply)
                sent += 1
                if sent == 1:
                    faults.after(name)  # a lost reply cuts a stream after its first message
            if sent == 0:
                faults.after(name)
            return
        reply = await impl(self, req, call)
        faults.after(name)
        await stream.send_message(reply)

    handle._standin_rpc = True  # type: ignore[attr-defined]
    handle.__name__ = name
    return handle


def _unimplemented(name: str) -> Callable[..., Any]:
    async def handle(self: Any, stream: Stream[Any, Any]) -> None:
        record_unimplemented(name)
        raise GRPCError(Status.UNIMPLEMENTED,
                        f"{name} is not implemented by the Modal stand-in (tests/modal_standin)")

    handle.__name__ = name
    return handle
