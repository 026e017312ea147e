"""Lists and words as a user reads them, through the real CLI against a real parheliad
running the scripted fake Claude: the same word for the same thing, lists that agree,
numbers that add up, and agent-written text that cannot drive the terminal."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.daemon import RunningDaemon, cli_argv, daemon_env
from tests.helpers.harness import Harness, fake_prompt
from tests.helpers.terminal import in_pty

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def h(harness_factory) -> Harness:  # noqa: F811
    return harness_factory("[checkpoint]\nmin_turn_interval_seconds = 0\n")


def test_sessions_and_tasks_are_listed_alike_with_one_word(h: Harness) -> None:
    task_id = h.create(fake_prompt({"turn": True}))
    task = h.wait(task_id)
    sid = task["session_id"]
    assert task["status"] == "completed"
    session = h.json("session", "show", sid)
    assert session["status"] == "completed"  # the task's word, not "finished"
    # Both lists show everything by default; --active leaves the completed out of both.
    assert sid in h.run("session", "list", check=True).stdout
    assert task_id in h.run("task", "list", check=True).stdout
    assert sid not in h.run("session", "list", "--active", check=True).stdout
    assert task_id not in h.run("task", "list", "--active", check=True).stdout
    assert "finished" not in h.run("session", "list", check=True).stdout
    # A filter that matches nothing says so, not "create one".
    out = h.run("task", "list", "--status", "failed", check=True).stdout
    assert "No failed tasks" in out and "Create one" not in out


def _on_a_terminal(h: Harness, *args: str) -> str:
    """What a 120-column terminal shows (tables have headers and aligned columns there;
    piped, they are tab-separated rows); stdin is not a terminal (nobody answers)."""
    code, shown, _ = in_pty([*cli_argv(), *args], h.daemon.env, columns=120,
                            stdin_tty=False)
    assert code == 0, shown
    return shown.replace("\r", "")


def test_cost_columns_and_ended_containers(h: Harness) -> None:
    task_id = h.create(fake_prompt({"turn": True}))
    task = h.wait(task_id)
    listed = _on_a_terminal(h, "container", "list")
    header = next(line for line in listed.splitlines() if line.startswith("ID"))
    assert "COMPUTE" in header and " COST" not in header
    row = next(line for line in listed.splitlines() if task["container_id"] in line)
    assert "exited" in row and "healthy" not in row, listed
    assert "healthy" not in h.run("container", "show", task["container_id"],
                                  check=True).stdout
    assert "TOTAL" in _on_a_terminal(h, "task", "list"), header
    # Both mean what they say: TOTAL (task) = API + compute; COMPUTE (container) = compute.
    shown = h.json("container", "show", task["container_id"])
    assert shown["cost_micros"] == task["usage"]["compute_cost_micros"] or \
        shown["cost_micros"] <= task["usage"]["compute_cost_micros"]


def test_estimate_parts_never_exceed_the_cap(h: Harness) -> None:
    out = h.run("task", "create", "x", "--estimate-only", "--max-cost", "2", "--max-turns",
                "200", "--no-workspace", check=True).stdout
    amounts = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in re.finditer(
        r"^\s*(Estimated cost|compute|api)\b:?\s+\$([\d.]+)-\$([\d.]+)", out, re.M)}
    assert amounts["Estimated cost"][1] == 2.0, out
    assert amounts["api"][1] <= 2.0 and "capped by max cost $2" in out, out
    data = h.json("task", "create", "x", "--estimate-only", "--max-cost", "2",
                 "--max-turns", "200", "--no-workspace")
    assert all(p["high_micros"] <= data["high_micros"] for p in data["parts"])


def test_budget_over_the_ceiling_and_future_runs(h: Harness) -> None:
    h.wait(h.create(fake_prompt({"turn": True})))
    used = h.json("budget", "show")["used_micros"]
    assert used > 0
    h.run("budget", "set", "0.000001", check=True)
    out = h.run("budget", "show", check=True).stdout
    remaining = next(line for line in out.splitlines() if line.startswith("Remaining:"))
    assert "-" not in remaining and "$0.00 (over by $" in remaining, out
    status = h.run("reconciler", "status", check=True).stdout
    nxt = next(line for line in status.splitlines() if "Next run" in line)
    assert "ago" not in nxt and "just now" not in nxt and re.search(r"\(in \d", nxt), status


def test_show_prints_whole_prompts_and_escapes_control_characters(h: Harness) -> None:
    long_prompt = "Refactor the parser. " * 15 + "THE END"
    hostile = "Clear\x1b[2J\x1b]0;owned\x07 the screen\rOVERWRITE \u202eevil"
    task_id = h.create(fake_prompt({"turn": True}, text=long_prompt + "\n" + hostile))
    h.wait(task_id)
    shown = h.run("task", "show", task_id, check=True).stdout
    assert "THE END" in shown and "Refactor the parser. " * 15 in " ".join(shown.split()) + " "
    listed = h.run("task", "list", check=True).stdout
    for out in (shown, listed, h.run("events", "list", check=True).stdout):
        assert "\x1b" not in out and "\r" not in out and "\x07" not in out
        assert "\u202e" not in out
    assert "\\x1b[2J" in shown and "\\x0d" in shown  # visible, not executed


def test_session_recover_lists_checkpoints_in_aligned_columns(h: Harness) -> None:
    task_id = h.create(fake_prompt({"turn": True}, {"turn": True}))
    sid = h.wait(task_id)["session_id"]
    out = _on_a_terminal(h, "session", "recover", sid)
    block = out[out.index("Latest checkpoints"):out.index("Done since")].splitlines()[1:]
    rows = [line for line in block if re.match(r"\s*cp-[0-9a-f]+", line)]
    assert len(rows) >= 2, out
    header = next(line for line in block if "TRIGGER" in line)
    for name in ("TRIGGER", "CREATED", "FILES", "SIZE"):
        col = header.index(name)
        assert all(len(r) > col and r[col - 1] == " " and r[col] != " " for r in rows), \
            (name, out)


def test_config_sync_calls_only_credentials_secrets(tmp_path: Path,
                                                    parhelia_home: Path) -> None:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text(json.dumps(
        {"env": {"FOO": "bar", "MY_TOKEN": "abc", "PLAIN": "sk-ant-api03-" + "x" * 40}}))
    env = daemon_env(parhelia_home, HOME=str(home))
    env.pop("CLAUDE_CONFIG_DIR", None)
    d = RunningDaemon(parhelia_home, env).start()
    try:
        out = subprocess.run([*cli_argv(), "config", "sync", "--dry-run", "--json"], env=d.env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        reasons = {e["path"]: e["reason"] for e in json.loads(out.stdout)["excluded"]}
        assert reasons["settings.json#env.FOO"] == "env"
        assert reasons["settings.json#env.MY_TOKEN"] == "secret"  # by its name
        assert reasons["settings.json#env.PLAIN"] == "secret"  # by its shape
    finally:
        d.stop()
