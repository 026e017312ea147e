"""The Modal backend's volume copies: ``push``/``pull`` keys between the ``modal.Volume``
and the daemon's local volume, content-addressed blobs only when the other side lacks
them, a pulled blob's hash checked (a sandbox runs untrusted code).

A session's sandboxes mount only its area, ``sessions/<session>/``
(:func:`parhelia.volume.session_area`; ADR 0031). The daemon uploads into the rest of the
volume, the daemon-only area no sandbox mounts (a blob once, whatever the number of
sessions that need it), and copies what a session needs into its area on Modal's side
(``Volume.copy_files``: nothing is uploaded twice, nothing passes through the daemon).
It reads a session's files only from that session's area, and never copies what a
sandbox wrote into the daemon-only area."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import hashlib
import io
import os
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, cast

import structlog

from parhelia.errors import ParheliaError
from parhelia.volume import BLOBS, Volume, blob_digest, in_cas, session_area, validate_key
from parheliad.backends.modal.client import ModalClient

log = structlog.get_logger(__name__)

PULL_CONCURRENCY = 8


class VolumeCopies(ModalClient):
    """``push``, ``pull`` and ``list_keys`` on the Modal volume."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._remote_blobs: set[str] | None = None
        """The daemon-only area's blobs (listed once, then kept up to date)."""
        self._session_blobs: dict[str, set[str]] = {}
        """The blobs already copied into each session's area (this daemon's life)."""
        self.volume: Volume = NoVolume(self.settings.volume_name)

    async def _known_remote_blobs(self) -> set[str]:
        if self._remote_blobs is None:
            self._remote_blobs = set(k for k in await self.list_keys(BLOBS)
                                     if blob_digest(k) is not None)
        return self._remote_blobs

    async def list_keys(self, prefix: str) -> builtins.list[str]:
        vol = await self.volume_handle()
        errors = self.sdk.exception
        try:
            entries = await self.call(f"listing {prefix or '/'} on the volume",
                                       lambda: vol.listdir.aio(prefix, recursive=True),
                                       keep=(FileNotFoundError, errors.NotFoundError))
        except (FileNotFoundError, errors.NotFoundError):
            await self._check_volume()  # the path is missing, or the volume vanished
            return []
        keys = []
        for entry in entries:
            if getattr(getattr(entry, "type", None), "name", "FILE") != "FILE":
                continue
            key = str(entry.path).lstrip("/")
            with contextlib.suppress(ValueError):
                keys.append(validate_key(key))
        return sorted(keys)

    async def push(self, local: Volume, keys: Sequence[str], *, session_id: str) -> int:
        """Daemon -> the daemon-only area (blobs it lacks, other keys always: one batch),
        then -> the session's area, copied on Modal's side."""
        area = session_area(session_id)
        copied = self._session_blobs.setdefault(area, set())
        # A blob the session's area holds already (copied there, or written by its own
        # sandboxes and verified when pulled) is neither uploaded nor copied again.
        keys = [k for k in dict.fromkeys(validate_key(k) for k in keys) if k not in copied]
        remote = await self._known_remote_blobs()
        todo: builtins.list[tuple[str, Path | bytes, int]] = []
        for key in keys:
            if in_cas(key) and key in remote:
                continue
            item = await asyncio.to_thread(_local_source, local, key)
            if item is not None:
                todo.append((key, *item))
        if todo:
            vol = await self.volume_handle()
            errors = self.sdk.exception

            async def upload() -> None:
                async with vol.batch_upload.aio(force=True) as batch:
                    for key, source, _ in todo:
                        # A file is streamed by the SDK from its path: a 1 GiB checkpoint
                        # zero is never held in the daemon's memory.
                        batch.put_file(str(source) if isinstance(source, Path)
                                       else io.BytesIO(source), f"/{key}")
            try:
                await self.call(f"uploading {len(todo)} file(s) to the volume", upload,
                                 timeout=self.settings.launch_timeout_seconds,
                                 keep=(errors.NotFoundError,))
            except errors.NotFoundError:
                await self._check_volume()
                raise
            remote.update(k for k, _, _ in todo if blob_digest(k) is not None)
        present = set(remote) | {k for k, _, _ in todo}
        await self._copy_into(area, [k for k in keys if k in present])
        copied.update(k for k in keys if in_cas(k) and k in present)
        return sum(size for _, _, size in todo)

    async def _copy_into(self, area: str, keys: Sequence[str]) -> None:
        """``keys`` of the daemon-only area into ``area``, on Modal's side: one
        ``copy_files`` per destination directory (several sources into a directory, one
        source to its file path: how modal 1.6.4 reads its arguments)."""
        by_dir: dict[str, builtins.list[str]] = {}
        for key in keys:
            by_dir.setdefault(key.rpartition("/")[0], []).append(key)
        vol = await self.volume_handle()

        def copy(sources: builtins.list[str], dst: str) -> Awaitable[None]:
            return cast("Awaitable[None]", vol.copy_files.aio(sources, dst))

        for directory, sources in sorted(by_dir.items()):
            dst = (f"{area}/{sources[0]}" if len(sources) == 1
                   else f"{area}/{directory}/")
            await self.call(f"copying {len(sources)} file(s) into {area}",
                             functools.partial(copy, sources, dst),
                             timeout=self.settings.launch_timeout_seconds)

    async def pull(self, local: Volume, keys: Sequence[str], *, session_id: str) -> int:
        """The session's area -> daemon: blobs the local volume lacks (hash verified: a
        sandbox runs untrusted code and may write anything), other keys always. Never
        into the daemon-only area: what a sandbox wrote is not trusted by another."""
        area = session_area(session_id)
        wanted = []
        for key in dict.fromkeys(validate_key(k) for k in keys):
            if in_cas(key) and await asyncio.to_thread(local.exists, key):
                continue
            wanted.append(key)
        gate = asyncio.Semaphore(PULL_CONCURRENCY)

        held = self._session_blobs.setdefault(area, set())

        async def one(key: str) -> int:
            async with gate:
                size = await self._download(local, key, f"{area}/{key}")
            if size and blob_digest(key) is not None:
                held.add(key)  # verified: the session's area holds it
            return size

        return sum(await asyncio.gather(*(one(k) for k in wanted)))

    async def _download(self, local: Volume, key: str, remote_key: str) -> int:
        """``remote_key`` of the Modal volume into ``local`` at ``key``, streamed to a
        temporary file beside its place (no whole file in memory), hash-checked for a
        blob, then renamed. The limit applies to each chunk's wait, not to the whole
        file. 0 when absent/refused."""
        target = local.path_for(key)
        if target is None:
            data = await self._read(remote_key)
            if data is None or not _blob_ok(key, hashlib.sha256(data).hexdigest()):
                return 0
            await asyncio.to_thread(local.put, key, data)
            return len(data)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{os.getpid()}-{id(target)}-{time.monotonic_ns()}"
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as fh:
                async for chunk in self._chunks(remote_key):
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
