"""The Modal backend's channel: the spool on the volume is the truth. Live records come
from a long-lived ``tail`` exec'd in the sandbox from the daemon's cursor; after the sandbox
ended (or the daemon was away) the spool is read from the volume (``read_file``)."""

from __future__ import annotations

import asyncio
import builtins
import json
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from parhelia.errors import ParheliaError
from parhelia.events import HEARTBEAT
from parhelia.volume import in_session_area, session_area, spec_key, spool_key
from parheliad.backends.base import ChannelBatch
from parheliad.backends.modal.client import VOLUME_MOUNT, ModalClient
from parheliad.backends.modal.errors import BackendUnreachable
from parheliad.store.clock import now_us

log = structlog.get_logger(__name__)

CATCHUP_INTERVAL_S = 2.0
CATCHUP_AFTER_END = 15
TAIL_RETRY_S = 5.0


def _parse_lines(data: bytes) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """Whole JSON lines of ``data`` as (end offset, record) and the bytes consumed."""
    out: list[tuple[int, dict[str, Any]]] = []
    pos = 0
    while (nl := data.find(b"\n", pos)) >= 0:
        line = data[pos:nl]
        pos = nl + 1
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("seq"), int):
            out.append((pos, record))
    return out, pos


MAX_SPOOL_LINE = 8 << 20
"""A spool line longer than this is skipped by the live tail (the worker's records are
far smaller; the sandbox may write anything into its spool)."""


class _LineBuffer:
    """Whole lines out of a byte stream: ``(size, line)`` per newline, ``line`` None for a
    line over ``MAX_SPOOL_LINE`` (skipped, never held in memory; its size still counts)."""

    def __init__(self) -> None:
        self.parts: builtins.list[bytes] = []
        self.size = 0

    def feed(self, chunk: bytes) -> builtins.list[tuple[int, bytes | None]]:
        out: builtins.list[tuple[int, bytes | None]] = []
        pos = 0
        while (nl := chunk.find(b"\n", pos)) >= 0:
            self._take(chunk[pos:nl + 1])
            out.append((self.size, None if self.size > MAX_SPOOL_LINE
                        else b"".join(self.parts)))
            self.parts, self.size = [], 0
            pos = nl + 1
        self._take(chunk[pos:])
        return out

    def _take(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > MAX_SPOOL_LINE:
            self.parts = []
        elif piece:
            self.parts.append(piece)


@dataclass
class _Channel:
    """The daemon's side of one container's spool: the records of bytes ``floor`` to
    ``offset`` not yet consumed, each with the offset where it ends."""

    container_id: str
    offset: int
    floor: int
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    tail: asyncio.Task[None] | None = None
    tail_failed_at: float = 0.0
    ended: bool = False
    catchups_after_end: int = 0
    last_catchup: float = 0.0
    exited: bool = False
    heard_at_us: int | None = None
    """When the live tail last carried a heartbeat (the volume's catch-up, which reads
    what a sandbox wrote who knows when, never sets it)."""

    def add(self, end: int, record: dict[str, Any]) -> None:
        self.records.append((end, record))
        if record.get("type") == "worker_exited":
            self.exited = True

    def consume(self, line: _LineBuffer, chunk: bytes, *, live: bool = False) -> None:
        """The spool's next bytes (from ``offset`` on, live or from the volume): each whole
        line's records, the cursor moved past it."""
        for size, data in line.feed(chunk):
            end = self.offset + size
            if data is None:
                log.warning("modal.spool_line_too_long", container_id=self.container_id,
                            bytes=size)
            else:
                for _, record in _parse_lines(data)[0]:
                    self.add(end, record)
                    if live and record.get("type") == HEARTBEAT:
                        self.heard_at_us = now_us()
            self.offset = end


class ChannelFollower(ModalClient):
    """Follows each container's spool (``Backend.events``, ``Backend.last_heard``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._channels: dict[str, _Channel] = {}

    def last_heard(self, container_id: str) -> int | None:
        ch = self._channels.get(container_id)
        if ch is None:
            return None
        if ch.exited or self._known_ended(container_id):
            return now_us()  # its last word said, or its sandbox ended: the exit check settles it
        return ch.heard_at_us

    async def events(self, container_id: str, cursor: int) -> ChannelBatch:
        """Records after byte ``cursor`` of the spool; never waits on Modal for the live
        part (the tail runs in the background), reads the volume only after the end."""
        ch = self._channels.get(container_id)
        if ch is None or cursor < ch.floor or cursor > ch.offset:
            if ch is not None and ch.tail is not None:
                ch.tail.cancel()
            ch = self._channels[container_id] = _Channel(container_id, cursor, cursor)
        if cursor > ch.floor:
            ch.records = [(end, r) for end, r in ch.records if end > cursor]
            ch.floor = cursor
        if not ch.records:
            await self._feed(ch)
        return ChannelBatch([r for _, r in ch.records], ch.offset)

    async def _feed(self, ch: _Channel) -> None:
        """Keep a live tail running; after it ended, catch up from the volume."""
        now = time.monotonic()
        if ch.tail is not None and not ch.tail.done():
            return
        if ch.exited and ch.ended:
            return
        if not ch.ended and now - ch.tail_failed_at >= TAIL_RETRY_S:
            ch.tail = asyncio.create_task(self._tail(ch), name=f"modal-tail-{ch.container_id}")
            return
        if ch.ended and ch.catchups_after_end < CATCHUP_AFTER_END \
                and now - ch.last_catchup >= CATCHUP_INTERVAL_S:
            ch.last_catchup = now
            await self._catch_up(ch)
            ch.catchups_after_end += 1

    async def _tail(self, ch: _Channel) -> None:
        """Follow the spool live until the exec's output ends; then decide: the sandbox
        ended (catch up from the volume) or the stream broke (follow again later)."""
        cid = ch.container_id
        sb: Any = None
        try:
            sb = await self._sandbox_for(cid)
            if sb is None:
                # Ended only when Modal said so. Not found is also a sandbox that is not
                # created yet (the listener asks as soon as the container is recorded, and
                # a launch can wait minutes for capacity): a channel marked ended then
                # would never be followed live, its records arriving only with volume
                # syncs, and the worker would be buried as silent. So: what the volume
                # holds now (a sandbox that ended while the daemon was away), and the
                # tail tried again later; the exit check decides that a container ended.
                if self._known_ended(cid):
                    ch.ended = True
                else:
                    ch.tail_failed_at = time.monotonic()
                    await self._catch_up(ch)
                return
            path = f"{VOLUME_MOUNT}/{spool_key(cid)}"
            # Bytes, not text: the cursor is the spool's byte offset (what the volume
            # catch-up counts), whatever the agent wrote into the spool.
            proc = await self.call(f"following the channel of {cid}", lambda: sb.exec.aio(
                "tail", "-c", f"+{ch.offset + 1}", "-F", path, text=False))
            line = _LineBuffer()
            async for chunk in proc.stdout:
                ch.consume(line, bytes(chunk), live=True)
        except asyncio.CancelledError:
            raise
        except BackendUnreachable:
            ch.tail_failed_at = time.monotonic()
            return
        except Exception as exc:  # a refused exec or a broken stream: see below
            log.info("modal.tail_interrupted", container_id=cid, error=type(exc).__name__)
        if sb is None:
            ch.tail_failed_at = time.monotonic()
            return
        try:
            ended = not (await self._poll(str(sb.object_id))).running
        except ParheliaError:
            ended = False
        if ended:
            ch.ended = True
        else:
            ch.tail_failed_at = time.monotonic()

    async def _catch_up(self, ch: _Channel) -> None:
        """The spool's records after ``ch.offset`` from the volume -- from the area of the
        container's own session, never another's -- streamed: the bytes before the cursor
        are skipped as they pass, never the whole spool in memory."""
        session = await self._session_for(ch.container_id)
        if session is None:
            return
        start, seen, line = ch.offset, 0, _LineBuffer()
        try:
            async for chunk in self._chunks(in_session_area(session,
                                                            spool_key(ch.container_id))):
                skip = min(len(chunk), max(0, start - seen))
                seen += len(chunk)
                if skip < len(chunk):
                    ch.consume(line, chunk[skip:])
        except FileNotFoundError:
            return

    async def _session_for(self, container_id: str) -> str | None:
        """The session of a container this daemon launched or listed (its tags), else of
        one it launched before a restart: its spec in the daemon-only area, which no
        sandbox can write. None when there is none (not a container of this daemon)."""
        session = self._session_of.get(container_id)
        if session is not None:
            return session
        data = await self._read(spec_key(container_id))
        try:
            raw = json.loads(data) if data is not None else None
        except ValueError:
            raw = None
        value = raw.get("session_id") if isinstance(raw, dict) else None
        try:
            session_area(value if isinstance(value, str) else "")
        except ValueError:
            return None
        assert isinstance(value, str)
        self._session_of[container_id] = value
        return value

    async def aclose(self) -> None:
        """Stop following channels (daemon shutdown). The tails exec'd in the sandboxes
        end with them; the spool stays the truth for the next daemon."""
        tails = [ch.tail for ch in self._channels.values() if ch.tail is not None]
        for task in tails:
            task.cancel()
        await asyncio.gather(*tails, return_exceptions=True)
        self._channels.clear()
