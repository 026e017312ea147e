"""The Modal backend's volume copies: ``push``/``pull`` keys between the ``modal.Volume``
and the daemon's local volume, content-addressed blobs only when the other side lacks
them, a pulled blob's hash checked (a sandbox runs untrusted code)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import io
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from parhelia.errors import ParheliaError
from parhelia.volume import BLOBS, Volume, blob_digest, in_cas, validate_key
from parheliad.backends.modal.client import ModalClient

log = structlog.get_logger(__name__)

PULL_CONCURRENCY = 8


class VolumeCopies(ModalClient):
    """``push``, ``pull`` and ``list_keys`` on the Modal volume."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._remote_blobs: set[str] | None = None
        self.volume: Volume = NoVolume(self.settings.volume_name)

    async def _read(self, key: str) -> bytes | None:
        """A small file whole (None when absent)."""
        try:
            return b"".join([chunk async for chunk in self._chunks(key)])
        except FileNotFoundError:
            return None

    async def _known_remote_blobs(self) -> set[str]:
        if self._remote_blobs is None:
            self._remote_blobs = set(k for k in await self.list_keys(BLOBS)
                                     if blob_digest(k) is not None)
        return self._remote_blobs

    async def list_keys(self, prefix: str) -> builtins.list[str]:
        vol = self.modal_volume()
        errors = self.sdk.exception
        try:
            entries = await self.call(f"listing {prefix or '/'} on the volume",
                                       lambda: vol.listdir.aio(prefix, recursive=True),
                                       keep=(FileNotFoundError, errors.NotFoundError))
        except (FileNotFoundError, errors.NotFoundError):
            return []
        keys = []
        for entry in entries:
            if getattr(getattr(entry, "type", None), "name", "FILE") != "FILE":
                continue
            key = str(entry.path).lstrip("/")
            with contextlib.suppress(ValueError):
                keys.append(validate_key(key))
        return sorted(keys)

    async def push(self, local: Volume, keys: Sequence[str]) -> int:
        """Daemon -> Modal volume: blobs the volume lacks, other keys always (one batch)."""
        remote = await self._known_remote_blobs()
        todo: builtins.list[tuple[str, Path | bytes, int]] = []
        for key in dict.fromkeys(validate_key(k) for k in keys):
            if in_cas(key) and key in remote:
                continue
            item = await asyncio.to_thread(_local_source, local, key)
            if item is not None:
                todo.append((key, *item))
        if not todo:
            return 0
        vol = self.modal_volume()

        async def upload() -> None:
            async with vol.batch_upload.aio(force=True) as batch:
                for key, source, _ in todo:
                    # A file is streamed by the SDK from its path: a 1 GiB checkpoint zero
                    # is never held in the daemon's memory.
                    batch.put_file(str(source) if isinstance(source, Path)
                                   else io.BytesIO(source), f"/{key}")
        await self.call(f"uploading {len(todo)} file(s) to the volume", upload,
                         timeout=self.settings.launch_timeout_seconds)
        remote.update(k for k, _, _ in todo if blob_digest(k) is not None)
        return sum(size for _, _, size in todo)

    async def pull(self, local: Volume, keys: Sequence[str]) -> int:
        """Modal volume -> daemon: blobs the local volume lacks (hash verified: a sandbox
        runs untrusted code and may write anything), other keys always."""
        remote = await self._known_remote_blobs()
        wanted = []
        for key in dict.fromkeys(validate_key(k) for k in keys):
            if in_cas(key) and await asyncio.to_thread(local.exists, key):
                remote.add(key)
                continue
            wanted.append(key)
        gate = asyncio.Semaphore(PULL_CONCURRENCY)

        async def one(key: str) -> int:
            async with gate:
                size = await self._download(local, key)
            if size and blob_digest(key) is not None:
                remote.add(key)
            return size

        return sum(await asyncio.gather(*(one(k) for k in wanted)))

    async def _download(self, local: Volume, key: str) -> int:
        """``key`` from the Modal volume into ``local``, streamed to a temporary file beside
        its place (no whole file in memory), hash-checked for a blob, then renamed. The
        limit applies to each chunk's wait, not to the whole file. 0 when absent/refused."""
        target = local.path_for(key)
        if target is None:
            data = await self._read(key)
            if data is None or not _blob_ok(key, hashlib.sha256(data).hexdigest()):
                return 0
            await asyncio.to_thread(local.put, key, data)
            return len(data)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{os.getpid()}-{id(target)}-{time.monotonic_ns()}"
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as fh:
                async for chunk in self._chunks(key):
                    digest.update(chunk)
                    size += len(chunk)
                    await asyncio.to_thread(fh.write, chunk)
            if not _blob_ok(key, digest.hexdigest()):
                return 0
            await asyncio.to_thread(os.replace, tmp, target)
            return size
        except FileNotFoundError:
            return 0
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _local_source(local: Volume, key: str) -> tuple[Path | bytes, int] | None:
    """What to upload for ``key``: its local path when the volume is a directory."""
    path = local.path_for(key)
    try:
        if path is not None:
            return path, path.stat().st_size
        data = local.get(key)
    except FileNotFoundError:
        return None
    return data, len(data)


def _blob_ok(key: str, sha256: str) -> bool:
    digest = blob_digest(key)
    if digest is not None and digest != sha256:
        log.warning("modal.blob_hash_mismatch", key=key)
        return False
    return True


class NoVolume:
    """``backend.volume`` of the Modal backend: the daemon reads its local copy; this
    backend's own volume is reached only through ``push``/``pull``/``list_keys``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _refuse(self, *args: object) -> Any:
        raise ParheliaError("E900", f"the Modal volume {self.name!r} is reached through "
                            "push/pull, not directly")

    put = put_file = get = open = size = delete = _refuse

    def exists(self, key: str) -> bool:
        return False

    def list(self, prefix: str = "") -> builtins.list[str]:
        return []

    def path_for(self, key: str) -> None:
        return None
