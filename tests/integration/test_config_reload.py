"""Issue 27, item 9: the daemon re-reads its configuration without a restart
(`parhelia daemon reload`, SIGHUP), applies what can change live, names what needs
`parhelia daemon restart`, and `config show` marks the values it does not use yet."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from tests.helpers.harness import Harness, write_config
from tests.helpers.waiting import wait_for


def _rewrite(h: Harness, extra: str) -> None:
    write_config(h.home, extra)


def _values(h: Harness) -> dict[str, dict[str, Any]]:
    return {v["key"]: v for v in h.json("config", "show")["values"]}


def _pid(h: Harness) -> int:
    return int(h.json("daemon", "status")["pid"])


def test_item9_a_changed_value_is_used_after_reload_without_a_restart(
        harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory(extra_config="[budget]\ndefault_ceiling_usd = 50\n")
    pid = _pid(h)
    assert h.json("budget", "show")["ceiling_micros"] == 50_000_000

    _rewrite(h, "[budget]\ndefault_ceiling_usd = 12.5\n[daemon]\nlog_level = 'debug'\n")
    shown = _values(h)
    # The file says 12.5; the daemon still uses 50, and config show says so.
    assert shown["budget.default_ceiling_usd"]["value"] == "12.5"
    assert shown["budget.default_ceiling_usd"]["in_use"] == "50"
    shown_piped = h.run("config", "show", check=True)
    rows = {r.split("\t")[0]: r.split("\t") for r in shown_piped.stdout.splitlines()}
    assert rows["budget.default_ceiling_usd"][1] == '"12.5"'
    assert rows["budget.default_ceiling_usd"][3] == '"50" (until reload)'
    assert rows["daemon.log_level"][3] == '"info" (until restart)'
    assert "`parhelia daemon reload` applies them" in shown_piped.stderr
    assert h.json("budget", "show")["ceiling_micros"] == 50_000_000

    out = h.run("daemon", "reload", check=True).stdout
    assert 'budget.default_ceiling_usd: "50" -> "12.5"' in out
    assert 'daemon.log_level: "info" -> "debug" (needs `parhelia daemon restart`)' in out
    assert h.json("budget", "show")["ceiling_micros"] == 12_500_000  # used at once
    assert _pid(h) == pid  # without a restart
    shown = _values(h)
    assert shown["budget.default_ceiling_usd"]["in_use"] is None
    assert shown["daemon.log_level"]["in_use"] == "info"
    assert shown["daemon.log_level"]["needs_restart"] is True
    events = h.json("events", "list", "--type", "config_reloaded")["events"]
    assert events[-1]["data"]["applied"][0]["key"] == "budget.default_ceiling_usd"


def test_item9_sighup_reloads_and_a_bad_file_changes_nothing(harness: Harness) -> None:
    h = harness
    pid = _pid(h)
    _rewrite(h, "[budget]\ndefault_ceiling_usd = 20\n")
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: h.json("budget", "show")["ceiling_micros"] == 20_000_000, timeout=30,
             what="the ceiling read on SIGHUP")
    assert _pid(h) == pid

    _rewrite(h, "[budget]\ndefault_ceiling_usd = 'lots'\n")
    proc = h.run("daemon", "reload")
    assert proc.returncode == 2 and "E101" in proc.stderr, proc.stderr
    assert h.json("budget", "show")["ceiling_micros"] == 20_000_000


def test_item9_reload_retimes_the_periodic_jobs(harness: Harness) -> None:
    """An interval read by the scheduler (the reconciler's pass) follows a reload too."""
    h = harness
    _rewrite(h, "[reconciler]\npoll_interval_seconds = 7\n")
    out = h.run("daemon", "reload", check=True).stdout
    assert "reconciler.poll_interval_seconds: 60.0 -> 7.0" in out
    log = h.run("daemon", "logs", "-n", "400", check=True).stdout
    assert any("job.rescheduled" in line and "reconcile" in line for line in log.splitlines())
