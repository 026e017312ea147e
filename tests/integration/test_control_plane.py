"""The control plane end to end: health walks of a silent worker, the reconciler's lost,
orphaned and foreign containers, cleanup, the status exit code, container commands and
event replay. A real daemon, the real CLI, real worker processes, the fake agent."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers.harness import Harness, fake_prompt
from tests.helpers.waiting import wait_for

FAST_TURN_CHECKPOINTS = "[checkpoint]\nmin_turn_interval_seconds = 0\n"




def containers(h: Harness, *args: str) -> list[dict[str, Any]]:
    return list(h.json("container", "list", *args)["containers"])


def turn_checkpointed(h: Harness, task_id: str) -> bool:
    """A checkpoint holding the conversation exists (so a resume can continue it)."""
    return any((e["data"] or {}).get("trigger") == "turn"
               for e in h.events("--task", task_id, "--type", "checkpoint_created"))


def worker_pid(container: dict[str, Any]) -> int:
    return int(container["backend_id"].split("@")[0])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextlib.contextmanager
def fake_worker(owner: str, container_id: str) -> Iterator[subprocess.Popen[bytes]]:
    """A process that looks like a local worker (``modal_worker run`` in its argv) carrying
    ``owner`` as its owner tag; killed at the end whatever happened."""
    env = {**os.environ, "PARHELIA_OWNER": owner, "PARHELIA_CONTAINER_ID": container_id}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                             "modal_worker", "run", "/nonexistent/spec.json"], env=env,
                            start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: "modal_worker" in " ".join(psutil.Process(proc.pid).cmdline()),
                 timeout=10, what="the fake worker to exec")
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def instance_id(h: Harness) -> str:
    proc = h.run("status", "--json")
    import json

    return str(json.loads(proc.stdout)["instance_id"])


def test_silent_worker_walks_the_health_states_and_is_recovered(
        harness_factory: Any) -> None:
    h = harness_factory(FAST_TURN_CHECKPOINTS)
    task_id = h.create(fake_prompt({"write": "a.txt", "content": "1"}, {"turn": True}, {"sleep": 5},
                                   {"turn": True}))
    first = wait_for(lambda: next((c for c in containers(h, "--task", task_id)
                                   if c["health"] == "healthy"), None),
                     timeout=30, what="a healthy worker")
    wait_for(lambda: turn_checkpointed(h, task_id), timeout=30, what="a turn checkpoint")
    pid = worker_pid(first)
    os.killpg(pid, signal.SIGSTOP)  # the worker (and its heartbeat thread) goes silent
    assert h.task(task_id)["status"] == "running", "the task ended before the test stalled it"
    try:
        task = h.wait(task_id, timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)
    assert task["status"] == "completed", task
    assert task["restarts"] == 1
    walk = [(e["data"] or {}).get("to") for e in
            h.events("--container", first["id"], "--type", "health_changed")]
    assert walk[0] == "healthy"
    stalled = walk[walk.index("degraded"):]
    assert stalled.index("degraded") < stalled.index("unhealthy") < stalled.index("dead")
    shown = h.json("container", "show", first["id"])
    assert shown["state"] == "lost" and shown["health"] == "dead"
    assert shown["consecutive_failures"] >= 5
    assert "health dead" in shown["reason"]
    assert gone(pid), "the dead worker was not killed"
    # The resumed incarnation is healthy and finished; it counts nothing missed.
    later = [c for c in containers(h, "--task", task_id) if c["id"] != first["id"]]
    assert later and all(c["state"] == "exited" for c in later)
    # The timeline tells the story in order.
    replay = h.run("events", "replay", first["id"], "--from-start", check=True).stdout
    assert replay.index("healthy -> degraded") < replay.index("unhealthy -> dead") < \
        replay.index("container_lost")


def test_worker_killed_behind_the_daemons_back_is_found_lost(harness_factory: Any) -> None:
    h = harness_factory(FAST_TURN_CHECKPOINTS)
    task_id = h.create(fake_prompt({"write": "a.txt", "content": "1"}, {"turn": True}, {"sleep": 5},
                                   {"turn": True}))
    first = wait_for(lambda: next((c for c in containers(h, "--task", task_id)
                                   if c["state"] == "running"), None),
                     timeout=30, what="a running worker")
    wait_for(lambda: turn_checkpointed(h, task_id), timeout=30, what="a turn checkpoint")
    # Kill the daemon, then the worker while nobody watches; the next reconcile (the one
    # at start) must find it lost and hand its task to recovery.
    assert h.task(task_id)["status"] == "running", "the task ended before the test killed it"
    h.daemon.kill()
    pid = worker_pid(first)
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), timeout=10, what="the worker to die")
    h.daemon.start()
    status = h.json("reconciler", "status")
    lost = [f for f in status["last_run"]["findings"] if f["kind"] == "lost"]
    assert [f["container_id"] for f in lost] == [first["id"]], status
    assert "gone" in lost[0]["detail"] and "resumes" in lost[0]["action"]
    task = h.wait(task_id, timeout=60)
    assert task["status"] == "completed" and task["restarts"] == 1
    assert h.json("container", "show", first["id"])["state"] == "lost"
    # Everything agrees now: a manual run finds nothing.
    again = h.json("reconciler", "run")
    assert again["findings"] is None or again["findings"] == []


def test_orphans_are_reported_left_alone_and_cleaned_up(harness_factory: Any) -> None:
    h = harness_factory()
    owner = instance_id(h)
    with fake_worker(owner, "c-0123456789ab") as orphan, \
            fake_worker("phd-someoneelse1", "c-ba9876543210") as foreign:
        report = h.json("reconciler", "run")
        findings = report["findings"] or []
        assert [(f["kind"], f["container_id"]) for f in findings] == \
            [("orphaned", "c-0123456789ab")], findings
        assert "cleanup --terminate" in findings[0]["action"]
        time.sleep(0.5)
        assert orphan.poll() is None and foreign.poll() is None  # both left alone

        # Reported once as an event, listed with its age, counted by status (exit 1).
        h.json("reconciler", "run")
        orphaned = h.events("--type", "container_orphaned")
        assert len(orphaned) == 1 and orphaned[0]["container_id"] == "c-0123456789ab"
        listed = containers(h, "--state", "orphaned")
        assert [c["id"] for c in listed] == ["c-0123456789ab"]
        st = h.run("status")
        assert st.returncode == 1 and "orphaned" in st.stdout, st.stdout
        dry = h.json("cleanup", "--dry-run")
        assert dry["dry_run"] is True
        assert [(o["container"]["id"], o["terminated"]) for o in dry["orphans"]] == \
            [("c-0123456789ab", False)]
        assert dry["orphans"][0]["age_seconds"] > 0
        assert orphan.poll() is None

        ended = h.run("cleanup", "--terminate", "-y", check=True).stdout
        assert "Terminated 1 of 1" in ended
        orphan.wait(15)
        assert foreign.poll() is None, "a process with another owner tag was touched"
        assert h.run("status").returncode == 0
        assert h.json("cleanup")["orphans"] in (None, [])
        assert h.events("--type", "container_terminated")[-1]["container_id"] == \
            "c-0123456789ab"


def test_auto_terminate_orphans_never_touches_other_owners(harness_factory: Any,
                                                          parhelia_home: Path) -> None:
    h = harness_factory("[reconciler]\nauto_terminate_orphans = true\n")
    owner = instance_id(h)
    with fake_worker(owner, "") as orphan, fake_worker("phd-someoneelse2", "c-1") as foreign:
        report = h.json("reconciler", "run")
        assert [f["kind"] for f in report["findings"]] == ["orphaned"]
        assert "terminated" in report["findings"][0]["action"]
        orphan.wait(15)
        h.json("reconciler", "run")
        time.sleep(0.3)
        assert foreign.poll() is None, "a process with another owner tag was touched"


def test_container_commands_and_bad_filters(harness: Harness) -> None:
    task_id = harness.create(fake_prompt({"sleep": 30}))
    c = wait_for(lambda: next((c for c in containers(harness, "--task", task_id)
                               if c["health"] == "healthy"), None),
                 timeout=30, what="a healthy worker")
    shown = harness.json("container", "show", c["id"][:6])
    assert shown["id"] == c["id"]
    assert shown["recent_heartbeats"], "no heartbeats recorded"
    assert [x["id"] for x in containers(harness, "--health", "healthy")] == [c["id"]]
    assert containers(harness, "--state", "exited") == []
    summary = harness.json("container", "health")
    assert summary["by_health"]["healthy"] == 1
    assert "Live containers: 1 healthy" in harness.run("container", "health").stdout

    watcher = subprocess.Popen([*harness_cli(harness), "container", "watch", "--json"],
                               env=harness.daemon.env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # subscribed
        # Without a terminal the confirmation cannot be asked: E102, nothing happens.
        refused = harness.run("container", "terminate", c["id"])
        assert refused.returncode == 2 and "E102" in refused.stderr
        done = harness.json("container", "terminate", c["id"], "-y")
        assert done["state"] == "terminated"
        line = watcher.stdout.readline() if watcher.stdout else ""
        assert '"container_terminated"' in line and c["id"] in line
    finally:
        watcher.terminate()
        watcher.wait(10)
    assert gone(worker_pid(c))
    # Its task resumes in a new container (the user cancels the task to stop it).
    wait_for(lambda: any(x["id"] != c["id"] for x in containers(harness, "--task", task_id)),
             timeout=30, what="a new incarnation")
    harness.run("task", "cancel", task_id, check=True)

    events = harness.json("container", "events", c["id"])["events"]
    assert events[-1]["type"] in ("container_terminated", "task_recovering", "worker_exited",
                                  "checkpoint_created", "agent_result")
    for args, needle in ((("container", "list", "--state", "bogus"), "bogus"),
                         (("container", "list", "--health", "sick"), "sick"),
                         (("events", "replay", c["id"], "--since", "yesterday"), "yesterday"),
                         (("events", "export", "x.jsonl", "--format", "xml"), "xml")):
        bad = harness.run(*args)
        assert bad.returncode == 2 and "E101" in bad.stderr and needle in bad.stderr, bad.stderr
    missing = harness.run("events", "replay", "c-000000000000")
    assert missing.returncode == 3 and "E203" in missing.stderr
    assert harness.run("container", "show", "c-ffffffffffff").returncode == 3


def harness_cli(h: Harness) -> list[str]:
    from tests.helpers.daemon import cli_argv

    return cli_argv()


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_export_writes_every_matching_event(harness: Harness, tmp_path: Path,
                                            fmt: str) -> None:
    import json

    out = tmp_path / f"events.{fmt}"
    everything = harness.events()
    result = harness.json("events", "export", str(out), "--format", fmt)
    assert result["events"] == len(everything) and out.exists()
    assert not Path(f"{out}.partial").exists()
    text = out.read_text()
    rows = json.loads(text)["events"] if fmt == "json" else \
        [json.loads(x) for x in text.splitlines()]
    assert [r["id"] for r in rows] == [e["id"] for e in everything]
    again = harness.run("events", "export", str(out), "--type", "daemon_started")
    assert again.returncode != 0 and "E101" in again.stderr and "--force" in again.stderr
    assert out.read_text() == text  # refused: not replaced
    only = harness.json("events", "export", str(out), "--type", "daemon_started", "--force")
    assert only["events"] == 1


def test_export_never_replaces_a_fifo_symlink_or_device(harness: Harness,
                                                        tmp_path: Path) -> None:
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    harness.run("events", "export", str(fifo), check=True)
    reader.join(30)
    assert b'"daemon_started"' in got[0] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    harness.run("events", "export", "/dev/null", check=True)
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    target = tmp_path / "target.txt"
    target.write_text("keep\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    refused = harness.run("events", "export", str(link), "--force")
    assert refused.returncode != 0 and "symbolic link" in refused.stderr
    assert link.is_symlink() and target.read_text() == "keep\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_export_to_a_bad_path_is_an_error_not_a_traceback(harness: Harness,
                                                          tmp_path: Path) -> None:
    """A symlink, a missing directory, a directory and an existing file: each an
    `Error E101` line and exit 2 (each was a Python traceback ending in the message)."""
    (tmp_path / "exists.jsonl").write_text("keep\n")
    (tmp_path / "link").symlink_to(tmp_path / "exists.jsonl")
    for target, words in ((tmp_path / "link", "symbolic link"),
                          (tmp_path / "no" / "such" / "dir.jsonl", "cannot be written"),
                          (tmp_path / "exists.jsonl", "--force")):
        out = harness.run("events", "export", str(target))
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr and "Error E101" in out.stderr
        assert words in out.stderr
    assert (tmp_path / "exists.jsonl").read_text() == "keep\n"
