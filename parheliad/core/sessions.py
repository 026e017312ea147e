"""Sessions seen from the user: resume, kill, and the guided recovery flow."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parhelia.checkpoint.manifest import Manifest, load_manifest
from parhelia.errors import ParheliaError, invalid
from parhelia.interactive import DETACH_HINT
from parhelia.progress import BYTES
from parhelia.volume import Volume
from parheliad.backends.base import Backend
from parheliad.config import Config
from parheliad.core import sshkeys, takehome, volsync
from parheliad.core.progress import Tracker
from parheliad.core.states import (
    CONTAINER_LIVE,
    SESSION_INTERACTIVE,
    SESSION_LIVE,
    TASK_FINAL,
    SessionStatus,
    TaskStatus,
)
from parheliad.core.tasks import retry_task, transition
from parheliad.store import EventFilter, Store
from parheliad.store.rows import CheckpointRow, ContainerRow, EventRow, SessionRow, TaskRow

KILL_GRACE_S = 5.0
MODE_WAIT_SECONDS = 120.0
"""How long an attach waits for the TUI to run (a take-over stops the headless agent and
starts the TUI), and a release for the headless agent."""
MODE_POLL_SECONDS = 0.2
ATTACH_UNSET_ENV = ("TMUX",)
"""Unset for the attaching client: tmux refuses to nest a client otherwise."""
TERM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
DEFAULT_TERM = "xterm-256color"
"""The TERM of an attach whose client sent none (or an odd one): the remote tmux client
refuses to start without a terminal type it knows."""
RECOVER_ACTIONS = ("resume", "restart", "wait")


@dataclass(frozen=True)
class SshAccess:
    argv: list[str]
    host: str
    port: int
    fingerprint: str  # the pinned host key's SHA256 fingerprint
    known_hosts: str
    key: str  # the private key's path (0600)


@dataclass
class RecoveryView:
    session: SessionRow
    task: TaskRow
    what_happened: str
    recent_checkpoints: list[CheckpointRow]
    since_latest: list[EventRow]
    choices: list[str] = field(default_factory=list)
    action_taken: str = ""


@dataclass
class AttachInfo:
    session: SessionRow
    argv: list[str]
    unset_env: tuple[str, ...]
    taken_over: bool
    detach_hint: str


class SessionOps:
    """``volume`` is the daemon's local volume; ``check_exits`` records what ended (the
    listener's); ``kick`` asks the dispatcher for a pass."""

    def __init__(self, store: Store, volume: Volume, backends: Mapping[str, Backend],
                 config: Callable[[], Config], *, state_dir: Path,
                 check_exits: Callable[[], Awaitable[None]], kick: Callable[[], None]) -> None:
        self._store = store
        self._volume = volume
        self._state_dir = state_dir
        """Where the sessions' SSH keys and pinned host keys live."""
        self._backends = backends
        self._config = config
        self._check_exits = check_exits
        self._kick = kick

    async def resume(self, ref: str, checkpoint_ref: str = "") -> TaskRow:
        """Run a stopped session again from its latest (or a given) checkpoint, with its
        conversation restored (``--resume``)."""
        session = await self._store.sessions.get(ref)
        task = await self._store.tasks.get(session.task_id)
        if task.session_id != session.id:
            raise ParheliaError("E603", f"session {session.id} is not the current session of "
                                        f"task {task.id} (a retry started {task.session_id})")
        status = TaskStatus(task.status)
        if status not in TASK_FINAL and status is not TaskStatus.PAUSED:
            raise ParheliaError("E603", f"task {task.id} is {task.status}; only a stopped "
                                        "session (completed, failed, cancelled or paused task) "
                                        "can be resumed")
        checkpoint = await self._store.checkpoints.get(checkpoint_ref) if checkpoint_ref else None
        if checkpoint is not None and checkpoint.session_id != session.id:
            raise invalid(f"checkpoint {checkpoint.id} belongs to session "
                          f"{checkpoint.session_id}, not {session.id}")
        if checkpoint is None and session.latest_checkpoint_id is None:
            raise ParheliaError("E202", f"session {session.id} has no checkpoint to resume from")

        def unit(tx: Any) -> TaskRow:
            if checkpoint is not None:
                tx.sessions.update(session.id, latest_checkpoint_id=checkpoint.id)
            target = checkpoint.id if checkpoint else session.latest_checkpoint_id
            tx.events.append("session_resumed", f"resume from {target}", task_id=task.id,
                             session_id=session.id, data={"checkpoint_id": target})
            return transition(tx, task.id, TaskStatus.PENDING, event_type="task_resumed",
                              reason=f"resumed by the user from {target}",
                              restarts=0, result_error_code="", result_error_message="",
                              result_is_error=False, result_exit_code=None)

        row = await self._store.write(unit)
        self._kick()
        return row

    async def pull_home(self, ref: str, directory: str, config_dir: str,
                        checkpoint_ref: str = "", tracker: Tracker | None = None
                        ) -> tuple[SessionRow, str, takehome.HomeCopy]:
        """``session pull``: the workspace of the latest (or a given) checkpoint into the new
        ``directory``, its conversation into the Claude config dir ``config_dir`` (both on
        this machine, the daemon's user's). (session, checkpoint id, what was written)."""
        dest = takehome.fresh_directory(directory)
        config = takehome.claude_config_dir(config_dir)
        session = await self._store.sessions.get(ref)
        checkpoint_id = session.latest_checkpoint_id
        if checkpoint_ref:
            row = await self._store.checkpoints.get(checkpoint_ref)
            if row.session_id != session.id:
                raise invalid(f"checkpoint {row.id} belongs to session {row.session_id}, not "
                              f"{session.id}", field="checkpoint_id")
            checkpoint_id = row.id
        if not checkpoint_id:
            raise ParheliaError("E202", f"session {session.id} has no checkpoint yet")
        manifest = await self._manifest(session, checkpoint_id)
        zero_row = next((cp for cp in await self._store.checkpoints.list(session.id,
                                                                          limit=100000)
                         if cp.trigger == "workspace_upload"), None)
        zero = None
        if zero_row is not None and zero_row.id != checkpoint_id:
            try:
                zero = await self._manifest(session, zero_row.id)
            except ParheliaError:
                zero = None  # no repository then; the files still come home
        uuid = takehome.check_uuid(session.agent_session_id)
        if tracker is not None:
            tracker.phase(f"writing {checkpoint_id}", BYTES)
        copy = await asyncio.to_thread(
            takehome.pull_home, self._volume, manifest, directory=dest,
            config_dir=config, session_uuid=uuid, zero=zero,
            progress=tracker.report if tracker is not None else None)
        await self._store.write(lambda tx: tx.events.append(
            "session_pulled", f"session {session.id} pulled into {copy.directory}",
            task_id=session.task_id, session_id=session.id,
            data={"checkpoint_id": checkpoint_id, "directory": str(copy.directory),
                  "files": copy.files, "conversation_files": copy.conversation_files}))
        return session, checkpoint_id, copy

    async def open_terminal(self, ref: str, rows: int, cols: int, term: str = ""
                            ) -> tuple[str, Any]:
        """``session attach`` through the daemon: a terminal on the interactive TUI of the
        session's container (Modal: an exec with a PTY). (container id, terminal)."""
        session, container, backend = await self._interactive_container(ref)
        opener = getattr(backend, "open_terminal", None)
        if backend is None or opener is None:
            raise ParheliaError("E601", f"session {session.id} runs on the {container.backend} "
                                        "backend, whose TUI your terminal attaches to directly "
                                        f"(`parhelia session attach {session.id}`)",
                                session_id=session.id)
        if not (0 < rows <= 10_000 and 0 < cols <= 10_000):
            rows, cols = 24, 80
        if not TERM_RE.match(term):
            term = DEFAULT_TERM
        argv = backend.terminal_argv(container.id)  # type: ignore[attr-defined]
        return container.id, await opener(container.backend_id, container.id, argv, rows, cols,
                                           term)

    async def ssh(self, ref: str) -> SshAccess:
        """`session attach --ssh` (Modal): the session's key, a known_hosts pinning the
        host key its worker reported, the tunnel's address and the ssh argv."""
        session, container, backend = await self._interactive_container(ref)
        if backend is None or not getattr(backend, "offers_ssh", False):
            raise ParheliaError("E601", f"session {session.id} runs on the {container.backend} "
                                        "backend: --ssh is for Modal sessions; attach with "
                                        f"`parhelia session attach {session.id}`",
                                session_id=session.id)
        reported = await self._store.events.list(EventFilter(
            container_id=container.id, types=("ssh_host_key", "ssh_failed")), limit=1)
        if not reported or reported[-1].type != "ssh_host_key":
            why = (reported[-1].data.get("error") if reported else None) or \
                "its worker has not reported an SSH host key yet"
            raise ParheliaError("E601", f"no SSH server in container {container.id}: {why}. "
                                        f"`parhelia session attach {session.id}` (without "
                                        "--ssh) attaches through the Modal SDK",
                                session_id=session.id)
        host_key = str(reported[-1].data.get("host_key") or "")
        host, port = await backend.ssh_endpoint(container.backend_id)  # type: ignore[attr-defined]
        state = self._state_dir
        key = await asyncio.to_thread(sshkeys.session_key, state, session.id)
        known = await asyncio.to_thread(sshkeys.pin_host_key, state, session.id, host, port,
                                        host_key)
        remote = backend.terminal_argv(container.id)  # type: ignore[attr-defined]
        return SshAccess(sshkeys.ssh_argv(key, known, host, port, remote), host, port,
                         str(reported[-1].data.get("fingerprint") or ""), str(known),
                         str(key.private))

    async def _interactive_container(self, ref: str
                                     ) -> tuple[SessionRow, ContainerRow, Backend | None]:
        """The session, its running container and that container's backend (None: not
        configured); E601 unless an interactive TUI runs there."""
        session = await self._store.sessions.get(ref)
        if session.status not in SESSION_INTERACTIVE:
            raise ParheliaError("E601", f"session {session.id} is {session.status}: no "
                                        "interactive TUI runs to attach to; `parhelia session "
                                        f"attach {session.id}` offers to take a headless one "
                                        "over", session_id=session.id)
        container = await self._store.containers.find(session.current_container_id or "")
        if container is None or container.state not in CONTAINER_LIVE or \
                not container.backend_id:
            raise ParheliaError("E601", f"session {session.id} has no running container",
                                session_id=session.id)
        return session, container, self._backends.get(container.backend)

    async def _manifest(self, session: SessionRow, checkpoint_id: str) -> Manifest:
        """A manifest of the session with its blobs on the daemon's volume (fetched from
        the backend's volume when the listener has not copied them yet)."""
        volume = self._volume
        try:
            manifest = await asyncio.to_thread(load_manifest, volume, session.id,
                                               checkpoint_id)
        except ParheliaError as exc:
            if exc.code != "E202":
                raise
            manifest = None
        task = await self._store.tasks.get(session.task_id)
        backend = self._backends.get(task.backend) if task.backend else None
        if backend is not None:
            await volsync.pull_checkpoint(backend, volume, session.id, checkpoint_id)
        if manifest is None:
            manifest = await asyncio.to_thread(load_manifest, volume, session.id,
                                               checkpoint_id)
        return manifest

    async def kill(self, ref: str) -> SessionRow:
        """Stop the session now: its task is cancelled, its worker terminated."""
        session = await self._store.sessions.get(ref)
        task = await self._store.tasks.get(session.task_id)
        if task.session_id == session.id and TaskStatus(task.status) not in TASK_FINAL:
            await self._store.write(lambda tx: transition(
                tx, task.id, TaskStatus.CANCELLED, reason=f"session {session.id} killed"))
        container = None
        if session.current_container_id:
            container = await self._store.containers.find(session.current_container_id)
        if container is not None and container.state in CONTAINER_LIVE and container.backend_id:
            backend = self._backends[container.backend]
            await backend.terminate(container.backend_id, grace_seconds=KILL_GRACE_S)
            await self._check_exits()

        def unit(tx: Any) -> SessionRow:
            tx.events.append("session_killed", f"session {session.id} killed",
                             task_id=task.id, session_id=session.id)
            current = tx.sessions.get(session.id)
            if current is not None and current.status in SESSION_LIVE:
                return tx.sessions.ended(session.id, completed=False)
            return current or session

        return await self._store.write(unit)

    async def _running(self, ref: str) -> tuple[SessionRow, ContainerRow]:
        """The session and its live container with a backend id (E601 otherwise)."""
        session = await self._store.sessions.get(ref)
        if session.status not in SESSION_LIVE or not session.current_container_id:
            raise ParheliaError("E601", f"session {session.id} is {session.status}: no worker "
                                        f"runs it. `parhelia resume {session.id}` continues it",
                                session_id=session.id)
        container = await self._store.containers.find(session.current_container_id)
        if container is None or container.state not in CONTAINER_LIVE or \
                not container.backend_id:
            raise ParheliaError("E601", f"session {session.id}'s container is not running "
                                        "yet; try again in a moment", session_id=session.id)
        return session, container

    async def _control(self, container: ContainerRow, message: dict[str, Any]) -> None:
        backend = self._backends[container.backend]
        await backend.control(container.backend_id, container.id, message)

    async def _wait_mode(self, session_id: str, container_id: str, *, interactive: bool,
                         what: str) -> SessionRow:
        """Wait until the session's worker says it runs the TUI (``interactive``) or the
        headless agent; E601 when the session ends first or it takes too long."""
        deadline = asyncio.get_running_loop().time() + MODE_WAIT_SECONDS
        while True:
            row = await self._store.sessions.get(session_id)
            if row.status not in SESSION_LIVE or row.current_container_id != container_id:
                raise ParheliaError("E601", f"session {session_id} ended ({row.status}) "
                                            f"before {what}", session_id=session_id)
            if interactive and row.status in SESSION_INTERACTIVE and row.tmux_socket:
                return row
            if not interactive and row.status == SessionStatus.HEADLESS:
                return row
            if asyncio.get_running_loop().time() >= deadline:
                raise ParheliaError("E601", f"{what} did not happen within "
                                            f"{MODE_WAIT_SECONDS:g} s; see `parhelia events "
                                            f"list --session {session_id}`",
                                    session_id=session_id)
            await asyncio.sleep(MODE_POLL_SECONDS)

    async def attach(self, ref: str, *, take_over: bool = False) -> AttachInfo:
        """How the user's terminal attaches to the session's TUI; a headless session is
        taken over first when ``take_over`` (else E601 says how)."""
        session, container = await self._running(ref)
        taken = False
        if session.status == SessionStatus.HEADLESS:
            if not take_over:
                raise ParheliaError(
                    "E601", f"session {session.id} runs headless. Take it over with `parhelia "
                            f"session attach {session.id} --take-over`: a checkpoint, the "
                            "headless agent stops, the interactive TUI resumes the same "
                            "conversation", session_id=session.id)
            await self._control(container, {"type": "take_over"})
            taken = True
        row = await self._wait_mode(session.id, container.id, interactive=True,
                                    what="the interactive TUI started")
        argv = self._backends[container.backend].attach_argv(container.backend_id,
                                                                container.id)
        return AttachInfo(row, argv, ATTACH_UNSET_ENV, taken, DETACH_HINT)

    async def release(self, ref: str, instruction: str = "") -> SessionRow:
        """Hand an interactive session back: its worker checkpoints, closes the TUI and
        continues headless on the same conversation with ``instruction``."""
        if "\0" in instruction:
            raise invalid("instruction: must not contain NUL characters", field="instruction")
        session, container = await self._running(ref)
        if session.status not in SESSION_INTERACTIVE:
            raise ParheliaError("E601", f"session {session.id} is {session.status}, not "
                                        "interactive: there is nothing to release",
                                session_id=session.id)
        await self._control(container, {"type": "release", "message": instruction})
        return await self._wait_mode(session.id, container.id, interactive=False,
                                     what="the headless agent took over again")

    async def recover(self, ref: str, action: str = "", checkpoint_ref: str = ""
                      ) -> RecoveryView:
        if action and action not in RECOVER_ACTIONS:
            raise invalid(f"action: must be one of {', '.join(RECOVER_ACTIONS)}, "
                          f"got {action!r}", field="action")
        session = await self._store.sessions.get(ref)
        view = await self.describe(session)
        if action == "resume":
            view.task = await self.resume(session.id, checkpoint_ref)
            view.action_taken = f"resumed task {view.task.id} from " \
                                f"{checkpoint_ref or session.latest_checkpoint_id}"
        elif action == "restart":
            view.task = await retry_task(self._store, self._config(), view.task.id)
            self._kick()
            view.action_taken = f"restarted task {view.task.id} in a fresh session from " \
                                "checkpoint zero"
        elif action == "wait":
            view.action_taken = "nothing changed" + (
                "; automatic recovery is under way" if view.task.status == "recovering" else "")
        return view

    async def describe(self, session: SessionRow) -> RecoveryView:
        task = await self._store.tasks.get(session.task_id)
        checkpoints = sorted(await self._store.checkpoints.list(session.id, limit=100000),
                             key=lambda cp: cp.created_at, reverse=True)
        latest = next((cp for cp in checkpoints if cp.id == session.latest_checkpoint_id),
                      checkpoints[0] if checkpoints else None)
        since = await self._store.events.list(
            EventFilter(session_id=session.id, since_us=latest.created_at if latest else None),
            limit=200)
        since = [e for e in since if e.type.startswith(("agent_", "container_", "task_",
                                                        "health_"))]
        containers = sorted(await self._store.containers.list(session_id=session.id,
                                                              limit=1000),
                            key=lambda c: c.created_at)
        last = containers[-1] if containers else None
        if last is None:
            happened = f"the session never started; task {task.id} is {task.status}"
        elif last.state in CONTAINER_LIVE:
            happened = f"container {last.id} is {last.state} ({last.health})"
        else:
            code = f", exit {last.exit_code}" if last.exit_code is not None else ""
            happened = (f"container {last.id} (incarnation {last.incarnation}) ended "
                        f"({last.state}{code}): {last.reason or 'no reason recorded'}; "
                        f"task {task.id} is {task.status}"
                        + (f" ({task.status_reason})" if task.status_reason else ""))
        choices = []
        if task.session_id == session.id and (TaskStatus(task.status) in TASK_FINAL
                                              or task.status == TaskStatus.PAUSED) and latest:
            choices.append("resume")
        if TaskStatus(task.status) in TASK_FINAL:
            choices.append("restart")
        choices.append("wait")
        return RecoveryView(session, task, happened, checkpoints[:5], since, choices)
