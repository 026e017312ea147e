"""Pure helpers: durations, sizes, money, instants and the proto -> JSON conventions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from parhelia_cli import durations as d
from parhelia_cli.convert import task_dict, to_dict


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("90s", 90), ("30m", 1800), ("4h", 14400), ("1h30m", 5400), ("2d", 172800),
    ("1w", 604800), ("1.5h", 5400), (" 10M ", 600),
])
def test_durations(text, seconds):
    assert d.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-5m", "5x", "m5", "1h 30m", "inf", "nan", "1e3"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        d.parse_duration(text)


def test_timeout_is_whole_seconds():
    assert d.parse_timeout("30m") == 1800
    with pytest.raises(ValueError):
        d.parse_timeout("1.5")


def test_instants():
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert d.parse_instant("30m", now) == now - timedelta(minutes=30)
    assert d.parse_instant("2d", now) == now - timedelta(days=2)
    assert d.parse_instant("2026-11-28T10:00:00Z", now) == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert d.parse_instant("2026-11-28T11:00:00+01:00", now) == datetime(2026, 11, 28, 10,
                                                                         tzinfo=UTC)
    for bad in ("yesterday", "2026-11-28T10:00:00", "2026-13-01T00:00:00Z", ""):
        with pytest.raises(ValueError):
            d.parse_instant(bad, now)


@pytest.mark.parametrize(("text", "mib"), [
    ("4096", 4096), ("512MiB", 512), ("16GiB", 16384), ("16G", 16384), ("1.5GiB", 1536),
    ("2gb", 2048), ("1TiB", 1048576),
])
def test_memory(text, mib):
    assert d.parse_memory_mib(text) == mib


@pytest.mark.parametrize("text", ["0", "-1", "16 furlongs", "0.5", "GiB", "99999999999"])
def test_bad_memory(text):
    with pytest.raises(ValueError):
        d.parse_memory_mib(text)


@pytest.mark.parametrize(("text", "micros"), [
    ("2.50", 2_500_000), ("$10", 10_000_000), ("0.000001", 1), ("1e2", 100_000_000),
])
def test_usd(text, micros):
    assert d.parse_usd_micros(text) == micros


@pytest.mark.parametrize("text", ["0", "-1", "cheap", "0.0000001", "NaN", "Infinity", ""])
def test_bad_usd(text):
    with pytest.raises(ValueError):
        d.parse_usd_micros(text)


def test_usd_strings_are_exact():
    assert d.usd(0) == "0.000000"
    assert d.usd(1_250_000) == "1.250000"
    assert d.usd(-5) == "-0.000005"
    assert d.usd(123_456_789_012) == "123456.789012"


def test_human_forms():
    assert d.human_seconds(5) == "5s"
    assert d.human_seconds(185) == "3m05s"
    assert d.human_seconds(7440) == "2h04m"
    assert d.human_bytes(512) == "512 B"
    assert d.human_bytes(2_000_000) == "2.0 MB"
    assert d.human_count(12_345) == "12.3k"
    assert d.usd_short(1_250_000) == "$1.25"
    assert d.usd_short(4_200) == "$0.0042"


def test_to_dict_conventions():
    from parhelia.v1 import common_pb2, system_pb2

    t = common_pb2.Task(id="t-1", status=common_pb2.TASK_STATUS_RECOVERING,
                        usage=common_pb2.Usage(api_cost_micros=1500, compute_cost_micros=500,
                                               turns=3),
                        options=common_pb2.TaskOptions(max_cost_micros=2_000_000, gpu="A10G"))
    t.created_at.FromDatetime(datetime(2026, 11, 28, 19, 0, 0, 123456, tzinfo=UTC))
    out = task_dict(t)
    assert out["status"] == "recovering"
    assert out["created_at"] == "2026-11-28T19:00:00.123456Z"
    assert out["started_at"] is None
    assert out["prompt"] is None
    assert out["result"] is None
    assert out["options"]["max_cost_micros"] == 2_000_000
    assert out["options"]["max_cost_usd"] == "2.000000"
    assert out["usage"]["total_cost_micros"] == 2000
    assert out["usage"]["total_cost_usd"] == "0.002000"
    assert out["usage"]["turns"] == 3
    assert set(common_pb2.Task.DESCRIPTOR.fields_by_name) <= set(out)

    unspecified = to_dict(common_pb2.Task())
    assert unspecified["status"] is None

    e = to_dict(common_pb2.Event(id=7, type="task_created", data_json='{"a": [1, 2]}'))
    assert e["data"] == {"a": [1, 2]}
    assert "data_json" not in e

    s = to_dict(system_pb2.GetStatusResponse(tasks_by_status={"pending": 2}))
    assert s["tasks_by_status"] == {"pending": 2}
    # A map's keys come out sorted: upb iterates them in an order that changes from one
    # process to the next, and the same answer must print the same text.
    many = {f"{chr(c)}-state": c for c in reversed(range(ord("a"), ord("z") + 1))}
    keys = list(to_dict(system_pb2.GetStatusResponse(tasks_by_status=many))["tasks_by_status"])
    assert keys == sorted(many)
    assert s["health"] is None
    c = to_dict(common_pb2.Container(state=common_pb2.CONTAINER_STATE_ORPHANED,
                                     health=common_pb2.HEALTH_DEGRADED))
    assert (c["state"], c["health"]) == ("orphaned", "degraded")


def test_messages_convert_from_many_threads_on_a_cold_cache() -> None:
    """The MCP bridge runs tools in threads: the first conversions of a message type
    race; a half-built conversion plan lost fields (KeyError: 'options' from
    parhelia_task_create)."""
    import sys
    import threading

    from parhelia.v1 import common_pb2
    from parhelia_cli import convert

    task = common_pb2.Task(id="t-1", prompt="p", options=common_pb2.TaskOptions(cpu=2.0))
    errors: list[BaseException] = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(30):
            convert._plans.clear()
            start = threading.Barrier(8)

            def run() -> None:
                start.wait()
                try:
                    assert convert.to_dict(task)["options"]["cpu"] == 2.0
                except BaseException as exc:  # noqa: BLE001 - collected for the assert
                    errors.append(exc)

            threads = [threading.Thread(target=run) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[:3]


def test_item8_the_budget_warning_is_printed_once_per_command(capsys, monkeypatch) -> None:
    """A command that reconnects (top, watch, the MCP bridge) hears the banner again with
    new amounts each time: it is printed once per state, not once per connection."""
    from types import SimpleNamespace

    from parhelia_cli import client, render

    monkeypatch.setattr(render, "_warned", set())
    for used in ("$4.01", "$4.20", "$4.35"):
        client.check_budget(SimpleNamespace(
            budget_state="warning", budget_detail=f"Budget warning: {used} of $5.00 used"))
    client.check_budget(SimpleNamespace(budget_state="exceeded",
                                        budget_detail="Budget ceiling reached: $5.01"))
    err = capsys.readouterr().err
    assert err.count("Budget warning") == 1 and err.count("ceiling reached") == 1, err
