"""Content-addressed blob store on a volume: ``cas/blobs/<2 hex>/<sha256>``.

Blobs are written only when absent, through a temp file and ``os.replace``, and
hashed while streaming (large files are never held in memory).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modal_worker.volume import Volume

BLOBS = "cas/blobs"
TMP = "cas/tmp"
CHUNK = 1 << 20
SMALL = 4 << 20
"""Files up to this size are read in one piece; larger ones are streamed."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BlobError(Exception):
    """A blob is missing, of the wrong size, or does not hash to its name."""


def is_digest(value: object) -> bool:
    return isinstance(value, str) and bool(_HEX64.match(value))


def blob_key(digest: str) -> str:
    if not is_digest(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return f"{BLOBS}/{digest[:2]}/{digest}"


@dataclass(frozen=True)
class Stored:
    digest: str
    size: int
    written: int
    """Bytes actually written to the store (0 when the blob already existed)."""


def open_regular(path: Path) -> int:
    """Open a regular file for reading without following a symlink or blocking on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BlobError(f"{path} is not a regular file")
    return fd


class BlobStore:
    """The CAS of one volume. Thread-safe."""

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        root = volume.path_for(BLOBS)
        self._dir: Path | None = root
        self._tmp: Path | None = volume.path_for(TMP)
        self._made: set[str] = set()
        self._lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        if self._dir is not None:
            return os.path.exists(self._dir / digest[:2] / digest)
        return self.volume.exists(blob_key(digest))

    def size(self, digest: str) -> int:
        return self.volume.size(blob_key(digest))

    def open(self, digest: str) -> BinaryIO:
        return self.volume.open(blob_key(digest))

    def read(self, digest: str, size: int) -> bytes:
        """Read a whole blob and check its size and hash (for small blobs)."""
        try:
            with self.open(digest) as fh:
                data = fh.read(size + 1)
        except FileNotFoundError:
            raise BlobError(f"blob {digest} is missing") from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise BlobError(f"blob {digest} is corrupt")
        return data

    def copy_to_fd(self, digest: str, size: int, fd: int) -> None:
        """Stream a blob into ``fd``, verifying size and hash on the way."""
        hasher = hashlib.sha256()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        total = 0
        try:
            fh = self.open(digest)
        except FileNotFoundError:
            raise BlobError(f"blob {digest} is missing") from None
        with fh:
            while n := fh.readinto(buf):  # type: ignore[attr-defined]
                total += n
                if total > size:
                    raise BlobError(f"blob {digest} is larger than recorded")
                hasher.update(view[:n])
                _write_all(fd, view[:n])
        if total != size or hasher.hexdigest() != digest:
            raise BlobError(f"blob {digest} is corrupt")

    def verify(self, digest: str) -> bool:
        """Re-hash a stored blob; False if missing or corrupt."""
        hasher = hashlib.sha256()
        try:
            with self.open(digest) as fh:
                while chunk := fh.read(CHUNK):
                    hasher.update(chunk)
        except FileNotFoundError:
            return False
        return hasher.hexdigest() == digest

    # -- writing ------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> Stored:
        digest = hashlib.sha256(data).hexdigest()
        if self.has(digest):
            return Stored(digest, len(data), 0)
        if self._dir is None:
            self.volume.put(blob_key(digest), data)
            return Stored(digest, len(data), len(data))
        tmp = self._tmp_path(digest)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o444)
        try:
            _write_all(fd, memoryview(data))
        finally:
            os.close(fd)
        written = len(data) if self._commit(tmp, digest) else 0
        return Stored(digest, len(data), written)

    def put_file(self, path: Path) -> Stored:
        """Store the current content of a regular file (never follows a symlink)."""
        fd = open_regular(path)
        try:
            size = os.fstat(fd).st_size
            if size <= SMALL:
                return self.put_bytes(_read_all(fd, size))
            return self._put_stream(fd)
        finally:
            os.close(fd)

    def _put_stream(self, fd: int) -> Stored:
        hasher = hashlib.sha256()
        if self._tmp is None:
            with tempfile.NamedTemporaryFile(prefix="parhelia-blob-") as tmpf:
                total = _copy_hashing(fd, tmpf.fileno(), hasher)
                digest = hasher.hexdigest()
                if self.has(digest):
                    return Stored(digest, total, 0)
                self.volume.put_file(blob_key(digest), Path(tmpf.name))
                return Stored(digest, total, total)
        tmp = self._tmp_path("stream")
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o444)
        try:
            total = _copy_hashing(fd, out, hasher)
        except BaseException:
            os.close(out)
            os.unlink(tmp)
            raise
        os.close(out)
        digest = hasher.hexdigest()
        written = total if self._commit(tmp, digest) else 0
        return Stored(digest, total, written)

    def _tmp_path(self, tag: str) -> Path:
        assert self._tmp is not None
        if "tmp" not in self._made:
            self._tmp.mkdir(parents=True, exist_ok=True)
            self._made.add("tmp")
        return self._tmp / f"{tag[:16]}.{os.getpid()}.{threading.get_ident()}"

    def _commit(self, tmp: Path, digest: str) -> bool:
        """Move a temp file into place unless the blob exists; True if it was added."""
        assert self._dir is not None
        sub = digest[:2]
        target = self._dir / sub / digest
        if sub not in self._made:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(sub)
        with self._lock:
            if target.exists():
                os.unlink(tmp)
                return False
            os.replace(tmp, target)
            return True

    def remove_temp_files(self) -> None:
        """Drop temp files left by a crashed writer (call when no writer is running)."""
        if self._tmp is not None and self._tmp.is_dir():
            for name in os.listdir(self._tmp):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._tmp / name)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_all(fd: int, size_hint: int) -> bytes:
    parts = []
    remaining = max(size_hint, 0) + 1
    while True:
        chunk = os.read(fd, max(remaining, CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _copy_hashing(src: int, dst: int, hasher: hashlib._Hash) -> int:
    total = 0
    while chunk := os.read(src, CHUNK):
        hasher.update(chunk)
        _write_all(dst, memoryview(chunk))
        total += len(chunk)
    return total
