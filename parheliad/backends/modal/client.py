"""The Modal SDK, held by the backend: each call under a timeout with Modal's errors mapped
to the catalogue, the app, the volume handle, sandbox handles and what Modal said of them.
The backend's jobs (:mod:`.backend` lifecycle, :mod:`.channel`, :mod:`.copies`,
:mod:`.terminal`) build on it."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from parhelia.errors import ParheliaError
from parheliad.backends.base import ContainerStatus
from parheliad.backends.modal.errors import BackendUnreachable, map_error
from parheliad.backends.modal.image import CLAUDE_CODE_VERSION

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


def token_configured(environ: Mapping[str, str]) -> bool:
    if environ.get("MODAL_TOKEN_ID") and environ.get("MODAL_TOKEN_SECRET"):
        return True
    home = environ.get("HOME") or str(Path.home())
    return (Path(home) / ".modal.toml").is_file()


class ModalClient:
    """What every job of the Modal backend shares."""

    def __init__(self, settings: ModalSettings, environ: Mapping[str, str],
                 sdk: Any = None, owner_tag: str = "", env_path: Path | None = None) -> None:
        self.settings = settings
        self._base_environ = dict(environ)
        self._environ = dict(environ)
        self._env_path = env_path
        """The daemon's env file, re-read by :meth:`credentials` (``parhelia auth set``)."""
        self._sdk_obj = sdk
        self.owner_tag = owner_tag
        self._app: Any = None
        self._handles: dict[str, Any] = {}
        self._container_of: dict[str, str] = {}
        self._tags_of: dict[str, dict[str, str]] = {}
        self._ended: dict[str, int | None] = {}

    # -- the SDK ------------------------------------------------------------------------

    @property
    def sdk(self) -> Any:
        if self._sdk_obj is None:
            self._sdk_obj = load_sdk()
        return self._sdk_obj

    async def _call(self, action: str, make: Callable[[], Awaitable[T]],
                    timeout: float | None = None, keep: tuple[type[BaseException], ...] = ()) -> T:
        """One SDK call under a timeout; Modal's errors mapped to the catalogue (except the
        classes in ``keep``, re-raised as they are for the caller to handle)."""
        limit = timeout if timeout is not None else self.settings.call_timeout_seconds
        try:
            return await asyncio.wait_for(make(), limit)
        except TimeoutError:
            raise BackendUnreachable(f"Modal did not answer within {limit:g} s while {action}. "
                                     "Recovery: nothing is stopped meanwhile; check the "
                                     "network and https://status.modal.com.") from None
        except keep:
            raise
        except self.sdk.exception.Error as exc:
            raise map_error(exc, action, self.sdk.exception) from None

    async def _collect(self, action: str, make: Callable[[], Any]) -> builtins.list[Any]:
        async def gather() -> builtins.list[Any]:
            return [item async for item in make()]
        return await self._call(action, gather)

    # -- app and volume -------------------------------------------------------------------

    async def app(self, create: bool = True) -> Any:
        if self._app is None:
            name = self.settings.app_name
            self._app = await self._call(
                f"looking up the app {name!r}",
                lambda: self.sdk.App.lookup.aio(name, create_if_missing=create))
        return self._app

    def modal_volume(self, create: bool = True) -> Any:
        """The volume handle (lazy: no call until used)."""
        return self.sdk.Volume.from_name(self.settings.volume_name, create_if_missing=create,
                                         version=2)

    # -- sandboxes ------------------------------------------------------------------------

    async def _ours(self, sb: Any) -> bool:
        """Whether a sandbox found by name carries this daemon's owner tag (a name is
        unique within the app only: another daemon sharing the app may hold it)."""
        tags = await self._call(f"reading the tags of {sb.object_id}", lambda: sb.get_tags.aio())
        return bool(self.owner_tag) and dict(tags).get(OWNER_TAG) == self.owner_tag

    def _remember(self, sb: Any, tags: dict[str, str]) -> None:
        self._handles[sb.object_id] = sb
        self._tags_of[sb.object_id] = dict(tags)
        if tags.get(CONTAINER_TAG):
            self._container_of[sb.object_id] = tags[CONTAINER_TAG]

    async def _handle(self, backend_id: str) -> Any:
        sb = self._handles.get(backend_id)
        if sb is None:
            sb = await self._call(f"looking up the sandbox {backend_id}",
                                  lambda: self.sdk.Sandbox.from_id.aio(backend_id))
            self._handles[backend_id] = sb
        return sb

    async def _poll(self, backend_id: str) -> ContainerStatus:
        if backend_id in self._ended:
            return ended_status(self._ended[backend_id])
        try:
            sb = await self._handle(backend_id)
            code = await self._call(f"polling the sandbox {backend_id}", lambda: sb.poll.aio())
        except ParheliaError as exc:
            if exc.code != "E203":
                raise
            self._ended[backend_id] = None
            return ContainerStatus(running=False, exit_code=None,
                                   detail="the sandbox is not known to Modal")
        if code is None:
            return ContainerStatus(running=True)
        self._ended[backend_id] = int(code)
        return ended_status(int(code))

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
            sb = await self._call(f"looking up the sandbox {name}",
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
        chunks = self.modal_volume().read_file.aio(key)
        try:
            while True:
                try:
                    chunk = await self._call(f"reading {key} from the volume",
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


def ended_status(code: int | None) -> ContainerStatus:
    if code == 124:
        detail = "the sandbox hit its Modal timeout"
    elif code == 137:
        detail = "the sandbox was terminated"
    elif code is None:
        detail = "the sandbox is not known to Modal"
    else:
        detail = ""
    return ContainerStatus(running=False, exit_code=code, detail=detail)
