"""The budget end to end: a real parheliad, the real CLI, local workers running the fake
agent. Spend comes from the agent's tokens while it runs (priced at the default model
rates: 1,087.5 micro-dollars per fake turn) and from its reported ``total_cost_usd``."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers.daemon import RunningDaemon
from tests.helpers.harness import Harness
from tests.helpers.waiting import wait_for

Cli = Callable[..., subprocess.CompletedProcess[str]]


def slow_script(turns: int, pause: float = 0.4) -> str:
    steps: list[dict[str, Any]] = [{"write": "start.txt", "content": "go\n"}, {"turn": True}]
    for i in range(turns):
        steps += [{"bash": f"step {i}"}, {"turn": True}, {"sleep": pause}]
    return "work slowly\nFAKE_SCRIPT: " + json.dumps(steps)


@pytest.fixture
def budget_daemon(harness_factory: Callable[..., Harness]) -> RunningDaemon:
    """A daemon (the fake agent) that accrues every 0.3 s."""
    return harness_factory("[budget]\naccrual_interval_seconds = 0.3\n").daemon


@pytest.fixture
def run(budget_daemon: RunningDaemon) -> Cli:
    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return budget_daemon.cli(*args, timeout=60)
    return call


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result).stdout)


def create(run: Cli, prompt: str, *extra: str) -> str:
    return ok(run("task", "create", prompt, "--no-workspace", "--max-turns", "30",
                  *extra)).stdout.strip()


def task(run: Cli, task_id: str) -> dict[str, Any]:
    return dict(as_json(run("task", "show", task_id, "--json")))




def events(run: Cli, task_id: str | None = None, types: str = "") -> list[dict[str, Any]]:
    args = ["events", "list", "--json", "--limit", "1000"]
    if task_id:
        args += ["--task", task_id]
    if types:
        args += ["--type", types]
    return list(as_json(run(*args))["events"])


def test_running_task_is_paused_at_the_ceiling_and_resumes_when_raised(run: Cli) -> None:
    task_id = create(run, slow_script(14))
    wait_for(lambda: (t := task(run, task_id))["status"] == "running"
             and (t["usage"] or {}).get("turns", 0) >= 2, what="two turns")
    used = as_json(run("budget", "show", "--json"))["used_micros"]
    assert used > 0  # in-flight spend priced from tokens
    ceiling = used + 2_500  # about two more fake turns
    ok(run("budget", "set", f"{ceiling / 1_000_000:.6f}"))

    paused = wait_for(lambda: (t := task(run, task_id))["status"] == "paused"
                      and t, what="the budget pause",
                      detail=lambda: str(task(run, task_id)) + run("budget", "show").stdout)
    assert paused["status_reason"].startswith("budget: the ceiling of")
    first = paused["container_id"]
    wait_for(lambda: any(
        e["type"] in ("container_terminated", "container_exited") for e in
        events(run, task_id)), what="the worker to stop")
    stops = [e for e in events(run, task_id, "checkpoint_created")
             if e["container_id"] == first and e["data"]["trigger"] == "stop"]
    assert stops and stops[-1]["data"]["message"] == "stopped: budget"
    # Its in-flight spend left `used` with it (what is booked may be less): still paused
    # ticks later, not back to pending where dispatch would refuse it for good.
    time.sleep(5 * 0.3)
    assert task(run, task_id)["status"] == "paused"
    status = as_json(run("budget", "show", "--json"))
    if not status["exceeded"]:  # what was booked is below the ceiling: reach it again
        ok(run("budget", "set", f"{status['used_micros'] / 1_000_000:.6f}"))
        status = as_json(run("budget", "show", "--json"))
    assert status["exceeded"] and task(run, task_id)["status"] == "paused", status
    assert events(run, types="budget_exceeded") and events(run, types="budget_warning")
    # every command shows the banner while the budget is exceeded
    banner = run("task", "list")
    assert banner.returncode == 0 and "Budget ceiling reached" in banner.stderr
    polled = run("task", "list", "--json")  # a quick read too (parhelia_cli.quick)
    assert polled.returncode == 0 and "Budget ceiling reached" in polled.stderr
    assert as_json(polled)["tasks"]

    ok(run("budget", "set", "10"))
    done = wait_for(lambda: (t := task(run, task_id))["status"] == "completed" and t,
                    timeout=60, what="the resumed task to complete")
    assert done["container_id"] != first
    dispatched = events(run, task_id, "task_dispatched")
    assert [e["data"]["resume"] for e in dispatched] == [False, True]
    assert dispatched[-1]["data"]["checkpoint_id"] == stops[-1]["data"]["checkpoint_id"]
    assert "Budget" not in run("task", "list").stderr
    # The stopped incarnation's spend is booked with the agent's own figure (the cost-state
    # it wrote to its transcript on SIGTERM), and the resumed agent's total_cost_usd - which
    # counts the whole session, as the real CLI's does - is not booked twice: the task's
    # API entries add up to the session's final figure.
    ledger = as_json(run("budget", "ledger", "--task", task_id, "--json"))["entries"]
    assert any(e["container_id"] == first and e["note"].startswith("agent usage (the agent's")
               for e in ledger), ledger
    final = events(run, task_id, "agent_result")[-1]["data"]
    api = sum(e["amount_micros"] for e in ledger if e["kind"] == "api")
    assert abs(api - round(final["total_cost_usd"] * 1_000_000)) <= 1, (api, final)


def test_a_per_task_cap_stops_exactly_that_task(run: Cli) -> None:
    capped = create(run, slow_script(12), "--max-cost", "0.003")
    other = create(run, slow_script(12))
    failed = wait_for(lambda: (t := task(run, capped))["status"] == "failed" and t,
                      what="the capped task to fail")
    assert failed["result"]["error_code"] == "E300"
    assert "cost cap of $0.0030" in failed["result"]["error_message"]
    assert task(run, other)["status"] == "running"
    wait_for(lambda: any(
        e["type"] in ("container_exited", "container_terminated", "container_failed")
        for e in events(run, capped)), what="the capped worker to stop")
    stops = [e for e in events(run, capped, "checkpoint_created")
             if e["data"]["trigger"] == "stop"]
    assert stops and stops[-1]["data"]["message"] == "stopped: budget"
    assert wait_for(lambda: task(run, other)["status"] in ("completed", "failed"),
                    timeout=60, what="the other task to complete")
    assert task(run, other)["status"] == "completed"


def test_refused_dispatch_stays_pending_until_the_ceiling_is_raised(run: Cli) -> None:
    ok(run("budget", "set", "0.50"))
    task_id = create(run, "quick\nFAKE_SCRIPT: []")  # reserves 30 turns x $0.1375 > $0.50
    refused = wait_for(lambda: events(run, task_id, "task_dispatch_refused"), what="the refusal")
    assert refused[0]["data"]["code"] == "E300" and "ceiling $0.50" in refused[0]["message"]
    time.sleep(0.5)
    assert task(run, task_id)["status"] == "pending"
    ok(run("budget", "set", "5"))
    ok(run("task", "dispatch"))
    wait_for(lambda: task(run, task_id)["status"] == "completed", what="completion")
    assert len(events(run, task_id, "task_dispatch_refused")) == 1


def test_estimate_only_creates_nothing_and_bad_amounts_are_e101(run: Cli) -> None:
    out = ok(run("task", "create", "big job", "--estimate-only", "--backend", "modal",
                 "--gpu", "T4", "--cpu", "1", "--memory", "1GiB", "--timeout", "1h",
                 "--max-turns", "4", "--model", "haiku")).stdout
    # (0.00003942 + 0.00000672 + 0.000164) x 900..3600 s; haiku 1 x 3500, 4 x 27500
    assert "Estimated cost: $0.19-$0.87" in out
    assert "compute  $0.19-$0.76" in out and "api      $0.0035-$0.11" in out
    est = as_json(run("task", "create", "x", "--estimate-only", "--json", "--backend", "modal",
                      "--gpu", "T4", "--cpu", "1", "--memory", "1GiB", "--timeout", "1h",
                      "--max-turns", "4", "--model", "haiku"))
    assert (est["low_micros"], est["high_micros"]) == (189_126 + 3_500, 756_504 + 110_000)
    assert as_json(run("task", "list", "--json"))["tasks"] == []
    for bad in ("0", "abc", "nan", "1.0000001"):
        result = run("budget", "set", bad)
        assert result.returncode == 2 and "E101" in result.stderr, bad
    result = run("budget", "set", "--", "-5")
    assert result.returncode == 2 and "E101" in result.stderr


def test_the_budget_survives_a_restart(budget_daemon: RunningDaemon, run: Cli) -> None:
    ok(run("budget", "set", "12.34"))
    task_id = create(run, "quick\nFAKE_SCRIPT: []")
    wait_for(lambda: task(run, task_id)["status"] == "completed", what="completion")
    wait_for(lambda: as_json(run("budget", "show", "--json"))["used_micros"] > 0, what="its spend")
    before = as_json(run("budget", "show", "--json"))
    ledger = as_json(run("budget", "ledger", "--json"))["entries"]
    assert before["ceiling_micros"] == 12_340_000
    assert before["used_micros"] == sum(e["amount_micros"] for e in ledger)
    assert before["input_tokens"] > 0 and before["tasks"] == 1

    budget_daemon.restart()
    after = as_json(run("budget", "show", "--json"))
    assert after == before
    assert as_json(run("budget", "ledger", "--json"))["entries"] == ledger
    shown = ok(run("budget", "show")).stdout
    assert "Ceiling:    $12.34" in shown and "Tasks:      1" in shown
