"""Unit tests: volume, channel/control, spec, argv/env, redaction, stream parsing."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from modal_worker.agent import build_argv, build_env, check_credentials, resolve_command
from modal_worker.channel import LocalSpoolChannel, MemoryChannel
from modal_worker.stream import StreamParser
from parhelia.errors import ParheliaError
from parhelia.redact import find_secrets, redact, tool_summary
from parhelia.spec import AgentSpec, ExitCode, dump_spec, load_spec
from parhelia.spool import ControlReader, append_control, read_spool
from parhelia.volume import InvalidKey, LocalVolume, control_key
from tests.helpers.worker import make_spec

UUID = "3b241101-e2bb-4255-8caf-4136c566a962"


# -- volume -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "/abs", "../x", "a/../b", "a//b", "a/./b", "a/", ".",
                                 "a\0b", "a\\b"])
def test_volume_refuses_bad_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidKey):
        LocalVolume(tmp_path).put(key, b"x")


def test_volume_put_get_list_delete(tmp_path: Path) -> None:
    volume = LocalVolume(tmp_path)
    volume.put("a/b/c.json", b"1")
    src = tmp_path / "src.bin"
    src.write_bytes(b"22")
    assert volume.put_file("a/d", src) == 2
    assert volume.get("a/b/c.json") == b"1" and volume.size("a/d") == 2
    assert volume.exists("a/d") and not volume.exists("a/nope")
    assert volume.list("a") == ["a/b/c.json", "a/d"]
    assert volume.list("missing") == []
    volume.delete("a/d")
    volume.delete("a/d")
    assert volume.list() == ["a/b/c.json", "src.bin"]
    assert not [n for n in os.listdir(tmp_path / "a") if n.startswith(".tmp-")]


# -- channel and control ----------------------------------------------------------------


def test_spool_seq_and_partial_lines(tmp_path: Path) -> None:
    volume = LocalVolume(tmp_path)
    channel = LocalSpoolChannel.for_container(volume, "c-1")
    assert channel.emit("worker_started", {"pid": 1}) == 1
    assert channel.emit("heartbeat", {"cpu_percent": 1.0}) == 2
    with pytest.raises(ValueError):
        channel.emit("not_an_event", {})
    path = tmp_path / "spool" / "c-1.jsonl"
    with open(path, "ab") as fh:
        fh.write(b'{"seq": 3, "type": "worker_ex')  # a write in progress
    records, offset = read_spool(path, 0)
    assert [r["seq"] for r in records] == [1, 2]
    assert records[0]["data"] == {"pid": 1} and records[0]["at"].endswith("Z")
    again, offset2 = read_spool(path, offset)
    assert again == [] and offset2 == offset
    with open(path, "ab") as fh:
        fh.write(b'ited", "data": {}}\nnot json\n')
    rest, offset3 = read_spool(path, offset)
    assert [r["seq"] for r in rest] == [3]
    assert offset3 == path.stat().st_size
    assert read_spool(tmp_path / "missing.jsonl", 7) == ([], 7)


def test_spool_long_line_and_threads(tmp_path: Path) -> None:
    channel = LocalSpoolChannel(tmp_path / "s.jsonl")
    big = "x" * 100_000

    def emit() -> None:
        for _ in range(50):
            channel.emit("agent_message", {"text": big})

    threads = [threading.Thread(target=emit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records: list[dict[str, Any]] = []
    offset = 0
    while True:  # a window smaller than a line still makes progress, one line at a time
        batch, offset = read_spool(tmp_path / "s.jsonl", offset, max_bytes=1000)
        if not batch:
            break
        records += batch
    assert [r["seq"] for r in records] == list(range(1, 201))


def test_spool_escapes_undecodable_names(tmp_path: Path) -> None:
    channel = LocalSpoolChannel(tmp_path / "s.jsonl")
    channel.emit("agent_message", {"text": os.fsdecode(b"bad-\xff")})
    records, _ = read_spool(tmp_path / "s.jsonl")
    assert records[0]["data"]["text"] == os.fsdecode(b"bad-\xff")


def test_control_messages_are_seen_once(tmp_path: Path) -> None:
    volume = LocalVolume(tmp_path)
    reader = ControlReader(volume.path_for(control_key("c-1")))
    assert reader.poll() == []
    mid = append_control(volume, "c-1", {"type": "checkpoint", "message": "m"})
    append_control(volume, "c-1", {"type": "checkpoint", "id": mid, "message": "again"})
    with open(volume.path_for(control_key("c-1")), "ab") as fh:
        fh.write(b'garbage\n{"type": "explode", "id": "x"}\n{"type": "stop"')
    messages = reader.poll()
    assert [(m.id, m.type, m.message) for m in messages] == [(mid, "checkpoint", "m")]
    with open(volume.path_for(control_key("c-1")), "ab") as fh:
        fh.write(b', "id": "s1", "reason": "budget"}\n')
    stop = reader.poll()
    assert [(m.type, m.reason) for m in stop] == [("stop", "budget")]
    assert reader.poll() == []
    with pytest.raises(ValueError):
        append_control(volume, "c-1", {"type": "reboot"})
    with pytest.raises(ValueError):
        append_control(volume, "c-1", {"type": "stop", "reason": "whim"})


# -- spec -------------------------------------------------------------------------------


def test_spec_round_trip_and_defaults(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "hello")
    dump_spec(spec, tmp_path / "spec.json")
    assert load_spec(tmp_path / "spec.json") == spec
    minimal = {k: v for k, v in spec.to_dict().items()
               if k in ("container_id", "task_id", "session_id", "volume_dir", "workspace_dir",
                        "claude_config_dir", "prompt")}
    minimal["agent"] = {"session_uuid": UUID}
    (tmp_path / "min.json").write_text(json.dumps(minimal))
    loaded = load_spec(tmp_path / "min.json")
    assert loaded.agent.command == ["claude"] and loaded.agent.permission_mode == "acceptEdits"
    assert loaded.checkpoint.interval_seconds == 300


@pytest.mark.parametrize("patch, field", [
    ({"version": 2}, "version"),
    ({"container_id": "../x"}, "container_id"),
    ({"volume_dir": "relative"}, "volume_dir"),
    ({"prompt": ""}, "prompt"),
    ({"workspace_dir": "/"}, "workspace_dir"),
    ({"backend": "k8s"}, "backend"),
    ({"heartbeat_interval_seconds": 0}, "heartbeat_interval_seconds"),
    ({"agent": {"session_uuid": "nope"}}, "agent.session_uuid"),
    ({"agent": {"session_uuid": UUID, "command": []}}, "agent.command"),
    ({"agent": {"session_uuid": UUID, "command": "claude"}}, "agent.command"),
    ({"agent": {"session_uuid": UUID, "max_turns": 1.5}}, "agent.max_turns"),
    ({"agent": {"session_uuid": UUID, "max_turns": True}}, "agent.max_turns"),
    ({"agent": {"session_uuid": UUID, "max_budget_usd": -1}}, "agent.max_budget_usd"),
    ({"agent": {"session_uuid": UUID, "permission_mode": "yolo"}}, "agent.permission_mode"),
    ({"env": {"ANTHROPIC_API_KEY": "sk-ant-x"}}, "env.ANTHROPIC_API_KEY"),
    ({"env": {"BAD NAME": "x"}}, "env"),
    ({"checkpoint": {"risky_patterns": [""]}}, "checkpoint.risky_patterns"),
])
def test_spec_validation_names_the_field(tmp_path: Path, patch: dict[str, Any],
                                         field: str) -> None:
    raw = make_spec(tmp_path, "hello").to_dict()
    raw.update(patch)
    (tmp_path / "spec.json").write_text(json.dumps(raw))
    with pytest.raises(ParheliaError) as err:
        load_spec(tmp_path / "spec.json")
    assert err.value.code == "E100"
    assert repr(field) in err.value.message


def test_spec_not_json(tmp_path: Path) -> None:
    (tmp_path / "spec.json").write_text("{")
    with pytest.raises(ParheliaError):
        load_spec(tmp_path / "spec.json")
    with pytest.raises(ParheliaError):
        load_spec(tmp_path / "missing.json")


def test_exit_code_table() -> None:
    assert [(c.value, c.status, c.error_code) for c in ExitCode] == [
        (0, "completed", None), (1, "failed", None), (2, "failed", "E100"),
        (3, "failed", "E400"), (4, "failed", "E500"), (5, "failed", "E600"),
        (6, "failed", "E606"), (124, "timeout", "E501"), (130, "stopped", None),
        (143, "stopped", None)]


# -- argv and environment ---------------------------------------------------------------


def test_argv_first_run_and_resume() -> None:
    agent = AgentSpec(session_uuid=UUID, permission_mode="acceptEdits", max_turns=7,
                      max_budget_usd=2.5, model="claude-sonnet-4-5")
    assert build_argv(agent) == [
        "claude", "-p", "--output-format", "stream-json", "--verbose",
        "--include-partial-messages", "--session-id", UUID, "--permission-mode", "acceptEdits",
        "--max-turns", "7", "--max-budget-usd", "2.5", "--model", "claude-sonnet-4-5",
        "--setting-sources", "user"]
    agent.resume = True
    agent.max_turns = agent.max_budget_usd = agent.model = None
    argv = build_argv(agent, ["/usr/bin/claude"], project_memory=Path("/w/project-CLAUDE.md"))
    assert argv == ["/usr/bin/claude", "-p", "--output-format", "stream-json",
                    "--verbose", "--include-partial-messages", "--resume", UUID,
                    "--permission-mode", "acceptEdits", "--setting-sources", "user",
                    "--append-system-prompt-file", "/w/project-CLAUDE.md"]
    assert "--session-id" not in argv


def test_a_trusted_project_loads_its_own_settings() -> None:
    agent = AgentSpec(session_uuid=UUID, project_settings=True)
    argv = build_argv(agent, project_memory=Path("/w/project-CLAUDE.md"))
    assert "--setting-sources" not in argv and "--append-system-prompt-file" not in argv


def test_project_memory_reads_regular_files_of_the_workspace_only(tmp_path: Path) -> None:
    from modal_worker.project_memory import (
        MAX_MEMORY_BYTES,
        project_memory_text,
        write_project_memory,
    )

    ws = tmp_path / "ws"
    ws.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("OUTSIDE-SECRET")
    assert write_project_memory(ws, tmp_path / "mem.md") is None
    (ws / "CLAUDE.md").write_text("use tabs\0 always")
    os.symlink(secret, ws / "CLAUDE.local.md")          # a symlink out of the workspace
    os.symlink(tmp_path, ws / ".claude")                 # a symlinked .claude directory
    (tmp_path / "CLAUDE.md").write_text("OUTSIDE-DIR")
    text = project_memory_text(ws)
    assert "use tabs always" in text and "Contents of CLAUDE.md" in text
    assert "OUTSIDE" not in text
    os.unlink(ws / ".claude")
    (ws / ".claude").mkdir()
    os.mkfifo(ws / ".claude" / "CLAUDE.md")              # never opened for reading
    (ws / "CLAUDE.md").write_bytes(b"x" * (MAX_MEMORY_BYTES + 10))
    dest = write_project_memory(ws, tmp_path / "mem.md")
    assert dest is not None and (dest.stat().st_mode & 0o777) == 0o600
    assert f"[cut at {MAX_MEMORY_BYTES} of {MAX_MEMORY_BYTES + 10} bytes]" in dest.read_text()


def test_agent_env_keeps_the_allow_list_only() -> None:
    from parhelia.environ import worker_environ

    daemon = {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "ANTHROPIC_API_KEY": "k",
              "ANTHROPIC_BASE_URL": "http://x", "AWS_SECRET_ACCESS_KEY": "aws",
              "GITHUB_TOKEN": "gh", "PARHELIA_SOCKET": "/s", "SSH_AUTH_SOCK": "/agent",
              "MY_TOOL_KEY": "passed"}
    worker = worker_environ(daemon, passed=["MY_TOOL_KEY"])
    # No git credential of any kind: the worker never clones (ADR 0055), so neither the
    # GitHub token nor the user's ssh agent reaches it or its agent.
    assert set(worker) == {"PATH", "HOME", "LC_ALL", "ANTHROPIC_API_KEY",
                           "ANTHROPIC_BASE_URL", "MY_TOOL_KEY"}
    agent = build_env(worker, extra={}, config_dir=Path("/c"), workspace=Path("/w"),
                      permission_mode="acceptEdits")
    assert "SSH_AUTH_SOCK" not in agent and "GITHUB_TOKEN" not in agent
    assert agent["MY_TOOL_KEY"] == "passed"


def test_env_sets_the_agent_variables(tmp_path: Path) -> None:
    env = build_env({"PATH": "/bin", "KEEP": "1"}, extra={"X": "y"}, config_dir=tmp_path,
                    workspace=tmp_path / "ws", permission_mode="bypassPermissions",
                    is_root=True)
    assert env["KEEP"] == "1" and env["X"] == "y"
    assert env["CLAUDE_CONFIG_DIR"] == str(tmp_path)
    for name in ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "DISABLE_AUTOUPDATER",
                 "DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING", "IS_SANDBOX"):
        assert env[name] == "1"
    not_root = build_env({}, extra={}, config_dir=tmp_path, workspace=tmp_path,
                         permission_mode="bypassPermissions", is_root=False)
    accept = build_env({}, extra={}, config_dir=tmp_path, workspace=tmp_path,
                       permission_mode="acceptEdits", is_root=True)
    assert "IS_SANDBOX" not in not_root and "IS_SANDBOX" not in accept


def test_credentials_and_command_checks(tmp_path: Path) -> None:
    with pytest.raises(ParheliaError) as err:
        check_credentials({"ANTHROPIC_API_KEY": " ", "OTHER": "x"})
    assert err.value.code == "E400"
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"):
        check_credentials({name: "v"})
    tool = tmp_path / "claude"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert resolve_command(["claude", "--x"], {"PATH": str(tmp_path)}) == [str(tool), "--x"]
    assert resolve_command([str(tool)], {}) == [str(tool)]
    with pytest.raises(ParheliaError) as err:
        resolve_command(["claude"], {"PATH": str(tmp_path / "nowhere")})
    assert err.value.code == "E500" and "npm install -g @anthropic-ai/claude-code" in str(err.value)


# -- redaction and summaries ------------------------------------------------------------


@pytest.mark.parametrize("text, secret", [
    ("export ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnop", "abcdefghijklmnop"),
    ("curl -H 'Authorization: Bearer abcdef0123456789xyz'", "abcdef0123456789xyz"),
    ("GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123 make", "ghp_abcdefghijklmnopqrstuvwxyz"),
    ("mysql --password=hunter22 db", "hunter22"),
    ("DB_PASSWORD: 's3cr3t value'", "s3cr3t"),
    ("git clone https://user:pat123456@github.com/x/y", "pat123456"),
    ("aws AKIAABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOP"),
    ("my_secret=abc client_key=def", "abc"),
])
def test_redact(text: str, secret: str) -> None:
    assert secret not in redact(text)


_PEM = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAbm9uZQ\n"
        "-----END OPENSSH PRIVATE KEY-----")


@pytest.mark.parametrize("text, secret, what", [
    ("stripe sk_live_51HabcdefghijKLMNOP", "51HabcdefghijKLMNOP", "a Stripe key"),
    ("echo hf_abcdefghijklmnopqrstuvwxyzAB", "abcdefghijklmnopqrstuvwxyzAB",
     "a Hugging Face token"),
    ("key AIzaSyA1234567890abcdefghijklmnopqrst", "SyA1234567890abcdefghijklmnopqrst",
     "a Google API key"),
    ("glpat-abcdefghij0123456789", "abcdefghij0123456789", "a GitLab token"),
    ("//registry/:_auth npm_abcdefghijklmnopqrstuvwxyz0123456789",
     "abcdefghijklmnopqrstuvwxyz0123456789", "an npm token"),
    ("id_ed25519:\n" + _PEM, "b3BlbnNzaC1rZXktdjEAAAAAbm9uZQ", "a PEM private key"),
])
def test_catalogue_knows_more_credentials(text: str, secret: str, what: str) -> None:
    assert secret not in redact(text)
    assert what in [kind for _, kind in find_secrets(text)]


def test_find_secrets_names_the_line_and_ignores_prose() -> None:
    text = "# Rules\nmax_tokens: 1000 is fine\nuse ghp_abcdefghijklmnopqrstuvwxyz0123\n"
    assert find_secrets(text) == [(3, "a GitHub token")]
    assert find_secrets("Keep the API key in the keychain; tokens rotate.") == []


def test_tool_summaries_never_carry_contents() -> None:
    write = tool_summary("Write", {"file_path": "/ws/src/app.py", "content": "TOPSECRET"}, "/ws")
    assert write == "src/app.py"
    long_cmd = "echo " + "a" * 200
    assert len(tool_summary("Bash", {"command": long_cmd})) <= 80
    assert tool_summary("Bash", {"command": "API_KEY=abc123 ./run\nsecond"}) == \
        "API_KEY=*** ./run second"
    assert tool_summary("Edit", {"file_path": "/elsewhere/x", "old_string": "S"}, "/ws") == \
        "/elsewhere/x"
    assert tool_summary("WebFetch", {"url": "https://x.io/a?token=zzz"}) == "https://x.io/a"
    assert tool_summary("Grep", {"pattern": "foo", "path": "/ws/src"}, "/ws") == "foo in src"
    assert tool_summary("mcp__db__query", {"sql": "select", "db": "x"}) == "db, sql"


# -- stream parser ----------------------------------------------------------------------


def _assistant(mid: str, block: dict[str, Any]) -> dict[str, Any]:
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 2}
    return {"type": "assistant", "message": {"id": mid, "content": [block], "usage": usage}}


def test_stream_parser_groups_messages_into_turns() -> None:
    channel = MemoryChannel()
    turns: list[int] = []
    parser = StreamParser(emit=channel.emit, on_turn=lambda: turns.append(1), cwd="/ws")
    stream = [
        {"type": "system", "subtype": "init", "model": "m", "claude_code_version": "2.1",
         "tools": ["Bash"], "mcp_servers": [{"name": "db", "status": "ok"}],
         "permissionMode": "acceptEdits", "session_id": UUID},
        _assistant("m1", {"type": "text", "text": "let me look"}),
        _assistant("m1", {"type": "tool_use", "id": "t1", "name": "Bash",
                          "input": {"command": "ls"}}),
        _assistant("m1", {"type": "tool_use", "id": "t2", "name": "Read",
                          "input": {"file_path": "/ws/a"}}),
        {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1"}]}},
        {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t2"}]}},
        {"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10,
         "error_status": 529},
        _assistant("m2", {"type": "text", "text": "done, key sk-ant-abc123"}),
        {"type": "result", "subtype": "success", "is_error": False, "num_turns": 2,
         "result": "All done with sk-ant-secret", "total_cost_usd": 0.01,
         "usage": {"input_tokens": 20, "output_tokens": 10, "cache_creation_input_tokens": 0,
                   "cache_read_input_tokens": 4}},
    ]
    for obj in stream:
        parser.feed(obj)
    parser.finish()
    kinds = [r["type"] for r in channel.records]
    assert kinds == ["agent_init", "agent_message", "agent_tool_use", "agent_tool_use",
                     "agent_turn_completed", "agent_api_retry", "agent_message",
                     "agent_turn_completed", "agent_result"]
    assert len(turns) == 2
    init = channel.records[0]["data"]
    assert init["agent_version"] == "2.1" and init["mcp_servers"] == [
        {"name": "db", "status": "ok"}]
    first_turn = channel.records[4]["data"]
    assert first_turn["turns"] == 1 and first_turn["input_tokens"] == 10
    result = channel.records[-1]["data"]
    assert result["total_cost_usd"] == 0.01 and result["turns"] == 2
    assert "sk-ant-secret" not in result["text"]
    assert "sk-ant-abc123" not in json.dumps(channel.records)
    assert parser.stats.snapshot()["cost_usd"] == 0.01


def test_stream_parser_closes_open_message_at_end() -> None:
    channel = MemoryChannel()
    parser = StreamParser(emit=channel.emit)
    parser.feed(_assistant("m1", {"type": "tool_use", "id": "t", "name": "Bash",
                                  "input": {"command": "sleep 100"}}))
    parser.feed({"type": "garbage"})
    parser.finish()
    parser.finish()
    assert [r["type"] for r in channel.records] == ["agent_tool_use", "agent_turn_completed"]


def test_bash_summary_redacts_before_it_shortens() -> None:
    # A token that straddles the 80-character cut must not survive as a prefix that is
    # too short for the token patterns to recognise.
    token = "ghp_abcdefghijklmnopqrstuvwxyz0123"
    for pad in range(50, 80):
        summary = tool_summary("Bash", {"command": "echo " + "x" * pad + " " + token})
        assert "ghp_abcd" not in summary, summary
        assert len(summary) <= 80


def test_risky_command_hook_request_is_redacted(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The request summary becomes a checkpoint's message: it reaches the manifest on the
    # volume and the checkpoint_created event in the database.
    from modal_worker import hooks

    monkeypatch.setattr(hooks, "WAIT_SECONDS", 5.0)
    seen: list[hooks.Request] = []

    def worker() -> None:
        for _ in range(200):
            for request in hooks.pending(tmp_path):
                seen.append(request)
                hooks.answer(tmp_path, request, "cp-1")
                return
            threading.Event().wait(0.02)

    thread = threading.Thread(target=worker)
    thread.start()
    command = ("rm -rf build && curl -H 'Authorization: Bearer abcdef0123456789xyz' "
               "https://x.io GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123")
    env = hooks.hook_env(tmp_path, 0, ["rm -rf"])
    got = hooks.pre_tool_use({"tool_name": "Bash", "tool_input": {"command": command}}, env)
    thread.join()
    assert got == "cp-1" and len(seen) == 1
    assert "abcdef0123456789xyz" not in seen[0].summary
    assert "ghp_abcd" not in seen[0].summary
    assert seen[0].summary.startswith("before `rm -rf build")
    # and a request file written by anything else is redacted on the worker's side too
    (tmp_path / "x.req").write_text(json.dumps({"summary": "sk-ant-api03-abcdefghijkl",
                                                "pattern": "rm -rf"}))
    assert "abcdefghijkl" not in hooks.pending(tmp_path)[0].summary


def test_a_result_file_from_the_sandbox_is_checked_before_the_daemon_uses_it() -> None:
    from parhelia.spec import MAX_RESULT_TEXT, WorkerResult

    good = WorkerResult(container_id="c-1", task_id="t-1", session_id="s-1", incarnation=1,
                        exit_code=0, status="completed", started_at="a", finished_at="b",
                        error_message="x" * (MAX_RESULT_TEXT + 5), checkpoints=["cp-1"])
    back = WorkerResult.from_dict(json.loads(json.dumps(good.to_dict())))
    assert back.status == "completed" and len(back.error_message or "") == MAX_RESULT_TEXT
    hostile: list[dict[str, Any]] = [
        {"exit_code": "0"}, {"exit_code": True}, {"exit_code": 2**40}, {"status": "won"},
        {"error_message": 12345}, {"container_id": "../../etc"}, {"checkpoints": "cp-1"},
        {"checkpoints": ["../x"]}, {"agent": [1]}, {"incarnation": None},
    ]
    for change in hostile:
        with pytest.raises(ValueError):
            WorkerResult.from_dict({**good.to_dict(), **change})
    with pytest.raises(ValueError):
        WorkerResult.from_dict(["not", "an", "object"])
    # A worker whose spec was unreadable knows only its container id: still a result.
    assert WorkerResult.from_dict({**good.to_dict(), "task_id": "", "session_id": ""})
