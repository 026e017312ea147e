"""One fake sandbox: ``python -m modal._supervisor SB_ID`` (detached from its creator).

Runs the sandbox's command as a real local process, enforces the sandbox timeout
(returncode 124) and ``terminate()`` (SIGTERM to this process: returncode 137), and at
the end kills everything of the sandbox (exec'd processes too), commits the sandbox's
view of each mounted volume to the service, and only then records the returncode.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import _service


def _kill_sandbox_processes(sb_id: str) -> None:
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if f"FAKE_MODAL_SANDBOX={sb_id}".encode() in env:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(name), signal.SIGKILL)


def commit(sb_id: str, mount: str | None = None) -> int:
    meta = _service.sandbox_meta(sb_id) or {}
    copied = 0
    for path, volume in (meta.get("volumes") or {}).items():
        if mount is not None and _service.map_path(sb_id, path) != mount.rstrip("/"):
            continue
        view = _service.map_path(sb_id, path)
        # specs/ are the fake's own rewrites of the daemon's (paths mapped for this
        # sandbox): a worker never writes one, so they never go back to the volume.
        copied += _service.copy_tree_missing(Path(view), _service.volume_dir(volume),
                                             overwrite_changed=True, skip=("specs",))
    return copied


def main(sb_id: str) -> int:
    meta = _service.sandbox_meta(sb_id)
    assert meta is not None
    base = _service.sandbox_dir(sb_id)
    terminated = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal terminated
        terminated = True

    signal.signal(signal.SIGTERM, on_term)
    from . import prepare_sandbox

    prepare_sandbox(sb_id)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("FAKE_MODAL_ROOT", None)
    argv = _service.map_argv(sb_id, list(meta["cmd"]))
    cwd = _service.map_path(sb_id, meta.get("workdir") or "/root")
    os.makedirs(cwd, exist_ok=True)
    with open(base / "output.log", "ab") as log:
        try:
            child = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        except OSError:
            child = None
    state = {"pid": os.getpid(), "child": child.pid if child else None,
             "started_at": time.time()}
    _service.write_json(base / "state.json", state)
    deadline = time.monotonic() + float(meta["timeout"])
    code: int
    while True:
        if child is None:
            code = 127
            break
        rc = child.poll()
        if rc is not None:
            code = rc if rc >= 0 else 128 - rc
            break
        if terminated:
            code = 137
            break
        if time.monotonic() >= deadline:
            code = 124
            break
        time.sleep(0.05)
    _kill_sandbox_processes(sb_id)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
    commit(sb_id)
    state.update(returncode=code, finished_at=time.time())
    _service.write_json(base / "state.json", state)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
