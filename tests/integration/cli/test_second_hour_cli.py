"""Issue 27, items 8, 11 and 12 through the real CLI against a real daemon (the scripted
fake agent): one money format, the export envelope, wording, a Modal task refused at
once without a token, the credential shadowed by the environment, `auth clear -y`,
`budget estimate`."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers.harness import Harness, fake_prompt

pytestmark = pytest.mark.timeout(180)

SIX_DECIMALS = re.compile(r"\$\d+\.\d{5,}")


def test_item8_one_money_format_in_set_echo_e300_and_events(harness: Harness) -> None:
    h = harness
    echo = h.run("budget", "set", "0.5", check=True)
    assert "Ceiling set to $0.50." in echo.stderr + echo.stdout
    created = h.run("task", "create", fake_prompt({"turn": True}), "--no-workspace")
    assert created.returncode == 0, created.stderr
    assert "E300" in created.stderr and "ceiling $0.50" in created.stderr, created.stderr
    assert created.stderr.count("stays queued") <= 1, created.stderr
    synced = h.run("task", "create", fake_prompt({"turn": True}), "--no-workspace", "--sync")
    assert synced.returncode == 4 and "E300" in synced.stderr, synced.stderr
    assert synced.stderr.count("stays queued") == 1, synced.stderr
    texts = [e["message"] for e in h.json("events", "list")["events"]]
    texts.append(created.stderr)
    assert not [t for t in texts if SIX_DECIMALS.search(t)], texts


def test_item8_events_export_json_has_the_list_envelope(harness: Harness, tmp_path) -> None:
    h = harness
    h.wait(h.create(fake_prompt({"turn": True})))
    listed = h.json("events", "list", "--limit", "10000")
    out = tmp_path / "events.json"
    h.run("events", "export", str(out), "--format", "json", check=True)
    exported = json.loads(out.read_text())
    assert set(exported) == set(listed) == {"events"}
    assert [e["id"] for e in exported["events"]] == [e["id"] for e in listed["events"]]


def test_item8_a_held_task_is_deleted_without_dispatch_rejected(harness: Harness) -> None:
    h = harness
    task_id = h.create("later", "--no-dispatch")
    proc = h.run("task", "delete", task_id, "-y")
    assert proc.returncode == 0, proc.stderr
    assert "DISPATCH_REJECTED" not in proc.stderr
    assert h.run("task", "show", task_id).returncode == 3


def test_item11_a_modal_task_without_a_token_is_refused_at_once(harness: Harness) -> None:
    h = harness
    for args in (("--backend", "modal"), ("--gpu", "T4")):
        proc = h.run("task", "create", "x", "--no-workspace", *args)
        assert proc.returncode != 0, (args, proc.stdout)
        assert "E400" in proc.stderr and "modal token new" in proc.stderr, proc.stderr
        assert "No task was created" in proc.stderr
    assert h.json("task", "list")["tasks"] == []


def test_item12_auth_status_says_the_environment_shadows_the_stored_credential(
        harness_factory) -> None:
    h = harness_factory(ANTHROPIC_API_KEY="from-the-environment")
    stored = h.daemon.cli("auth", "set", "--stdin", input="stored-value\n")
    assert "Stored ANTHROPIC_API_KEY" in stored.stdout
    status = h.run("auth", "status", check=True).stdout
    assert "from the daemon's environment" in status
    assert "is not used" in status and "shadows it" in status
    assert h.json("auth", "status")["shadowed"] == ["ANTHROPIC_API_KEY"]
    assert "from-the-environment" not in status and "stored-value" not in status


def test_item12_auth_clear_takes_y_and_budget_estimate_exists(harness: Harness) -> None:
    h = harness
    assert h.daemon.cli("auth", "set", "--stdin", input="some-value\n").returncode == 0
    refused = h.run("auth", "clear")  # stdin is not a terminal: nothing is removed
    assert refused.returncode == 2 and "E102" in refused.stderr
    env_file = next(p for p in (h.home / "parheliad.env", h.home / "config" / "parheliad.env")
                    if p.exists())
    assert "some-value" in env_file.read_text()
    cleared = h.run("auth", "clear", "-y", check=True)
    assert "Removed the credential" in cleared.stdout
    assert "some-value" not in env_file.read_text()

    est = h.json("budget", "estimate", "--max-turns", "10", "--model", "claude-sonnet-4-5")
    assert {p["name"] for p in est["parts"]} == {"compute", "api"}
    assert est["high_micros"] == 10 * (20_000 * 3 + 1_500 * 15)  # local: no compute
    text = h.run("budget", "estimate", "--max-turns", "10", check=True).stdout
    assert text.startswith("Estimated cost: $") and "Nothing was created." in text
