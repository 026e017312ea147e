"""The Modal SDK, held by the backend: each call under a timeout with Modal's errors mapped
to the catalogue, the app, the volume handle, sandbox handles and what Modal said of them.
The backend's jobs (:mod:`.backend` lifecycle, :mod:`.channel`, :mod:`.copies`,
:mod:`.terminal`) build on it."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from parhelia import envfile
from parhelia.errors import ParheliaError
from parhelia.volume import atomic_write_bytes
from parheliad.backends.base import END_EVICTED, END_INIT_FAILURE, END_OOM, ContainerStatus
from parheliad.backends.modal.errors import (
    BackendUnreachable,
    map_error,
    modal_message,
    unreachable,
)
from parheliad.backends.modal.image import CLAUDE_CODE_VERSION
from parheliad.backends.modal.token import token_configured as token_configured

log = structlog.get_logger(__name__)
T = TypeVar("T")

OWNER_TAG = "parhelia-owner"
TASK_TAG = "parhelia-task"
SESSION_TAG = "parhelia-session"
CONTAINER_TAG = "parhelia-container"
PHASE_TAG = "parhelia-phase"
"""On a setup sandbox only (``setup``): the environment's setup phase of its container."""
VOLUME_MOUNT = "/vol"
SSH_PORT = 22  # the sandbox's sshd (modal_worker.sshd), behind a raw TCP tunnel
WORKSPACE_DIR = "/workspace"
CLAUDE_CONFIG_DIR = "/root/.claude"
SYNC_ARGV = ("sync", VOLUME_MOUNT)
TIMEOUT_MARGIN_S = 600
MODAL_MAX_TIMEOUT_S = 86_400
TASK_TIMEOUT_MAX_S = MODAL_MAX_TIMEOUT_S - TIMEOUT_MARGIN_S
"""The longest task a sandbox can hold with the margin for the worker's final checkpoint."""
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
VOLUME_RECORD = "modal-volumes.json"
"""In the daemon's state directory: the id of the volume in use, by name."""


def load_sdk() -> Any:
    """Import the real SDK (only here, only when a Modal backend is built)."""
    import modal

    return modal


@dataclass(frozen=True)
class ModalSettings:
    app_name: str = "parhelia"
    volume_name: str = "parhelia-data"
    secret_name: str = "anthropic-api-key"  # noqa: S105 - a name, not a secret
    call_timeout_seconds: float = 60.0
    launch_timeout_seconds: float = 1500.0
    build_timeout_seconds: float = 3600.0
    claude_version: str = CLAUDE_CODE_VERSION


def sandbox_name(container_id: str) -> str:
    """The sandbox name for a container: its id when Modal accepts it, else a stable hash."""
    if _NAME_RE.match(container_id):
        return container_id
    return "c-" + hashlib.sha256(container_id.encode()).hexdigest()[:40]


def sandbox_timeout(task_timeout_seconds: int) -> int:
    return max(60, min(MODAL_MAX_TIMEOUT_S, int(task_timeout_seconds) + TIMEOUT_MARGIN_S))


class ModalClient:
    """What every job of the Modal backend shares."""

    def __init__(self, settings: ModalSettings, environ: Mapping[str, str],
                 sdk: Any = None, owner_tag: str = "", env_path: Path | None = None,
                 state_dir: Path | None = None) -> None:
        self.settings = settings
        self._base_environ = dict(environ)
        self._environ = dict(environ)
        self._env_path = env_path
        """The daemon's env file, re-read by :meth:`credentials` (``parhelia auth set``)."""
        self._state_dir = state_dir
        """Where the id of the volume this daemon uses is recorded (``VOLUME_RECORD``)."""
        self._sdk_obj = sdk
        self.owner_tag = owner_tag
        self._app: Any = None
        self._volume: Any = None
        self._volume_lock = asyncio.Lock()
        self._handles: dict[str, Any] = {}
        self._container_of: dict[str, str] = {}
        self._session_of: dict[str, str] = {}
        """Container id -> its session: whose area of the volume holds its files."""
        self._tags_of: dict[str, dict[str, str]] = {}
        self._ended: dict[str, ContainerStatus] = {}
        """Sandboxes seen ended, with how (an end does not change)."""

    # -- the SDK ------------------------------------------------------------------------

    @property
    def sdk(self) -> Any:
        if self._sdk_obj is None:
            self._sdk_obj = load_sdk()
        return self._sdk_obj

    @property
    def environ(self) -> Mapping[str, str]:
        """The daemon's environment as last read (with its env file): where the Modal
        token and the workers' fallback credential are looked for."""
        return self._environ

    def reread_environ(self) -> str | None:
        """Read the daemon's env file again (``parhelia auth set`` needs no restart); why
        it could not be read, or None."""
        if self._env_path is not None:
            try:
                self._environ = envfile.effective(self._env_path, self._base_environ)
            except ParheliaError as exc:
                return exc.message
        return None

    async def call(self, action: str, make: Callable[[], Awaitable[T]],
                    timeout: float | None = None, keep: tuple[type[BaseException], ...] = ()) -> T:
        """One SDK call under a timeout; Modal's errors mapped to the catalogue
        (:mod:`.errors`; the network's builtins too), except the classes in ``keep``,
        re-raised as they are for the caller to handle."""
        limit = timeout if timeout is not None else self.settings.call_timeout_seconds
        try:
            return await asyncio.wait_for(make(), limit)
        except keep:
            raise
        except TimeoutError as exc:
            if isinstance(exc, self.sdk.exception.Error):
                raise map_error(exc, action) from None
            raise BackendUnreachable(f"Modal did not answer within {limit:g} s while {action}. "
                                     "Recovery: nothing is stopped meanwhile and it is tried "
                                     "again; check the network and https://status.modal.com."
                                     ) from None
        except Exception as exc:
            if not (isinstance(exc, self.sdk.exception.Error) or unreachable(exc)):
                raise
            raise map_error(exc, action) from None

    async def collect(self, action: str, make: Callable[[], Any]) -> builtins.list[Any]:
        async def gather() -> builtins.list[Any]:
            return [item async for item in make()]
        return await self.call(action, gather)

    # -- app and volume -------------------------------------------------------------------

    async def app(self, create: bool = True) -> Any:
        if self._app is None:
            name = self.settings.app_name
            self._app = await self.call(
                f"looking up the app {name!r}",
                lambda: self.sdk.App.lookup.aio(name, create_if_missing=create))
        return self._app

    async def volume_handle(self) -> Any:
        """The volume's ONE hydrated handle, for the daemon's life (each new handle of
        modal 1.6.4 looks the volume up again, and one that may create it would recreate a
        deleted volume empty). Created only when this daemon never saw the volume (its id
        is recorded in the state directory once seen): a volume missing since, or another
        one of the same name, is E506."""
        if self._volume is None:
            async with self._volume_lock:
                if self._volume is None:
                    self._volume = await self._open_volume(recreate=False)
        return self._volume

    async def ensure_volume(self, create: bool = True) -> Any:
        """``parhelia modal setup``: open the volume, creating it when it is missing (also
        after it vanished: the user asked for it); its id is recorded as the one in use."""
        async with self._volume_lock:
            self._volume = await self._open_volume(recreate=create)
        return self._volume

    async def _open_volume(self, *, recreate: bool) -> Any:
        name = self.settings.volume_name
        known = self._recorded_volume_id()
        errors = self.sdk.exception
        vol = self.sdk.Volume.from_name(name, create_if_missing=recreate or known is None,
                                        version=2)
        try:
            await self.call(f"opening the volume {name!r}", lambda: vol.hydrate.aio(),
                             keep=(errors.NotFoundError,))
        except errors.NotFoundError:
            if known is not None:
                raise volume_gone(name, known) from None
            raise ParheliaError("E500", f"the Modal volume {name!r} does not exist. "
                                "Recovery: `parhelia modal setup` creates it.") from None
        if known is not None and vol.object_id != known and not recreate:
            raise volume_gone(name, known, now=str(vol.object_id))
        self._record_volume_id(str(vol.object_id))
        return vol

    async def _check_volume(self) -> None:
        """After a volume call said "not found": E506 when the volume itself vanished (or
        was replaced by another of the same name); nothing when only a path was missing."""
        if self._volume is None:
            return
        name = self.settings.volume_name
        errors = self.sdk.exception
        probe = self.sdk.Volume.from_name(name, create_if_missing=False, version=2)
        try:
            await self.call(f"checking the volume {name!r}", lambda: probe.hydrate.aio(),
                             keep=(errors.NotFoundError,))
        except errors.NotFoundError:
            raise volume_gone(name, str(self._volume.object_id)) from None
        if probe.object_id != self._volume.object_id:
            raise volume_gone(name, str(self._volume.object_id), now=str(probe.object_id))

    def _recorded_volume_id(self) -> str | None:
        if self._state_dir is None:
            return None
        try:
            value = json.loads((self._state_dir / VOLUME_RECORD).read_text())
        except (OSError, ValueError):
            return None
        found = value.get(self.settings.volume_name) if isinstance(value, dict) else None
        return found if isinstance(found, str) else None

    def _record_volume_id(self, volume_id: str) -> None:
        if self._state_dir is None:
            return
        path = self._state_dir / VOLUME_RECORD
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            value = {}
        value = value if isinstance(value, dict) else {}
        if value.get(self.settings.volume_name) == volume_id:
            return
        value[self.settings.volume_name] = volume_id
        atomic_write_bytes(path, json.dumps(value).encode(), mode=0o600)

    # -- sandboxes ------------------------------------------------------------------------

    async def _ours(self, sb: Any) -> bool:
        """Whether a sandbox found by name carries this daemon's owner tag (a name is
        unique within the app only: another daemon sharing the app may hold it); its tags
        are remembered when it does (the daemon set them: a sandbox cannot)."""
        tags = dict(await self.call(f"reading the tags of {sb.object_id}",
                                     lambda: sb.get_tags.aio()))
        ours = bool(self.owner_tag) and tags.get(OWNER_TAG) == self.owner_tag
        if ours:
            self._remember(sb, tags)
        return ours

    def _remember(self, sb: Any, tags: dict[str, str]) -> None:
        self._handles[sb.object_id] = sb
        self._tags_of[sb.object_id] = dict(tags)
        if tags.get(CONTAINER_TAG):
            self._container_of[sb.object_id] = tags[CONTAINER_TAG]
            if tags.get(SESSION_TAG):
                self._session_of[tags[CONTAINER_TAG]] = tags[SESSION_TAG]

    async def _handle(self, backend_id: str) -> Any:
        sb = self._handles.get(backend_id)
        if sb is None:
            sb = await self.call(f"looking up the sandbox {backend_id}",
                                  lambda: self.sdk.Sandbox.from_id.aio(backend_id))
            self._handles[backend_id] = sb
        return sb

    async def _poll(self, backend_id: str) -> ContainerStatus:
        if backend_id in self._ended:
            return self._ended[backend_id]
        try:
            sb = await self._handle(backend_id)
            code = await self.call(f"polling the sandbox {backend_id}", lambda: sb.poll.aio())
        except ParheliaError as exc:
            if exc.code != "E203":
                raise
            ended = self._ended[backend_id] = ended_status(None)
            return ended
        if code is None:
            return ContainerStatus(running=True)
        ended = self._ended[backend_id] = ended_status(int(code), *modal_end(sb))
        if ended.end:
            log.warning("modal.sandbox_end", sandbox_id=backend_id, end=ended.end,
                        detail=ended.detail)
        return ended

    def _known_ended(self, container_id: str) -> bool:
        return any(cid == container_id and backend_id in self._ended
                   for backend_id, cid in self._container_of.items())

    async def _sandbox_for(self, container_id: str) -> Any | None:
        for backend_id, cid in self._container_of.items():
            if cid == container_id:
                return None if backend_id in self._ended else self._handles[backend_id]
        errors = self.sdk.exception
        name = sandbox_name(container_id)
        try:
            sb = await self.call(f"looking up the sandbox {name}",
                                  lambda: self.sdk.Sandbox.from_name.aio(
                                      self.settings.app_name, name),
                                  keep=(errors.NotFoundError,))
        except errors.NotFoundError:
            return None
        if not await self._ours(sb):
            log.warning("modal.sandbox_of_another_owner", container_id=container_id,
                        sandbox_id=sb.object_id)
            return None
        self._handles.setdefault(sb.object_id, sb)
        self._container_of[sb.object_id] = container_id
        return sb

    # -- reading the volume ---------------------------------------------------------------

    async def _chunks(self, key: str) -> AsyncIterator[bytes]:
        """``key`` on the Modal volume as the SDK streams it (``Volume.read_file``), the
        wait for each chunk under the call timeout (not the whole file's). An absent file
        raises ``FileNotFoundError`` (whichever way the SDK says it)."""
        errors = self.sdk.exception
        chunks = (await self.volume_handle()).read_file.aio(key)
        try:
            while True:
                try:
                    chunk = await self.call(f"reading {key} from the volume",
                                             chunks.__anext__,
                                             keep=(StopAsyncIteration, FileNotFoundError,
                                                   errors.NotFoundError))
                except StopAsyncIteration:
                    return
                except errors.NotFoundError:
                    raise FileNotFoundError(key) from None
                yield bytes(chunk)
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()

    async def _read(self, key: str) -> bytes | None:
        """A small file whole (None when absent)."""
        try:
            return b"".join([chunk async for chunk in self._chunks(key)])
        except FileNotFoundError:
            return None


def volume_gone(name: str, was: str, now: str = "") -> ParheliaError:
    other = f" (another volume, {now}, has its name now)" if now else ""
    return ParheliaError("E506", f"the Modal volume {name!r} ({was}) that this daemon uses no "
                         f"longer exists{other}; it is never recreated empty behind your "
                         "back. Recovery: `parhelia modal setup` creates it again, then "
                         "`parhelia daemon stop`; tasks resume from the daemon's checkpoints.")


END_OF_STATUS = {"KERNEL_OOM_KILL": END_OOM, "MEMORY_THRASHING_EVICTION": END_OOM,
                 "MEMORY_MANAGER_EVICTION": END_EVICTED, "INTERNAL_FAILURE": END_EVICTED,
                 "INIT_FAILURE": END_INIT_FAILURE}
"""Modal's end statuses (``GenericResult.GenericStatus``, modal 1.6.4) that say more than
the exit code ``poll()`` returns (it maps only TIMEOUT to 124 and TERMINATED to 137)."""


def modal_end(sb: Any) -> tuple[str, str]:
    """(status name, message) of an ended sandbox as Modal sent them; the SDK keeps them on
    the handle's ``_impl.result`` (behind its synchronicity wrapper) and ``poll()`` drops
    them. ("", "") when they cannot be read."""
    impl = getattr(sb, "_impl", None)
    if impl is None:
        with contextlib.suppress(Exception):
            from modal._utils.async_utils import synchronizer

            impl = synchronizer._translate_in(sb)._impl
    result = getattr(impl, "result", None)
    status = getattr(result, "status", 0)
    if not isinstance(status, int) or not status:
        return "", ""
    try:
        from modal_proto import api_pb2

        name = api_pb2.GenericResult.GenericStatus.Name(status)  # type: ignore[arg-type]
    except (ImportError, ValueError):
        return "", ""
    said = str(getattr(result, "exception", "") or "")
    return name.removeprefix("GENERIC_STATUS_"), modal_message_text(said)


def modal_message_text(text: str) -> str:
    return modal_message(Exception(text)) if text.strip() else ""


def ended_status(code: int | None, status: str = "", message: str = "") -> ContainerStatus:
    """An ended sandbox as the daemon reads it: its exit code, and Modal's status and
    message when they say more (an OOM kill, an eviction, an init failure)."""
    end = END_OF_STATUS.get(status, "")
    said = f"Modal: {status}" + (f": {message}" if message else "")
    if end:
        detail = said
    elif code == 124:
        detail = "the sandbox hit its Modal timeout"
    elif code == 137:
        detail = "the sandbox was terminated"
    elif code is None:
        detail = "the sandbox is not known to Modal"
    else:
        detail = said if message else ""
    return ContainerStatus(running=False, exit_code=code, detail=detail, end=end)
