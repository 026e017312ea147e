"""Environments on Modal, measured through the real daemon and CLI (the fake Modal SDK, whose
sandboxes run the real worker, and the scripted fake agent), in one run:

    uv run python bench/environments.py [--wheel-mb 40] [--registry-mbps 10]

The repository's setup installs a package with ``uv pip install`` from a package index
served on 127.0.0.1 (standing for PyPI, at ``--registry-mbps`` megabytes per second), its
``cache`` the uv cache kept on the repository's cache volume.

1. Setup time of the first task (empty cache: the wheel is downloaded) and of a second
   task on a new commit (no prepared filesystem for it, so setup runs again, with the
   cache the first one filled): goal, the second <= 30% of the first.
2. Image builds: ``env build`` builds the image once; the tasks build nothing.
3. Launch to first turn (the container's creation to the agent's first completed turn)
   of a task that starts from a prepared filesystem (warm: no setup sandbox) against one
   that sets up first (cold, the cache already warm), as a ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import socketserver
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_modal.fixture import FakeModal  # noqa: E402

from tests.helpers.daemon import reap, start_daemon  # noqa: E402
from tests.helpers.envproject import WHEEL_FILE, WHEEL_NAME, build_wheel, uv  # noqa: E402
from tests.helpers.gitrepo import git, init_repo  # noqa: E402
from tests.helpers.harness import Harness, fake_prompt, write_config  # noqa: E402


class Index(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def serve_index(wheel: bytes, mbps: float) -> tuple[Index, str]:
    """A PEP 503 simple index with one wheel, sent at ``mbps`` MB/s."""
    digest = hashlib.sha256(wheel).hexdigest()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        def _route(self, head: bool) -> None:
            if self.path.rstrip("/") in ("/simple", f"/simple/{WHEEL_NAME}"):
                body = (f'<a href="/files/{WHEEL_FILE}#sha256={digest}">{WHEEL_FILE}</a>'
                        ).encode()
                self._send(body, "text/html", head=head)
            elif self.path == f"/files/{WHEEL_FILE}":
                self._send(wheel, "application/octet-stream", throttle=True, head=head)
            else:
                self.send_error(404)

        def _send(self, body: bytes, kind: str, throttle: bool = False,
                  head: bool = False) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if head:
                return
            chunk = 256 << 10
            try:
                for i in range(0, len(body), chunk):
                    self.wfile.write(body[i:i + chunk])
                    if throttle:
                        time.sleep(chunk / (mbps * 1e6))
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up on this connection (uv retries or ranges)

    server = Index(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/simple/"


def _at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()


def measure(harness: Harness, task_id: str) -> dict[str, Any]:
    """The task's setup time and its launch-to-first-turn (from its events)."""
    events = harness.json("events", "list", "--task", task_id, "--limit", "10000")["events"]
    kinds = {e["type"]: e for e in events}
    setup = [e for e in events if e["type"] == "setup_completed"
             and (e["data"] or {}).get("phase") == "setup"]
    created = next(e for e in events if e["type"] == "container_created")
    turn = next(e for e in events if e["type"] == "agent_turn_completed")
    return {"setup_s": setup[0]["data"]["duration_ms"] / 1000 if setup else 0.0,
            "setup": "ran" if setup else ("skipped" if "setup_skipped" in kinds else "none"),
            "launch_to_first_turn_s": round(_at(turn) - _at(created), 2)}


def run_task(harness: Harness, repo: Path) -> str:
    prompt = fake_prompt({"write": "note.txt", "content": "x"}, {"turn": True})
    task_id = str(harness.json("task", "create", prompt, "--workspace", str(repo))["id"])
    task = harness.wait(task_id, timeout=600)
    assert task["status"] == "completed", task
    return task_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel-mb", type=float, default=40.0)
    parser.add_argument("--registry-mbps", type=float, default=10.0)
    args = parser.parse_args()
    wheel = build_wheel(payload_bytes=int(args.wheel_mb * (1 << 20)))
    server, index = serve_index(wheel, args.registry_mbps)
    with tempfile.TemporaryDirectory(prefix="parhelia-bench-env-") as tmp:
        work = Path(tmp)
        fake = FakeModal(work / "modal")
        os.environ["FAKE_MODAL_ROOT"] = str(fake.root)  # this process reads it too
        home = work / "home"
        write_config(home, orchestrator='default_backend = "modal"\n', heartbeat=1.5)
        repo = work / "repo"
        init_repo(repo, {"README.md": "bench\n", ".parhelia/environment.toml": (
            f'setup = ["{uv()} pip install --index-url {index} --target .deps {WHEEL_NAME}"]\n'
            'cache = ["~/.cache/uv"]\n')})
        daemon = start_daemon(home, ANTHROPIC_API_KEY="bench-key", **fake.env())
        harness = Harness(daemon)
        try:
            started = time.monotonic()
            harness.run("env", "build", str(repo), check=True, timeout=600)
            build_s = time.monotonic() - started
            builds = len(fake.sdk.built_images())
            first = measure(harness, run_task(harness, repo))        # empty cache
            (repo / "README.md").write_text("bench, a new commit\n")
            git(repo, "commit", "-qam", "a new commit")
            second = measure(harness, run_task(harness, repo))       # same cache, new commit
            warm = measure(harness, run_task(harness, repo))         # the second's snapshot
            task_builds = len(fake.sdk.built_images()) - builds
        finally:
            daemon.stop()
            reap(home)
            server.shutdown()
            fake.stop_all()
    ratio = second["setup_s"] / first["setup_s"] if first["setup_s"] else float("nan")
    warm_ratio = warm["launch_to_first_turn_s"] / second["launch_to_first_turn_s"]
    report = {
        "wheel_mb": args.wheel_mb, "registry_mbps": args.registry_mbps,
        "env_build_s": round(build_s, 2), "images_built_by_env_build": builds,
        "first_task": first, "second_task_new_commit": second, "third_task_warm": warm,
        "images_built_by_the_tasks": task_builds,
        "setup_second_over_first": round(ratio, 3),
        "warm_over_cold_launch_to_first_turn": round(warm_ratio, 3),
    }
    print(json.dumps(report, indent=2))
    print(f"\nsetup with the cache: {second['setup_s']:.2f} s vs {first['setup_s']:.2f} s "
          f"without = {ratio:.0%} (goal <= 30%: {'met' if ratio <= 0.30 else 'NOT met'})")
    print(f"images built by the 3 tasks: {task_builds} (goal 0: "
          f"{'met' if task_builds == 0 else 'NOT met'})")
    print(f"launch to first turn, warm {warm['launch_to_first_turn_s']:.2f} s vs cold "
          f"{second['launch_to_first_turn_s']:.2f} s = {warm_ratio:.0%}")
    return 0 if ratio <= 0.30 and task_builds == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
