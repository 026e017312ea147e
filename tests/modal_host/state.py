"""The state of the local Modal "service", on disk under ``$FAKE_MODAL_ROOT``.

Shared by both fakes of Modal (the SDK-level fake in ``tests/fake_modal`` and the gRPC
stand-in in ``tests/modal_standin``): whichever front end created a sandbox, the same
supervisor runs it and the same files say what became of it. Disk state (not memory) so
that it outlives a daemon killed with SIGKILL, exactly as Modal's service does. Layout::

    apps/<name>.json                 {"app_id": ...}
    volumes/<name>.json              {"version": 2}
    volumes/<name>/                  the volume's committed contents (what clients read)
    secrets/<name>.json              {KEY: value}  (tests create them)
    images/<digest>                  a built image recipe
    snapshots/<image id>.json        a sandbox filesystem snapshot (ttl, image env)
    snapshots/<image id>/            its files (the sandbox's root, mounts left out)
    sandboxes/<sb_id>/meta.json      id, name, app_id, tags, cmd, resources, mounts...
    sandboxes/<sb_id>/state.json     {"pid", "child", "returncode", "status", "exception",
                                      "finished_at"} (supervisor)
    sandboxes/<sb_id>/end.json       an end state the test asked for (OOM kill, eviction)
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
TMP = "/tmp"
"""A sandbox's own /tmp is a short directory of the host's (a Unix socket's path has about
100 bytes, and the sandbox's directory can be deep): ``sandbox_tmp``."""


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


def set_switch(name: str, on: bool, value: str = "", base: Path | None = None) -> None:
    """Turn a switch on (with ``value``) or off, in ``base`` (default: the service's root)."""
    path = (base or root()) / "switches" / name
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


# Modal's end states: the names of ``modal_proto.api_pb2.GenericResult.GenericStatus``
# without their ``GENERIC_STATUS_`` prefix (the stand-in sends them as they are).
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
TERMINATED = "TERMINATED"
TIMEOUT = "TIMEOUT"
INIT_FAILURE = "INIT_FAILURE"
INTERNAL_FAILURE = "INTERNAL_FAILURE"
KERNEL_OOM_KILL = "KERNEL_OOM_KILL"
MEMORY_MANAGER_EVICTION = "MEMORY_MANAGER_EVICTION"


def result(sb_id: str) -> dict[str, Any] | None:
    """What Modal says of an ended sandbox: ``{"status", "exitcode", "exception"}``, where
    ``exitcode`` is what the SDK's ``returncode`` shows (124 for a timeout, 137 for a
    terminate, the server's exit code otherwise); None while it has not ended."""
    code = returncode(sb_id)
    if code is None:
        return None
    state = sandbox_state(sb_id)
    status = state.get("status") or (TERMINATED if code == 137 else
                                     SUCCESS if code == 0 else FAILURE)
    return {"status": status, "exitcode": code, "exception": state.get("exception") or ""}


def request_end(sb_id: str, status: str, exception: str, exitcode: int) -> None:
    """Ask the sandbox's supervisor to end it the way Modal would (an OOM kill, an
    eviction): it kills everything of the sandbox and records this end."""
    write_json(sandbox_dir(sb_id) / "end.json",
               {"status": status, "exception": exception, "exitcode": exitcode})


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def sandbox_tmp(sb_id: str) -> str:
    """The host directory standing for the sandbox's /tmp (its own, as on Modal: a shared
    /tmp of the host would let one sandbox's leftovers reach another)."""
    import hashlib

    return f"{TMP}/mh-{hashlib.sha256(sb_id.encode()).hexdigest()[:12]}"


def map_path(sb_id: str, value: str) -> str:
    """A sandbox path (``/vol/x``) -> the local directory standing in for it."""
    for prefix in MAPPED_PREFIXES:
        if value == prefix or value.startswith(prefix + "/"):
            return str(sandbox_dir(sb_id) / "root" / prefix.lstrip("/")) + value[len(prefix):]
    if (value == TMP or value.startswith(TMP + "/")) and \
            not value.startswith(str(root()) + "/") and not value.startswith(sandbox_tmp(sb_id)):
        return sandbox_tmp(sb_id) + value[len(TMP):]
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


def volume_mounts(meta: dict[str, Any]) -> list[tuple[str, Path, bool]]:
    """A sandbox's volume mounts as ``(mount path, the committed directory it shows,
    read only)``. ``meta["volumes"]`` maps a path to a volume name, or to ``{"volume",
    "sub_path", "read_only"}``: a ``sub_path`` mounts only that directory of the volume
    (created when missing, as Modal does)."""
    out = []
    for path, spec in (meta.get("volumes") or {}).items():
        if isinstance(spec, str):
            spec = {"volume": spec}
        source = volume_dir(spec["volume"])
        sub = str(spec.get("sub_path") or "").strip("/")
        if sub:
            if any(part in ("", ".", "..") for part in sub.split("/")):
                raise ValueError(f"invalid sub_path {sub!r}")
            source = source / sub
        out.append((path, source, bool(spec.get("read_only"))))
    return out


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
