"""The typed channel records (``parhelia.records``): what the worker sends is what the
daemon reads back, and hostile or malformed records are refused with a reason instead
of reaching the daemon's decisions."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any

import pytest

from modal_worker.channel import MemoryChannel, send
from modal_worker.stream import AgentStats, StreamParser
from parhelia import records
from parhelia.records import Envelope, RecordError

SAMPLES: list[records.Typed] = [
    records.Heartbeat(cpu_percent=12.5, memory_bytes=1 << 30, disk_bytes=4096, agent_alive=True,
                      usage=records.Usage(3, 100, 50, 7, 9, 0.25)),
    records.AgentTurnCompleted(records.Usage(turns=2, input_tokens=10)),
    records.AgentCost(usage=records.Usage(turns=1, cost_usd=0.5), total_cost_usd=1.5),
    records.AgentResult(subtype="success", usage=records.Usage(4, 1, 2, 3, 4, 0.01),
                        total_cost_usd=0.02, duration_ms=1234, terminal_reason="completed",
                        permission_denials=1, text="done"),
    records.AgentToolUse(tool="Bash", summary="ls -la", tool_use_id="toolu_1"),
    records.WorkerStarted(incarnation=2, backend="local", pid=42, hostname="h", python="3.11.9",
                          resume=True, restore_checkpoint_id="cp-0123456789abcdef"),
    records.WorkerExited(exit_code=0, status="completed",
                         last_checkpoint_id="cp-0123456789abcdef"),
    records.WorkerExited(exit_code=1, status="failed", error_code="E600", error_message="no"),
    records.CheckpointCreated(checkpoint_id="cp-0123456789abcdef", parent_id="cp-fedcba9876543210",
                              trigger="turn", message="m", created_at="2026-12-06T11:00:00.5Z",
                              stats=records.CheckpointStats(files=3, bytes=10, skipped=1),
                              git={"branch": "main"}, environment={"model": "x"}),
    records.CheckpointFailed(trigger="manual", error="disk full", message="before refactor"),
    records.SessionInteractive(socket="/tmp/parhelia-tmux-0/c-1", resume=True, ready=True),
    records.SessionAttached(clients=2, attaches=3),
    records.SessionDetached(clients=1, detaches=1),
    records.SessionHeadless(instruction_chars=120),
    records.WorkerIsolation(isolation="none", credential="environment",
                            reason="bwrap: no user namespaces"),
    records.SetupStarted(phase="setup", steps=2),
    records.SetupCompleted(phase="start", steps=1, duration_ms=1500),
    records.SetupSkipped(hash="env-0123456789abcdef", steps=2),
    records.SetupFailed(phase="setup", index=1, name="setup[2]", command="uv sync",
                        exit_code=2, timed_out=False, duration_ms=800, tail=["error: x"]),
]


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: r.TYPE)
def test_every_record_survives_the_channel(record: records.Typed) -> None:
    channel = MemoryChannel()
    send(channel, record)
    line = json.loads(json.dumps(channel.records[0]))  # what the spool carries
    envelope = Envelope.from_dict(line)
    assert envelope.type == record.TYPE and envelope.seq == 1
    assert envelope.typed() == record
    assert type(record).from_dict(record.to_dict()).to_dict() == record.to_dict()


def unsampled(samples: list[records.Typed]) -> set[str]:
    """Record types the daemon acts on (``records.TYPED``, and every member of the
    ``Typed`` union) that no sample of ``samples`` is."""
    union: set[type] = set()
    for member in typing.get_args(records.Typed):
        union.update(typing.get_args(member) or (member,))
    kinds = {cls.TYPE for cls in union} | set(records.TYPED)
    return kinds - {type(sample).TYPE for sample in samples}


def test_every_record_type_has_a_sample() -> None:
    """``test_every_record_survives_the_channel`` runs on every record type: a new one
    without a sample fails here."""
    assert unsampled(SAMPLES) == set()


def test_the_sample_guard_sees_a_record_type_without_a_sample(monkeypatch) -> None:
    @dataclasses.dataclass(frozen=True)
    class Planted:
        TYPE = "planted_record"

    monkeypatch.setitem(records.TYPED, Planted.TYPE, Planted)  # type: ignore[arg-type]
    assert unsampled(SAMPLES) == {"planted_record"}
    assert unsampled([s for s in SAMPLES if not isinstance(s, records.SessionDetached)]) == {
        "planted_record", records.SessionDetached.TYPE}


def test_every_decision_record_is_in_the_catalogue() -> None:
    assert all(records.is_known(kind) for kind in records.TYPED)


def test_the_parser_s_records_read_back_as_the_same_figures() -> None:
    """The real stream parser's turn and result records, read as the daemon reads them."""
    channel = MemoryChannel()
    parser = StreamParser(emit=channel.emit, stats=AgentStats(), cwd="/w")
    parser.feed({"type": "assistant", "message": {"id": "m1", "role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_9", "name": "Bash", "input": {"command": "ls"}}],
        "usage": {"input_tokens": 11, "output_tokens": 5}}})
    parser.feed({"type": "result", "subtype": "success", "is_error": False, "num_turns": 1,
                 "total_cost_usd": 0.003, "result": "ok " * 5000,
                 "usage": {"input_tokens": 11, "output_tokens": 7}})
    typed = [Envelope.from_dict(json.loads(json.dumps(r))).typed() for r in channel.records]
    tool = next(r for r in typed if isinstance(r, records.AgentToolUse))
    assert (tool.tool, tool.tool_use_id) == ("Bash", "toolu_9")
    result = next(r for r in typed if isinstance(r, records.AgentResult))
    assert result.succeeded and result.usage.output_tokens == 7
    assert result.usage.cost_usd == pytest.approx(0.003) and len(result.text) <= records.MAX_TEXT
    assert parser.result == result


def _line(kind: str, data: object, **envelope: Any) -> dict[str, Any]:
    return {"seq": 1, "type": kind, "at": "2026-12-06T11:00:00Z", "data": data, **envelope}


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("no seq", {"type": "heartbeat", "data": {}}, "seq"),
    ("bool seq", _line("heartbeat", {}, seq=True), "seq"),
    ("negative seq", _line("heartbeat", {}, seq=-4), "seq"),
    ("unknown type", _line("rm_rf", {}), "unknown record type"),
    ("type not a string", _line("heartbeat", {}, type=["heartbeat"]), "unknown record type"),
    ("data a list", _line("worker_started", [1, 2]), "not an object"),
    ("data too large", _line("agent_message", {"text": "x" * (records.MAX_RECORD_BYTES + 1)}),
     "larger than"),
    ("at not a timestamp", _line("heartbeat", {}, at="; DROP TABLE"), "timestamp"),
    ("path as a checkpoint id", _line("checkpoint_created", {"checkpoint_id": "../../etc"}),
     "checkpoint_id is not a checkpoint id"),
    ("no checkpoint id", _line("checkpoint_created", {"trigger": "turn"}),
     "checkpoint_id is missing"),
    ("bad parent id", _line("checkpoint_created", {"checkpoint_id": "cp-0123456789abcdef",
                                                   "parent_id": 7}), "parent_id"),
    ("stats not an object", _line("checkpoint_created", {"checkpoint_id": "cp-0123456789abcdef",
                                                         "stats": "big"}), "stats"),
    ("negative file count", _line("checkpoint_created", {
        "checkpoint_id": "cp-0123456789abcdef", "stats": {"files": -1}}), "files"),
    ("exit code a string", _line("worker_exited", {"exit_code": "0", "status": "completed"}),
     "exit_code"),
    ("unknown status", _line("worker_exited", {"exit_code": 0, "status": "succeeded"}),
     "status"),
    ("error code not a code", _line("worker_exited", {"status": "failed", "error_code": "X1"}),
     "error_code"),
    ("tokens a bool", _line("agent_turn_completed", {"input_tokens": True}), "input_tokens"),
    ("tokens beyond JSON", _line("heartbeat", {"output_tokens": 2**70}), "output_tokens"),
    ("cost NaN", _line("agent_result", {"cost_usd": math.nan}), "cost_usd"),
    ("cost negative", _line("agent_cost", {"cost_usd": -5}), "cost_usd"),
    ("cost huge", _line("agent_result", {"total_cost_usd": 1e300}), "total_cost_usd"),
    ("alive a string", _line("heartbeat", {"agent_alive": "yes"}), "agent_alive"),
    ("subtype an object", _line("agent_result", {"subtype": {"a": 1}}), "subtype"),
    ("tool use id too long", _line("agent_tool_use", {"tool_use_id": "x" * 1000}),
     "tool_use_id"),
    ("socket not a path", _line("session_interactive", {"socket": "-S/etc/x"}), "socket"),
    ("socket with NUL", _line("session_interactive", {"socket": "/tmp/a\0b"}), "socket"),
    ("negative clients", _line("session_attached", {"clients": -3}), "clients"),
]


@pytest.mark.parametrize(("line", "reason"), [(b[1], b[2]) for b in BAD],
                         ids=[b[0] for b in BAD])
def test_malformed_records_are_refused_with_a_reason(line: dict[str, Any], reason: str) -> None:
    with pytest.raises(RecordError, match=reason.replace("(", r"\(")):
        Envelope.from_dict(line).typed()


def test_partial_records_take_their_defaults_and_long_text_is_cut() -> None:
    """An older worker (or a terse one) leaves fields out; free text is cut, not refused."""
    exited = Envelope.from_dict(_line("worker_exited", {"exit_code": 143})).typed()
    assert exited == records.WorkerExited(exit_code=143, status="failed")
    result = records.AgentResult.from_dict({"text": "y" * 100_000, "total_cost_usd": 0.4,
                                            "future_field": {"ignored": True}})
    assert len(result.text) == records.MAX_TEXT and "future_field" not in result.to_dict()
    assert result.usage.cost_usd == 0.4  # a worker that only sends the session's figure
    informs = Envelope.from_dict(_line("agent_init", {"model": "m"}))
    assert informs.typed() is None and informs.data == {"model": "m"}
