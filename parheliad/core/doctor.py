"""``parhelia doctor``: what a newcomer trips on, each with how to fix it.

Checks run in the daemon, so they see the environment workers will inherit (its
PATH, its credentials). Credential values are never returned, only their presence.
A backend checks its own setup (``SelfCheck``, from the registry); here is what every
daemon needs, and each backend's ``available()``. Each check says what it looked at
just now: without ``--check-modal`` nothing is asked of Modal (and the Modal line says
so); with it, each backend that can be is asked now (``Backends.check_now``).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from parhelia import container, envfile, ownership, sandbox
from parhelia.credentials import CREDENTIAL_VARS
from parhelia.errors import ParheliaError
from parhelia.paths import Paths
from parheliad.backends.base import FAIL, OK, WARN, Check
from parheliad.backends.registry import BackendState
from parheliad.config import Config, load_config
from parheliad.store.rows import ContainerRow

MIN_FREE_BYTES = 1 << 30
LOW_FREE_BYTES = 5 << 30
INSTALL_CLAUDE = "npm install -g @anthropic-ai/claude-code"


def run_checks(paths: Paths, config: Config, socket: Path,
               env: dict[str, str] | None = None) -> list[Check]:
    env = dict(os.environ if env is None else env)
    return [_socket(socket), _config(paths), _agent(config, env),
            _credentials(env, envfile.env_file(paths)), _local_sandbox(config, env, paths),
            _disk(paths), _git()]


def backend_checks(states: list[BackendState], default_backend: str) -> list[Check]:
    """One check per backend: ``available()`` and its reason (from the daemon's registry).
    An unavailable backend fails only when it is the default one."""
    out = []
    for state in states:
        name = f"backend {state.name}"
        if state.available:
            out.append(Check(name, OK, state.detail))
        elif state.name == default_backend:
            out.append(Check(name, FAIL, f"the default backend is unavailable: {state.detail}",
                             "fix the cause above, or set orchestrator.default_backend = "
                             "\"local\" in the config file"))
        else:
            out.append(Check(name, WARN, state.detail,
                             "needed only for tasks created with --backend " + state.name))
    return out


def _socket(socket: Path) -> Check:
    try:
        mode = stat.S_IMODE(socket.stat().st_mode)
    except OSError:
        return Check("daemon", FAIL, f"socket {socket} is missing",
                     "restart the daemon: `parhelia daemon stop && parhelia daemon start`")
    why = ownership.socket_problem(socket)
    if why is not None:  # never "chmod the directory": it may be /tmp
        return Check("daemon", FAIL, why, "use a socket path in a directory of your own "
                     "(PARHELIA_SOCKET / --socket), then restart the daemon")
    if mode & 0o077:
        return Check("daemon", FAIL, f"socket {socket} is {oct(mode)}: other users could "
                     "drive your tasks", f"chmod 600 {socket}")
    return Check("daemon", OK, f"serving unix://{socket} (socket 0600, yours)")


def _config(paths: Paths) -> Check:
    try:
        cfg = load_config(paths)
    except ParheliaError as exc:
        return Check("config", FAIL, exc.message, "fix the key named above, then "
                     "`parhelia daemon stop` so the next command restarts the daemon")
    files = ", ".join(cfg.files) or f"defaults only ({paths.config_file} does not exist)"
    return Check("config", OK, f"valid: {files}")


def _agent(config: Config, env: dict[str, str]) -> Check:
    command = config.agent.command
    program = shutil.which(command[0], path=env.get("PATH"))
    if program is None:
        where = config.files[0] if config.files else "config.toml"
        return Check("agent", FAIL,
                     f"agent command {command[0]!r} not found on the daemon's PATH",
                     f"{INSTALL_CLAUDE}, or set agent.command in {where}")
    try:
        proc = subprocess.run([program, *command[1:], "--version"], capture_output=True,
                              text=True, timeout=20, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("agent", FAIL, f"{program} --version failed: {type(exc).__name__}",
                     f"reinstall: {INSTALL_CLAUDE}")
    version = (proc.stdout or proc.stderr).strip().splitlines()
    if proc.returncode != 0 or not version:
        return Check("agent", FAIL, f"{program} --version exited {proc.returncode}",
                     f"reinstall: {INSTALL_CLAUDE}")
    return Check("agent", OK, f"{program}: {version[0][:120]}")


def _credentials(env: dict[str, str], env_path: Path) -> Check:
    try:
        source = envfile.credential(env_path, env)
    except ParheliaError as exc:
        return Check("credentials", FAIL, exc.message, "fix the env file's ownership or mode")
    if source is None:
        return Check("credentials", FAIL, "none of " + ", ".join(CREDENTIAL_VARS) + " is set "
                     "for the daemon; every task would fail with E400",
                     "`parhelia auth set` (stored in " + str(env_path) + ", no restart "
                     "needed), or export ANTHROPIC_API_KEY=... (or CLAUDE_CODE_OAUTH_TOKEN "
                     "from `claude setup-token`) and `parhelia daemon stop` so the daemon "
                     "restarts with it")
    where = "the daemon's environment" if source.origin == envfile.ENVIRONMENT else str(env_path)
    return Check("credentials", OK, f"{source.name} from {where} (value not shown)")


def _local_sandbox(config: Config, env: dict[str, str], paths: Paths) -> Check:
    """Whether a local worker can contain its agent here: the same container a worker
    would make (hiding this daemon's directories), run once with ``true``."""
    mode = config.sandbox.local
    if mode == sandbox.MODE_OFF:
        return Check("local sandbox", WARN, "off (sandbox.local = \"off\"): local agents run "
                     "as you, with your home, keys and the model credential in reach",
                     "set sandbox.local = \"auto\" (the default) in the config file")
    with tempfile.TemporaryDirectory(prefix="parhelia-doctor-") as tmp:
        workspace, config_dir = Path(tmp) / "workspace", Path(tmp) / "claude"
        workspace.mkdir()
        config_dir.mkdir()
        hide = [str(d) for d in (paths.home, Path(env.get("HOME") or Path.home()),
                                 paths.config_file.parent, paths.state_dir, paths.data_dir)
                if d is not None]
        planned = container.plan(sandbox.SandboxSpec(mode=mode, hide=hide),
                                 workspace=workspace, writable=[config_dir],
                                 command=["true"], environ=env)
        why = planned if isinstance(planned, str) else container.probe(planned)
    if why is None and not isinstance(planned, str):
        return Check("local sandbox", OK, f"local agents run contained ({planned.bwrap}); "
                     "the model credential stays with the worker (the agent sees a "
                     "placeholder)")
    why = why or "no container"
    fix = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or allow "
           "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)")
    if mode == sandbox.MODE_REQUIRED:
        return Check("local sandbox", FAIL, f"{why}: every local task fails (E609: "
                     "sandbox.local = \"required\")", fix)
    return Check("local sandbox", WARN, f"{why}: local agents run uncontained, with your "
                 "home and the model credential in reach (each task says so)", fix)


def _disk(paths: Paths) -> Check:
    target = paths.volume_dir
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    gib = free / (1 << 30)
    if free < MIN_FREE_BYTES:
        return Check("disk", FAIL, f"{gib:.1f} GiB free for the volume at {target}",
                     "free space, or `parhelia checkpoint gc` to drop old checkpoints")
    if free < LOW_FREE_BYTES:
        return Check("disk", WARN, f"only {gib:.1f} GiB free for the volume at {target}",
                     "checkpoints of large workspaces need room; consider freeing space")
    return Check("disk", OK, f"{gib:.1f} GiB free for the volume at {target}")


def _git() -> Check:
    if shutil.which("git") is None:
        return Check("git", WARN, "git not found: workspaces upload without git awareness "
                     "and `task pull` cannot make branches", "install git")
    return Check("git", OK, shutil.which("git") or "git")



def credential_in_force(backend: str, latest: ContainerRow | None) -> Check | None:
    """Where the model credential was at the backend's last launch (None before the first
    one): the decision the container (and `task show`) recorded."""
    if latest is None:
        return None
    said = sandbox.describe(latest.isolation, latest.credential)
    detail = f"in force at the last {backend} launch (container {latest.id}, task " \
             f"{latest.task_id}): {said}"
    if latest.credential in sandbox.CREDENTIAL_OUTSIDE:
        return Check(f"{backend} credential", OK, detail)
    return Check(f"{backend} credential", WARN, detail, "see the checks above: what keeps "
                 "the credential out of the agent's reach")
