"""The end-to-end scenarios, run on BOTH backends (one suite, parametrised): the real
daemon, the real CLI, real worker processes and the scripted fake agent; on ``modal``
the daemon's REAL modal SDK talks to the local stand-in of Modal's service
(tests/modal_standin), whose sandboxes run the real worker locally with ``/vol`` and
``/workspace`` mapped, and whose volume reaches the daemon's side only after ``sync`` or
the sandbox's end. Modal's trouble is injected as gRPC statuses and timings.

What a test checks goes through the daemon (its events, its database, its local copy of
the volume: diff, pull): nothing reads a backend's own directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.fake_modal.fixture import FakeModal
from tests.helpers import sandbox
from tests.helpers.gitrepo import git as run_git
from tests.helpers.gitrepo import init_repo
from tests.helpers.harness import Harness, fake_prompt
from tests.helpers.waiting import wait_for
from tests.modal_standin.fixture import StandIn


class Backend:
    """One backend under test: how to start a daemon on it, and how to reach a worker."""

    def __init__(self, name: str, factory: Callable[..., Harness],
                 fake: StandIn | None) -> None:
        self.name = name
        self._factory = factory
        self.fake = fake

    @property
    def heartbeat(self) -> float:
        """Modal's heartbeats reach the daemon through a tail exec over Modal's API: give
        them intervals that a loaded test machine can keep (local: the harness's 0.5 s)."""
        return 1.5 if self.fake is not None else 0.5

    def harness(self, extra_config: str = "") -> Harness:
        env = self.fake.env() if self.fake is not None else {}
        return self._factory(extra_config, f'default_backend = "{self.name}"\n',
                             heartbeat=self.heartbeat, **env)

    def worker_pid(self, harness: Harness, task_id: str) -> int:
        container = harness.task(task_id)["container_id"]
        if self.fake is not None:
            return self.fake.worker_pid(container)
        row = sqlite3.connect(harness.home / "state" / "parheliad.db").execute(
            "SELECT backend_id FROM containers WHERE id = ?", (container,)).fetchone()
        return int(row[0].split("@")[0])


    def stray(self, owner: str, container_id: str) -> Stray:
        """A worker this daemon does not know, tagged ``owner`` (an orphan when it is
        this daemon's own tag, another owner's otherwise)."""
        if self.fake is not None:
            sdk = self.fake.sdk
            sb = sdk.Sandbox.create("sleep", "120", app=sdk.App.lookup("parhelia"),
                                    name=container_id, tags={
                                        "parhelia-owner": owner,
                                        "parhelia-container": container_id})
            return Stray(lambda: sb.poll() is None, lambda: sb.terminate())
        env = {**os.environ, "PARHELIA_OWNER": owner, "PARHELIA_CONTAINER_ID": container_id}
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                                 "modal_worker", "run", "/nonexistent/spec.json"], env=env,
                                start_new_session=True, stdin=subprocess.DEVNULL)
        wait_for(lambda: "modal_worker" in " ".join(psutil.Process(proc.pid).cmdline()),
                 timeout=10, what="the stray worker to exec")

        def stop() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

        return Stray(lambda: proc.poll() is None, stop)


@dataclass
class Stray:
    alive: Callable[[], bool]
    stop: Callable[[], object]


MODAL_ONLY = pytest.mark.parametrize("backend", ["modal"], indirect=True)
"""A test of what only a remote backend has (a service to lose, a volume to copy to,
compute to estimate): run for Modal alone, rather than generated for local and skipped."""


@pytest.fixture(params=["local", "modal"])
def backend(request: pytest.FixtureRequest, harness_factory: Callable[..., Harness]) -> Backend:
    fake = request.getfixturevalue("modal_standin") if request.param == "modal" else None
    return Backend(request.param, harness_factory, fake)


def turn_checkpoints(harness: Harness, task_id: str) -> list[dict[str, Any]]:
    return [e for e in harness.events("--task", task_id, "--type", "checkpoint_created")
            if (e["data"] or {}).get("trigger") == "turn"]


def changed_files(harness: Harness, task_id: str) -> dict[str, str]:
    """The task's result as the daemon sees it (its local copy of the final checkpoint)."""
    patch = harness.run("task", "diff", task_id, check=True).stdout
    out: dict[str, str] = {}
    current = None
    for line in patch.splitlines():
        if line.startswith("+++ b/"):
            current = line[6:]
            out[current] = ""
        elif current and line.startswith("+") and not line.startswith("+++"):
            out[current] += line[1:] + "\n"
    return out


def test_sync_task_then_pull_as_a_branch(backend: Backend, tmp_path: Path) -> None:
    harness = backend.harness()
    repo = tmp_path / "repo"
    head = init_repo(repo, {"app.py": "print('v1')\n"})
    prompt = fake_prompt({"write": "app.py", "content": "print('v2')\n"},
                         {"write": "docs/new.md", "content": "# New\n"}, {"turn": True})
    proc = harness.run("task", "create", prompt, "--sync", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Done." in proc.stdout
    task_id = harness.json("task", "list")["tasks"][0]["id"]
    task = harness.task(task_id)
    assert task["status"] == "completed" and task["options"]["backend"] == backend.name
    diff = harness.run("task", "diff", task_id, check=True).stdout
    assert "-print('v1')" in diff and "+print('v2')" in diff and "+# New" in diff
    pull = harness.run("task", "pull", task_id, cwd=repo, check=True)
    assert f"parhelia/{task_id}" in pull.stdout
    assert run_git(repo, "rev-parse", "HEAD") == head
    assert run_git(repo, "show", f"parhelia/{task_id}:app.py") == "print('v2')"
    assert run_git(repo, "show", f"parhelia/{task_id}:docs/new.md") == "# New"
    logs = harness.run("task", "logs", task_id, "--raw", check=True).stdout
    assert '"type":"result"' in logs.replace(" ", "")  # the agent's stream came back too
    # How its agent was contained and where its credential was (ADR 0030, 0031): here
    # the daemon's own credential, so on Modal an ephemeral secret in the sandbox.
    shown = harness.run("task", "show", task_id, check=True).stdout
    expected = ("modal sandbox; model credential in the agent's environment"
                if backend.name == "modal" else
                "bubblewrap; model credential outside the sandbox" if sandbox.why_not() is None
                else "none; model credential in the agent's environment")
    assert expected in shown, shown


@pytest.mark.long
def test_sigkill_of_the_worker_resumes_with_the_conversation(backend: Backend) -> None:
    harness = backend.harness()
    prompt = fake_prompt({"write": "before.txt", "content": "written before the kill\n"},
                         {"turn": True}, {"sleep": 30},
                         {"write": "after.txt", "content": "written after the resume\n"},
                         {"turn": True})
    task_id = harness.create(prompt)
    wait_for(lambda: turn_checkpoints(harness, task_id), timeout=60, what="a turn checkpoint")
    session = harness.task(task_id)["session_id"]
    os.kill(backend.worker_pid(harness, task_id), signal.SIGKILL)
    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed", task
    assert task["restarts"] == 1 and task["session_id"] == session
    files = changed_files(harness, task_id)
    assert files["before.txt"] == "written before the kill\n"
    assert files["after.txt"] == "written after the resume\n"
    assert int(files[".fake_agent_resumed"]) >= 2  # the earlier conversation was given


def test_sigkill_of_the_daemon_then_catch_up_applies_every_record_once(
        backend: Backend) -> None:
    harness = backend.harness()
    prompt = fake_prompt({"write": "a.txt", "content": "1"}, {"turn": True}, {"sleep": 4},
                         {"write": "b.txt", "content": "2"}, {"turn": True})
    task_id = harness.create(prompt)
    wait_for(lambda: turn_checkpoints(harness, task_id), timeout=60, what="a turn checkpoint")
    pid = backend.worker_pid(harness, task_id)
    harness.daemon.kill()
    wait_for(lambda: not psutil.pid_exists(pid) or
             psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             timeout=60, what="the worker finishing without the daemon")
    harness.daemon.start()
    task = harness.wait(task_id, timeout=90)
    assert task["status"] == "completed" and task["restarts"] == 0
    _assert_sequence_complete(harness, task["container_id"])
    assert changed_files(harness, task_id)["b.txt"] == "2\n"


def test_daemon_stopped_for_a_long_stretch_while_the_worker_works_on(
        backend: Backend) -> None:
    harness = backend.harness()
    steps: list[dict[str, Any]] = []
    for i in range(6):
        steps += [{"write": f"f{i}.txt", "content": str(i)}, {"turn": True}, {"sleep": 1}]
    task_id = harness.create(fake_prompt(*steps))
    # the worker running, not only the task dispatched: a launch through the real SDK takes
    # a while, and a daemon stopped before it returns has launched nothing to work on
    wait_for(lambda: harness.events("--task", task_id, "--type", "worker_started"),
             timeout=60, what="the worker started")
    harness.daemon.stop()
    time.sleep(8)  # the worker works on, heartbeats and all, with nobody listening
    harness.daemon.start()
    task = harness.wait(task_id, timeout=90)
    assert task["status"] == "completed" and task["restarts"] == 0
    _assert_sequence_complete(harness, task["container_id"])
    files = changed_files(harness, task_id)
    assert all(files[f"f{i}.txt"] == f"{i}\n" for i in range(6))


def _assert_sequence_complete(harness: Harness, container: str) -> None:
    """Stored: every record of the container exactly once, seq 1..N (events or
    heartbeats), nothing twice, nothing missing."""
    db = sqlite3.connect(harness.home / "state" / "parheliad.db")
    seqs = [r[0] for r in db.execute(
        "SELECT container_seq FROM events WHERE container_id = ? AND container_seq > 0",
        (container,))]
    last = db.execute("SELECT last_seq FROM containers WHERE id = ?", (container,)).fetchone()[0]
    beats = db.execute("SELECT COUNT(*) FROM heartbeats WHERE container_id = ?",
                       (container,)).fetchone()[0]
    assert len(seqs) == len(set(seqs))
    assert last > 0 and len(seqs) + beats == last
    assert seqs and max(seqs) <= last


@MODAL_ONLY  # the local backend has no service to lose
def test_modal_unreachable_for_a_while_kills_nothing(backend: Backend) -> None:
    harness = backend.harness()
    steps = [{"write": "a.txt", "content": "a"}, {"turn": True}, {"sleep": 16},
             {"write": "b.txt", "content": "b"}, {"turn": True}]
    task_id = harness.create(fake_prompt(*steps))
    wait_for(lambda: turn_checkpoints(harness, task_id), timeout=60, what="a turn checkpoint")
    container = harness.task(task_id)["container_id"]
    outage = backend.fake.fail("*", "UNAVAILABLE", message="upstream connect error")
    try:
        wait_for(lambda: harness.json("container", "show", container)["health"]
                 == "unreachable", timeout=60, what="the container shown unreachable")
        time.sleep(6 * backend.heartbeat)  # more than the 5 missed beats that mean dead
        shown = harness.json("container", "show", container)
        assert shown["health"] == "unreachable" and shown["state"] == "running"
    finally:
        backend.fake.remove(outage)
    task = harness.wait(task_id, timeout=90)
    assert task["status"] == "completed" and task["restarts"] == 0, task
    types = [e["type"] for e in harness.events("--task", task_id)]
    assert "container_lost" not in types and "task_recovering" not in types
    assert changed_files(harness, task_id)["b.txt"] == "b\n"


@pytest.mark.long
@MODAL_ONLY  # the local backend shares the daemon's volume: there is no copy
def test_a_slow_checkpoint_copy_is_not_a_silent_worker(backend: Backend, tmp_path: Path) -> None:
    """Modal's volume answers slowly: copying a turn's checkpoint to the daemon takes
    longer than the five missed heartbeats that mean dead. The listener holds that
    batch back meanwhile, but the worker's heartbeats keep arriving on the live
    channel: nothing is buried, killed or relaunched, and the task completes."""
    harness = backend.harness()
    dead_after = 5.5 * backend.heartbeat  # floor(silence / interval - 0.5) >= 5
    gate = tmp_path / "gate"
    task_id = harness.create(fake_prompt(
        {"write": "a.txt", "content": "a"}, {"wait_file": str(gate)}, {"turn": True},
        {"sleep": 3 * dead_after}, {"write": "b.txt", "content": "b"}, {"turn": True}))

    def started() -> bool:
        """Healthy, and the start checkpoint copied (its batch is applied after the copy)."""
        events = harness.events("--task", task_id)
        return any(e["type"] == "health_changed" and (e["data"] or {}).get("to") == "healthy"
                   for e in events) and any(e["type"] == "checkpoint_created" and
                                            (e["data"] or {}).get("trigger") == "start"
                                            for e in events)

    wait_for(started, timeout=60, interval=0.5, what="the worker healthy, its start copied")
    # the next read of the volume, the turn's checkpoint, alone outlasts the silence that
    # means dead (slowing every read made this test take two and a half minutes)
    backend.fake.delay("VolumeGetFile2", round(dead_after + 4), times=1)
    gate.touch()
    wait_for(lambda: turn_checkpoints(harness, task_id), timeout=180, interval=1.0,
             what="the first turn's checkpoint, copied slowly")
    task = harness.wait(task_id, timeout=180)
    assert task["status"] == "completed" and task["restarts"] == 0, task
    events = harness.events("--task", task_id)
    types = [e["type"] for e in events]
    assert "container_lost" not in types and "task_recovering" not in types, types
    assert not [e for e in events if e["type"] == "health_changed"
                and (e["data"] or {}).get("to") == "dead"], \
        [(e["at"][11:22], e["type"], e["message"]) for e in events]
    assert changed_files(harness, task_id)["b.txt"] == "b\n"
    assert backend.fake.calls().count("delayed:VolumeGetFile2") == 1


def test_an_orphan_is_found_and_cleaned_and_another_owners_is_untouched(
        backend: Backend) -> None:
    harness = backend.harness()
    owner = harness.json("status")["instance_id"]
    orphan = backend.stray(owner, "c-0123456789ab")
    foreign = backend.stray("phd-someoneelse1", "c-ba9876543210")
    try:
        report = harness.json("reconciler", "run")
        assert [(f["kind"], f["container_id"]) for f in report["findings"] or []] == \
            [("orphaned", "c-0123456789ab")], report
        assert orphan.alive() and foreign.alive()  # reported, left alone
        dry = harness.json("cleanup", "--dry-run")
        assert [o["container"]["id"] for o in dry["orphans"]] == ["c-0123456789ab"]
        ended = harness.run("cleanup", "--terminate", "-y", check=True).stdout
        assert "Terminated 1 of 1" in ended
        wait_for(lambda: not orphan.alive(), timeout=30, what="the orphan to end")
        harness.json("reconciler", "run")
        time.sleep(0.5)
        assert foreign.alive(), "a worker with another owner tag was touched"
    finally:
        orphan.stop()
        foreign.stop()


def test_budget_pause_checkpoints_and_stops_then_a_raise_resumes(backend: Backend) -> None:
    harness = backend.harness("[budget]\naccrual_interval_seconds = 0.3\n")
    steps: list[dict[str, Any]] = [{"write": "start.txt", "content": "go\n"}, {"turn": True}]
    for i in range(14):
        # long enough that the stop (through Modal's API on the stand-in) lands before the
        # agent is done: a paused task whose agent finishes anyway completes (by design)
        steps += [{"bash": f"step {i}"}, {"turn": True}, {"sleep": 1.5}]
    task_id = harness.create(fake_prompt(*steps))
    wait_for(lambda: (t := harness.task(task_id))["status"] == "running"
             and (t["usage"] or {}).get("turns", 0) >= 2, timeout=60, what="two turns")
    used = harness.json("budget", "show")["used_micros"]
    harness.run("budget", "set", f"{(used + 2_500) / 1_000_000:.6f}", check=True)
    paused = wait_for(lambda: (t := harness.task(task_id))["status"] == "paused" and t,
                      timeout=60, what="the budget pause",
                      detail=lambda: json.dumps({"task": harness.task(task_id),
                                                 "budget": harness.json("budget", "show")}))
    first = paused["container_id"]
    wait_for(lambda: any(e["type"] in ("container_terminated", "container_exited")
                         for e in harness.events("--container", first)),
             timeout=60, what="the paused worker to stop")
    stops = [e for e in harness.events("--task", task_id, "--type", "checkpoint_created")
             if e["container_id"] == first and e["data"]["trigger"] == "stop"]
    assert stops and stops[-1]["data"]["message"] == "stopped: budget"
    harness.run("budget", "set", "1000", check=True)  # room for a sandbox's reservation too
    done = wait_for(lambda: (t := harness.task(task_id))["status"] == "completed" and t,
                    timeout=120, what="the resumed task to complete")
    assert done["container_id"] != first
    dispatched = harness.events("--task", task_id, "--type", "task_dispatched")
    assert [e["data"]["resume"] for e in dispatched] == [False, True]
    assert dispatched[-1]["data"]["checkpoint_id"] == stops[-1]["data"]["checkpoint_id"]


def _sleeping_modal_task(backend: Backend) -> tuple[Harness, str, str, str]:
    """A Modal task past its first turn checkpoint, then asleep for minutes: (harness,
    task id, container id, sandbox id)."""
    assert backend.fake is not None
    harness = backend.harness()
    task_id = harness.create(fake_prompt({"write": "a.txt", "content": "a"}, {"turn": True},
                                         {"sleep": 300}))
    wait_for(lambda: turn_checkpoints(harness, task_id), what="a turn checkpoint")
    container = harness.task(task_id)["container_id"]
    return harness, task_id, container, backend.fake.sandbox(container)["id"]


@MODAL_ONLY  # the local backend has no service to lose
def test_a_cancel_while_modal_is_unreachable_still_ends_the_sandbox(backend: Backend) -> None:
    """A cancel whose stop cannot reach Modal is retried until the sandbox ends: it does
    not run on (and bill) until its Modal timeout."""
    fake = backend.fake
    harness, task_id, _, sandbox_id = _sleeping_modal_task(backend)
    outage = fake.fail("*", "UNAVAILABLE")
    try:
        harness.run("task", "cancel", task_id, "--grace", "1", check=True)
        time.sleep(4)
        assert fake.service.returncode(sandbox_id) is None
    finally:
        fake.remove(outage)
    wait_for(lambda: fake.service.returncode(sandbox_id) is not None,
             timeout=60, what="the cancelled task's sandbox to end once Modal answers again")
    assert harness.task(task_id)["status"] == "cancelled"


@MODAL_ONLY  # the local backend has no service to lose
def test_a_stop_forgotten_by_a_killed_daemon_is_done_by_the_next_one(backend: Backend) -> None:
    """A cancel whose stop could not reach Modal is retried in the daemon's memory; the
    daemon is SIGKILLed meanwhile. The next daemon's reconciler finds the sandbox still
    running for a cancelled task and stops it (checkpoint first), instead of letting it
    run (and bill) until its Modal timeout."""
    fake = backend.fake
    harness, task_id, container, sandbox_id = _sleeping_modal_task(backend)
    outage = fake.fail("*", "UNAVAILABLE")
    try:
        harness.run("task", "cancel", task_id, "--grace", "1", check=True)
        time.sleep(3)  # the stop is being retried, in memory only
        harness.daemon.kill()
    finally:
        fake.remove(outage)
    time.sleep(1)
    assert fake.service.returncode(sandbox_id) is None, "nothing should have stopped it yet"
    harness.daemon.start()
    wait_for(lambda: fake.service.returncode(sandbox_id) is not None, 60,
             "the next daemon to stop the cancelled task's sandbox")
    assert harness.task(task_id)["status"] == "cancelled"
    drift = harness.events("--container", container, "--type", "state_drift")
    assert any("still running while its task is cancelled" in e["message"] for e in drift)
    stops = [e for e in harness.events("--container", container, "--type",
                                       "checkpoint_created") if e["data"]["trigger"] == "stop"]
    assert stops and stops[-1]["data"]["message"] == "stopped: cancel"
    wait_for(lambda: harness.json("container", "show", container)["state"] in
             ("terminated", "exited"), 30, "the container settled")


@pytest.mark.long
@MODAL_ONLY  # the local backend's terminate is a signal: it cannot be refused
def test_a_dead_worker_whose_sandbox_refuses_to_terminate_is_never_doubled(
        backend: Backend) -> None:
    """Health buries a silent worker but Modal's terminate fails (INTERNAL, after the
    SDK's own retries): the stop is retried until the sandbox ends, and the task gets no
    second sandbox while the first still runs; once the first can be terminated the task
    resumes in a new one and completes."""
    fake = backend.fake
    harness = backend.harness()
    task_id = harness.create(fake_prompt({"write": "a.txt", "content": "a"}, {"turn": True},
                                         {"sleep": 6}, {"write": "b.txt", "content": "b"},
                                         {"turn": True}))
    wait_for(lambda: turn_checkpoints(harness, task_id), what="a turn checkpoint")
    first = harness.task(task_id)["container_id"]

    def running() -> list[str]:
        return [s["name"] for s in fake.sandboxes()
                if s["tags"].get("parhelia-task") == task_id and s["returncode"] is None]

    refusal = fake.fail("SandboxTerminate*", "INTERNAL", message="terminate failed")
    try:
        os.kill(fake.worker_pid(first), signal.SIGSTOP)  # silent: health walks it to dead
        wait_for(lambda: harness.events("--task", task_id, "--type",
                                        "container_still_running"), 90,
                 "recovery to wait for the sandbox it could not terminate")
        time.sleep(6)  # more than one retry of the terminate
        assert running() == [first]
        assert harness.task(task_id)["status"] == "recovering"
    finally:
        fake.remove(refusal)
    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed" and task["restarts"] == 1, task
    assert task["container_id"] != first
    sandboxes = sorted((s for s in fake.sandboxes()
                        if s["tags"].get("parhelia-task") == task_id),
                       key=lambda s: s["created_at"])
    assert [s["name"] for s in sandboxes] == [first, task["container_id"]]
    assert sandboxes[0]["state"]["finished_at"] <= sandboxes[1]["created_at"]


@MODAL_ONLY  # a local worker's compute is free: nothing to estimate
def test_modal_compute_is_an_estimate_until_modals_usage_figure_replaces_it(
        backend: Backend) -> None:
    """`budget history` (and --json) marks the compute booked at the configured rates as
    estimated; once the sandbox has ended (and Modal's statistics settled) the
    reconciler books the difference to Modal's own figure and nothing is estimated."""
    fake = backend.fake
    fake.service.write_json(fake.root / "billing.json", {"CPU": "0.001", "Memory": "0"})
    harness = backend.harness("[budget]\naccrual_interval_seconds = 0.3\n"
                              "usage_settle_seconds = 0\n"
                              "[reconciler]\npoll_interval_seconds = 3600\n")
    task_id = harness.create(fake_prompt({"write": "a.txt", "content": "a"}, {"turn": True},
                                         {"sleep": 2}))
    task = harness.wait(task_id, timeout=90)
    assert task["status"] == "completed"

    def row() -> dict[str, Any]:
        rows = harness.json("budget", "history", "--by", "task")["rows"]
        return next((r for r in rows if r["key"] == task_id), {})

    before = wait_for(lambda: (r := row()).get("compute_micros") and r, 30,
                      "the compute of the ended sandbox booked")
    assert before["estimated_compute_micros"] == before["compute_micros"] > 0
    assert before["estimated_micros"] >= before["estimated_compute_micros"]
    text = harness.run("budget", "history", "--by", "task", check=True).stdout
    assert "of compute at the [rates]" in text and "estimated" in text

    sdk = fake.sdk
    since = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    modal_cost = next(g.cost for g in sdk.App.lookup("parhelia").sandboxes.stats(
        since=since, group_by_tags=["parhelia-container"])
        if g.tags["parhelia-container"] == task["container_id"])
    # What stays an estimate is the environment image's build (Modal's sandbox statistics
    # do not cover builds; the task pays for it): the sandbox's own compute is replaced by
    # Modal's figure.
    built = len(harness.events("--task", task_id, "--type", "environment_built"))
    harness.json("reconciler", "run")
    after = wait_for(lambda: (r := row()).get("estimated_compute_micros", 0)
                     < before["estimated_compute_micros"] and r, 30, "the estimate replaced")
    build_estimate = after["estimated_compute_micros"]
    assert build_estimate == 0 or built == 1, after
    assert after["compute_micros"] - build_estimate == round(modal_cost * 1_000_000)
    assert after["compute_micros"] != before["compute_micros"]
    assert harness.task(task_id)["usage"]["compute_cost_micros"] == after["compute_micros"]
    corrected = harness.events("--task", task_id, "--type", "compute_corrected")
    assert len(corrected) == 1 and corrected[0]["data"]["source"] == "modal"
    harness.json("reconciler", "run")  # once only, whatever the passes
    time.sleep(1)
    assert row()["compute_micros"] == after["compute_micros"]


def test_with_the_named_secret_a_modal_task_says_its_credential_stays_outside(
        harness_factory: Callable[..., Harness], fake_modal: FakeModal) -> None:
    """The whole stack: the dispatcher records what the Modal backend decided at launch
    (the outbound policy, the agent's placeholder), `task show` and the container say so."""
    fake_modal.create_secret("anthropic-api-key", {"ANTHROPIC_API_KEY": "sk-ant-named-0001"})
    harness = Backend("modal", harness_factory, fake_modal).harness()
    task_id = harness.create(fake_prompt({"write": "a.txt", "content": "a\n"}, {"turn": True}))
    assert harness.wait(task_id, timeout=120)["status"] == "completed"
    shown = harness.run("task", "show", task_id, check=True).stdout
    assert "modal sandbox; model credential outside the sandbox (the agent sees a " \
        "placeholder)" in shown, shown
    container = harness.json("container", "show", harness.task(task_id)["container_id"])
    assert (container["isolation"], container["credential"]) == ("modal sandbox",
                                                                 "outbound policy")
    # doctor says which is in force: the SDK and API host allow the policy, and the last
    # launch used it
    checks = doctor_checks(harness)
    assert checks["modal secret"]["status"] == "ok"
    assert "outbound policy" in checks["modal secret"]["detail"]
    in_force = checks["modal credential"]
    assert in_force["status"] == "ok" and container["id"] in in_force["detail"]
    assert "credential outside the sandbox" in in_force["detail"]


def test_without_the_named_secret_task_show_and_doctor_say_the_key_is_in_the_sandbox(
        harness_factory: Callable[..., Harness], fake_modal: FakeModal) -> None:
    """The fallback (no named secret: the daemon's own key goes in as an ephemeral secret,
    which an outbound policy cannot use) is said where the user looks: `task show` and
    `doctor`, which names the container of the last launch."""
    harness = Backend("modal", harness_factory, fake_modal).harness()
    assert "modal credential" not in doctor_checks(harness)  # nothing launched yet
    task_id = harness.create(fake_prompt({"write": "a.txt", "content": "a\n"}, {"turn": True}))
    assert harness.wait(task_id, timeout=120)["status"] == "completed"
    shown = harness.run("task", "show", task_id, check=True).stdout
    assert "modal sandbox; model credential in the agent's environment" in shown, shown
    container = harness.task(task_id)["container_id"]
    in_force = doctor_checks(harness)["modal credential"]
    assert in_force["status"] == "warn" and container in in_force["detail"]
    assert "in the agent's environment" in in_force["detail"]


def doctor_checks(harness: Harness) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in
            json.loads(harness.run("doctor", "--json").stdout)["checks"]}
