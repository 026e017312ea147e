"""Volume: the durable store shared by the daemon and its workers, and its layout.

Keys are relative POSIX paths (``cas/blobs/ab/ab12...``). ``LocalVolume`` maps
them onto a directory; a Modal volume mounted at ``/vol`` is also a directory
inside the sandbox, so the worker uses ``LocalVolume`` on both backends. A
daemon-side implementation over the ``modal.Volume`` API fits the same protocol.

Every key is spelled here, once (docs/contracts.md, "The volume")::

    cas/blobs/<2 hex>/<sha256>            blobs of checkpoints and config bundles
    cas/tmp/                              writers' temp files (swept when stale)
    checkpoints/<session>/<id>.json       checkpoint manifests
    config/<bundle id>.json               config bundle manifests
    specs/<container>.json                worker spec (daemon -> worker)
    results/<container>.json              worker result (worker -> daemon)
    spool/<container>.jsonl               channel records (worker -> daemon)
    control/<container>.jsonl             control messages (daemon -> worker)
    logs/<container>/agent.jsonl          the agent's raw output
    logs/<container>/worker.log           a local worker's own output
    logs/<container>/setup.log            the environment's setup and start output
    clones/<id>/request.json              a clone sandbox's job (daemon -> sandbox)
    clones/<id>/result.json               its outcome (sandbox -> daemon)
    clones/<id>/base.pack                 the objects of the commit it cloned
    sessions/<session>/<any key above>    (Modal) a session's own area, the only part of
                                          the volume its sandboxes mount; the keys
                                          outside it form the daemon-only area (a clone
                                          sandbox mounts an area of its own the same way)
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

COPY_BUFFER = 1 << 20

CAS = "cas"
BLOBS = f"{CAS}/blobs"
CAS_TMP = f"{CAS}/tmp"
CHECKPOINTS = "checkpoints"
BUNDLES = "config"
SPECS = "specs"
RESULTS = "results"
SPOOLS = "spool"
CONTROLS = "control"
LOGS = "logs"
CLONES = "clones"
SESSIONS = "sessions"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_BLOB_KEY = re.compile(rf"^{BLOBS}/([0-9a-f]{{2}})/([0-9a-f]{{64}})$")


class InvalidKey(ValueError):
    """A volume key that is not a relative, normalised path."""


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise ``InvalidKey``."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("empty key")
    if "\0" in key or "\\" in key:
        raise InvalidKey(f"invalid character in key {key!r}")
    if key.startswith("/") or posixpath.normpath(key) != key:
        raise InvalidKey(f"key is not a normalised relative path: {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"key has an empty, '.' or '..' component: {key!r}")
    return key


def is_digest(value: object) -> bool:
    """Whether ``value`` is a sha256 hex digest (the name of a blob)."""
    return isinstance(value, str) and bool(_DIGEST.match(value))


def blob_key(digest: str) -> str:
    if not is_digest(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return f"{BLOBS}/{digest[:2]}/{digest}"


def blob_digest(key: str) -> str | None:
    """The digest a blob key names (None when ``key`` is not a well-formed blob key)."""
    match = _BLOB_KEY.match(key)
    return match.group(2) if match is not None else None


def in_cas(key: str) -> bool:
    """Whether ``key`` lies in the content-addressed store (written once, never changed)."""
    return key.startswith(CAS + "/")


def session_area(session_id: str) -> str:
    """``sessions/<session>``: where a Modal session's sandboxes see the volume (their
    ``/vol``): the blobs, manifests, bundle, specs, spools, control files, results and
    logs of that session only (docs/adr/0031-modal-session-areas-and-outbound-credential.md)."""
    if "/" in session_id:
        raise InvalidKey(f"not a session id: {session_id!r}")
    return validate_key(f"{SESSIONS}/{session_id}")


def in_session_area(session_id: str, key: str) -> str:
    """``key`` as a session's sandboxes see it, from outside: ``sessions/<session>/<key>``."""
    return f"{session_area(session_id)}/{validate_key(key)}"


def checkpoints_prefix(session_id: str) -> str:
    return validate_key(f"{CHECKPOINTS}/{session_id}")


def manifest_key(session_id: str, checkpoint_id: str) -> str:
    return validate_key(f"{CHECKPOINTS}/{session_id}/{checkpoint_id}.json")


def bundle_key(bundle_id: str) -> str:
    return validate_key(f"{BUNDLES}/{bundle_id}.json")


def spec_key(container_id: str) -> str:
    return f"{SPECS}/{container_id}.json"


def result_key(container_id: str) -> str:
    return f"{RESULTS}/{container_id}.json"


def spool_key(container_id: str) -> str:
    return validate_key(f"{SPOOLS}/{container_id}.jsonl")


def control_key(container_id: str) -> str:
    return validate_key(f"{CONTROLS}/{container_id}.jsonl")


def clone_key(clone_id: str, name: str) -> str:
    """A file of a clone sandbox's job: ``request.json``, ``result.json``, ``base.pack``."""
    return validate_key(f"{CLONES}/{clone_id}/{name}")


def log_key(container_id: str) -> str:
    """The agent's raw stream-json output."""
    return f"{LOGS}/{container_id}/agent.jsonl"


def setup_log_key(container_id: str) -> str:
    """The output of the environment's setup and start commands (redacted)."""
    return f"{LOGS}/{container_id}/setup.log"


def worker_log_key(container_id: str) -> str:
    """A local worker's own stdout and stderr."""
    return f"{LOGS}/{container_id}/worker.log"


@runtime_checkable
class Volume(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` atomically (replacing any previous value)."""

    def put_file(self, key: str, src: Path) -> int:
        """Copy the local file ``src`` to ``key`` atomically; return bytes written."""

    def get(self, key: str) -> bytes:
        """The value at ``key``; ``FileNotFoundError`` if absent."""

    def open(self, key: str) -> BinaryIO:
        """A binary reader for ``key``; ``FileNotFoundError`` if absent."""

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int:
        """The size in bytes of the value at ``key``; ``FileNotFoundError`` if absent."""

    def list(self, prefix: str = "") -> list[str]:
        """All keys under the directory ``prefix`` (recursively), sorted."""

    def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are ignored."""

    def path_for(self, key: str) -> Path | None:
        """The local path of ``key`` when the volume is a directory, else ``None``."""


class LocalVolume:
    """A volume backed by a local directory (the local backend, or ``/vol`` in Modal)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalVolume({str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        return self.root / validate_key(key)

    def put(self, key: str, data: bytes) -> None:
        target = self.path_for(key)
        with self._atomic(target) as fh:
            fh.write(data)

    def put_file(self, key: str, src: Path) -> int:
        target = self.path_for(key)
        with open(src, "rb") as fin, self._atomic(target) as fout:
            return _copy(fin, fout)

    def get(self, key: str) -> bytes:
        return self.path_for(key).read_bytes()

    def open(self, key: str) -> BinaryIO:
        return open(self.path_for(key), "rb")

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def size(self, key: str) -> int:
        return self.path_for(key).stat().st_size

    def list(self, prefix: str = "") -> list[str]:
        base = self.path_for(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".tmp-")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                keys.append(name if rel == "." else f"{rel}/{name}")
        return sorted(keys)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(key).unlink()

    @contextlib.contextmanager
    def _atomic(self, target: Path) -> Iterator[BinaryIO]:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def _copy(fin: BinaryIO, fout: BinaryIO) -> int:
    total = 0
    while chunk := fin.read(COPY_BUFFER):
        fout.write(chunk)
        total += len(chunk)
    return total


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a local file atomically (temp file in the same directory + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
