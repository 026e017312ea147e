"""Tell the user when a task ends or needs them: ``[notify]`` in the daemon's config.

- Which moments: a task completed, failed or paused (at the budget, or by the user), and
  a dispatch refusal only the user can end (``needs_user``). A task created with
  ``--pr`` is notified once its pull request is opened (or could not be), with the
  pull request's URL, instead of at its completion.
- A command (``notify.command``): an argv list run without a shell, the task as JSON
  on stdin (the API's ``Task`` message, snake_case), killed after
  ``notify.timeout_seconds``; its environment is :data:`PASSED_ENV` only, never the
  daemon's credentials. The key is daemon-wide (ADR 0006): a project file cannot set it.
- A desktop notification (``notify.desktop``): ``notify-send`` or ``osascript`` when
  found; the text goes as arguments, never through a shell or a script source.
- Per task: ``task create --notify/--no-notify`` overrides the config (kept in the kv
  table under :func:`override_key`).

A notification that fails is logged (the command's name, never its output) and
forgotten: it never changes a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable

import structlog
from google.protobuf.json_format import MessageToDict

from parheliad.config import Config
from parheliad.core.events import EventBus, Subscription
from parheliad.store import Store
from parheliad.store.rows import TaskRow
from parheliad.store.tables.events import EventFilter

log = structlog.get_logger(__name__)

END_EVENTS = ("task_completed", "task_failed", "task_paused", "task_dispatch_refused")
PR_EVENTS = ("pull_request_opened", "branch_pushed", "pull_request_not_opened")
"""What follows the completion of a task created with ``--pr`` (its notification)."""
PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "DISPLAY",
              "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR")
"""The notification command's whole environment (what a desktop notifier needs)."""


def override_key(task_id: str) -> str:
    return f"notify.task.{task_id}"


def minimal_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str]:
    return {k: environ[k] for k in PASSED_ENV if k in environ}


def task_json(task: TaskRow) -> bytes:
    from parheliad.api.convert import task_to_proto

    data = MessageToDict(task_to_proto(task), preserving_proto_field_name=True,
                         always_print_fields_with_no_presence=True)
    return json.dumps(data, sort_keys=True).encode()


def desktop_argv(title: str, body: str) -> list[str] | None:
    if sys.platform == "darwin" and shutil.which("osascript"):
        return ["osascript", "-e", "on run argv", "-e",
                "display notification (item 2 of argv) with title (item 1 of argv)",
                "-e", "end run", title, body]
    program = shutil.which("notify-send")
    return [program, "--app-name=parhelia", "--", title, body] if program else None


class Notifier:
    """Follows the event bus; one notification per task end (see the module docstring)."""

    name = "notify"

    def __init__(self, store: Store, bus: EventBus, config: Callable[[], Config]) -> None:
        self._store = store
        self._bus = bus
        self._config = config
        self._sub: Subscription | None = None
        self._loop: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._sub = self._bus.subscribe(EventFilter(types=END_EVENTS + PR_EVENTS))
        self._loop = asyncio.create_task(self._follow(self._sub), name="notify")

    async def stop(self) -> None:
        if self._sub is not None:
            self._sub.close()
        for t in [self._loop, *self._running]:
            if t is not None:
                t.cancel()
        await asyncio.gather(*[t for t in [self._loop, *self._running] if t is not None],
                             return_exceptions=True)

    async def _follow(self, sub: Subscription) -> None:
        async for event in sub:
            if event.task_id is None:
                continue
            t = asyncio.create_task(self._one(event.task_id, event.type, event.message))
            self._running.add(t)
            t.add_done_callback(self._running.discard)

    async def _one(self, task_id: str, event_type: str, message: str = "") -> None:
        try:
            task = await self._store.tasks.find(task_id)
            if task is None or (event_type == "task_dispatch_refused" and not task.needs_user):
                return
            if event_type == "task_completed" and task.open_pr:
                return  # --pr: notified when its pull request is there (or could not be)
            if event_type in PR_EVENTS and not task.open_pr:
                return  # a `task pr` by hand: the user is looking
            cfg = self._config().notify
            override = await self._store.kv.get(override_key(task_id))
            if override is False:
                return
            desktop = cfg.desktop or override is True
            if cfg.command:
                await self._run(cfg.command, task_json(task), cfg.timeout_seconds)
            if desktop:
                text = message if event_type in PR_EVENTS else \
                    (task.status_reason or task.result_text or task.prompt)
                argv = desktop_argv(f"parhelia: task {task.id} {task.status}", text[:200])
                if argv is not None:
                    await self._run(argv, b"", cfg.timeout_seconds)
        except Exception:
            log.exception("notify.failed", task_id=task_id)

    async def _run(self, argv: list[str], stdin: bytes, timeout: float) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, env=minimal_env(), start_new_session=True)
        except OSError as exc:
            log.warning("notify.command_failed", program=argv[0], error=exc.strerror)
            return
        try:
            await asyncio.wait_for(proc.communicate(stdin), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            log.warning("notify.command_timed_out", program=argv[0], timeout=timeout)
            return
        if proc.returncode:
            log.warning("notify.command_failed", program=argv[0], exit_code=proc.returncode)
