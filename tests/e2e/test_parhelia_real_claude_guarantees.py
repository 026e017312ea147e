"""What the README promises about the real agent, proven with the REAL pinned Claude Code
CLI: CLI -> daemon -> local worker -> claude -> the local fake Messages API.

One daemon serves the whole module (a real CLI run costs seconds; the tests run one task
at a time and leave the ceiling as they found it). Its credential is a unique value given
the way a service manager gives it (``parheliad.env``, 0600); the last test looks for it in
every byte under PARHELIA_HOME.

Prices: tasks use ``claude-sonnet-4-5``, which the CLI and the daemon's default rates both
price at $3 / $15 per million input / output tokens, and every request carries 1,000 input
tokens (``FakeAnthropic(input_tokens=1000)``): a reply billed 20,000 output tokens costs
exactly $0.303, as the CLI computes it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.claude_env import parhelia_on_real_claude
from tests.fake_anthropic import FakeAnthropic, reply, tool_use
from tests.helpers.harness import Harness
from tests.helpers.waiting import wait_for

# One `stack` (a daemon) serves the module: its tests run on one xdist worker, in order.
pytestmark = [pytest.mark.claude, pytest.mark.timeout(240),
              pytest.mark.xdist_group(__name__)]

MODEL = "claude-sonnet-4-5"
INPUT_TOKENS = 1000
BIG_OUTPUT = 20_000
REPLY_MICROS = INPUT_TOKENS * 3 + BIG_OUTPUT * 15  # $3 and $15 per million: micro-dollars
SLOW = "python3 -c 'import time; time.sleep(5)'"  # (the CLI refuses a bare `sleep N`)
KEY = "sk-ant-api03-parhelia-" + secrets.token_urlsafe(24)


class Stack:
    def __init__(self, harness: Harness, fake: FakeAnthropic) -> None:
        self.harness = harness
        self.fake = fake

    def start(self, script: list[Any], *args: str) -> str:
        """A new task on a fresh script (bypassPermissions: the Bash calls really run)."""
        self.fake.clear_requests()
        self.fake.set_script(script)
        return self.harness.create("Do the work.", "--model", MODEL, "--permission-mode",
                                   "bypassPermissions", *args)

    def checkpoints(self, task_id: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.harness.events("--task", task_id, "--type",
                                                       "checkpoint_created")]

    def ledger(self, task_id: str) -> list[dict[str, Any]]:
        return list(self.harness.json("budget", "ledger", "--task", task_id)["entries"])

    def budget(self) -> dict[str, Any]:
        return dict(self.harness.json("budget", "show"))


@pytest.fixture(scope="module")
def stack(claude_bin: Path) -> Iterator[Stack]:
    with FakeAnthropic(input_tokens=INPUT_TOKENS) as fake, parhelia_on_real_claude(
            claude_bin, fake.url, KEY,
            "[heartbeat]\ninterval_seconds = 0.5\n"
            "[recovery]\nbackoff_seconds = 0.2\n"
            "[budget]\naccrual_interval_seconds = 0.3\n"
            "[orchestrator]\ndispatch_interval_seconds = 0.5\n") as daemon:
        yield Stack(Harness(daemon), fake)




CACHE_WRITE, CACHE_READ = 2_000, 10_000
CACHE_MICROS = CACHE_WRITE * 375 // 100 + CACHE_READ * 3 // 10  # 1.25x and 0.1x of $3


def expensive_script(replies: int, *, cache: bool = False) -> list[Any]:
    """Replies billed 20,000 output tokens each (and cache tokens), a slow command each."""
    return [reply(f"Step {i}.", tool_use("Bash", {"command": SLOW}), output_tokens=BIG_OUTPUT,
                  cache_creation_input_tokens=CACHE_WRITE if cache else 0,
                  cache_read_input_tokens=CACHE_READ if cache else 0)
            for i in range(replies)]


def api_micros(ledger: list[dict[str, Any]]) -> int:
    return sum(e["amount_micros"] for e in ledger if e["kind"] == "api")


def test_the_ceiling_pauses_a_task_at_the_reply_that_reaches_it(stack: Stack) -> None:
    """The real CLI's assistant lines say 1 output token; the budget must see the 20,000
    of each reply as it ends, not at the end of the task: with a ceiling of $1.50 above
    what was used, the fifth reply ($1.515 in all) pauses the task during its command,
    before a sixth request, and the ledger books what the CLI says it spent."""
    used = stack.budget()["used_micros"]
    previous = stack.budget()["ceiling_micros"]
    stack.harness.run("budget", "set", f"{(used + 1_500_000) / 1e6:.6f}", check=True)
    try:
        task_id = stack.start(expensive_script(8), "--max-turns", "10")
        task = stack.harness.wait(task_id, ("paused", "completed", "failed"), timeout=120)
        assert task["status"] == "paused", (task, stack.fake.summary())
        assert task["status_reason"].startswith("budget: the ceiling of")
        assert len(stack.fake.main_requests) == 5, stack.fake.summary()
        container = task["container_id"]
        wait_for(lambda: any(
            c["trigger"] == "stop" for c in stack.checkpoints(task_id)),
                 timeout=90, what="the stop checkpoint")
        ledger = wait_for(lambda: [
            e for e in stack.ledger(task_id) if e["kind"] == "api"],
                          timeout=90, what="the agent's figure in the ledger")
        assert api_micros(ledger) == 5 * REPLY_MICROS, ledger
        assert all(e["container_id"] == container and "agent's own figure" in e["note"]
                   for e in ledger), ledger
        history = {r["key"]: r for r in stack.harness.json("budget", "history", "--by",
                                                           "task")["rows"]}
        assert history[task_id]["estimated_micros"] == 0
        stack.harness.run("task", "cancel", task_id, check=True)
    finally:
        stack.harness.run("budget", "set", f"{previous / 1e6:.6f}", check=True)


def test_max_cost_stops_a_task_at_the_reply_that_reaches_it(stack: Stack) -> None:
    """Same with the task's own cap, replies carrying cache tokens too: the cache writes
    and reads count at 1.25x and 0.1x the input price, in flight and in the ledger."""
    task_id = stack.start(expensive_script(8, cache=True), "--max-turns", "10",
                          "--max-cost", "1")
    task = stack.harness.wait(task_id, timeout=120)
    assert task["status"] == "failed", (task, stack.fake.summary())
    assert task["result"]["error_code"] == "E300"
    assert len(stack.fake.main_requests) == 4, stack.fake.summary()
    ledger = wait_for(lambda: api_micros(
        stack.ledger(task_id)) and stack.ledger(task_id),
                      timeout=90, what="the agent's figure in the ledger")
    assert api_micros(ledger) == 4 * (REPLY_MICROS + CACHE_MICROS), ledger
    assert not [e for e in ledger if e["note"].startswith("estimated")]
    usage = stack.harness.task(task_id)["usage"]
    assert (usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"]) == (
        4 * CACHE_WRITE, 4 * CACHE_READ)


def test_a_risky_bash_command_is_checkpointed_before_it_runs(stack: Stack) -> None:
    task_id = stack.start([
        reply(tool_use("Bash", {"command": "mkdir -p build && echo x > build/out.txt"})),
        reply(tool_use("Bash", {"command": "rm -rf build"})),
        reply("Cleaned.")])
    task = stack.harness.wait(task_id, timeout=120)
    assert task["status"] == "completed", (task, stack.fake.summary())
    cps = stack.checkpoints(task_id)
    pre = [c for c in cps if c["trigger"] == "pre_tool"]
    assert len(pre) == 1 and "rm -rf build" in pre[0]["message"], cps
    assert pre[0]["stats"]["files"] == 1  # build/out.txt, still there
    assert cps[-1]["trigger"] == "completion" and cps[-1]["stats"]["files"] == 0


def _slow_task(stack: Stack, *args: str) -> str:
    task_id = stack.start([reply(tool_use("Bash", {
        "command": "python3 -c 'import time; time.sleep(120)'"}))], *args)
    wait_for(lambda: stack.harness.events(
        "--task", task_id, "--type", "agent_tool_use"), timeout=90, what="the slow command")
    return task_id


def test_cancel_ends_the_task_with_a_stop_checkpoint(stack: Stack) -> None:
    task_id = _slow_task(stack)
    stack.harness.run("task", "cancel", task_id, check=True)
    assert stack.harness.task(task_id)["status"] == "cancelled"
    last = wait_for(lambda: [
        c for c in stack.checkpoints(task_id) if c["trigger"] == "stop"],
                    timeout=90, what="the final checkpoint")
    assert last[-1]["message"] == "stopped: cancel"


def test_timeout_ends_the_task_with_a_timeout_checkpoint(stack: Stack) -> None:
    task_id = _slow_task(stack, "--timeout", "15")
    task = stack.harness.wait(task_id, timeout=120)
    assert task["status"] == "failed" and task["result"]["error_code"] == "E501", task
    assert stack.checkpoints(task_id)[-1]["trigger"] == "timeout"


def test_max_turns_ends_the_task_with_a_final_checkpoint(stack: Stack) -> None:
    task_id = stack.start([reply(tool_use("Bash", {"command": f"echo {i}"}))
                           for i in range(6)], "--max-turns", "2")
    task = stack.harness.wait(task_id, timeout=120)
    assert task["status"] == "failed" and task["result"]["error_code"] == "E604", task
    assert len(stack.fake.main_requests) == 2
    assert task["usage"]["turns"] == 3  # the CLI's num_turns: 1 + two tool results
    assert stack.checkpoints(task_id)[-1]["trigger"] == "error"


def test_the_daemons_credential_is_nowhere_under_its_home(stack: Stack) -> None:
    """After the tasks above, a task killed and resumed, and an events export: the key
    appears in no file under PARHELIA_HOME but the 0600 env file it came from."""
    harness = stack.harness
    task_id = stack.start([reply("First.", tool_use("Bash", {"command": "echo one"})),
                           reply("Waiting...", delay_s=60)])
    assert stack.fake.wait_for(lambda reqs: sum(r.kind == "main" for r in reqs) >= 2,
                               timeout=90), stack.fake.summary()
    wait_for(lambda: [
        c for c in stack.checkpoints(task_id) if c["trigger"] == "turn"],
             timeout=90, what="a turn checkpoint")
    stack.fake.set_script([reply("Resumed and done.")])
    container = harness.task(task_id)["container_id"]
    backend_id = sqlite3.connect(harness.home / "state" / "parheliad.db").execute(
        "SELECT backend_id FROM containers WHERE id = ?", (container,)).fetchone()[0]
    os.kill(int(backend_id.split("@")[0]), signal.SIGKILL)
    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed" and task["restarts"] == 1, task
    assert stack.fake.main_requests[-1].api_key_is(KEY)
    export = harness.home / "events-export.jsonl"
    harness.run("events", "export", str(export), check=True)
    assert export.stat().st_size > 0

    env_file = harness.home / "parheliad.env"
    needles = [KEY.encode(), KEY[-20:].encode()]  # the CLI keeps the last 20 characters
    found = []
    scanned: list[str] = []
    for path in harness.home.rglob("*"):
        if path == env_file or not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        scanned.append(str(path.relative_to(harness.home)))
        found += [scanned[-1] for n in needles if n in data]
    # Every kind of file the key could leak into was there to scan.
    kinds = {"state/parheliad.db", "state/parheliad.log", "data/volume/spool/",
             "data/volume/specs/", "data/volume/checkpoints/", "data/volume/cas/blobs/",
             "/agent.jsonl", "/worker.log", "/projects/", "events-export.jsonl"}
    assert {k for k in kinds if any(k in p for p in scanned)} == kinds, sorted(scanned)
    assert not found, found
    assert json.loads(export.read_text().splitlines()[0])
