"""The state machines: every pair of states checked, plus random walks (Hypothesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parhelia.errors import ParheliaError
from parheliad.core.states import (
    CONTAINER_TRANSITIONS,
    SESSION_INTERACTIVE,
    SESSION_LIVE,
    TASK_FINAL,
    TASK_TRANSITIONS,
    ContainerState,
    Health,
    SessionStatus,
    TaskStatus,
    check_container_transition,
    check_session_transition,
    check_task_transition,
    health_after,
    session_status_for,
)

LEGAL_TASK = {
    ("pending", "running"), ("pending", "cancelled"), ("pending", "failed"),
    ("running", "completed"), ("running", "failed"), ("running", "cancelled"),
    ("running", "recovering"), ("running", "paused"),
    ("recovering", "running"), ("recovering", "failed"), ("recovering", "cancelled"),
    ("recovering", "paused"),
    # a launch that found no capacity puts the task back in the queue
    ("running", "pending"), ("recovering", "pending"),
    ("paused", "pending"), ("paused", "cancelled"), ("paused", "completed"),
    ("completed", "pending"), ("failed", "pending"), ("cancelled", "pending"),
}


@pytest.mark.parametrize("current,new", list(itertools.product(
    [s.value for s in TaskStatus], repeat=2)))
def test_task_transition_table_exhaustive(current: str, new: str) -> None:
    if (current, new) in LEGAL_TASK:
        check_task_transition(current, new)
    else:
        with pytest.raises(ParheliaError) as err:
            check_task_transition(current, new, task_id="t-1")
        assert err.value.code == "E603"
        assert f"from {current} to {new}" in err.value.message


def test_design_paths_are_legal() -> None:
    for path in (["pending", "running", "completed"], ["pending", "running", "failed"],
                 ["pending", "running", "cancelled"],
                 ["pending", "running", "recovering", "running", "completed"],
                 ["pending", "running", "paused", "pending", "running", "completed"]):
        for a, b in itertools.pairwise(path):
            check_task_transition(a, b)


@given(st.lists(st.sampled_from(list(TaskStatus)), max_size=30))
def test_random_task_walks(steps: list[TaskStatus]) -> None:
    state = TaskStatus.PENDING
    for step in steps:
        legal = step in TASK_TRANSITIONS[state]
        try:
            check_task_transition(state, step)
        except ParheliaError:
            assert not legal
            continue
        assert legal
        state = step
    # a final task only ever leaves its final state to be re-queued
    for final in TASK_FINAL:
        assert TASK_TRANSITIONS[final] == {TaskStatus.PENDING}


@pytest.mark.parametrize("current,new", list(itertools.product(
    [s.value for s in ContainerState], repeat=2)))
def test_container_transitions_exhaustive(current: str, new: str) -> None:
    legal = ContainerState(new) in CONTAINER_TRANSITIONS[ContainerState(current)]
    if legal:
        check_container_transition(current, new)
    else:
        with pytest.raises(ParheliaError) as err:
            check_container_transition(current, new)
        assert err.value.code == "E603"
    # the task lifecycle: pending -> running -> completed
    for a, b in itertools.pairwise(["created", "starting", "running", "exited"]):
        check_container_transition(a, b)


@given(st.sampled_from(list(Health)),
       st.lists(st.one_of(st.just(-1), st.integers(0, 8)), max_size=20))
def test_health_follows_missed_heartbeats(start: Health, observations: list[int]) -> None:
    health = start
    for obs in observations:
        new = health_after(health, heartbeat=obs < 0, missed=max(obs, 0))
        if health is Health.DEAD:
            assert new is Health.DEAD
        elif obs < 0:
            assert new is Health.HEALTHY
        elif obs >= 5:
            assert new is Health.DEAD
        elif obs >= 3:
            assert new is Health.UNHEALTHY
        elif obs >= 1:
            assert new is Health.DEGRADED
        else:
            assert new is health
        health = new


LEGAL_SESSION = {
    ("headless", "detached"), ("headless", "stopped"), ("headless", "completed"),
    ("detached", "attached"), ("detached", "headless"), ("detached", "stopped"),
    ("detached", "completed"),
    ("attached", "detached"), ("attached", "headless"), ("attached", "stopped"),
    ("attached", "completed"),
    ("stopped", "headless"), ("stopped", "detached"), ("stopped", "completed"),
    ("completed", "headless"), ("completed", "detached"),
}


@pytest.mark.parametrize("current,new", list(itertools.product(
    [s.value for s in SessionStatus], repeat=2)))
def test_session_transition_table_exhaustive(current: str, new: str) -> None:
    if (current, new) in LEGAL_SESSION:
        check_session_transition(current, new)
    else:
        with pytest.raises(ParheliaError) as err:
            check_session_transition(current, new, session_id="s-1")
        assert err.value.code == "E603"
        assert f"session s-1 cannot go from {current} to {new}" in err.value.message


def test_session_paths_of_the_design_are_legal() -> None:
    """Interactive from the start, attached and detached twice; headless taken over and
    handed back; a stopped session resumed interactive."""
    for path in (["detached", "attached", "detached", "attached", "detached", "completed"],
                 ["headless", "detached", "attached", "headless", "completed"],
                 ["headless", "stopped", "detached", "attached", "stopped"],
                 ["completed", "headless", "completed"]):
        for a, b in itertools.pairwise(path):
            check_session_transition(a, b)


@given(st.sampled_from([True, False]), st.booleans(), st.integers(0, 5), st.booleans())
def test_session_status_for_names_what_runs(live: bool, interactive: bool, clients: int,
                                            completed: bool) -> None:
    status = session_status_for(live, interactive=interactive, clients=clients,
                                completed=completed)
    assert (status in SESSION_LIVE) == live
    if live:
        assert (status in SESSION_INTERACTIVE) == interactive
        assert (status is SessionStatus.ATTACHED) == (interactive and clients > 0)
