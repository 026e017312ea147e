"""The fixed points where a backend's volume and the daemon's local volume meet.

The daemon reads only its local volume (diff, pull, logs, rollback, config dry runs);
each backend keeps its own (a Modal volume). Copies happen here and nowhere else:

- launch: the worker's spec, the config bundle (manifest and blobs), and the checkpoint
  the worker restores (checkpoint zero of a new session, or the one resumed from);
- each checkpoint the worker reports: its manifest, then the blobs it references that
  the local volume lacks, and the agent's log so far;
- the end: the result file, the log, and the final checkpoint (as above); and the whole
  spool, so the listener applies every record the worker wrote before it settles the end.

Every copy names the session whose workers see or wrote the keys: a Modal sandbox
mounts only its session's area of the volume, and the daemon reads a session's files
only from there (ADR 0031). Content-addressed blobs are never sent to a side that
already holds them. For the local backend both sides are one directory and every copy
here is skipped.

What comes back from a backend's volume was written inside a sandbox the agent
controls: a manifest is parsed as untrusted input (``load_manifest`` validates it) and
a fetched blob whose bytes do not hash to its name is deleted again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from typing import Any

import structlog

from parhelia.bundle import check_id
from parhelia.checkpoint import BlobStore, blob_key, load_manifest
from parhelia.checkpoint.manifest import base_of
from parhelia.errors import ParheliaError
from parhelia.volume import (
    SPECS,
    Volume,
    bundle_key,
    is_digest,
    log_key,
    manifest_key,
    result_key,
    setup_log_key,
    spec_key,
    spool_key,
)
from parheliad.backends.base import Backend

log = structlog.get_logger(__name__)


def blob_refs(obj: Any) -> Iterator[str]:
    """Every ``blob`` value in a manifest-like JSON document (checkpoints, config bundles)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "blob" and isinstance(value, str):
                yield value
            else:
                yield from blob_refs(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from blob_refs(item)


def shared(backend: Backend, local: Volume) -> bool:
    """Whether the backend's volume is the daemon's own directory (nothing to copy)."""
    mine = backend.volume.path_for(SPECS)
    return mine is not None and mine == local.path_for(SPECS)


def _base_of(document: bytes) -> str | None:
    try:
        return base_of(json.loads(document))
    except ValueError:
        return None


def _blob_keys(document: bytes) -> list[str]:
    try:
        raw = json.loads(document)
    except ValueError:
        return []
    return sorted({blob_key(d) for d in blob_refs(raw) if is_digest(d)})


def launch_keys(local: Volume, container_id: str, session_id: str,
                restore_checkpoint_id: str | None, config_bundle_id: str | None) -> list[str]:
    """What a worker needs on its backend's volume before it starts: blobs first, then
    the manifests naming them, the spec last."""
    blobs: set[str] = set()
    documents: list[str] = []
    if config_bundle_id:
        key = bundle_key(check_id(config_bundle_id))
        blobs.update(_blob_keys(local.get(key)))
        documents.append(key)
    if restore_checkpoint_id:
        key = manifest_key(session_id, restore_checkpoint_id)
        document = local.get(key)
        base = _base_of(document)
        if base is not None:  # a delta: its base manifest goes too, before it
            base_key = manifest_key(session_id, base)
            blobs.update(_blob_keys(local.get(base_key)))
            documents.append(base_key)
        blobs.update(_blob_keys(document))
        documents.append(key)
    return [*sorted(blobs), *documents, spec_key(container_id)]


async def push_for_launch(backend: Backend, local: Volume, container_id: str, session_id: str,
                          restore_checkpoint_id: str | None,
                          config_bundle_id: str | None) -> int:
    if shared(backend, local):
        return 0
    keys = await asyncio.to_thread(launch_keys, local, container_id, session_id,
                                   restore_checkpoint_id, config_bundle_id)
    sent = await backend.push(local, keys, session_id=session_id)
    log.info("pushed for launch", container_id=container_id, keys=len(keys), bytes=sent)
    return sent


async def pull_checkpoint(backend: Backend, local: Volume, session_id: str,
                          checkpoint_id: str) -> int:
    """Manifest, then the blobs the local volume lacks. Raises ParheliaError (E600) when
    the manifest is missing or refused: the caller retries later."""
    if shared(backend, local):
        return 0
    fetched = await pull_manifest(backend, local, session_id, checkpoint_id)
    manifest = await asyncio.to_thread(load_manifest, local, session_id, checkpoint_id)
    wanted = [blob_key(d) for d in sorted(manifest.blobs()) if is_digest(d)]
    missing = [k for k in wanted if not await asyncio.to_thread(local.exists, k)]
    if missing:
        fetched += await backend.pull(local, missing, session_id=session_id)
        bad = await asyncio.to_thread(_drop_corrupt, local, missing)
        if bad:
            raise ParheliaError("E600", f"checkpoint {checkpoint_id}: {bad} blob(s) on the "
                                "backend's volume do not match their hash")
        absent = [k for k in missing if not await asyncio.to_thread(local.exists, k)]
        if absent:
            raise ParheliaError("E600", f"checkpoint {checkpoint_id}: {len(absent)} blob(s) "
                                "are not on the backend's volume yet")
    return fetched


async def pull_manifest(backend: Backend, local: Volume, session_id: str,
                        checkpoint_id: str) -> int:
    """The manifest and, for a delta, its base: each copied once (manifests never change
    under their id, and a base is shared by the deltas after it). Returns the bytes
    copied. ValueError for a base that is not a checkpoint id."""
    fetched = 0
    key = manifest_key(session_id, checkpoint_id)
    if not await asyncio.to_thread(local.exists, key):
        fetched += await backend.pull(local, [key], session_id=session_id)
    if not await asyncio.to_thread(local.exists, key):
        return fetched  # load_manifest says it is absent
    base = _base_of(await asyncio.to_thread(local.get, key))
    if base is not None:
        base_key = manifest_key(session_id, base)
        if not await asyncio.to_thread(local.exists, base_key):
            fetched += await backend.pull(local, [base_key], session_id=session_id)
    return fetched


def _drop_corrupt(local: Volume, keys: Sequence[str]) -> int:
    store = BlobStore(local)
    bad = 0
    for key in keys:
        digest = key.rsplit("/", 1)[-1]
        if local.exists(key) and not store.verify(digest):
            local.delete(key)
            bad += 1
    return bad


async def pull_progress(backend: Backend, local: Volume, container_id: str,
                        session_id: str) -> int:
    """The agent's raw log and the setup log so far (``task logs`` reads the local copies)."""
    if shared(backend, local):
        return 0
    return await backend.pull(local, [log_key(container_id), setup_log_key(container_id)],
                              session_id=session_id)


async def pull_end(backend: Backend, local: Volume, container_id: str, session_id: str,
                   last_checkpoint_id: str | None) -> int:
    """The result file, the log and the final checkpoint of an incarnation that ended."""
    if shared(backend, local):
        return 0
    fetched = await backend.pull(local, [result_key(container_id), log_key(container_id),
                                         setup_log_key(container_id)], session_id=session_id)
    if last_checkpoint_id:
        fetched += await pull_checkpoint(backend, local, session_id, last_checkpoint_id)
    return fetched


async def pull_spool(backend: Backend, local: Volume, container_id: str,
                     session_id: str) -> int:
    """The whole spool of an incarnation that ended (a live reader of the backend's
    channel may not have caught up with it), from its session's area."""
    if shared(backend, local):
        return 0
    return await backend.pull(local, [spool_key(container_id)], session_id=session_id)
