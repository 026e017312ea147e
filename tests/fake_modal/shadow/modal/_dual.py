"""``.aio`` like synchronicity's: every SDK method is callable blocking, and its ``.aio``
variant is a coroutine (or async generator) that runs the blocking part on the SDK's own
threads, so a caller's ``asyncio.wait_for`` can abandon it.

Every call goes through the gate: it is counted in ``calls.log`` and the switches apply
(auth -> AuthError, unreachable -> ConnectionError, hang -> waits while on, latency ->
sleeps that many seconds first, latency.<Class.method> -> the same for that call only).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.modal_host import state as _service

from . import exception as exc

_END = object()
POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fake-modal")
"""The SDK's own threads: few, as the real SDK runs its calls on ONE event-loop thread;
waiting (latency, hang, a sandbox starting) happens in coroutines, not here."""


def _latency(name: str) -> float:
    """Seconds added to the call ``name``: the switch ``latency.<name>`` (one call, such
    as ``latency.Volume.read_file``), else ``latency`` (every call)."""
    value = _service.switch_value(f"latency.{name}") or _service.switch_value("latency") \
        or os.environ.get("FAKE_MODAL_LATENCY") or "0"
    try:
        return float(value)
    except ValueError:
        return 0.0


def _check(name: str) -> None:
    _service.log_call(name)
    if _service.switch_on("auth"):
        raise exc.AuthError("Token missing or invalid (fake)")
    if _service.switch_on("unreachable"):
        raise exc.ConnectionError("Could not connect to the Modal server (fake)")


def gate_sync(name: str) -> None:
    _check(name)
    while _service.switch_on("hang"):
        time.sleep(0.05)
    delay = _latency(name)
    if delay:
        time.sleep(delay)


async def gate_async(name: str) -> None:
    _check(name)
    while _service.switch_on("hang"):
        await asyncio.sleep(0.05)
    delay = _latency(name)
    if delay:
        await asyncio.sleep(delay)


async def run_blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(POOL, functools.partial(fn, *args, **kwargs))


class sdkmethod:
    """A method with a blocking call and ``.aio``. ``agen=True``: the blocking function
    returns an iterable (a list, or a generator that streams) and the ``.aio`` variant is
    an async generator over it, one item at a time."""

    def __init__(self, fn: Callable[..., Any], *, agen: bool = False) -> None:
        self.fn = fn
        self.agen = agen
        self.qual = fn.__name__
        functools.update_wrapper(self, fn)

    def __set_name__(self, owner: type, name: str) -> None:
        self.qual = f"{owner.__name__}.{name}"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return _Bound(self, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        gate_sync(self.qual)
        result = self.fn(*args, **kwargs)
        return iter(result) if self.agen else result

    @property
    def aio(self) -> Callable[..., Any]:
        fn, qual = self.fn, self.qual
        if self.agen:
            @functools.wraps(fn)
            async def agen(*args: Any, **kwargs: Any) -> Any:
                # One item at a time on the SDK's threads: a generator (a streamed file)
                # is never drained whole before the caller sees its first item.
                await gate_async(qual)
                items = iter(await run_blocking(fn, *args, **kwargs))
                while (item := await run_blocking(next, items, _END)) is not _END:
                    yield item
            return agen

        @functools.wraps(fn)
        async def call(*args: Any, **kwargs: Any) -> Any:
            await gate_async(qual)
            return await run_blocking(fn, *args, **kwargs)
        return call


class _Bound:
    def __init__(self, method: sdkmethod, obj: Any) -> None:
        self._method = method
        self._obj = obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._method(self._obj, *args, **kwargs)

    @property
    def aio(self) -> Callable[..., Any]:
        return functools.partial(self._method.aio, self._obj)
