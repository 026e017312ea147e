"""Issue 27, items 1-3: spend is stopped when it is booked, with the REAL pinned Claude Code
CLI against the local fake Messages API (CLI -> daemon -> local worker -> claude -> fake).

The budget's timer is set to ten minutes here, so nothing in these tests is enforced by
it: whatever stops a task does so as the listener books the agent's usage. Answers are
billed 66,000 output tokens on ``claude-sonnet-4-5`` ($3 / $15 per million input /
output tokens, as the CLI and the daemon's default rates price it) with 1,000 input
tokens: $0.993 each, and the fake waits a second before each answer (answers "a second
apart"), each asking for a quick Bash command.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.claude_env import parhelia_on_real_claude
from tests.fake_anthropic import FakeAnthropic, reply, tool_use
from tests.helpers.harness import Harness
from tests.helpers.waiting import wait_for

# One `stack` (a daemon) serves the module: its tests run on one xdist worker, in order.
pytestmark = [pytest.mark.claude, pytest.mark.timeout(300),
              pytest.mark.xdist_group(__name__)]

MODEL = "claude-sonnet-4-5"
INPUT_TOKENS = 1000
OUTPUT_TOKENS = 66_000
ANSWER_MICROS = INPUT_TOKENS * 3 + OUTPUT_TOKENS * 15  # 993,000 micro-dollars
KEY = "sk-ant-api03-parhelia-booked-spend"


def answers(n: int) -> list[Any]:
    """``n`` answers a second apart, each asking for a quick command, then a last one."""
    return [reply(f"Step {i}.", tool_use("Bash", {"command": f"echo step {i}"}),
                  output_tokens=OUTPUT_TOKENS, delay_s=1.0) for i in range(n)] + [
        reply("All steps done.", output_tokens=OUTPUT_TOKENS, delay_s=1.0)]


class Stack:
    def __init__(self, harness: Harness, fake: FakeAnthropic) -> None:
        self.harness = harness
        self.fake = fake

    def create(self, *args: str) -> str:
        return self.harness.create("Do the steps.", "--model", MODEL, "--permission-mode",
                                   "bypassPermissions", "--max-turns", "40", *args)

    def budget(self) -> dict[str, Any]:
        return dict(self.harness.json("budget", "show"))

    def api_booked(self, task_id: str) -> int:
        entries = self.harness.json("budget", "ledger", "--task", task_id)["entries"]
        return sum(e["amount_micros"] for e in entries if e["kind"] == "api")

    def set_ceiling_above_used(self, micros: int) -> int:
        """The ceiling set ``micros`` above what is used now; returns the new ceiling."""
        ceiling = self.budget()["used_micros"] + micros
        self.harness.run("budget", "set", f"{ceiling / 1e6:.6f}", check=True)
        return ceiling

    def settled(self, task_id: str) -> None:
        """Wait until the task's worker ended (its last figure is booked)."""
        wait_for(lambda: all(c["state"] not in ("created", "starting", "running")
                             for c in self.harness.json("container", "list", "--task",
                                                        task_id)["containers"]),
                 timeout=90, what="the worker's end")


@pytest.fixture(scope="module")
def stack(claude_bin: Path) -> Iterator[Stack]:
    with FakeAnthropic(input_tokens=INPUT_TOKENS) as fake, parhelia_on_real_claude(
            claude_bin, fake.url, KEY,
            "[heartbeat]\ninterval_seconds = 5\n"
            "[recovery]\nbackoff_seconds = 0.2\n"
            "[budget]\naccrual_interval_seconds = 600\n"
            "[orchestrator]\ndispatch_interval_seconds = 0.5\n") as daemon:
        yield Stack(Harness(daemon), fake)


def test_item1_the_ceiling_stops_a_task_when_its_spend_is_booked(stack: Stack) -> None:
    """A $4 ceiling and $0.993 answers a second apart: the fifth answer crosses it and the
    task is paused before a sixth is answered (the timer would have let all seven run),
    with the agent's own figure booked and counted once."""
    stack.fake.clear_requests()
    stack.fake.set_script(answers(6))
    ceiling = stack.set_ceiling_above_used(4_000_000)
    task_id = stack.create()
    task = stack.harness.wait(task_id, ("paused", "completed", "failed"), timeout=120)
    assert task["status"] == "paused", (task, stack.fake.summary())
    assert task["status_reason"].startswith("budget: the ceiling of")
    stack.settled(task_id)
    # The sixth request may have been sent; it was never answered.
    assert len(stack.fake.main_requests) in (5, 6), stack.fake.summary()
    assert stack.api_booked(task_id) == 5 * ANSWER_MICROS
    status = stack.budget()
    # Counted once: used is what is booked (no in-flight figure on top of the agent's).
    assert status["used_micros"] - (ceiling - 4_000_000) == 5 * ANSWER_MICROS
    assert 0 <= status["used_micros"] - ceiling < ANSWER_MICROS  # crossed by one answer
    stack.harness.run("task", "cancel", task_id, check=True)


def test_item1_max_cost_stops_a_task_when_its_spend_is_booked(stack: Stack) -> None:
    """The task's own --max-cost is checked in the same unit as the booking: $2 stops the
    task at its third answer, with E300 naming the cap."""
    stack.set_ceiling_above_used(50_000_000)
    stack.fake.clear_requests()
    stack.fake.set_script(answers(6))
    task_id = stack.create("--max-cost", "2")
    task = stack.harness.wait(task_id, timeout=120)
    assert task["status"] == "failed", (task, stack.fake.summary())
    assert task["result"]["error_code"] == "E300"
    assert "cost cap of $2.00" in task["status_reason"], task
    stack.settled(task_id)
    assert len(stack.fake.main_requests) in (3, 4), stack.fake.summary()
    assert stack.api_booked(task_id) == 3 * ANSWER_MICROS


def test_item2_a_task_whose_agent_returned_its_result_completes_at_the_ceiling(
        stack: Stack) -> None:
    """The last answer (the agent's result) reaches the ceiling: the task completes, it is
    not paused, and raising the ceiling does not run it again."""
    stack.fake.clear_requests()
    stack.fake.set_script(answers(1))  # one step, then the final answer: $1.986 in all
    stack.set_ceiling_above_used(1_500_000)
    task_id = stack.create()
    task = stack.harness.wait(task_id, ("paused", "completed", "failed"), timeout=120)
    assert task["status"] == "completed", (task, stack.fake.summary())
    assert task["result"]["subtype"] == "success"
    stack.settled(task_id)
    assert stack.api_booked(task_id) == 2 * ANSWER_MICROS
    assert stack.budget()["exceeded"] is True
    requests = len(stack.fake.main_requests)
    stack.set_ceiling_above_used(50_000_000)
    shown = stack.harness.task(task_id)
    assert shown["status"] == "completed" and shown["restarts"] == 0
    assert len(stack.fake.main_requests) == requests


def test_item3_two_tasks_run_at_once_under_a_ten_dollar_ceiling(stack: Stack) -> None:
    """Each running task reserves one answer (not its whole estimate of $6.88), so two
    tasks run side by side under a $10 ceiling; when their spend reaches it, both stop,
    and the ceiling is crossed by at most one answer per running task."""
    stack.fake.clear_requests()
    stack.fake.set_script(answers(40))
    ceiling = stack.set_ceiling_above_used(10_000_000)
    first, second = stack.create(), stack.create()
    both: dict[str, bool] = {}
    watching = threading.Event()

    def watch() -> None:  # both running at the same moment, seen through the CLI
        while not watching.is_set():
            rows = stack.harness.json("task", "list")["tasks"]
            running = {t["id"] for t in rows if t["status"] == "running"}
            if {first, second} <= running:
                both["seen"] = True
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        for task_id in (first, second):
            task = stack.harness.wait(task_id, ("paused", "completed", "failed"), timeout=180)
            assert task["status"] == "paused", (task, stack.fake.summary())
    finally:
        watching.set()
        watcher.join(timeout=30)
    assert both.get("seen"), "the two tasks never ran at the same time"
    for task_id in (first, second):
        stack.settled(task_id)
    used = stack.budget()["used_micros"]
    assert 0 <= used - ceiling < 2 * ANSWER_MICROS, (used, ceiling)
    for task_id in (first, second):
        stack.harness.run("task", "cancel", task_id, check=True)
