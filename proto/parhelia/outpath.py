"""Writing to a path the user named (``events export FILE``, ``task pull --patch FILE``):
one rule for every command that does it.

- Nothing there: the content goes to a private temporary file beside it, which appears
  under the name only once complete (and never over a file that appeared meanwhile).
- A regular file: refused unless ``force`` (then replaced the same way, atomically).
- A FIFO or a character device (``/dev/stdout``, ``/dev/null``, a named pipe): written
  directly, never replaced by a regular file.
- A symbolic link, a directory, a socket or a block device: refused (E101), untouched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from parhelia.errors import ParheliaError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"))


def _refuse(path: Path, why: str) -> ParheliaError:
    return ParheliaError("E101", f"{path}: {why}", path=str(path))


@contextlib.contextmanager
def open_output(path: Path, *, force: bool = False, wait_for_reader: bool = True,
                encoding: str | None = None) -> Iterator[IO[Any]]:
    """A file object writing to ``path`` by the rules above (text when ``encoding``).
    ``wait_for_reader=False`` (the daemon): a FIFO nobody reads is refused instead of
    blocking."""
    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
            with _direct(path, wait_for_reader) as raw:
                yield _wrap(raw, encoding)
            return
        for test, kind in _KINDS:
            if test(st.st_mode):
                hint = "; name the file it points to" if kind == "a symbolic link" else ""
                raise _refuse(path, f"is {kind}; not written to{hint}")
        if not force:
            raise _refuse(path, "exists; pass --force to replace it")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial",
                                   dir=path.parent)
    except OSError as exc:
        raise _refuse(path, f"cannot be written in {path.parent} ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as raw:
            out = _wrap(raw, encoding)
            yield out
            out.flush()
            os.fsync(raw.fileno())
        if st is None:
            _place_new(Path(tmp), path)
        else:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            try:
                os.replace(tmp, path)
            except IsADirectoryError:  # a directory appeared meanwhile
                raise _refuse(path, "became a directory while writing; not replaced") \
                    from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _wrap(raw: IO[bytes], encoding: str | None) -> IO[Any]:
    if encoding is None:
        return raw
    return io.TextIOWrapper(raw, encoding=encoding, write_through=True)  # type: ignore[arg-type]


@contextlib.contextmanager
def _direct(path: Path, wait_for_reader: bool) -> Iterator[IO[bytes]]:
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | (0 if wait_for_reader else os.O_NONBLOCK))
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise _refuse(path, "is a FIFO that nobody reads") from None
        raise _refuse(path, f"cannot be opened ({exc.strerror})") from None
    kind = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(kind) or stat.S_ISCHR(kind)):  # swapped since the lstat
        os.close(fd)
        raise _refuse(path, "changed while being opened; not written to")
    if not wait_for_reader:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    with os.fdopen(fd, "wb") as raw:
        yield raw


def _place_new(tmp: Path, path: Path) -> None:
    """``tmp`` under the name ``path``, unless something appeared there meanwhile."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _refuse(path, "appeared while writing; not replaced (pass --force)") from None
    except OSError:  # no hard links on this filesystem
        if os.path.lexists(path):
            raise _refuse(path, "appeared while writing; not replaced") from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)
