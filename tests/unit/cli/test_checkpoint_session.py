"""`checkpoint`, `session` and `resume` against the in-process fake API: parsing,
confirmation rules, rendering and the JSON shapes. The real daemon is exercised in
test_integration_checkpoints.py."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from parhelia.v1 import checkpoints_pb2, common_pb2, sessions_pb2, tasks_pb2
from parhelia_cli import confirm

ANSI = re.compile(r"\x1b\[")
TASK, SESSION = "t-0001abcdef", "s-0001abcdef"


@pytest.fixture
def seeded(fake):
    """A failed task whose stopped session has two checkpoints and an event after them."""
    st = fake.state
    t = common_pb2.Task(id=TASK, prompt="Fix app.py", session_id=SESSION,
                        status=common_pb2.TASK_STATUS_FAILED)
    t.created_at.GetCurrentTime()
    st.tasks[TASK] = t
    s = common_pb2.Session(id=SESSION, task_id=TASK, agent_session_id="uuid-1",
                           status="stopped", containers=2, checkpoints=2,
                           latest_checkpoint_id="cp-00000000000000b2")
    s.created_at.GetCurrentTime()
    s.updated_at.GetCurrentTime()
    st.sessions[SESSION] = s
    for n, (trigger, manual, msg) in enumerate([("start", False, ""),
                                                ("manual", True, "before refactor")], 1):
        cp = common_pb2.Checkpoint(
            id=f"cp-00000000000000b{n}", session_id=SESSION, trigger=trigger, manual=manual,
            message=msg, agent_version="2.1.0", model="claude-x", git_branch="main",
            git_head="abc123", git_dirty=["M app.py"], container_id="c-1",
            stats=common_pb2.CheckpointStats(files=10 * n, bytes=2_500_000 * n,
                                             new_bytes=1000 * n, duration_ms=40))
        cp.created_at.GetCurrentTime()
        st.checkpoints.append(cp)
    st.manifests["cp-00000000000000b2"] = json.dumps({
        "id": "cp-00000000000000b2", "environment": {"parhelia_version": "0.1.0",
                                                     "config_bundle_id": "cfg-1"},
        "git": {"branch": "main", "head": "abc123", "dirty": [], "stash": ["stash@{0} x y"]},
        "conversation": [{"path": "uuid-1.jsonl", "blob": "ab", "size": 4000}],
        "tree": []})
    e = common_pb2.Event(id=99, type="agent_tool_use", level="info", task_id=TASK,
                         session_id=SESSION, message="Bash: rm -rf build")
    e.at.GetCurrentTime()
    st.events.append(e)
    return fake


def requests(fake, kind):
    return [r for r in fake.state.requests if isinstance(r, kind)]


# --- registration -------------------------------------------------------------------

def test_groups_are_registered_with_aliases(run):
    top = run("--help").stdout
    for name in ("session (s)", "checkpoint (c)", "resume"):
        assert name in top
    for group, subs in (("c", ("create", "list", "show", "diff", "rollback", "verify", "gc")),
                        ("s", ("list", "show", "kill", "recover"))):
        out = run(group, "--help").stdout
        for sub in subs:
            assert sub in out


def test_examples_parse_against_the_real_commands():
    """Every checkpoint/session/resume example line parses with the real options."""
    from parhelia_cli.examples import EXAMPLES
    from parhelia_cli.main import cli

    seen = 0
    for examples in EXAMPLES.values():
        for _, command in examples:
            for part in command.split("&&"):
                words = shlex.split(part)
                if "parhelia" not in words:
                    continue
                words = words[words.index("parhelia") + 1:]
                if words[0] not in ("session", "checkpoint", "resume"):
                    continue
                ctx = cli.make_context("parhelia", words)
                sub = cli.get_command(ctx, words[0])
                assert sub is not None
                sub_ctx = sub.make_context(words[0], words[1:], parent=ctx)
                if words[0] != "resume":
                    leaf = sub.get_command(sub_ctx, words[1])  # type: ignore[attr-defined]
                    assert leaf is not None, command
                    leaf.make_context(words[1], words[2:], parent=sub_ctx)
                seen += 1
    assert seen >= 12


def test_help_topics_describe_the_registered_commands(run):
    for topic in ("session", "checkpoint", "recovery"):
        out = run("help", topic).stdout
        assert "not available" not in out
    assert "--action resume|restart|wait" in run("help", "session").stdout
    assert "gc [--dry-run]" in run("help", "checkpoint").stdout


# --- checkpoint ---------------------------------------------------------------------

def test_create_prints_the_id_and_summary(run, seeded):
    result = run("checkpoint", "create", SESSION[:6], "-m", "before the big refactor")
    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(r"cp-\w+\n", result.stdout)
    assert "(trigger manual): 3 file(s), 12.0 KB, 2.0 KB new." in result.stderr
    req = requests(seeded, checkpoints_pb2.CreateCheckpointRequest)[-1]
    assert (req.session_id, req.message) == (SESSION[:6], "before the big refactor")


def test_create_json_and_unknown_session(run, seeded):
    cp = json.loads(run("c", "create", SESSION, "--json").stdout)
    assert cp["trigger"] == "manual" and cp["manual"] is True
    assert cp["stats"] == {"files": 3, "bytes": 12000, "new_bytes": 2000, "duration_ms": 12}
    assert cp["message"] is None  # empty strings are null
    result = run("c", "create", "s-nope")
    assert result.exit_code == 3
    assert "Error E200 SESSION_NOT_FOUND" in result.stderr


def test_list_marks_manual_ones_newest_first(run, seeded):
    result = run("checkpoint", "list", SESSION)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    b1 = next(i for i, x in enumerate(lines) if "cp-00000000000000b1" in x)
    b2 = next(i for i, x in enumerate(lines) if "cp-00000000000000b2" in x)
    assert b2 < b1
    assert "manual *" in lines[b2] and "before refactor" in lines[b2]
    assert "*" not in lines[b1]
    assert "* manual: kept by `parhelia checkpoint gc`" in result.stdout
    assert "5.0 MB" in lines[b2] and "2.0 KB" in lines[b2]
    assert not ANSI.search(result.stdout)


def test_list_json_limit_and_empty(run, seeded):
    data = json.loads(run("checkpoint", "list", "--limit", "1", "--json").stdout)
    assert [c["id"] for c in data["checkpoints"]] == ["cp-00000000000000b2"]
    assert data["checkpoints"][0]["created_at"].endswith("Z")
    assert requests(seeded, checkpoints_pb2.ListCheckpointsRequest)[-1].limit == 1
    assert run("checkpoint", "list", "s-other").stdout.strip() == \
        "No checkpoints of session s-other."
    assert run("checkpoint", "list", "--limit", "0").exit_code == 2


def test_show_renders_environment_git_and_stats(run, seeded):
    out = run("checkpoint", "show", "cp-00000000000000b2").stdout
    for text in ("Checkpoint cp-00000000000000b2", "Trigger:", "manual (manual: kept by gc)",
                 "Message:", "before refactor", "20 (5.0 MB, 2.0 KB new, took 40 ms)",
                 "Conversation: 1 file(s), 4.0 KB", "Agent:", "2.1.0", "Model:", "claude-x",
                 "Parhelia:", "0.1.0", "Config bundle: cfg-1", "Branch:", "main", "HEAD:",
                 "abc123", "Dirty:", "1 file(s)", "M app.py", "Stash:", "1 entry",
                 "stash@{0} x y"):
        assert text in out, text
    # Each list under its own label: dirty files are not shown as stash entries.
    assert out.index("Dirty files:") < out.index("M app.py") < out.index("Stash entries:") \
        < out.index("stash@{0} x y")


def test_show_json_parses_the_manifest_and_manifest_flag(run, seeded):
    data = json.loads(run("checkpoint", "show", "cp-00000000000000b2", "--json").stdout)
    assert data["id"] == "cp-00000000000000b2"
    assert data["manifest"]["environment"]["config_bundle_id"] == "cfg-1"
    assert data["git_dirty"] == ["M app.py"]
    raw = run("checkpoint", "show", "cp-00000000000000b2", "--manifest").stdout
    assert json.loads(raw)["git"]["stash"] == ["stash@{0} x y"]
    result = run("checkpoint", "show", "cp-zzz")
    assert result.exit_code == 3 and "E202 CHECKPOINT_NOT_FOUND" in result.stderr


def test_diff_table_patch_and_conversation(run, seeded):
    result = run("checkpoint", "diff", "cp-00000000000000b1", "cp-00000000000000b2")
    assert result.exit_code == 0
    out = result.stdout
    assert re.search(r"added\s+new.txt\s+1.5 KB\s+\+2 -0", out)
    assert re.search(r"removed\s+old.bin\s+2.0 MB\s+binary", out)
    assert re.search(r"modified\s+app.py\s+100 B\s+120 B\s+\+1 -1", out)
    assert "1 added, 1 removed, 1 modified" in out
    assert "diff --git" not in out and "[user]" not in out
    req = requests(seeded, checkpoints_pb2.DiffCheckpointsRequest)[-1]
    assert not req.files and not req.conversation

    out = run("c", "diff", "cp-00000000000000b1", "cp-00000000000000b2", "--files",
              "--conversation").stdout
    assert "-print('a')\n+print('b')\n" in out
    assert "2 conversation turn(s) added:" in out
    assert "[user] Fix app.py" in out and "[assistant] Done: prints b." in out
    assert not ANSI.search(out)
    req = requests(seeded, checkpoints_pb2.DiffCheckpointsRequest)[-1]
    assert req.files and req.conversation


def test_diff_json(run, seeded):
    data = json.loads(run("c", "diff", "cp-00000000000000b1", "cp-00000000000000b2",
                          "--conversation", "--json").stdout)
    assert set(data) == {"files", "patch", "turns_added"}
    assert data["files"][0] == {"path": "new.txt", "change": "added", "old_size": 0,
                                "new_size": 1500, "lines_added": 2, "lines_removed": 0,
                                "binary": False}
    assert data["patch"] is None
    assert data["turns_added"][1] == {"role": "assistant", "text": "Done: prints b."}


def test_rollback_off_a_terminal_needs_yes(run, seeded):
    result = run("checkpoint", "rollback", "cp-00000000000000b1")
    assert result.exit_code == 2
    assert "Error E102 MISSING_REQUIRED" in result.stderr and "pass -y" in result.stderr
    assert not requests(seeded, checkpoints_pb2.RollbackCheckpointRequest)
    # a piped "y" is not a confirmation either
    assert run("checkpoint", "rollback", "cp-00000000000000b1", input="y\n").exit_code == 2


def test_rollback_with_yes(run, seeded):
    result = run("checkpoint", "rollback", "cp-00000000000000b1", "-y")
    assert result.exit_code == 0, result.stderr
    assert ("Safety checkpoint cp-safety00000001 taken first (4 file(s), 9.0 KB, 0 B new); "
            "`parhelia checkpoint rollback cp-safety00000001 -y` undoes this.") in result.stdout
    assert f"Restored cp-00000000000000b1 into session {SESSION}" in result.stdout
    assert f"not running; continue it with `parhelia resume {SESSION}`" in result.stdout
    data = json.loads(run("c", "rollback", "cp-00000000000000b1", "-y", "--json").stdout)
    assert set(data) == {"safety_checkpoint", "restored", "resumed"}
    assert data["resumed"] is False and data["restored"]["id"] == "cp-00000000000000b1"


def test_rollback_asks_at_a_terminal(run, seeded, monkeypatch):
    monkeypatch.setattr(confirm, "interactive", lambda: True)
    result = run("checkpoint", "rollback", "cp-00000000000000b1", input="n\n")
    assert result.exit_code == 1
    assert "Roll the session of checkpoint cp-00000000000000b1 back" in result.stderr
    assert "Nothing was done." in result.stderr
    assert not requests(seeded, checkpoints_pb2.RollbackCheckpointRequest)
    result = run("checkpoint", "rollback", "cp-00000000000000b1", input="y\n")
    assert result.exit_code == 0
    assert len(requests(seeded, checkpoints_pb2.RollbackCheckpointRequest)) == 1


def test_verify_ok_and_failed(run, seeded):
    result = run("checkpoint", "verify", "cp-00000000000000b2")
    assert result.exit_code == 0
    assert result.stdout.strip() == "OK: cp-00000000000000b2: 7 blob(s), 1.2 MB verified."
    seeded.state.verify_problems = ["blob ab12 (app.py): hash mismatch", "blob cd34: missing"]
    result = run("checkpoint", "verify", "cp-00000000000000b2")
    assert result.exit_code == 1
    assert "FAILED: cp-00000000000000b2: 2 problem(s)" in result.stdout
    assert "  - blob ab12 (app.py): hash mismatch" in result.stdout
    assert "Error E600 CHECKPOINT_FAILED" in result.stderr
    result = run("checkpoint", "verify", "cp-00000000000000b2", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["problems"] == seeded.state.verify_problems
    assert json.loads(result.stderr)["error"]["code"] == "E600"


def test_gc_dry_run_then_for_real(run, seeded):
    result = run("checkpoint", "gc", "--dry-run")
    assert result.exit_code == 0
    assert "Would remove 1 checkpoint(s), 2 blob(s), which frees 3.5 MB." in result.stdout
    assert "cp-00000000000000b1" in result.stdout
    assert len(seeded.state.checkpoints) == 2
    data = json.loads(run("checkpoint", "gc", "--json", "-y").stdout)
    assert data == {"removed_checkpoint_ids": ["cp-00000000000000b1"], "blobs_removed": 2,
                    "bytes_freed": 3_500_000, "dry_run": False}
    assert run("checkpoint", "gc", "-y").stdout.startswith("Removed 0 checkpoint(s), 0 blob(s), "
                                                     "freeing 0 B.")


# --- session ------------------------------------------------------------------------

def test_session_list_and_all(run, seeded):
    done = common_pb2.Session(id="s-finished01", task_id="t-x", status="completed")
    seeded.state.sessions["s-finished01"] = done
    out = run("session", "list", "--active").stdout
    assert SESSION in out and "s-finished01" not in out and "stopped" in out
    assert "s-finished01" in run("session", "list").stdout
    data = json.loads(run("s", "list", "--all", "--limit", "5", "--json").stdout)
    assert {s["id"] for s in data["sessions"]} == {SESSION, "s-finished01"}
    req = requests(seeded, sessions_pb2.ListSessionsRequest)[-1]
    assert req.all and req.limit == 5
    row = next(s for s in data["sessions"] if s["id"] == SESSION)
    assert row["latest_checkpoint_id"] == "cp-00000000000000b2" and row["checkpoints"] == 2
    assert row["current_container_id"] is None


def test_session_show(run, seeded):
    out = run("session", "show", SESSION[:5]).stdout
    for text in (f"Session {SESSION}", "stopped", TASK, "uuid-1", "none running",
                 "cp-00000000000000b2", f"parhelia resume {SESSION}",
                 f"parhelia checkpoint list {SESSION}"):
        assert text in out, text
    assert json.loads(run("s", "show", SESSION, "--json").stdout)["agent_session_id"] == \
        "uuid-1"
    result = run("session", "show", "s-nope")
    assert result.exit_code == 3 and "E200" in result.stderr


def test_session_kill_confirmation_and_outcome(run, seeded):
    seeded.state.sessions[SESSION].status = "headless"
    result = run("session", "kill", SESSION)
    assert result.exit_code == 2 and "pass -y" in result.stderr
    assert not requests(seeded, sessions_pb2.KillSessionRequest)
    result = run("session", "kill", SESSION, "-y")
    assert result.exit_code == 0
    assert f"Stopped session {SESSION} (now stopped)." in result.stdout
    result = run("session", "kill", SESSION, "-y")
    assert result.exit_code == 1 and "E603" in result.stderr


def test_recover_guide_off_a_terminal(run, seeded):
    result = run("session", "recover", SESSION)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for text in (f"Session {SESSION} of task {TASK} (failed)", "What happened",
                 "The worker c-1 was lost (killed) after 3 turns.",
                 "Latest checkpoints (newest first)", "Latest checkpoints (newest first)",
                 "before refactor", "Done since cp-00000000000000b2",
                 "agent_tool_use", "Bash: rm -rf build", "Choices",
                 f"parhelia session recover {SESSION} --action resume",
                 f"parhelia session recover {SESSION} --action restart",
                 f"parhelia session recover {SESSION} --action wait"):
        assert text in out, text
    assert out.index("cp-00000000000000b2") < out.index("cp-00000000000000b1")
    row = next(line for line in out.splitlines() if line.lstrip().startswith("cp-00000000000000b2"))
    assert row.split()[:2] == ["cp-00000000000000b2", "manual"]
    req = requests(seeded, sessions_pb2.RecoverSessionRequest)
    assert len(req) == 1 and req[0].action == ""


def test_recover_json_guide(run, seeded):
    data = json.loads(run("session", "recover", SESSION, "--json").stdout)
    assert data["choices"] == ["resume", "restart", "wait"]
    assert data["action_taken"] is None
    assert data["since_latest_checkpoint"][0]["type"] == "agent_tool_use"
    assert data["task"]["usage"] is None or "total_cost_usd" in data["task"]["usage"]


def test_recover_with_action(run, seeded):
    result = run("session", "recover", SESSION, "--action", "resume", "--checkpoint",
                 "cp-00000000000000b1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == TASK
    assert (f"Resumed task {TASK} from cp-00000000000000b1. Task {TASK} is pending; follow "
            f"it with `parhelia task watch {TASK}`.") in result.stderr
    req = requests(seeded, sessions_pb2.RecoverSessionRequest)[-1]
    assert (req.action, req.checkpoint_id) == ("resume", "cp-00000000000000b1")
    seeded.state.sessions[SESSION].status = "stopped"
    out = run("s", "recover", SESSION, "--action", "wait").stdout
    assert out == f"Nothing changed: session {SESSION} is stopped, task {TASK} is pending.\n"
    data = json.loads(run("s", "recover", SESSION, "--action", "restart", "--json").stdout)
    assert data["action_taken"].startswith("restarted task t-restarted01")
    assert data["task"]["id"] == "t-restarted01"


def test_recover_rejects_bad_combinations(run, seeded):
    result = run("session", "recover", SESSION, "--action", "nap")
    assert result.exit_code == 2 and "E101" in result.stderr
    result = run("session", "recover", SESSION, "--action", "wait", "--checkpoint", "cp-1")
    assert result.exit_code == 2
    assert "--checkpoint cp-1 applies to --action resume" in result.stderr
    assert not requests(seeded, sessions_pb2.RecoverSessionRequest)


def test_recover_prompts_at_a_terminal(run, seeded, monkeypatch):
    monkeypatch.setattr(confirm, "interactive", lambda: True)
    monkeypatch.setattr("parhelia_cli.render.is_tty", lambda stream=None: True)
    result = run("session", "recover", SESSION, input="resume\n")
    assert result.exit_code == 0, result.stderr
    assert "What now?" in result.stderr
    actions = [r.action for r in requests(seeded, sessions_pb2.RecoverSessionRequest)]
    assert actions == ["", "resume"]
    assert f"parhelia task watch {TASK}" in result.stderr
    result = run("session", "recover", SESSION, input="\n")  # default: none
    assert "Nothing was done." in result.stderr
    assert [r.action for r in requests(seeded, sessions_pb2.RecoverSessionRequest)][-1] == ""


# --- resume -------------------------------------------------------------------------

def test_resume_prints_the_task_id(run, seeded):
    result = run("resume", SESSION, "--checkpoint", "cp-00000000000000b1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{TASK}\n"
    assert f"Resumed session {SESSION} as task {TASK} from cp-00000000000000b1" in result.stderr
    assert f"`parhelia task watch {TASK}`" in result.stderr
    req = requests(seeded, sessions_pb2.ResumeSessionRequest)[-1]
    assert (req.session_id, req.checkpoint_id) == (SESSION, "cp-00000000000000b1")
    result = run("resume", SESSION)
    assert result.exit_code == 1 and "E603" in result.stderr  # already active


def test_resume_json_and_bad_checkpoint(run, seeded):
    result = run("resume", SESSION, "--checkpoint", "cp-zz")
    assert result.exit_code == 3 and "E202" in result.stderr
    data = json.loads(run("resume", SESSION, "--json").stdout)
    assert data["id"] == TASK and data["status"] == "pending"
    assert data["restarts"] == 1


def test_resume_sync_follows_like_task_create(run, seeded):
    done = common_pb2.Task(status=common_pb2.TASK_STATUS_COMPLETED,
                           result=common_pb2.TaskResult(subtype="success", text="All fixed."))
    seeded.state.watch_script = [tasks_pb2.TaskProgress(task=done, elapsed_seconds=3)]
    result = run("resume", SESSION, "--sync")
    assert result.exit_code == 0, result.stderr
    assert "All fixed." in result.stdout and "Status:" in result.stdout
    seeded.state.sessions[SESSION].status = "stopped"
    failed = common_pb2.Task(status=common_pb2.TASK_STATUS_FAILED, result=common_pb2.TaskResult(
        error_code="E604", error_message="the agent failed"))
    seeded.state.watch_script = [tasks_pb2.TaskProgress(task=failed)]
    result = run("resume", SESSION, "--sync")
    assert result.exit_code == 1 and "E604" in result.stderr


def test_style_without_a_colour_is_plain_on_a_terminal(monkeypatch):
    """An info-level event line on a colour terminal (style "" = no colour) must not fail."""
    from parhelia_cli import render

    monkeypatch.setattr(render, "color_enabled", lambda stream=None: True)
    assert render.style("info", "") == "info"
    assert ANSI.search(render.style("error", "red"))
