"""Modal's trouble, whole stack: the real daemon and CLI, the daemon's REAL modal SDK, the
local stand-in of Modal's service injecting gRPC statuses, hangs and end states.

What a user would notice: a task launched during an outage waits and then completes; a
stop during Modal's internal errors is retried until the sandbox ends; an OOM kill, an
eviction and an init failure are shown with Modal's own reason; a GPU capacity wait is
visible, cancellable and leaves nothing behind; local tasks start while Modal hangs.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from typing import Any

import pytest

from parheliad.core.stopper import STOP_RETRY_MAX_S
from tests.helpers.harness import Harness, fake_prompt
from tests.helpers.waiting import wait_for
from tests.modal_host.host import EVICTION_MESSAGE, OOM_MESSAGE
from tests.modal_standin.fixture import StandIn

MODAL = 'default_backend = "modal"\n'


@pytest.fixture
def modal_harness(harness_factory: Callable[..., Harness],
                  modal_standin: StandIn) -> Callable[..., Harness]:
    def make(extra_config: str = "", orchestrator: str = MODAL) -> Harness:
        return harness_factory(extra_config, orchestrator, heartbeat=1.5, **modal_standin.env())
    return make


def _types(h: Harness, task_id: str) -> list[str]:
    return [e["type"] for e in h.events("--task", task_id)]


def _running_sandbox(h: Harness, standin: StandIn, task_id: str) -> dict[str, Any]:
    wait_for(lambda: h.task(task_id)["status"] == "running" and
             h.events("--task", task_id, "--type", "worker_started"), 90, "the worker started")
    return standin.sandbox(h.task(task_id)["container_id"])


def test_a_launch_during_an_outage_waits_and_completes_later(
        modal_harness: Callable[..., Harness], modal_standin: StandIn) -> None:
    h = modal_harness()
    outage = modal_standin.fail("SandboxCreate*", "UNAVAILABLE", message="upstream reset")
    task_id = h.create(fake_prompt({"write": "a.txt", "content": "a"}, {"turn": True}))
    waiting = wait_for(lambda: (t := h.task(task_id))["status"] == "pending"
                       and "Modal" in (t.get("status_reason") or "") and t, 60,
                       "the task back in the queue with the reason")
    assert "upstream reset" in waiting["status_reason"]
    assert "task_failed" not in _types(h, task_id)
    modal_standin.remove(outage)
    h.run("task", "dispatch", task_id, check=True)  # the user need not wait for the backoff
    done = h.wait(task_id, timeout=120)
    assert done["status"] == "completed" and done["restarts"] == 0, done


def test_a_stop_during_internal_errors_is_retried_until_the_sandbox_ends(
        modal_harness: Callable[..., Harness], modal_standin: StandIn) -> None:
    h = modal_harness()
    task_id = h.create(fake_prompt({"write": "a.txt", "content": "a"}, {"turn": True},
                                   {"sleep": 300}))
    sandbox = _running_sandbox(h, modal_standin, task_id)
    # a wedged worker: it cannot checkpoint and stop by itself, the sandbox must be ended
    os.kill(modal_standin.worker_pid(sandbox["name"]), signal.SIGSTOP)
    refusal = modal_standin.fail("SandboxTerminate*", "INTERNAL", message="terminate failed")
    h.run("task", "cancel", task_id, "--grace", "1", check=True)
    wait_for(lambda: modal_standin.calls().count("SandboxTerminateV2") >= 8, 60,
             "the terminate retried")
    assert modal_standin.service.returncode(sandbox["id"]) is None  # still running (billing)
    modal_standin.remove(refusal)
    # The stopper's retries back off up to STOP_RETRY_MAX_S; then one whole attempt
    # (control message, the grace, the backend's own grace, terminate) on a loaded machine.
    wait_for(lambda: modal_standin.service.returncode(sandbox["id"]) is not None,
             STOP_RETRY_MAX_S + 60, "the sandbox ended once Modal terminates again")
    assert h.task(task_id)["status"] == "cancelled"


def _compute_micros(h: Harness, task_id: str) -> int:
    task = h.task(task_id)
    return int((task.get("usage") or task).get("compute_cost_micros") or 0)


def test_while_modal_is_unreachable_nothing_is_stopped_and_compute_accrues(
        modal_harness: Callable[..., Harness], modal_standin: StandIn) -> None:
    """Modal's outage is not the sandbox's end: it runs (and bills) on, so the daemon
    keeps accruing its compute, and stops nothing."""
    h = modal_harness("[budget]\naccrual_interval_seconds = 0.5\n")
    task_id = h.create(fake_prompt({"write": "a.txt", "content": "a"}, {"turn": True},
                                   {"sleep": 300}))
    sandbox = _running_sandbox(h, modal_standin, task_id)
    container = h.task(task_id)["container_id"]
    wait_for(lambda: _compute_micros(h, task_id) > 0, 30, "compute accrued")
    outage = modal_standin.fail("*", "UNAVAILABLE", message="upstream connect error")
    try:
        wait_for(lambda: h.json("container", "show", container)["health"] == "unreachable",
                 60, "the container shown unreachable")
        during = _compute_micros(h, task_id)
        wait_for(lambda: _compute_micros(h, task_id) > during, 30,
                 "compute accruing during the outage")
        shown = h.json("container", "show", container)
        assert shown["state"] == "running", shown
        assert modal_standin.service.returncode(sandbox["id"]) is None
        assert "SandboxTerminateV2" not in modal_standin.calls()
    finally:
        modal_standin.remove(outage)
    assert h.task(task_id)["status"] == "running"
    h.run("task", "cancel", task_id, "--grace", "1", check=True)


def test_an_oom_kill_is_shown_with_modals_reason(
        modal_harness: Callable[..., Harness], modal_standin: StandIn) -> None:
    h = modal_harness()
    task_id = h.create(fake_prompt({"write": "a.txt", "content": "a"}, {"turn": True},
                                   {"sleep": 300}))
    sandbox = _running_sandbox(h, modal_standin, task_id)
    container = h.task(task_id)["container_id"]
    modal_standin.oom_kill(sandbox["id"])
    shown = wait_for(lambda: (c := h.json("container", "show", container))["state"]
                     not in ("running", "starting", "stopping") and c, 60,
                     "the container ended")
    assert "out of memory: raise --memory" in shown["reason"], shown
    assert OOM_MESSAGE in shown["reason"]
    ended = [e for e in h.events("--container", container) if e["type"] in
             ("container_exited", "container_failed", "container_lost")]
    assert ended and "out of memory" in ended[-1]["message"], ended
    recovering = wait_for(lambda: h.events("--task", task_id, "--type", "task_recovering"),
                          60, "the recovery")
    assert "out of memory" in recovering[-1]["message"]
    h.run("task", "cancel", task_id, "--grace", "1", check=True)


@pytest.mark.long
def test_an_eviction_is_recovered_without_counting_a_restart(
        modal_harness: Callable[..., Harness], modal_standin: StandIn) -> None:
    h = modal_harness("[checkpoint]\nmin_turn_interval_seconds = 0\n")
    task_id = h.create(fake_prompt({"write": "a.txt", "content": "a"}, {"turn": True},
                                   {"sleep": 20}, {"write": "b.txt", "content": "b"},
                                   {"turn": True}))
    wait_for(lambda: [e for e in h.events("--task", task_id, "--type", "checkpoint_created")
                      if (e["data"] or {}).get("trigger") == "turn"], 90, "a turn checkpoint")
    first = h.task(task_id)["container_id"]
    modal_standin.evict(modal_standin.sandbox(first)["id"])
    done = h.wait(task_id, timeout=180)
    assert done["status"] == "completed" and done["restarts"] == 0, done
    assert done["container_id"] != first
    shown = h.json("container", "show", first)
    assert "evicted" in shown["reason"] and EVICTION_MESSAGE in shown["reason"]


def test_an_init_failure_fails_the_task_with_modals_message(
        modal_harness: Callable[..., Harness], modal_standin: StandIn) -> None:
    h = modal_harness()
    modal_standin.init_failure("Image pull failed: manifest unknown")
    task_id = h.create(fake_prompt({"turn": True}))
    task = h.wait(task_id, timeout=90)
    assert task["status"] == "failed", task
    result = task["result"]
    assert result["error_code"] == "E505", result
    assert "Image pull failed: manifest unknown" in result["error_message"]


@pytest.mark.parametrize(("status", "code", "fix"), [
    ("PERMISSION_DENIED", "E401", "use a token of the workspace"),
    ("UNAUTHENTICATED", "E400", "parhelia modal setup --token-id"),
])
def test_a_launch_refused_for_the_token_fails_with_the_fix(
        modal_harness: Callable[..., Harness], modal_standin: StandIn,
        status: str, code: str, fix: str) -> None:
    """Not "retry the task" (the same token is refused again): the code and the command
    that fixes the token, with Modal's own words."""
    h = modal_harness()
    modal_standin.fail("SandboxCreate*", status, message="token ak-x may not create sandboxes")
    task_id = h.create(fake_prompt({"turn": True}))
    task = h.wait(task_id, timeout=90)
    assert task["status"] == "failed", task
    result = task["result"]
    assert result["error_code"] == code, result
    assert "may not create sandboxes" in result["error_message"]
    assert fix in result["error_message"] and "task retry" not in result["error_message"]
    assert "modal token" not in result["error_message"]
    assert not modal_standin.running()


def test_a_gpu_capacity_wait_is_visible_and_a_cancel_leaves_nothing_running(
        modal_harness: Callable[..., Harness], modal_standin: StandIn) -> None:
    h = modal_harness()
    modal_standin.gpu_capacity(False)
    task_id = h.create(fake_prompt({"turn": True}), "--gpu", "A100")
    waiting = wait_for(lambda: "waiting for an A100" in (
        (t := h.task(task_id)).get("status_reason") or "") and t, 60,
        "the capacity wait shown")
    assert waiting["status"] in ("pending", "running")
    shown = r"waiting for an A100(-40GB)? on Modal: \d+(m\d\d)?s"  # what for, how long
    assert re.search(shown, waiting["status_reason"]), waiting
    container = h.json("container", "show", waiting["container_id"])
    assert "waiting for an A100" in container["reason"], container
    assert [s["gpu"].startswith("A100") for s in modal_standin.running()] == [True]
    h.run("task", "cancel", task_id, "--grace", "1", check=True)
    wait_for(lambda: not modal_standin.running(), 60, "no sandbox left")
    assert h.task(task_id)["status"] == "cancelled"
    modal_standin.gpu_capacity(True)
    wait_for(lambda: not modal_standin.running(), 5, "nothing started once capacity came")
    assert not [s for s in modal_standin.sandboxes() if s["state"].get("child")]


def test_local_tasks_start_while_modal_hangs(
        modal_harness: Callable[..., Harness], modal_standin: StandIn) -> None:
    h = modal_harness("", MODAL + "max_concurrent_workers = 4\n")
    hang = modal_standin.hang("*")
    stuck = h.create(fake_prompt({"turn": True}))
    wait_for(lambda: modal_standin.calls(), 30, "the Modal task's dispatch asking Modal")
    local = [h.create(fake_prompt({"write": f"{i}.txt", "content": "x"}, {"turn": True}),
                      "--backend", "local") for i in range(2)]
    for task_id in local:
        done = h.wait(task_id, timeout=30)
        assert done["status"] == "completed", done
    assert h.task(stuck)["status"] in ("pending", "running")  # Modal still hangs
    modal_standin.remove(hang)
