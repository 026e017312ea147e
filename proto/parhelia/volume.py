"""Volume: the durable store shared by the daemon and its workers.

Keys are relative POSIX paths (``cas/blobs/ab/ab12...``). ``LocalVolume`` maps
them onto a directory; a Modal volume mounted at ``/vol`` is also a directory
inside the sandbox, so the worker uses ``LocalVolume`` on both backends. A
daemon-side implementation over the ``modal.Volume`` API fits the same protocol.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

COPY_BUFFER = 1 << 20


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
