"""The spool and control files: the format of the worker's channel on a volume.

``spool/<container_id>.jsonl`` carries the worker's records to the daemon and
``control/<container_id>.jsonl`` the daemon's messages to the worker (keys:
:mod:`parhelia.volume`), both append-only JSON lines. Each line is written with a single
``write`` on an ``O_APPEND`` descriptor, so a reader sees whole lines or a partial last
line, never interleaved records. The worker's sending side is ``modal_worker.channel``.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parhelia.volume import LocalVolume, control_key, validate_key

log = logging.getLogger(__name__)

CONTROL_TYPES = frozenset({"checkpoint", "stop", "take_over", "release"})
"""``take_over``: continue in the interactive TUI; ``release``: continue headless with the
message as the next instruction (docs/adr/0020-interactive-sessions.md)."""
STOP_REASONS = frozenset({"cancel", "budget", "pause", "rollback"})
MAX_READ_BYTES = 4 << 20


def append_line(path: Path, obj: Mapping[str, Any]) -> None:
    """Append ``obj`` as one JSON line with a single ``write``."""
    line = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):  # pragma: no cover - regular files write fully
            raise OSError(f"short write to {path}")
    finally:
        os.close(fd)


def read_lines(path: Path, offset: int, max_bytes: int) -> tuple[list[bytes], int]:
    """The whole lines after byte ``offset`` (at least one when there is one, however
    long) and the offset after them; a partial last line is left for the next call."""
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
    lines, new_offset = read_lines(path, offset, max_bytes)
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
    append_line(volume.path_for(validate_key(key) if key else control_key(container_id)), msg)
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
            lines, self.offset = read_lines(self.path, self.offset, MAX_READ_BYTES)
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
