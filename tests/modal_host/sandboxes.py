"""Sandboxes as local processes, whichever fake of Modal asked for one.

A sandbox is a directory (``state.sandbox_dir``) holding what it was created with
(``meta.json``), what became of it (``state.json``, written by its supervisor) and its
own filesystem: ``/vol``, ``/workspace`` and ``/root`` are per-sandbox directories that
paths in its command, its workdir and the worker's spec are mapped to (the process runs
on this machine, not in a container). Its volumes' contents are copied in when it
starts and copied back only on ``sync`` or at its end, as a Modal v2 volume behaves.
Both the SDK-level fake and the gRPC stand-in create, start and end sandboxes here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.modal_host import state

REPO = Path(__file__).resolve().parents[2]
SANDBOX_MARKER = "FAKE_MODAL_SANDBOX"
"""In the environment of every process of a sandbox: the supervisor kills them by it."""
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SPEC_PATH_KEYS = ("volume_dir", "workspace_dir", "claude_config_dir")
_REAPER: list[subprocess.Popen[bytes]] = []
"""Supervisors started by this process: polled so they do not linger as zombies."""


class NameTaken(Exception):
    """A running sandbox of the app already has this name."""


@dataclass
class NewSandbox:
    """What a sandbox is created with (recorded in its ``meta.json``; never a secret)."""

    app_id: str
    cmd: list[str]
    timeout: int
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    gpu: str | None = None
    cpu: float | None = None
    memory: int | None = None
    workdir: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    image_env: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, Any] = field(default_factory=dict)
    unencrypted_ports: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    """Further facts a front end records (network access, outbound policy, mounts...)."""


def new_sandbox_id(v2: bool = False) -> str:
    """``sb-`` and 22 characters: modal 1.6.4 routes such ids to its V1 sandbox RPCs, and
    any other shape to the V2 ones (``_is_v1_sandbox_id``)."""
    sb_id = state.new_id("sb")
    return f"{sb_id}v2" if v2 else sb_id


def create(new: NewSandbox, secret_env: dict[str, str], *, start_now: bool = True,
           inert: bool = False, init_failure: str = "") -> str:
    """Record a new sandbox and (unless it waits for capacity) start its supervisor.
    ``secret_env`` reaches the sandbox's processes only, never a file. Raises NameTaken."""
    sb_id = new_sandbox_id(v2=bool(new.extra.get("v2")))
    if new.name is not None:
        _claim_name(new.app_id, new.name, sb_id)
    base = state.sandbox_dir(sb_id)
    (base / "execs").mkdir(parents=True, exist_ok=True)
    meta = {"id": sb_id, "name": new.name, "app_id": new.app_id, "tags": dict(new.tags),
            "cmd": list(new.cmd), "timeout": int(new.timeout), "gpu": new.gpu,
            "cpu": new.cpu, "memory": new.memory, "workdir": new.workdir,
            "env": dict(new.env), "secrets": len(secret_env), "image": new.image,
            "image_env": dict(new.image_env), "volumes": dict(new.volumes),
            "created_at": time.time(), "unencrypted_ports": list(new.unencrypted_ports),
            "inert": inert, "init_failure": init_failure, **new.extra}
    state.write_json(base / "meta.json", meta)
    if inert:  # benches: a sandbox that only exists, no process at all
        state.write_json(base / "state.json", {"inert": True, "child": 0})
    elif start_now:
        start(sb_id, secret_env)
    else:
        state.write_json(base / "state.json", {"pending": True})
    return sb_id


def _claim_name(app_id: str, name: str, sb_id: str) -> None:
    names = state.root() / "names" / app_id
    names.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(names / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        other = (names / name).read_text().strip()
        if other and state.returncode(other) is None:
            raise NameTaken(name) from None
        fd = os.open(names / name, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, sb_id.encode())
    os.close(fd)


def by_name(app_id: str, name: str) -> str | None:
    """The id of the sandbox last given ``name`` in the app (running or not)."""
    path = state.root() / "names" / app_id / name
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def sandbox_env(sb_id: str, secret_env: dict[str, str], image_env: dict[str, str],
                env: dict[str, str]) -> dict[str, str]:
    """A sandbox process's environment: nothing inherited from the creator (as on
    Modal), only the image's, the secrets' and ``env``."""
    base = state.sandbox_dir(sb_id) / "root"
    out = {"PATH": f"{base / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "HOME": str(base / "root"), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
           SANDBOX_MARKER: sb_id, "TMPDIR": state.sandbox_tmp(sb_id)}
    out.update(image_env)
    out.update(secret_env)
    out.update(env)
    return out


def start(sb_id: str, secret_env: dict[str, str]) -> None:
    """Start the sandbox's supervisor (another process, detached: as a container starts
    on Modal's side)."""
    meta = state.sandbox_meta(sb_id) or {}
    base = state.sandbox_dir(sb_id)
    env = sandbox_env(sb_id, secret_env, meta.get("image_env") or {}, meta.get("env") or {})
    env.update(PYTHONPATH=str(REPO), FAKE_MODAL_ROOT=str(state.root()))
    with open(base / "supervisor.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tests.modal_host.supervisor", sb_id],
                                env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, cwd=str(REPO))
    state.write_json(base / "state.json", {"pid": proc.pid})
    for old in list(_REAPER):
        if old.poll() is not None:
            _REAPER.remove(old)
    _REAPER.append(proc)


def terminate(sb_id: str) -> None:
    """``terminate()``: a running sandbox's supervisor gets SIGTERM (it ends the sandbox,
    TERMINATED, 137); one that never started (inert, or waiting for capacity) is marked
    so. No-op on an ended sandbox."""
    current = state.sandbox_state(sb_id)
    if current.get("returncode") is not None:
        return
    if current.get("inert") or current.get("pending"):
        state.write_json(state.sandbox_dir(sb_id) / "state.json",
                         {**current, "pending": False, "returncode": 137,
                          "status": state.TERMINATED, "finished_at": time.time()})
    elif current.get("pid"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(current["pid"]), signal.SIGTERM)


def scheduled(sb_id: str) -> bool:
    """Whether the sandbox's container has started (its command runs: execs may run)."""
    return bool(state.sandbox_state(sb_id).get("child")) and state.returncode(sb_id) is None


def record_exec(sb_id: str, pid: int) -> None:
    (state.sandbox_dir(sb_id) / "execs" / str(pid)).touch()


def tunnel_port(sb_id: str, port: int) -> int | None:
    """The local port standing for the sandbox's ``port`` (its sshd's, once it listens)."""
    where = state.sandbox_dir(sb_id) / "tunnels" / str(port)
    try:
        return int(where.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _rewrite_specs(sb_id: str, view: Path, argv: list[str]) -> None:
    """The worker's paths come from its spec (named in the sandbox's command): point them
    at this sandbox's directories."""
    named = {Path(state.map_path(sb_id, a)) for a in argv if a.endswith(".json")}
    for path in sorted(p for p in named if p.parent == view / "specs" and p.is_file()):
        try:
            spec = json.loads(path.read_text())
        except ValueError:
            continue
        for key in _SPEC_PATH_KEYS:
            if isinstance(spec.get(key), str):
                spec[key] = state.map_path(sb_id, spec[key])
        if isinstance(spec.get("volume_sync_argv"), list):
            spec["volume_sync_argv"] = [state.map_path(sb_id, a)
                                        for a in spec["volume_sync_argv"]]
        environment = spec.get("environment")
        if isinstance(environment, dict) and isinstance(environment.get("cache_root"), str):
            environment["cache_root"] = state.map_path(sb_id, environment["cache_root"])
        path.unlink()  # never write through a hard link into the service's copy
        path.write_text(json.dumps(spec))


def _shim(sb_id: str, module: str) -> str:
    return ("#!/bin/sh\n"
            f'PYTHONPATH="{REPO}" FAKE_MODAL_ROOT="{state.root()}" '
            f'exec "{sys.executable}" -m tests.modal_host.{module} "{sb_id}" "$@"\n')


def prepare_sandbox(sb_id: str) -> None:
    """The sandbox's filesystem, made by its supervisor as the container starts: the
    volumes' contents as of now (a ``sub_path`` mount only that directory), the files of
    its mounts, /root, /workspace, its own /tmp, and ``sync`` and ``sshd`` as the image
    has them."""
    base = state.sandbox_dir(sb_id)
    meta = state.sandbox_meta(sb_id) or {}
    if meta.get("image_root"):  # a snapshot: the filesystem it was taken of
        shutil.copytree(meta["image_root"], base / "root", symlinks=True, dirs_exist_ok=True)
    for sub in ("root/bin", "root/root", "root/workspace"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    tmp = Path(state.sandbox_tmp(sb_id))
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)
    for name, module in (("sync", "sync"), ("sshd", "sshd")):
        shim = base / "root" / "bin" / name
        shim.write_text(_shim(sb_id, module))
        shim.chmod(0o755)
    for item in meta.get("mount_files") or []:
        target = Path(state.map_path(sb_id, item["filename"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(item["blob"], target)
    for path, source, _ in state.volume_mounts(meta):
        view = Path(state.map_path(sb_id, path))
        source.mkdir(parents=True, exist_ok=True)
        view.mkdir(parents=True, exist_ok=True)
        state.copy_tree_missing(source, view, overwrite_changed=False)
        _rewrite_specs(sb_id, view, list(meta.get("cmd") or []))


def reload_volumes(sb_id: str) -> None:
    """``sb.reload_volumes()``: uploads made after the sandbox started become visible."""
    meta = state.sandbox_meta(sb_id) or {}
    for path, source, _ in state.volume_mounts(meta):
        state.copy_tree_missing(source, Path(state.map_path(sb_id, path)),
                                overwrite_changed=True)
