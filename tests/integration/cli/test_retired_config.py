"""A configuration key an older version had (``checkpoint.min_turn_interval_seconds``)
still loads, through the real daemon and CLI: the daemon starts, logs a warning, and
``parhelia config show`` says what to do about it."""

from __future__ import annotations

import json

from tests.helpers.harness import Harness


def test_a_retired_key_starts_the_daemon_with_a_warning(harness_factory) -> None:
    h: Harness = harness_factory("[checkpoint]\nmin_turn_interval_seconds = 0\n")
    shown = h.run("config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "Warning:" in shown.stderr and "checkpoint.min_turn_interval_seconds: no longer " \
        "used" in shown.stderr and "remove it" in shown.stderr
    assert "min_turn_interval_seconds" not in shown.stdout
    data = json.loads(h.run("config", "show", "--json").stdout)
    assert len(data["warnings"]) == 1 and "min_turn_interval_seconds" in data["warnings"][0]
    log = (h.home / "state" / "parheliad.log").read_text()
    assert "config.retired_key" in log and "min_turn_interval_seconds" in log
