"""The worker's channel: records it sends to the daemon, and where it reads control.

The files and their format (``spool/<container_id>.jsonl``, ``control/<container_id>.jsonl``,
append-only JSON lines) are :mod:`parhelia.spool`'s; this is the writing side.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from parhelia import records
from parhelia.clock import utc_now
from parhelia.spool import ControlReader
from parhelia.volume import LocalVolume, control_key, spool_key, validate_key

if TYPE_CHECKING:
    from parhelia.spec import WorkerSpec


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


TAIL_READ = 1 << 16


def last_seq(path: Path) -> int:
    """The ``seq`` of the last whole record of a spool (0 when there is none): a worker
    that continues a container's spool (the agent's sandbox after the setup sandbox on
    Modal) numbers on from there, so the daemon applies every record once."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - TAIL_READ))
            lines = fh.read().split(b"\n")
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            seq = json.loads(line).get("seq") if line.strip() else None
        except (ValueError, AttributeError):
            continue
        if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0:
            return seq
    return 0


class LocalSpoolChannel:
    """Append records to a JSONL spool; thread-safe (heartbeat thread + main loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seq = last_seq(path)
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
