"""The fake Modal "service": state on disk under ``$FAKE_MODAL_ROOT``.

Disk state (not memory) so that it outlives a daemon killed with SIGKILL, exactly as
Modal's service does. Layout::

    apps/<name>.json                 {"app_id": ...}
    volumes/<name>.json              {"version": 2}
    volumes/<name>/                  the volume's committed contents (what clients read)
    secrets/<name>.json              {KEY: value}  (tests create them)
    images/<digest>                  a built image recipe
    snapshots/<image id>.json        a sandbox filesystem snapshot (ttl, image env)
    snapshots/<image id>/            its files (the sandbox's root, mounts left out)
    sandboxes/<sb_id>/meta.json      id, name, app_id, tags, cmd, resources, mounts...
    sandboxes/<sb_id>/state.json     {"pid", "returncode", "finished_at"} (supervisor)
    sandboxes/<sb_id>/root/          the sandbox's own filesystem (vol/, workspace/, root/, bin/)
    sandboxes/<sb_id>/execs/<pid>    exec'd processes, killed when the sandbox ends
    names/<app_id>/<name>            sandbox id, for name uniqueness (O_EXCL)
    switches/<name>                  fault switches, read at every call
    calls.log                        one line per SDK call (name), for tests and benches
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

SWITCHES = ("unreachable", "hang", "no_capacity", "name_clash", "auth", "latency", "inert",
            "terminate_fails")

# Paths a Modal sandbox has that a local process must not touch: mapped per sandbox.
MAPPED_PREFIXES = ("/vol", "/workspace", "/root", "/cache")


def root() -> Path:
    value = os.environ.get("FAKE_MODAL_ROOT")
    if not value:
        raise RuntimeError("the fake modal SDK needs FAKE_MODAL_ROOT")
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:22]}"


def switch_on(name: str) -> bool:
    return (root() / "switches" / name).exists()


def switch_value(name: str) -> str | None:
    try:
        return (root() / "switches" / name).read_text().strip()
    except FileNotFoundError:
        return None


def set_switch(name: str, on: bool, value: str = "") -> None:
    path = root() / "switches" / name
    if on:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def log_call(name: str) -> None:
    fd = os.open(root() / "calls.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (name + "\n").encode())
    finally:
        os.close(fd)


def calls() -> list[str]:
    try:
        return (root() / "calls.log").read_text().split()
    except FileNotFoundError:
        return []


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


# -- sandboxes --------------------------------------------------------------------------


def sandbox_dir(sb_id: str) -> Path:
    return root() / "sandboxes" / sb_id


def sandbox_meta(sb_id: str) -> dict[str, Any] | None:
    try:
        return read_json(sandbox_dir(sb_id) / "meta.json")
    except (FileNotFoundError, ValueError):
        return None


def sandbox_state(sb_id: str) -> dict[str, Any]:
    try:
        return read_json(sandbox_dir(sb_id) / "state.json")
    except (FileNotFoundError, ValueError):
        return {}


def all_sandboxes() -> list[str]:
    base = root() / "sandboxes"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def returncode(sb_id: str) -> int | None:
    state = sandbox_state(sb_id)
    code = state.get("returncode")
    if code is not None:
        return int(code)
    pid = state.get("pid")
    if pid is None:
        return None
    if not _alive(int(pid)):
        # The supervisor died without writing its end (it was SIGKILLed): report it as
        # terminated, once the state is re-read.
        time.sleep(0.05)
        code = sandbox_state(sb_id).get("returncode")
        return int(code) if code is not None else 137
    return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def map_path(sb_id: str, value: str) -> str:
    """A sandbox path (``/vol/x``) -> the local directory standing in for it."""
    for prefix in MAPPED_PREFIXES:
        if value == prefix or value.startswith(prefix + "/"):
            return str(sandbox_dir(sb_id) / "root" / prefix.lstrip("/")) + value[len(prefix):]
    return value


def map_argv(sb_id: str, argv: list[str]) -> list[str]:
    import sys

    out = [map_path(sb_id, a) for a in argv]
    if out and out[0] in ("python", "python3"):
        out[0] = sys.executable
    return out


# -- volumes -----------------------------------------------------------------------------


def volume_dir(name: str) -> Path:
    return root() / "volumes" / name


def copy_tree_missing(src: Path, dst: Path, *, overwrite_changed: bool,
                      skip: tuple[str, ...] = ()) -> int:
    """Copy files of ``src`` into ``dst``: those ``dst`` lacks, and (if asked) those whose
    size or mtime differ. Content-addressed blobs (``cas/``) are hard-linked when possible.
    ``skip``: top-level directories of ``src`` left out."""
    copied = 0
    if not src.is_dir():
        return 0
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if not d.startswith(".tmp-")
                       and not (Path(dirpath) == src and d in skip)]
        rel = Path(dirpath).relative_to(src)
        for name in filenames:
            if name.startswith(".tmp-"):
                continue
            s = Path(dirpath) / name
            d = dst / rel / name
            try:
                st = s.stat()
            except FileNotFoundError:
                continue
            if d.exists():
                if not overwrite_changed:
                    continue
                dt = d.stat()
                if dt.st_size == st.st_size and dt.st_mtime_ns == st.st_mtime_ns:
                    continue
            d.parent.mkdir(parents=True, exist_ok=True)
            tmp = d.with_name(f".tmp-{uuid.uuid4().hex}")
            if rel.parts[:1] == ("cas",) or not overwrite_changed:
                # Blobs are immutable; a fresh view links everything: every writer replaces
                # files (never writes through), or appends to a file of its own container.
                try:
                    os.link(s, tmp)
                except OSError:
                    shutil.copy2(s, tmp)
            else:
                shutil.copy2(s, tmp)
            os.replace(tmp, d)
            copied += 1
    return copied
