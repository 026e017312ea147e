"""The local backend: each worker is a subprocess in its own process session.

- Identity: the backend id is ``"<pid>@<start time>"``; a pid alone is not an
  identity (pids are reused), so every signal first checks the start time.
- Owner tag: workers carry ``PARHELIA_OWNER``/``PARHELIA_CONTAINER_ID`` in their
  environment; ``list(owner_tag)`` reads them from the process table, so workers
  started by an earlier daemon (or another daemon) are seen and told apart.
- Environment: the allow-list of :mod:`parhelia.environ` plus the
  ``sync.pass_env`` values, never the daemon's whole environment.
- Workers outlive the daemon (new session, not killed with it) and are re-adopted.
- The volume is the daemon's own local volume (one directory): the volume sync points
  (``push``/``pull``) are no-ops. Paths in the worker's spec are the daemon's dirs.
- The volume is a directory; the channel is the spool file
  ``spool/<container>.jsonl`` read from a byte offset (the cursor) kept in the
  database; control is ``control/<container>.jsonl`` plus ``SIGUSR1``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from parhelia import envfile, sandbox
from parhelia.backends import LOCAL
from parhelia.credentials import CREDENTIAL_VARS
from parhelia.environ import worker_environ
from parhelia.errors import ParheliaError
from parhelia.paths import Paths
from parhelia.spool import append_control, read_spool
from parhelia.tuisocket import attach_argv, socket_path, unsafe_dir
from parhelia.volume import LocalVolume, Volume, result_key, spec_key, spool_key, worker_log_key

from .base import (
    ChannelBatch,
    ContainerSpec,
    ContainerStatus,
    Credentials,
    ListedContainer,
    Terms,
    WorkerPaths,
)

OWNER_ENV = "PARHELIA_OWNER"
CONTAINER_ENV = "PARHELIA_CONTAINER_ID"
_START_TIME_TOLERANCE = 0.05


def format_backend_id(pid: int, create_time: float) -> str:
    return f"{pid}@{create_time:.2f}"


def parse_backend_id(backend_id: str) -> tuple[int, float]:
    pid, _, started = backend_id.partition("@")
    try:
        return int(pid), float(started)
    except ValueError:
        raise ParheliaError("E203", f"not a local backend id: {backend_id!r}") from None


class LocalBackend:
    """Workers as local processes; see the module docstring."""

    name: str = LOCAL
    terms = Terms(compute_priced=False, free_compute="local worker: no compute charge",
                  worker_reports_isolation=True)

    def __init__(self, paths: Paths, env: Mapping[str, str] | None = None,
                 sandbox_mode: str = sandbox.DEFAULT_MODE,
                 read_only: Sequence[str] = ()) -> None:
        self._paths = paths
        self._sandbox_mode = sandbox_mode
        self._read_only = list(read_only)
        self._root = paths.volume_dir
        self.volume = LocalVolume(self._root)
        self._base_env = dict(os.environ if env is None else env)
        self._env = envfile.own_environ(self._base_env)
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._spools: dict[str, str] = {}

    def available(self) -> tuple[bool, str]:
        return True, f"worker subprocesses on this machine ({sys.executable} -m modal_worker)"

    def worker_paths(self, session_id: str, container_id: str) -> WorkerPaths:
        workspace, config_dir = self._paths.session_dirs(session_id)
        return WorkerPaths(volume_dir=str(self._root), workspace_dir=str(workspace),
                           claude_config_dir=str(config_dir),
                           tmux_socket=socket_path(container_id), sandbox=self._sandbox())

    def _sandbox(self) -> sandbox.SandboxSpec | None:
        """What the worker's container hides: the user's home and every directory of this
        daemon (``PARHELIA_HOME`` or its XDG directories, the socket's); the workspace
        and the agent's config dir come back, writable (:mod:`parhelia.container`)."""
        if self._sandbox_mode == sandbox.MODE_OFF:
            return None
        p = self._paths
        hide = [str(d) for d in (p.home, Path.home(), p.config_file.parent, p.state_dir,
                                 p.data_dir, p.socket.parent) if d is not None]
        return sandbox.SandboxSpec(mode=self._sandbox_mode, hide=sorted(set(hide)),
                                   read_only=list(self._read_only))

    async def credentials(self) -> Credentials:
        """Re-reads the env file each time (``parhelia auth set`` needs no restart); the
        environment found here is the one the next worker gets."""
        path = envfile.env_file(self._paths)
        try:
            self._env = envfile.effective(path, self._base_env)
            source = envfile.credential(path, self._base_env)
        except ParheliaError as exc:
            return Credentials(False, exc.message, self._env)
        if source is not None:
            where = "the daemon's environment" if source.origin == envfile.ENVIRONMENT \
                else str(path)
            return Credentials(True, f"{source.name} from {where}", self._env)
        return Credentials(False, "none of " + ", ".join(CREDENTIAL_VARS) + " is set for "
                           "the daemon: run `parhelia auth set` (no restart needed), or "
                           "export one and restart the daemon (`parhelia daemon stop`)",
                           self._env)

    async def push(self, local: Volume, keys: Sequence[str], *, session_id: str) -> int:
        return 0  # the daemon's volume is this backend's volume

    async def pull(self, local: Volume, keys: Sequence[str], *, session_id: str) -> int:
        return 0

    def isolation(self, container_id: str) -> tuple[str, str] | None:
        return None  # the worker says (worker_isolation): only it knows whether bwrap ran

    async def launch(self, spec: ContainerSpec) -> str:
        return await asyncio.to_thread(self._launch, spec)

    def _launch(self, spec: ContainerSpec) -> str:
        key = spec_key(spec.container_id)
        if not self.volume.exists(key):
            raise ParheliaError("E602", f"the worker spec {key} was not written",
                                container_id=spec.container_id)
        worker_log = self.volume.path_for(worker_log_key(spec.container_id))
        worker_log.parent.mkdir(parents=True, exist_ok=True)
        workspace = Path(spec.paths.workspace_dir)
        workspace.mkdir(parents=True, exist_ok=True)
        # Not the daemon's whole environment: the allow-list, plus sync.pass_env values.
        env = worker_environ(self._env)
        env.update(spec.secret_env)
        env[OWNER_ENV] = spec.owner_tag
        env[CONTAINER_ENV] = spec.container_id
        env.pop("PARHELIA_SOCKET", None)
        env["PYTHONUNBUFFERED"] = "1"
        argv = [sys.executable, "-m", "modal_worker", "run", str(self.volume.path_for(key))]
        with open(worker_log, "ab") as log:
            try:
                proc = subprocess.Popen(
                    argv, cwd=workspace, env=env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise ParheliaError("E602", f"could not start the local worker: {exc.strerror}",
                                    container_id=spec.container_id) from None
        self._children[proc.pid] = proc
        try:
            created = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            created = time.time()
        return format_backend_id(proc.pid, created)

    def _process(self, backend_id: str) -> psutil.Process | None:
        """The live process behind ``backend_id``, or None if it is gone or reused."""
        pid, started = parse_backend_id(backend_id)
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            return None
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) > _START_TIME_TOLERANCE:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return proc

    async def status(self, backend_id: str, container_id: str) -> ContainerStatus:
        return await asyncio.to_thread(self._status, backend_id, container_id)

    async def statuses(self, items: Sequence[tuple[str, str]]) -> builtins.list[ContainerStatus]:
        return await asyncio.to_thread(lambda: [self._status(b, c) for b, c in items])

    def _status(self, backend_id: str, container_id: str) -> ContainerStatus:
        if self._process(backend_id) is not None:
            return ContainerStatus(running=True)
        pid, _ = parse_backend_id(backend_id)
        child = self._children.pop(pid, None)
        code: int | None = child.returncode if child is not None else None
        if code is not None and code < 0:
            code = 128 - code  # killed by signal N -> 128 + N, as a shell reports it
        if code is None:
            code = self._result_exit_code(container_id)
        return ContainerStatus(running=False, exit_code=code,
                               detail="" if code is not None else "process vanished")

    def _result_exit_code(self, container_id: str) -> int | None:
        key = result_key(container_id)
        if not self.volume.exists(key):
            return None
        try:
            code = json.loads(self.volume.get(key)).get("exit_code")
        except (ValueError, OSError):
            return None
        return code if isinstance(code, int) else None

    async def list(self, owner_tag: str) -> builtins.list[ListedContainer]:
        return await asyncio.to_thread(self._list, owner_tag)

    def _list(self, owner_tag: str) -> builtins.list[ListedContainer]:
        found: builtins.list[ListedContainer] = []
        for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
            cmd = proc.info.get("cmdline") or []
            if "modal_worker" not in cmd or "run" not in cmd:
                continue
            try:
                env = proc.environ()
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if env.get(OWNER_ENV) != owner_tag:
                continue
            found.append(ListedContainer(
                backend_id=format_backend_id(proc.pid, proc.info["create_time"]),
                container_id=env.get(CONTAINER_ENV, ""), owner_tag=owner_tag, running=True,
                started_at=proc.info["create_time"]))
        return found

    async def terminate(self, backend_id: str, grace_seconds: float = 0.0) -> None:
        proc = self._process(backend_id)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and self._process(backend_id) is not None:
            await asyncio.sleep(0.1)
        if self._process(backend_id) is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(self._reap, proc.pid)

    def _reap(self, pid: int) -> None:
        child = self._children.get(pid)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)

    def last_heard(self, container_id: str) -> int | None:
        return None  # the listener reads the spool itself: what it applied is all there is

    async def events(self, container_id: str, cursor: int) -> ChannelBatch:
        # Called for every live container on every listener pass: a size check on a
        # cached path string, and a read (in a thread) only when the spool grew.
        path = self._spools.get(container_id)
        if path is None:
            path = self._spools[container_id] = str(
                self.volume.path_for(spool_key(container_id)))
        try:
            if os.stat(path).st_size <= cursor:
                return ChannelBatch([], cursor)
        except FileNotFoundError:
            return ChannelBatch([], cursor)
        records, offset = await asyncio.to_thread(read_spool, Path(path), cursor)
        return ChannelBatch(records, offset)

    async def control(self, backend_id: str, container_id: str, message: dict[str, Any]) -> None:
        await asyncio.to_thread(append_control, self.volume, container_id, message)
        proc = self._process(backend_id)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGUSR1)

    async def aclose(self) -> None:
        return None  # nothing runs in the daemon for local workers

    def attach_argv(self, backend_id: str, container_id: str) -> builtins.list[str]:
        """``tmux attach`` on the container's private socket, run in the user's terminal
        (docs/adr/0020-interactive-sessions.md). E601 unless its directory is private to
        this user and the socket is there."""
        parse_backend_id(backend_id)
        socket = Path(socket_path(container_id))
        why = unsafe_dir(socket.parent.parent) or unsafe_dir(socket.parent)
        if why is None and not socket.is_socket():
            why = f"no tmux server listens at {socket}"
        if why is not None:
            raise ParheliaError("E601", f"cannot attach to container {container_id}: {why}",
                                container_id=container_id)
        return attach_argv(str(socket), shutil.which("tmux") or "tmux")
