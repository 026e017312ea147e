"""The status words (parhelia.statuses) and the wire's enums (parhelia/v1/common.proto)
name the same things, and every place that maps one to the other uses the one mapping."""

from __future__ import annotations

import pytest

from parhelia import statuses
from parhelia.v1 import common_pb2

ENUMS = [(statuses.TaskStatus, common_pb2.TaskStatus),
         (statuses.ContainerState, common_pb2.ContainerState),
         (statuses.Health, common_pb2.Health)]


@pytest.mark.parametrize(("kind", "enum"), ENUMS)
def test_words_are_the_generated_enum_values_in_order(kind, enum) -> None:
    names = [n for n, _ in enum.items() if not n.endswith("_UNSPECIFIED")]
    assert [statuses.word_of(kind, n) for n in names] == list(kind)
    for word in kind:
        assert enum.Value(statuses.proto_name(kind, word)) != 0
    assert statuses.word_of(kind, enum.Name(0)) is None


def test_an_unknown_word_names_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="pending, running"):
        statuses.proto_name(statuses.TaskStatus, "runnning")


def test_daemon_and_client_map_every_word_both_ways() -> None:
    from parhelia_cli.api import _numbers
    from parheliad.api.containers import health_from_proto, state_from_proto
    from parheliad.api.convert import status_from_proto, status_to_proto

    for word in statuses.TASK_STATUSES:
        number = status_to_proto(word)
        assert _numbers(statuses.TaskStatus, common_pb2.TaskStatus, [word]) == [number]
        assert status_from_proto(number) == word
    assert [state_from_proto(n) for n in
            _numbers(statuses.ContainerState, common_pb2.ContainerState,
                     statuses.CONTAINER_STATES)] == list(statuses.CONTAINER_STATES)
    assert [health_from_proto(n) for n in
            _numbers(statuses.Health, common_pb2.Health, statuses.HEALTHS)] == \
        list(statuses.HEALTHS)


def test_the_daemon_state_machines_use_the_contract_words() -> None:
    from parheliad.core import states

    assert states.TaskStatus is statuses.TaskStatus
    assert states.ContainerState is statuses.ContainerState
    assert states.Health is statuses.Health
    assert states.SessionStatus is statuses.SessionStatus
    assert set(states.SESSION_TRANSITIONS) == set(statuses.SessionStatus)


def test_the_cli_offers_the_contract_words() -> None:
    from parhelia_cli.commands import container, task
    from parhelia_cli.flows import follow

    def choices(command, name):
        return tuple(next(p for p in command.params if p.name == name).type.choices)

    assert choices(task.list_tasks, "statuses") == statuses.TASK_STATUSES
    assert choices(container.list_containers, "states") == statuses.CONTAINER_STATES
    assert choices(container.list_containers, "health") == statuses.HEALTHS
    assert follow.FINAL == statuses.TASK_FINAL


def test_the_word_lists_are_plain_strings() -> None:
    # click.Choice offers an Enum member by its NAME ('PENDING'): the lists hold values.
    for words in (statuses.TASK_STATUSES, statuses.TASK_FINAL, statuses.TASK_UNFINISHED,
                  statuses.CONTAINER_STATES, statuses.HEALTHS, statuses.SESSION_STATUSES):
        assert all(type(w) is str for w in words), words
    assert set(statuses.TASK_FINAL) <= set(statuses.TASK_STATUSES)
