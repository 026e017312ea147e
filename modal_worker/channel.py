"""Channel (worker -> daemon records) and control (daemon -> worker messages).

Local backend: the channel is ``spool/<container_id>.jsonl`` and control is
``control/<container_id>.jsonl`` on the volume, both append-only JSON lines.
Each line is written with a single ``write`` on an ``O_APPEND`` descriptor, so a
reader sees whole lines or a partial last line, never interleaved records.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from parhelia import records
from parhelia.clock import utc_now
from parhelia.volume import LocalVolume, validate_key

if TYPE_CHECKING:
    from parhelia.spec import WorkerSpec

log = logging.getLogger(__name__)

CONTROL_TYPES = frozenset({"checkpoint", "stop", "take_over", "release"})
"""``take_over``: continue in the interactive TUI; ``release``: continue headless with the
message as the next instruction (docs/adr/0020-interactive-sessions.md)."""
STOP_REASONS = frozenset({"cancel", "budget", "pause", "rollback"})
MAX_READ_BYTES = 4 << 20


def spool_key(container_id: str) -> str:
    return validate_key(f"spool/{container_id}.jsonl")


def control_key(container_id: str) -> str:
    return validate_key(f"control/{container_id}.jsonl")


def from_spec(spec: WorkerSpec, volume: LocalVolume) -> tuple[LocalSpoolChannel, ControlReader]:
    """The worker's channel and control reader, as its spec describes them."""
    if spec.channel.kind != "spool":  # the spec parser admits no other kind
        raise ValueError(f"unknown channel kind {spec.channel.kind!r}")
    spool = spec.channel.spool_key or spool_key(spec.container_id)
    control = spec.channel.control_key or control_key(spec.container_id)
    return (LocalSpoolChannel(volume.path_for(validate_key(spool))),
            ControlReader(volume.path_for(validate_key(control))))


class Channel(Protocol):
    def emit(self, type: str, data: Mapping[str, Any]) -> int:
        """Send one record; return its ``seq`` (1, 2, ... per container)."""


def _check_type(type_: str) -> None:
    if not records.is_known(type_):
        raise ValueError(f"unknown event type {type_!r}")


def send(channel: Channel, record: records.Typed) -> int:
    """Send a typed record (``parhelia.records``); return its ``seq``."""
    return channel.emit(record.TYPE, record.to_dict())


def _append_line(path: Path, obj: Mapping[str, Any]) -> None:
    line = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):  # pragma: no cover - regular files write fully
            raise OSError(f"short write to {path}")
    finally:
        os.close(fd)


class LocalSpoolChannel:
    """Append records to a JSONL spool; thread-safe (heartbeat thread + main loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seq = 0
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @classmethod
    def for_container(cls, volume: LocalVolume, container_id: str) -> LocalSpoolChannel:
        return cls(volume.path_for(spool_key(container_id)))

    def emit(self, type: str, data: Mapping[str, Any]) -> int:
        _check_type(type)
        with self._lock:
            self._seq += 1
            record = {"seq": self._seq, "type": type, "at": utc_now(), "data": dict(data)}
            line = json.dumps(record, separators=(",", ":"), default=str)
            os.write(self._fd, (line + "\n").encode())
            return self._seq

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


@dataclass
class MemoryChannel:
    """An in-memory channel for tests and dry runs."""

    records: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def emit(self, type: str, data: Mapping[str, Any]) -> int:
        _check_type(type)
        with self._lock:
            seq = len(self.records) + 1
            self.records.append({"seq": seq, "type": type, "at": utc_now(), "data": dict(data)})
            return seq


def _read_lines(path: Path, offset: int, max_bytes: int) -> tuple[list[bytes], int]:
    try:
        with open(path, "rb") as fh:
            while True:  # grow the window until it holds at least one whole line
                fh.seek(offset)
                chunk = fh.read(max_bytes)
                end = chunk.rfind(b"\n")
                if end >= 0 or len(chunk) < max_bytes:
                    break
                max_bytes *= 2
    except FileNotFoundError:
        return [], offset
    if end < 0:
        return [], offset
    return chunk[: end + 1].splitlines(), offset + end + 1


def read_spool(
    path: Path, offset: int = 0, *, max_bytes: int = MAX_READ_BYTES
) -> tuple[list[dict[str, Any]], int]:
    """Records after byte ``offset`` and the offset to resume from.

    Only complete lines are returned: a partial last line (a write in progress)
    is left for the next call. Malformed lines are logged and skipped.
    """
    lines, new_offset = _read_lines(path, offset, max_bytes)
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            log.warning("skipping a malformed spool line in %s", path)
            continue
        if isinstance(record, dict) and isinstance(record.get("seq"), int):
            records.append(record)
        else:
            log.warning("skipping a spool line without seq in %s", path)
    return records, new_offset


def append_control(volume: LocalVolume, container_id: str, message: Mapping[str, Any], *,
                   key: str | None = None) -> str:
    """Append a control message for a worker; return its id (generated if absent).

    The caller then sends ``SIGUSR1`` to the worker (it also polls every second).
    """
    msg = dict(message)
    if msg.get("type") not in CONTROL_TYPES:
        raise ValueError(f"unknown control type {msg.get('type')!r}")
    if msg["type"] == "stop" and msg.setdefault("reason", "cancel") not in STOP_REASONS:
        raise ValueError(f"unknown stop reason {msg['reason']!r}")
    msg.setdefault("id", str(uuid.uuid4()))
    _append_line(volume.path_for(validate_key(key) if key else control_key(container_id)), msg)
    return str(msg["id"])


@dataclass(frozen=True)
class ControlMessage:
    id: str
    type: str
    message: str = ""
    reason: str = ""


class ControlReader:
    """Reads new control messages, yielding each message id once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._seen: set[str] = set()

    def poll(self) -> list[ControlMessage]:
        out: list[ControlMessage] = []
        while True:
            lines, self.offset = _read_lines(self.path, self.offset, MAX_READ_BYTES)
            if not lines:
                return out
            for line in lines:
                msg = _parse_control(line)
                if msg is None or msg.id in self._seen:
                    continue
                self._seen.add(msg.id)
                out.append(msg)


def _parse_control(line: bytes) -> ControlMessage | None:
    try:
        obj = json.loads(line)
    except ValueError:
        log.warning("ignoring a malformed control line")
        return None
    if not isinstance(obj, dict) or obj.get("type") not in CONTROL_TYPES:
        log.warning("ignoring a control message of unknown type")
        return None
    mid = obj.get("id")
    if not isinstance(mid, str) or not mid:
        log.warning("ignoring a control message without id")
        return None
    message = obj.get("message")
    reason = obj.get("reason")
    return ControlMessage(
        id=mid,
        type=obj["type"],
        message=message if isinstance(message, str) else "",
        reason=reason if isinstance(reason, str) else "",
    )
