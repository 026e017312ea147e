"""structlog for the daemon: context, level, UTC time, redaction, then a renderer.

Chain (structlog 26.1 processors): ``merge_contextvars -> add_log_level -> TimeStamper(utc)
-> redact -> renderer``; exceptions are turned into text/dicts *before* redaction, so
a secret inside an exception message is masked too, and never with frame locals.
Console rendering on a TTY, JSON otherwise; stderr always, plus a rotating file
(0600) unless systemd's journal already captures stderr. Standard-library loggers
(grpc, asyncio...) go through the same chain.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any


def _without_rich() -> None:
    """Import structlog with ``rich`` hidden, unless something loaded rich already.

    structlog 26.1's ``dev`` and ``tracebacks`` import rich when it is installed (Modal's
    SDK brings it) for pretty console exceptions. This daemon renders plain tracebacks
    on a console and JSON otherwise, so it never uses them, and rich costs ~60 ms of CPU
    at every start (``python -X importtime -m parheliad``). Hidden for structlog's
    import only: whatever imports rich later (the Modal SDK) gets it.
    """
    if "rich" in sys.modules or "structlog" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError
    try:
        import structlog.dev
        import structlog.tracebacks  # noqa: F401
    finally:
        del sys.modules["rich"]


_without_rich()

import structlog  # noqa: E402
from structlog.tracebacks import ExceptionDictTransformer  # noqa: E402
from structlog.typing import EventDict, Processor, WrappedLogger  # noqa: E402

from parhelia.redact import redact as redact_patterns  # noqa: E402

MASK = "***"
SECRET_KEY_RE = re.compile(r"key|token|secret|password|passwd|authorization|credential|cookie",
                           re.IGNORECASE)
LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 3
LEVELS = ("debug", "info", "warning", "error")
_QUIET = {"aiosqlite": logging.INFO, "asyncio": logging.WARNING, "grpc": logging.WARNING,
          "apscheduler": logging.WARNING}  # "Running job ..." twice per tick otherwise


def redact_text(text: str) -> str:
    """Mask credential-shaped substrings: the worker's catalogue of patterns
    (``parhelia.redact``), so the daemon's logs and the events redact alike."""
    return redact_patterns(text)


def redact_value(value: Any, key: str = "") -> Any:
    """Mask ``value`` if ``key`` names a secret (numbers and flags stay, e.g. token
    counts); redact strings, mappings and sequences recursively otherwise."""
    if key and SECRET_KEY_RE.search(key) and not isinstance(value, bool | int | float | None):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def redact(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets by key pattern and by value shape."""
    return {k: redact_value(v, k) for k, v in event_dict.items()}


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("INVOCATION_ID") or env.get("JOURNAL_STREAM"))


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Creates (and rotates into) log files readable by the owner only."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return io.TextIOWrapper(io.FileIO(fd, "a"), encoding=self.encoding or "utf-8",
                                errors=self.errors, write_through=True)


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _formatter(*, json: bool, colors: bool) -> structlog.stdlib.ProcessorFormatter:
    exceptions: Processor
    renderer: Processor
    if json:
        exceptions = structlog.processors.ExceptionRenderer(
            ExceptionDictTransformer(show_locals=False))
        renderer = structlog.processors.JSONRenderer()
    else:
        exceptions = structlog.processors.format_exc_info
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    exceptions, redact, renderer])


def configure(level: str = "info", log_file: Path | None = None,
              stream: IO[str] | None = None) -> None:
    """Configure structlog and the standard library once, for the daemon process.

    ``log_file`` is skipped under systemd (journald keeps stderr already).
    """
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
    stream = stream or sys.stderr
    tty = stream.isatty()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(stream)
    console.setFormatter(_formatter(json=not tty, colors=tty and not os.environ.get("NO_COLOR")))
    root.addHandler(console)
    if log_file is not None and not under_systemd():
        log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        file_handler = _PrivateRotatingFileHandler(
            log_file, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8")
        file_handler.setFormatter(_formatter(json=True, colors=False))
        root.addHandler(file_handler)
    root.setLevel(level.upper())
    for name, floor in _QUIET.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
