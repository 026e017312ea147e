"""One sandbox's life: ``python -m tests.modal_host.supervisor SB_ID`` (detached from its
creator, so a daemon or a stand-in killed meanwhile does not end it).

Prepares the sandbox's filesystem, runs its command as a real local process, and ends it
the ways Modal does: the command's own exit (SUCCESS or FAILURE with its code), the
sandbox timeout (TIMEOUT, returncode 124), ``terminate()`` (SIGTERM to this process:
TERMINATED, 137), an end a test asked for through ``end.json`` (an OOM kill, an
eviction), or an init failure recorded at create (the command never starts). At the end
it kills everything of the sandbox (exec'd processes too), commits the sandbox's view of
each writable volume mount, and only then records the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.modal_host import state
from tests.modal_host.sandboxes import SANDBOX_MARKER, prepare_sandbox


def _kill_sandbox_processes(sb_id: str) -> None:
    me = os.getpid()
    marker = f"{SANDBOX_MARKER}={sb_id}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if marker in env:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(name), signal.SIGKILL)


def commit(sb_id: str, mount: str | None = None) -> int:
    """The sandbox's view of its writable volume mounts (or of the one at ``mount``) into
    the service: what ``sync /vol`` does for a v2 volume, and what the sandbox's end does."""
    meta = state.sandbox_meta(sb_id) or {}
    copied = 0
    for path, source, read_only in state.volume_mounts(meta):
        view = state.map_path(sb_id, path)
        if read_only or (mount is not None and view != state.map_path(sb_id, mount.rstrip("/"))):
            continue
        # specs/ are the fake's own rewrites of the daemon's (paths mapped for this
        # sandbox): a worker never writes one, so they never go back to the volume.
        copied += state.copy_tree_missing(Path(view), source, overwrite_changed=True,
                                          skip=("specs",))
    return copied


def _requested_end(base: Path) -> dict[str, Any] | None:
    try:
        return state.read_json(base / "end.json")  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return None


def main(sb_id: str) -> int:
    meta = state.sandbox_meta(sb_id)
    assert meta is not None
    base = state.sandbox_dir(sb_id)
    terminated = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal terminated
        terminated = True

    signal.signal(signal.SIGTERM, on_term)
    prepare_sandbox(sb_id)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("FAKE_MODAL_ROOT", None)
    argv = state.map_argv(sb_id, list(meta["cmd"]))
    cwd = state.map_path(sb_id, meta.get("workdir") or "/root")
    os.makedirs(cwd, exist_ok=True)
    child: subprocess.Popen[bytes] | None = None
    end: dict[str, Any]
    if meta.get("init_failure"):
        end = {"status": state.INIT_FAILURE, "exception": str(meta["init_failure"]),
               "exitcode": 0}
    else:
        with open(base / "output.log", "ab") as log:
            try:
                child = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            except OSError as exc:
                end = {"status": state.FAILURE, "exception": f"exec failed: {exc}",
                       "exitcode": 127}
    record: dict[str, Any] = {"pid": os.getpid(), "child": child.pid if child else None,
                              "started_at": time.time()}
    state.write_json(base / "state.json", record)
    deadline = time.monotonic() + float(meta["timeout"])
    while child is not None:
        rc = child.poll()
        if rc is not None:
            code = rc if rc >= 0 else 128 - rc
            end = {"status": state.SUCCESS if code == 0 else state.FAILURE, "exitcode": code}
            break
        if terminated:
            end = {"status": state.TERMINATED, "exitcode": 137}
            break
        if time.monotonic() >= deadline:
            end = {"status": state.TIMEOUT, "exitcode": 124}
            break
        if (asked := _requested_end(base)) is not None:
            end = asked
            break
        time.sleep(0.05)
    _kill_sandbox_processes(sb_id)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
    shutil.rmtree(state.sandbox_tmp(sb_id), ignore_errors=True)  # a container's /tmp goes
    commit(sb_id)
    record.update(returncode=int(end["exitcode"]), status=end["status"],
                  exception=end.get("exception", ""), finished_at=time.time())
    state.write_json(base / "state.json", record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
