"""The worker's life: spec -> workspace -> agent -> checkpoints -> result.

``python -m modal_worker run SPEC`` runs ``Worker(spec).run()``. The worker talks
to the daemon only through the volume: channel records (spool), control messages,
checkpoints and the result file. It never opens a connection to the daemon.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from modal_worker import claude_config, hooks, keyproxy, materialise, resume_summary, sshd
from modal_worker import environment as envsetup
from modal_worker.agent import (
    AgentProcess,
    agent_version,
    build_argv,
    build_env,
    build_tui_argv,
    check_credentials,
    resolve_command,
)
from modal_worker.channel import LocalSpoolChannel, send
from modal_worker.channel import from_spec as channel_from_spec
from modal_worker.heartbeat import Heartbeat
from modal_worker.project_memory import PROJECT_MEMORY_FILE, write_project_memory
from modal_worker.stream import AgentStats, StreamParser, TranscriptCost, transcript_cost
from modal_worker.tui import TuiAgent
from parhelia import __version__ as parhelia_version
from parhelia import container, records
from parhelia import sandbox as policy
from parhelia.backends import LOCAL, MODAL
from parhelia.checkpoint import (
    Conversation,
    Manifest,
    StatCache,
    git_state,
    lineage,
    session_conversation,
    snapshot,
)
from parhelia.checkpoint.lineage import lineage_path
from parhelia.checkpoint.statcache import stat_cache_path
from parhelia.clock import utc_now
from parhelia.environment import PHASE_SETUP, PHASE_START
from parhelia.errors import ParheliaError
from parhelia.prompts import continuation_prompt
from parhelia.redact import redact_text
from parhelia.spec import ExitCode, WorkerResult, WorkerSpec, dump_result, load_spec
from parhelia.tuisocket import socket_path
from parhelia.volume import LocalVolume, log_key, result_key, setup_log_key

SSH_DIR_NAME = ".parhelia-ssh"
"""Beside the agent's config dir: the sandbox's sshd host key, config, authorized key."""

log = logging.getLogger("modal_worker")

LOOP_TICK = 0.2
CONTROL_POLL_SECONDS = 1.0
STOP_GRACE_SECONDS = 5.0
TRANSCRIPT_QUIET_SECONDS = 0.3
TRANSCRIPT_SETTLE_MAX_SECONDS = 3.0
FINAL_CHECKPOINT_RETRY_SECONDS = (0.5, 2.0, 5.0)
"""Waits before each new attempt at the completion checkpoint (it is the task's result)."""
TRANSCRIPT_TAIL_BYTES = 1 << 20
RELEASE_PROMPT = ("The interactive session was handed back to you. Carry on with the task from "
                  "where the conversation stands, and finish it.")
"""The headless agent's next instruction when a release names none."""
SYNC_TIMEOUT_SECONDS = 120


class WorkerExit(Exception):
    """How the worker's run ends: an exit code (and, for failures, a catalogue code),
    reported in its ``worker_exited`` record and result file. Raised to end the run
    early, returned when it ends by itself. (The daemon's view of an incarnation's end
    is :class:`parheliad.core.settle.Outcome`.)"""

    def __init__(self, code: ExitCode, message: str = "", error_code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.error_code = error_code if error_code is not None else code.error_code


_ERROR_EXIT = {"E100": ExitCode.INVALID_SPEC, "E400": ExitCode.NO_CREDENTIALS,
               "E500": ExitCode.AGENT_NOT_FOUND, "E600": ExitCode.RESTORE_FAILED,
               "E202": ExitCode.RESTORE_FAILED, "E501": ExitCode.TIMEOUT,
               "E606": ExitCode.SETUP_FAILED}
SETUP_STATUS_SUFFIX = ".parhelia-setup-status"
"""Beside the workspace: ``ready`` or ``failed`` once a setup-only worker is done
(``python -m modal_worker setup-wait`` reads it for the Modal backend)."""


class Worker:
    def __init__(self, spec: WorkerSpec, environ: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.environ = dict(os.environ if environ is None else environ)
        self.volume = LocalVolume(spec.volume_dir)
        self.channel, self.control = channel_from_spec(spec, self.volume)
        self.workspace = Path(spec.workspace_dir)
        self.config_dir = Path(spec.claude_config_dir)
        self.hook_dir = self.config_dir / ".parhelia-hooks"
        self.stat_cache = StatCache(stat_cache_path(self.workspace))
        self.lineage = lineage_path(self.workspace)
        self.agent_spec = spec.agent
        self.prompt = spec.prompt
        self.saw_init = False
        self._held_result: dict[str, Any] | None = None
        self._command: list[str] = []
        self._env: dict[str, str] = {}
        self.stats = AgentStats()
        self.parent_id = spec.restore_checkpoint_id
        self.parent_manifest: Manifest | None = None
        """The parent checkpoint's manifest once read or written: the next turn checkpoint
        is a delta against its base and extends its transcript chunks."""
        self.checkpoints: list[str] = []
        self.last_checkpoint_error = ""
        self.environment: dict[str, Any] = {
            "agent_command": os.path.basename(spec.agent.command[0]),
            "session_uuid": spec.agent.session_uuid,
            "model": spec.agent.model,
            "permission_mode": spec.agent.permission_mode,
            "config_bundle_id": spec.config_bundle_id,
            "parhelia_version": parhelia_version,
        }
        self.conversation: Conversation | None = None
        self.phase: envsetup.PhaseRunner | None = None
        self._tree_digest = ""
        """The restored (or kept) tree's digest: what a prepared workspace is keyed by."""
        self._kept_files = False
        """The workspace on disk was kept, not replaced (files left behind by this
        session's previous worker, or a prepared snapshot): its setup may stand."""
        self._start_message = ""
        self.last_checkpoint_at = time.monotonic()
        self.agent: AgentProcess | TuiAgent | None = None
        self.tmux_socket = spec.tmux_socket or socket_path(spec.container_id)
        self._tui_counts = (0, 0)  # attaches and detaches seen so far
        self.parser: StreamParser | None = None
        self.heartbeat: Heartbeat | None = None
        self.sshd: sshd.Sshd | None = None
        self._closing = False
        self.turns: queue.Queue[str] = queue.Queue()
        self.started_at = utc_now()
        self._signal: int | None = None
        self._wake = False
        self.container: container.Container | None = None
        self.proxy: keyproxy.KeyProxy | None = None
        self._cost_at_start = TranscriptCost()

    # -- entry point --------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        send(self.channel, records.WorkerStarted(
            incarnation=self.spec.incarnation, backend=self.spec.backend, pid=os.getpid(),
            hostname=platform.node(), python=platform.python_version(),
            resume=self.spec.agent.resume,
            restore_checkpoint_id=self.spec.restore_checkpoint_id))
        if self.spec.ssh_authorized_key:  # beside the work: keygen and sshd take a while
            threading.Thread(target=self._start_sshd, name="sshd", daemon=True).start()
        try:
            outcome = _outcome_of(self._run)
        finally:
            if self.heartbeat is not None:
                self.heartbeat.stop()
            if self.agent is not None and self.agent.alive():
                self.agent.stop(STOP_GRACE_SECONDS)
            if isinstance(self.agent, TuiAgent):
                self.agent.close()
            self._closing = True
            if self.sshd is not None:
                self.sshd.stop()
            if self.proxy is not None:
                self.proxy.close()
        self._finish(outcome)
        return int(outcome.code)

    def _start_sshd(self) -> None:
        """`session attach --ssh`: sshd for the session's key, its host key reported for
        the daemon to pin (Modal, ADR 0022). A failure is reported, never fatal: the
        attach through the SDK still works."""
        key = self.spec.ssh_authorized_key
        if not key:
            return
        try:
            started = sshd.start(Path(self.spec.claude_config_dir).parent / SSH_DIR_NAME, key)
        except (sshd.SshdError, OSError, subprocess.SubprocessError) as exc:
            log.warning("sshd could not start: %s", exc)
            self.channel.emit("ssh_failed", {"error": str(exc)[:300]})
            return
        self.sshd = started
        if self._closing:  # the worker ended meanwhile
            started.stop()
            return
        self.channel.emit("ssh_host_key", {"host_key": self.sshd.host_key,
                                           "fingerprint": self.sshd.fingerprint,
                                           "port": sshd.PORT})

    @property
    def contained(self) -> bool:
        """Whether the agent runs inside a sandbox that is its boundary: a Modal sandbox,
        or this machine's bubblewrap container (once ``_contain`` made one)."""
        return self.spec.backend == MODAL or self.container is not None

    def _permission_mode(self) -> str:
        """The agent's mode: the contained default in a sandbox, else the task's own."""
        contained = self.agent_spec.permission_mode_contained
        return contained if contained and self.contained else self.agent_spec.permission_mode

    def _apply_permission_mode(self, env: dict[str, str]) -> None:
        """Run the agent in the mode :meth:`_permission_mode` says now (contained or not
        is known once ``_contain`` ran); a root agent in ``bypassPermissions`` is told it
        runs in a sandbox (``IS_SANDBOX``), as Claude Code requires."""
        mode = self._permission_mode()
        if mode != self.agent_spec.permission_mode:
            self.agent_spec = dataclasses.replace(self.agent_spec, permission_mode=mode)
            self.environment["permission_mode"] = mode
        if mode == "bypassPermissions" and os.geteuid() == 0:
            env["IS_SANDBOX"] = "1"

    def _agent_base(self) -> dict[str, str]:
        """The worker's environment without the setup secrets (start and the agent)."""
        environment = self.spec.environment
        return dict(self.environ) if environment is None else \
            envsetup.without_secrets(self.environ, environment)

    def _run(self) -> WorkerExit:
        extra = {**(self.spec.environment.env if self.spec.environment else {}),
                 **self.spec.env}
        env = build_env(self._agent_base(), extra=extra, config_dir=self.config_dir,
                        workspace=self.workspace, permission_mode=self._permission_mode())
        check_credentials(env)
        command = resolve_command(self.spec.agent.command, env)
        self._materialise()
        os.chdir(self.workspace)
        self.prepare_config_dir()
        env = self._contain(command, env)
        self._apply_permission_mode(env)
        env.update(self._install_risky_hook())
        self.conversation = session_conversation(self.config_dir, self.workspace,
                                                 self.spec.agent.session_uuid)
        why = materialise.transcript(self.conversation, resume=self.agent_spec.resume)
        if why is not None:
            self._degrade(why)
        self.heartbeat = Heartbeat(
            self.channel, self.spec.heartbeat_interval_seconds, self.workspace, self.stats,
            agent_pid=lambda: self.agent.pid if self.agent else None,
            agent_alive=lambda: bool(self.agent and self.agent.alive()))
        self.heartbeat.start()
        self._prepare_environment(start=True)
        if self._signal is not None:
            return self._interrupted()
        self.checkpoint("start", self._start_message)
        if self._signal is not None:
            return self._interrupted()
        self._command, self._env = command, env
        self._start_agent()
        return self._supervise()

    def _contain(self, command: list[str], env: dict[str, str]) -> dict[str, str]:
        """Put the agent in a container when the spec asks (local workers: ADR 0030) and
        keep its credential out of it; the agent's environment. Says how in a
        ``worker_isolation`` record. E609 when the container is required and cannot be
        made; otherwise the agent runs uncontained, as before, and the record says why."""
        if self.spec.sandbox is None:
            if self.spec.backend == LOCAL:
                send(self.channel, records.WorkerIsolation(
                    isolation=policy.ISOLATION_NONE, credential=policy.CREDENTIAL_ENVIRONMENT,
                    reason="turned off (sandbox.local = \"off\")"))
            return env
        self.hook_dir_private()
        planned = container.plan(self.spec.sandbox, workspace=self.workspace,
                               writable=(self.config_dir, self.hook_dir), command=command,
                               environ=env)
        why = planned if isinstance(planned, str) else container.probe(planned)
        if why is not None or isinstance(planned, str):
            if self.spec.sandbox.mode == policy.MODE_REQUIRED:
                raise ParheliaError("E609", f"the agent cannot be contained here: {why}")
            send(self.channel, records.WorkerIsolation(
                isolation=policy.ISOLATION_NONE, credential=policy.CREDENTIAL_ENVIRONMENT,
                reason=redact_text(why or "")[:300]))
            return env
        self.proxy = keyproxy.start(env)
        assert self.proxy is not None  # check_credentials passed
        self.container = planned
        contained = self.proxy.agent_env(env)
        contained.pop("PARHELIA_HOME", None)  # a pointer to the daemon's files, hidden anyway
        contained["TMPDIR"] = "/tmp"  # the container's own
        send(self.channel, records.WorkerIsolation(
            isolation=policy.ISOLATION_BUBBLEWRAP, credential=policy.CREDENTIAL_PROXY))
        return contained

    def hook_dir_private(self) -> None:
        """The hook directory is bound into the agent's container as a mount point of its
        own; one the agent turned into a symlink or a file (an earlier, uncontained run)
        is replaced, never followed."""
        if self.hook_dir.is_symlink() or (self.hook_dir.exists() and not self.hook_dir.is_dir()):
            self.hook_dir.unlink()
        self.hook_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # -- the environment ----------------------------------------------------------------

    def _prepare_environment(self, *, start: bool, scrub_all: bool = False) -> None:
        """Caches, then setup (unless this workspace is prepared for the environment
        already), then -- with ``start`` -- the start commands. A failure is checkpointed
        (the workspace as the setup left it) and ends the run with E606 before the agent
        ever starts."""
        environment = self.spec.environment
        if environment is None:
            return
        envsetup.link_caches(environment, Path(self.environ.get("HOME") or Path.home()))
        values = list(envsetup.secret_values(self.environ, environment).values())
        if scrub_all:  # a setup sandbox: its Modal secrets may be any variables
            values += envsetup.unknown_values(self.environ, environment)
        deadline = time.monotonic() + environment.setup_timeout_seconds
        # A contained agent's setup and start commands run in its container too: they
        # run the repository's code (start: on files the agent may have changed), which
        # must not reach what the container hides (ADR 0030, 0050).
        tools = self.container.with_tools(self.environ) if self.container else None
        runner = self.phase = envsetup.PhaseRunner(
            self.channel, cwd=self.workspace, scrub=envsetup.Scrubber(values),
            deadline=deadline, after_step=self.sync_volume if scrub_all else lambda: None,
            log_path=self.volume.path_for(setup_log_key(self.spec.container_id)),
            wrap=tools.argv if tools is not None else lambda argv: argv)
        try:
            marker = envsetup.read_marker(self.workspace)
            # Setup stands while the files it ran on were kept (a later incarnation on this
            # machine, a warm start); a restore replaced them, so it runs again.
            prepared = self._kept_files and marker.get("hash") == environment.hash
            if environment.setup and prepared:
                send(self.channel, records.SetupSkipped(hash=environment.hash,
                                                        steps=len(environment.setup)))
            elif environment.setup:
                envsetup.clear_marker(self.workspace)
                secrets = envsetup.secret_values(self.environ, environment)
                runner.run(PHASE_SETUP, environment.setup, envsetup.command_environ(
                    self.environ, environment, secrets=secrets))
            if environment.setup and not prepared:
                envsetup.write_marker(self.workspace, environment.hash, self._tree_digest)
            if start and environment.start:
                runner.run(PHASE_START, environment.start,
                           envsetup.command_environ(self._agent_base(), environment))
        except envsetup.SetupFailed as exc:
            if self._signal is not None:
                raise WorkerExit(ExitCode.TERMINATED, f"terminated by signal {self._signal} "
                              "during setup") from None
            self.checkpoint("error", f"setup failed: {exc.message[:150]}")
            raise WorkerExit(ExitCode.SETUP_FAILED, exc.message, "E606") from None
        finally:
            self.phase = None

    def run_setup_only(self) -> int:
        """The Modal backend's setup sandbox (``python -m modal_worker setup SPEC``):
        restore, caches and setup, with the setup secrets; then say ``ready`` beside the
        workspace and wait to be terminated (the daemon snapshots this filesystem first).
        A failure is checkpointed and ends the incarnation with E606, as in :meth:`run`."""
        self._install_signals()
        status = self.workspace.parent / f".{self.workspace.name}{SETUP_STATUS_SUFFIX}"
        def prepare() -> WorkerExit:
            self._materialise()
            os.chdir(self.workspace)
            self._prepare_environment(start=False, scrub_all=True)
            return WorkerExit(ExitCode.COMPLETED)

        outcome = _outcome_of(prepare)
        if outcome.code == ExitCode.COMPLETED:
            self.sync_volume()
            self._sync_cache()
            status.write_text("ready", encoding="utf-8")
            while self._signal is None:
                time.sleep(LOOP_TICK)
            return 0
        with contextlib.suppress(OSError):
            status.write_text("failed", encoding="utf-8")
        self._finish(outcome)
        return int(outcome.code)

    def _degrade(self, reason: str) -> None:
        """Resume cannot continue the stored conversation: start a new one (same session
        id) whose first prompt summarises it, and say so (``resume_degraded``)."""
        transcript = self._transcript()
        assert transcript is not None
        stored = resume_summary.read_stored(transcript)
        if transcript.exists():
            os.replace(transcript, transcript.with_name(transcript.name + ".rejected"))
        self.prompt = resume_summary.fresh_prompt(stored, reason=reason,
                                                  task_prompt=self.spec.task_prompt,
                                                  continuation=self.spec.prompt)
        self.agent_spec = dataclasses.replace(self.agent_spec, resume=False)
        self.channel.emit("resume_degraded", {
            "reason": redact_text(reason)[:300], "stored_entries": stored.entries,
            "files_touched": len(stored.files), "session_uuid": self.agent_spec.session_uuid})

    # -- workspace ----------------------------------------------------------------------

    def _materialise(self) -> None:
        """The workspace, as :func:`modal_worker.materialise.workspace` makes it."""
        restored = materialise.workspace(
            self.spec, self.volume, workspace_dir=self.workspace, config_dir=self.config_dir,
            lineage_file=self.lineage, stat_cache=self.stat_cache,
            prepared=self._prepared_for)
        manifest = restored.manifest
        self._kept_files = restored.kept
        if manifest is not None:
            self.parent_manifest = manifest
            self._tree_digest = envsetup.tree_digest(manifest)
            self.environment.update({k: v for k, v in manifest.environment.items()
                                     if k in ("agent_version", "model") and v})
        if manifest is not None and restored.continued:
            self._start_message = f"continued from the files left after {manifest.id}"
            if not self.agent_spec.resume:
                self.agent_spec = dataclasses.replace(self.agent_spec, resume=True)
                self.prompt = continuation_prompt(
                    manifest.id, "its worker stopped before checkpointing its first turn")
        self.channel.emit("workspace_restored", restored.record)

    def _prepared_for(self, manifest: Manifest) -> bool:
        """Whether the workspace on disk is ``manifest``'s tree prepared by this task's
        environment (the marker beside it says so: a warm start)."""
        environment = self.spec.environment
        if environment is None or not environment.setup or not self.workspace.is_dir() \
                or self.workspace.is_symlink():
            return False
        marker = envsetup.read_marker(self.workspace)
        return marker.get("hash") == environment.hash and \
            marker.get("tree") == envsetup.tree_digest(manifest)

    def prepare_config_dir(self) -> None:
        """Create ``CLAUDE_CONFIG_DIR`` for this session with the synced config bundle
        (:func:`modal_worker.materialise.config_dir`). Parhelia's own hooks (e.g. the
        PreToolUse hook that checkpoints before risky tool calls) go in later with
        ``claude_config.add_hooks``, which merges them into the user's settings.json."""
        done = materialise.config_dir(self.volume, self.config_dir, self.spec.config_bundle_id)
        if done is not None:
            self.channel.emit("config_materialised", done.to_dict())

    # -- checkpoints --------------------------------------------------------------------

    def _await_transcript(self) -> None:
        """Claude Code appends to its transcript a moment after the stream shows a turn:
        wait (briefly, bounded) until the transcript holds the turn's last tool result (or,
        for a turn without one, has been quiet for a little while), so a turn checkpoint
        holds the turn's conversation and can be resumed from."""
        path = self._transcript()
        if path is None:
            return
        marker = self.parser.last_tool_result_id if self.parser is not None else None
        deadline = time.monotonic() + TRANSCRIPT_SETTLE_MAX_SECONDS
        while time.monotonic() < deadline:
            try:
                if marker is not None:
                    if _tail_holds(path, marker):
                        return
                elif time.time() - path.stat().st_mtime >= TRANSCRIPT_QUIET_SECONDS:
                    return
            except (FileNotFoundError, UnicodeError):
                pass
            time.sleep(0.02)

    def checkpoint(self, trigger: str, message: str = "") -> str | None:
        try:
            manifest = snapshot(
                self.workspace, volume=self.volume, session_id=self.spec.session_id,
                parent_id=self.parent_id, trigger=trigger, message=message,
                stat_cache=self.stat_cache, conversation=self.conversation,
                environment=self.environment, git=git_state(self.workspace),
                previous=self.parent_manifest)
        except Exception as exc:
            log.exception("checkpoint (%s) failed", trigger)
            reason = exc.message if isinstance(exc, ParheliaError) else type(exc).__name__
            send(self.channel, records.CheckpointFailed(trigger=trigger, error=reason,
                                                        message=message))
            self.last_checkpoint_error = reason
            self.last_checkpoint_at = time.monotonic()  # no retry storm: wait a full period
            return None
        self.parent_id, self.parent_manifest = manifest.id, manifest
        self.checkpoints.append(manifest.id)
        self.last_checkpoint_at = time.monotonic()
        try:  # before it is announced: the files on disk descend from it from now on
            lineage.append(self.lineage, manifest.id)
        except OSError:
            log.warning("could not record the checkpoint lineage", exc_info=True)
        self.sync_volume()  # the checkpoint is on the daemon's side before it is announced
        send(self.channel, manifest.summary())
        return manifest.id

    def _final_checkpoint(self) -> str | None:
        """The completion checkpoint is what `task diff` and `task pull` bring back: a
        failure is retried before the worker gives up and reports the result unsaved."""
        for delay in (0.0, *FINAL_CHECKPOINT_RETRY_SECONDS):
            time.sleep(delay)
            checkpoint_id = self.checkpoint("completion")
            if checkpoint_id is not None:
                return checkpoint_id
        return None

    def _sync_cache(self) -> None:
        """What setup downloaded into the cache volume, visible to the repository's next
        sandboxes (Modal commits a volume at ``sync`` or the sandbox's end)."""
        environment = self.spec.environment
        if environment is None or not environment.cache_root or not self.spec.volume_sync_argv:
            return
        try:
            subprocess.run([self.spec.volume_sync_argv[0], environment.cache_root],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=SYNC_TIMEOUT_SECONDS, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("cache sync failed: %s", type(exc).__name__)

    def sync_volume(self) -> None:
        """Make what was written to the volume visible to the daemon's side (the spec's
        ``volume_sync_argv``: ``sync /vol`` on Modal, nothing locally). Best effort: a
        failed sync delays the daemon's copy until the next one or the sandbox's end."""
        argv = self.spec.volume_sync_argv
        if not argv:
            return
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=SYNC_TIMEOUT_SECONDS, check=False)
            if proc.returncode != 0:
                log.warning("volume sync exited with %s", proc.returncode)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("volume sync failed: %s", type(exc).__name__)

    # -- the agent ----------------------------------------------------------------------

    def _on_init(self, obj: dict[str, Any]) -> None:
        if obj.get("type") == "system" and obj.get("subtype") == "init":
            self.saw_init = True
            self.environment.update({
                "agent_version": obj.get("claude_code_version"),
                "model": obj.get("model") or self.environment.get("model"),
                "mcp_servers": sorted(str(s.get("name")) for s in obj.get("mcp_servers") or []
                                      if isinstance(s, dict)),
                "plugins": [p.get("name") if isinstance(p, dict) else p
                            for p in obj.get("plugins") or []],
            })

    def _transcript(self) -> Path | None:
        if self.conversation is None:
            return None
        return self.conversation.project_dir / f"{self.spec.agent.session_uuid}.jsonl"

    def _start_agent(self) -> None:
        transcript = self._transcript()
        if transcript is not None and self.parser is None:
            # this incarnation's share of the session's cost counts from its first run
            self._cost_at_start = transcript_cost(transcript, self.spec.agent.session_uuid)
        parser = StreamParser(emit=self.channel.emit, stats=self.stats,
                              on_turn=lambda: self.turns.put("turn"), cwd=str(self.workspace),
                              on_billed=self._report_spend,
                              cost_baseline_usd=self._cost_at_start.total_usd,
                              base=self.stats.snapshot())
        self.parser = parser
        self.saw_init = False
        self._held_result = None
        resuming = self.agent_spec.resume

        def on_object(obj: dict[str, Any]) -> None:
            self._on_init(obj)
            if resuming and not self.saw_init and obj.get("type") == "result":
                self._held_result = obj  # a refused resume: reported only if not retried
                return
            parser.feed(obj)

        memory = (None if self.agent_spec.project_settings else
                  write_project_memory(self.workspace, self.hook_dir / PROJECT_MEMORY_FILE))
        if self.agent_spec.interactive:
            self._start_tui(parser, memory)
            return
        argv = build_argv(self.agent_spec, self._command, project_memory=memory)
        raw_log = self.volume.path_for(log_key(self.spec.container_id))
        self.agent = AgentProcess(self._wrap(argv), cwd=self.workspace, env=self._env,
                                  raw_log=raw_log, on_object=on_object, prompt=self.prompt)
        self.agent.start()
        flags = [a for a in argv[1:] if a.startswith("--")]
        self.channel.emit("agent_started", {"pid": self.agent.pid, "command": self._command[0],
                                            "flags": flags, "resume": resuming,
                                            "contained": self.container is not None})

    def _start_tui(self, parser: StreamParser, memory: Path | None) -> None:
        """The interactive TUI in tmux (modal_worker.tui): its first-run screens seeded
        away, the prompt typed as its first message (none on a resume), its transcript
        read for the telemetry ``claude -p`` would print."""
        transcript = self._transcript()
        assert transcript is not None
        version = agent_version(self._command, self._env)
        self.environment["agent_version"] = version
        claude_config.seed_tui(self.config_dir, self.workspace, version=version,
                               api_key=self._env.get("ANTHROPIC_API_KEY"),
                               bypass_permissions=self.agent_spec.permission_mode
                               == "bypassPermissions")

        def on_line(obj: dict[str, Any]) -> None:
            if obj.get("type") == "system" and obj.get("subtype") == "turn_duration":
                parser.finish()  # the agent answered and waits for the person
            elif obj.get("type") in ("assistant", "user"):
                if obj.get("type") == "user" and not obj.get("isMeta") and \
                        not parser.tool_results_in(obj):
                    parser.user_prompt()
                parser.feed(obj)

        argv = build_tui_argv(self.agent_spec, self._command, project_memory=memory)
        agent = TuiAgent(self._wrap(argv), socket=self.tmux_socket, cwd=self.workspace,
                         env=self._env,
                         transcript=transcript, on_object=on_line,
                         prompt="" if self.agent_spec.resume else self.prompt)
        self.agent = agent
        agent.start()
        self.saw_init = agent.ready
        self._tui_counts = (0, 0)
        flags = [a for a in argv[1:] if a.startswith("--")]
        self.channel.emit("agent_started", {"pid": agent.pid, "command": self._command[0],
                                            "flags": flags, "resume": self.agent_spec.resume,
                                            "interactive": True,
                                            "contained": self.container is not None})
        send(self.channel, records.SessionInteractive(
            socket=agent.socket, resume=self.agent_spec.resume, ready=agent.ready))

    def _wrap(self, argv: list[str]) -> list[str]:
        """The agent's argv, run in its container when it has one."""
        return argv if self.container is None else self.container.argv(argv)

    def _watch_clients(self) -> None:
        """Attaches and detaches of the TUI's clients; a detach takes a checkpoint."""
        if not isinstance(self.agent, TuiAgent):
            return
        st = self.agent.state(fresh=True)
        if not st.alive:
            return
        attaches, detaches = self._tui_counts
        self._tui_counts = (max(attaches, st.attaches), max(detaches, st.detaches))
        if st.attaches > attaches:
            send(self.channel, records.SessionAttached(clients=st.clients,
                                                       attaches=st.attaches))
        if st.detaches > detaches:
            send(self.channel, records.SessionDetached(clients=st.clients,
                                                       detaches=st.detaches))
            self.checkpoint("detach", f"detached; {st.clients} client(s) still attached")

    def _take_over(self) -> None:
        """Headless -> interactive on the same conversation in this workspace: checkpoint,
        stop the headless agent, start the TUI with ``--resume``."""
        if self.agent_spec.interactive:
            return
        self.checkpoint("takeover", "taken over: the interactive TUI continues")
        self._stop_agent()
        self.agent_spec = dataclasses.replace(self.agent_spec, interactive=True, resume=True)
        self._start_agent()

    def _release(self, instruction: str) -> None:
        """Interactive -> headless on the same conversation: checkpoint, close the TUI,
        continue with ``claude -p --resume`` and ``instruction``."""
        if not self.agent_spec.interactive:
            return
        self.checkpoint("release", "handed back: the agent continues headless")
        self._stop_agent()
        if isinstance(self.agent, TuiAgent):
            self.agent.close()
        self.agent_spec = dataclasses.replace(self.agent_spec, interactive=False, resume=True)
        self.prompt = instruction.strip() or RELEASE_PROMPT
        self._start_agent()
        send(self.channel, records.SessionHeadless(instruction_chars=len(self.prompt)))

    def _resume_refused(self) -> str | None:
        """Why the agent refused to resume (it ended without starting), or None."""
        assert self.agent is not None
        if not self.agent_spec.resume or self.saw_init or self.agent.returncode == 0:
            return None
        self.agent.join_output()
        lines = [line for line in self.agent.stderr_tail if line.strip()]
        found = [line for line in lines if "conversation" in line.lower()]
        return (found or lines or [f"the agent exited with code {self.agent.returncode}"])[-1]

    def _supervise(self) -> WorkerExit:
        """Wait for the agent while serving signals, control messages and checkpoint timers."""
        assert self.agent is not None
        policy = self.spec.checkpoint
        deadline = self.agent.started_at + self.spec.agent.timeout_seconds
        next_poll = 0.0
        turn_pending = False
        while True:
            if self._signal is not None:
                return self._interrupted()
            now = time.monotonic()
            if self._wake or now >= next_poll:
                self._wake = False
                next_poll = now + CONTROL_POLL_SECONDS
                stop = self._handle_control()
                if stop is not None:
                    return stop
                self._handle_hook_requests()
                self._watch_clients()
            if self.agent.finished():
                refused = self._resume_refused()
                if refused is None:
                    if self._held_result is not None and self.parser is not None:
                        self.parser.feed(self._held_result)
                    return self._agent_done()
                self._degrade(refused)
                self._start_agent()
                continue
            if now >= deadline:
                return self._timed_out()
            if turn_pending:
                # Every completed turn gets a checkpoint; turns that end while one is being
                # taken are covered by the next one (at most one runs at a time).
                turn_pending = False
                self._await_transcript()
                _drain(self.turns)
                self.checkpoint("turn")
            elif now - self.last_checkpoint_at >= policy.interval_seconds:
                self.checkpoint("interval")
            with contextlib.suppress(queue.Empty):
                self.turns.get(timeout=LOOP_TICK)
                turn_pending = True

    def _report_spend(self) -> None:
        """A reply's billed output arrived: a heartbeat now carries the usage to the
        daemon, which checks the ceiling and the task's cap as it books it."""
        if self.heartbeat is not None:
            self.heartbeat.beat_now()

    def _install_risky_hook(self) -> dict[str, str]:
        """The PreToolUse hook that checkpoints before risky Bash commands; returns the
        environment the agent (and so the hook) needs."""
        patterns = [p for p in self.spec.checkpoint.risky_patterns if p.strip()]
        if not patterns:
            return {}
        self.hook_dir_private()
        claude_config.add_hooks(self.config_dir, hooks.hook_settings())
        # A contained hook cannot see the worker's pid (its own PID namespace): it is not
        # given one; the worker polls the hook directory every second.
        return hooks.hook_env(self.hook_dir, 0 if self.container else os.getpid(), patterns)

    def _handle_hook_requests(self) -> None:
        for request in hooks.pending(self.hook_dir):
            checkpoint_id = self.checkpoint("pre_tool", request.summary)
            hooks.answer(self.hook_dir, request, checkpoint_id)

    def _handle_control(self) -> WorkerExit | None:
        for msg in self.control.poll():
            if msg.type == "checkpoint":
                self.checkpoint("manual", msg.message)
            elif msg.type == "stop":
                reason = msg.reason or "cancel"
                self._stop_agent()
                self.checkpoint("stop", f"stopped: {reason}")
                return WorkerExit(ExitCode.STOPPED, f"stopped through the control path ({reason})")
            elif msg.type == "take_over":
                self._take_over()
            elif msg.type == "release":
                self._release(msg.message)
        return None

    def _stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.stop(STOP_GRACE_SECONDS)
        if self.parser is not None:
            self.parser.finish()
        self._settle_cost()

    def _settle_cost(self) -> None:
        """A run that ended without its result (stopped, crashed): the CLI still wrote its
        session cost to the transcript on the way out (SIGTERM included); report this run's
        share of it, so the ledger books the agent's own figure rather than an estimate."""
        transcript = self._transcript()
        if self.parser is None or self.parser.result is not None or transcript is None:
            return
        if self.agent is not None and self.agent.killed:
            return  # a cost-state line now would not be the CLI's own: price the tokens
        now = transcript_cost(transcript, self.spec.agent.session_uuid)
        if now.lines <= self._cost_at_start.lines:
            return
        with self.stats.lock:
            self.stats.update(cost_usd=self.parser.run_cost(now.total_usd))
        send(self.channel, records.AgentCost(usage=self.stats.usage(),
                                             total_cost_usd=now.total_usd))

    def _interrupted(self) -> WorkerExit:
        self._stop_agent()
        self.checkpoint("sigterm")
        return WorkerExit(ExitCode.TERMINATED, f"terminated by signal {self._signal}")

    def _timed_out(self) -> WorkerExit:
        self._stop_agent()
        seconds = self.spec.agent.timeout_seconds
        self.channel.emit("agent_error", {"message": f"the agent ran longer than {seconds:g} s "
                                          "and was stopped", "exit_code": None})
        self.checkpoint("timeout")
        return WorkerExit(ExitCode.TIMEOUT, f"the agent hit the task timeout ({seconds:g} s)")

    def _agent_done(self) -> WorkerExit:
        assert self.agent is not None and self.parser is not None
        self.agent.join_output()
        self.parser.finish()
        self._settle_cost()
        code = self.agent.returncode
        if isinstance(self.agent, TuiAgent):
            return self._tui_done(code)
        result = self.parser.result
        if result is not None and result.succeeded and code == 0:
            if self._final_checkpoint() is None:
                return WorkerExit(ExitCode.COMPLETED, "the agent completed but its result could "
                               f"not be saved ({self.last_checkpoint_error}); the work is only "
                               "in the workspace", "E600")
            return WorkerExit(ExitCode.COMPLETED)
        if result is not None:
            message = f"the agent finished with {result.subtype}"
            if result.text:
                message += f": {result.text[:300]}"
        else:
            tail = " | ".join(list(self.agent.stderr_tail)[-5:])
            message = f"the agent exited with code {code} without a result"
            message += f": {tail[-500:]}" if tail else ""
        error_code = None
        if self.parser.last_api_error_status == 401:
            error_code = "E400"
        elif result is not None and result.subtype == "error_max_budget_usd":
            error_code = "E300"
        self.channel.emit("agent_error", {"message": message, "exit_code": code,
                                          "subtype": result.subtype if result else None})
        self.checkpoint("error", message[:200])
        return WorkerExit(ExitCode.FAILED, message, error_code)

    def _tui_done(self, code: int | None) -> WorkerExit:
        """The person ended the interactive agent (``/exit``): the task is done; its
        result is the conversation's last answer and the CLI's own cost."""
        assert self.parser is not None
        self.parser.result = records.AgentResult(
            subtype="success" if code == 0 else "error_during_execution", is_error=code != 0,
            usage=self.stats.usage(), terminal_reason="interactive_exit",
            text=self.parser.last_text[:records.MAX_TEXT])
        send(self.channel, self.parser.result)
        if code == 0:
            if self._final_checkpoint() is None:
                return WorkerExit(ExitCode.COMPLETED, "the interactive agent ended but its result "
                               f"could not be saved ({self.last_checkpoint_error})", "E600")
            return WorkerExit(ExitCode.COMPLETED)
        assert self.agent is not None
        tail = " | ".join(list(self.agent.stderr_tail)[-5:])
        message = f"the interactive agent exited with code {code}" + \
            (f": {tail[-500:]}" if tail else "")
        self.channel.emit("agent_error", {"message": message, "exit_code": code})
        self.checkpoint("error", message[:200])
        return WorkerExit(ExitCode.FAILED, message)

    # -- signals and the end ------------------------------------------------------------

    def _install_signals(self) -> None:
        def on_term(signum: int, frame: FrameType | None) -> None:
            self._signal = signum
            if self.phase is not None:
                self.phase.stop()

        def on_usr1(signum: int, frame: FrameType | None) -> None:
            self._wake = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGUSR1, on_usr1)

    def _finish(self, outcome: WorkerExit) -> None:
        result = WorkerResult(
            container_id=self.spec.container_id, task_id=self.spec.task_id,
            session_id=self.spec.session_id, incarnation=self.spec.incarnation,
            exit_code=int(outcome.code), status=outcome.code.status,
            started_at=self.started_at, finished_at=utc_now(),
            error_code=outcome.error_code, error_message=outcome.message or None,
            last_checkpoint_id=self.parent_id, checkpoints=list(self.checkpoints),
            agent=self.parser.result.to_dict() if self.parser and self.parser.result else None,
        )
        try:
            dump_result(result, self.volume.path_for(result_key(self.spec.container_id)))
        except OSError:
            log.exception("could not write the result file")
        self.sync_volume()
        send(self.channel, records.WorkerExited(
            exit_code=int(outcome.code), status=outcome.code.status,
            error_code=outcome.error_code, error_message=outcome.message or None,
            last_checkpoint_id=self.parent_id))
        self.channel.close()


def _outcome_of(work: Callable[[], WorkerExit]) -> WorkerExit:
    """What ``work`` ended with: its outcome, or the one its error means."""
    try:
        return work()
    except WorkerExit as o:
        return o
    except ParheliaError as exc:
        return WorkerExit(_ERROR_EXIT.get(exc.code, ExitCode.FAILED), exc.message, exc.code)
    except Exception as exc:
        log.exception("worker failed")
        return WorkerExit(ExitCode.FAILED, f"internal error: {type(exc).__name__}", "E900")


def _drain(q: queue.Queue[str]) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            q.get_nowait()


def _tail_holds(path: Path, tool_use_id: str) -> bool:
    """Whether the last MiB of ``path`` holds the result of ``tool_use_id`` on a complete
    line (the tool call itself carries the id as ``"id"``, its result as ``"tool_use_id"``)."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - TRANSCRIPT_TAIL_BYTES))
        data = fh.read()
    data = data[: data.rfind(b"\n") + 1]
    quoted = json.dumps(tool_use_id).encode()
    return any(b'"tool_use_id"' + sep + quoted in data for sep in (b":", b": "))


def _report_invalid_spec(path: Path, error: ParheliaError) -> None:
    """Best effort for a spec that failed validation: still leave a result and a record."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        container_id, volume_dir = raw["container_id"], raw["volume_dir"]
        volume = LocalVolume(volume_dir)
        now = utc_now()
        result = WorkerResult(
            container_id=container_id, task_id=str(raw.get("task_id") or ""),
            session_id=str(raw.get("session_id") or ""), incarnation=int(raw.get("incarnation")
                                                                        or 1),
            exit_code=int(ExitCode.INVALID_SPEC), status=ExitCode.INVALID_SPEC.status,
            started_at=now, finished_at=now, error_code="E100", error_message=error.message)
        dump_result(result, volume.path_for(result_key(container_id)))
        channel = LocalSpoolChannel.for_container(volume, container_id)
        send(channel, records.WorkerExited(exit_code=int(ExitCode.INVALID_SPEC),
                                           status="failed", error_code="E100",
                                           error_message=error.message))
        channel.close()
    except Exception:
        log.debug("no result written for an unreadable spec", exc_info=True)


def run(spec_path: Path, *, setup_only: bool = False) -> int:
    try:
        spec = load_spec(spec_path)
    except ParheliaError as exc:
        log.error("%s", exc)
        _report_invalid_spec(spec_path, exc)
        return int(ExitCode.INVALID_SPEC)
    worker = Worker(spec)
    return worker.run_setup_only() if setup_only else worker.run()


def wait_for_setup(spec_path: Path, timeout: float) -> int:
    """``python -m modal_worker setup-wait SPEC``: 0 once the setup-only worker of SPEC
    says ``ready``, 6 when it failed, 124 past ``timeout`` seconds."""
    spec = load_spec(spec_path)
    workspace = Path(spec.workspace_dir)
    status = workspace.parent / f".{workspace.name}{SETUP_STATUS_SUFFIX}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            said = status.read_text(encoding="utf-8").strip()
        except OSError:
            said = ""
        if said == "ready":
            return 0
        if said == "failed":
            return int(ExitCode.SETUP_FAILED)
        time.sleep(0.2)
    return int(ExitCode.TIMEOUT)


def configure_logging() -> None:
    logging.basicConfig(level=os.environ.get("PARHELIA_WORKER_LOG_LEVEL", "INFO"),
                        stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
