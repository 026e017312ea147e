"""``parhelia mcp-server`` through real MCP clients: the SDK's own client over stdio (the
server is the real CLI as a subprocess) and the MCP Inspector's command line, against a
real daemon whose agent is the scripted fake Claude."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.helpers.daemon import RunningDaemon, cli_argv, daemon_env
from tests.helpers.harness import Harness, fake_prompt, write_config
from tests.helpers.paths import REPO
from tests.helpers.real_tools import unavailable

READ_TOOLS = {
    "parhelia_task_list", "parhelia_task_show", "parhelia_task_diff", "parhelia_task_logs",
    "parhelia_containers", "parhelia_container_show", "parhelia_container_events",
    "parhelia_events_list", "parhelia_events_since", "parhelia_checkpoint_list",
    "parhelia_session_list", "parhelia_session_attach_info", "parhelia_budget_status",
    "parhelia_budget_estimate",
    "parhelia_health", "parhelia_reconciler_status", "parhelia_doctor",
    "parhelia_events_replay", "parhelia_events_stream", "parhelia_checkpoint_diff",
}
ACTING_TOOLS = {
    "parhelia_task_create", "parhelia_task_cancel", "parhelia_task_retry",
    "parhelia_checkpoint_create", "parhelia_checkpoint_restore", "parhelia_session_resume",
    "parhelia_task_pull", "parhelia_task_pr", "parhelia_checkpoint_rollback",
    "parhelia_session_kill",
    "parhelia_container_terminate", "parhelia_cleanup", "parhelia_budget_set",
    "parhelia_events_subscribe", "parhelia_events_unsubscribe",
}
DESTRUCTIVE = {"parhelia_task_cancel", "parhelia_checkpoint_restore",
               "parhelia_checkpoint_rollback", "parhelia_session_kill",
               "parhelia_container_terminate", "parhelia_cleanup", "parhelia_budget_set",
               "parhelia_task_pull"}  # with patch_path and force it replaces a file
FINAL = ("completed", "failed", "cancelled")


@pytest.fixture
def mcp_daemon(harness_factory: Callable[..., Harness]) -> RunningDaemon:
    """A daemon whose agent is the fake (stopped and reaped by the harness factory)."""
    return harness_factory().daemon


def server_params(env: dict[str, str], cwd: Path | None = None) -> StdioServerParameters:
    argv = cli_argv()
    return StdioServerParameters(command=argv[0], args=[*argv[1:], "mcp-server"], env=env,
                                 cwd=cwd)


@asynccontextmanager
async def connect(env: dict[str, str], cwd: Path | None = None) -> AsyncIterator[Client]:
    async with Client(server_params(env, cwd)) as client:
        yield client


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    """The structured result of a successful call (fails the test on isError)."""
    result = await client.call_tool(tool, args)
    assert not result.is_error, f"{tool}({args}) -> {result.content}"
    assert isinstance(result.structured_content, dict)
    # The text content carries the same JSON, for clients that ignore structuredContent.
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def error_text(client: Client, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, f"{tool}({args}) should have failed: {result.structured_content}"
    return result.content[0].text


async def wait_final(client: Client, task_id: str, timeout: float = 60) -> dict[str, Any]:
    import anyio

    with anyio.fail_after(timeout):
        while True:
            task = await call(client, "parhelia_task_show", task_id=task_id)
            if task["status"] in FINAL:
                return task
            await anyio.sleep(0.2)


async def test_status_choices_are_the_contracts_words() -> None:
    from parhelia import statuses
    from parhelia_cli import mcp_server

    server = mcp_server.build(mcp_server.Bridge(None, autostart=False))
    tools = {t.name: t for t in await server.list_tools()}

    def enums(tool: str) -> list[list[str]]:
        schema = tools[tool].input_schema
        return [d["enum"] for d in schema.get("$defs", {}).values() if "enum" in d]

    assert list(statuses.TASK_STATUSES) in enums("parhelia_task_list")
    assert list(statuses.CONTAINER_STATES) in enums("parhelia_containers")
    assert list(statuses.HEALTHS) in enums("parhelia_containers")


def test_help_topic_names_every_tool(run: Any) -> None:
    result = run("help", "mcp")
    assert result.exit_code == 0
    for name in READ_TOOLS | ACTING_TOOLS:
        stem = name.rsplit("_", 1)[0]
        assert name in result.stdout or stem in result.stdout, name
    examples = run("examples", "mcp")
    assert examples.exit_code == 0 and "not available" not in examples.stdout
    assert "claude mcp add -s user parhelia -- parhelia mcp-server" in examples.stdout


async def test_tools_listed_without_a_daemon_and_calls_say_e504(parhelia_home: Path) -> None:
    """Listing needs no daemon (the connection is made on the first call); a call with
    autostart off and nothing running is E504, and the server keeps serving."""
    env = daemon_env(parhelia_home)  # PARHELIA_NO_AUTOSTART=1, nothing started
    async with connect(env) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == READ_TOOLS | ACTING_TOOLS
        for name, t in tools.items():
            assert t.description and len(t.description) > 40, name
            assert t.annotations is not None, name
            assert t.annotations.read_only_hint is (name in READ_TOOLS), name
            assert bool(t.annotations.destructive_hint) is (name in DESTRUCTIVE), name
            assert t.output_schema is not None and t.output_schema["type"] == "object", name
        show = tools["parhelia_task_show"].input_schema
        assert show["required"] == ["task_id"]
        create = tools["parhelia_task_create"].input_schema["properties"]
        assert {"prompt", "workspace", "repo", "gpu", "timeout", "max_cost_usd",
                "permission_mode", "backend"} <= set(create)
        modes = create["permission_mode"]["anyOf"][0]["enum"]
        assert "acceptEdits" in modes and "plan" in modes
        since = tools["parhelia_events_since"].input_schema
        assert since["required"] == ["after_id"]
        assert "task_created" in since["properties"]["types"]["anyOf"][0]["items"]["enum"]

        text = await error_text(client, "parhelia_task_list")
        assert text.startswith("E504 DAEMON_UNAVAILABLE:"), text
        doctor = await call(client, "parhelia_doctor")  # a failed check, not an error
        assert doctor["ok"] is False and doctor["checks"][0]["name"] == "daemon"


async def test_task_round_trip_over_mcp(mcp_daemon: RunningDaemon, tmp_path: Path) -> None:
    # The server runs inside a git repository: nothing may be uploaded from it implicitly.
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "secret-notes.txt").write_text("not for the agent\n")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "README.md").write_text("# the project\n")

    async with connect(mcp_daemon.env, cwd=repo) as client:
        # An empty workspace unless one is given.
        bare = await call(client, "parhelia_task_create",
                          prompt=fake_prompt({"turn": True}), no_dispatch=True)
        assert bare["status"] == "pending"  # the task itself, as `task create --json`
        assert (bare["source"] or {}).get("workspace_id") is None
        await call(client, "parhelia_task_cancel", task_id=bare["id"])

        created = await call(client, "parhelia_task_create", workspace=str(workspace),
                             prompt=fake_prompt({"write": "hello.txt", "content": "hi\n"},
                                                {"turn": True}), timeout="10m",
                             max_cost_usd="2.50")
        task_id = created["id"]
        assert created["source"]["workspace_id"]
        assert created["options"]["timeout_seconds"] == 600
        assert created["options"]["max_cost_micros"] == 2_500_000
        task = await wait_final(client, task_id)
        assert task["status"] == "completed", task
        assert task["usage"]["turns"] >= 1 and task["usage"]["total_cost_usd"]

        # A prefix works like in the CLI; the answer names the full id.
        assert (await call(client, "parhelia_task_show", task_id=task_id[:8]))["id"] == task_id
        listed = await call(client, "parhelia_task_list", status=["completed"])
        assert [t["id"] for t in listed["tasks"]] == [task_id]

        diff = await call(client, "parhelia_task_diff", task_id=task_id)
        assert [(f["path"], f["change"]) for f in diff["files"]] == [("hello.txt", "added")]
        assert "+hi" in diff["patch"] and diff["patch_truncated"] is False
        assert "README.md" not in diff["patch"] and "secret-notes" not in json.dumps(diff)

        logs = await call(client, "parhelia_task_logs", task_id=task_id, lines=2)
        assert len(logs["lines"]) == 2 and logs["truncated"] is True
        assert logs["task_id"] == task_id and logs["containers"] == [task["container_id"]]
        assert json.loads(logs["lines"][-1]["text"])["type"] == "result"

        # Unknown ids and bad arguments: isError with the E-code, like the CLI's errors.
        assert (await error_text(client, "parhelia_task_show", task_id="t-nope")
                ).startswith("E201 TASK_NOT_FOUND:")
        assert (await error_text(client, "parhelia_task_logs", task_id="t-nope")
                ).startswith("E201 TASK_NOT_FOUND:")
        assert (await error_text(client, "parhelia_container_show", container_id="c-nope")
                ).startswith("E203 CONTAINER_NOT_FOUND:")
        assert (await error_text(client, "parhelia_task_show")
                ).startswith("E102 MISSING_REQUIRED: task_id")
        bad_gpu = await error_text(client, "parhelia_budget_estimate", gpu="H1000")
        assert bad_gpu.startswith("E101 INVALID_ARGUMENT: gpu:") and "H100" in bad_gpu
        relative = await error_text(client, "parhelia_task_create", prompt="x",
                                    workspace="ws")
        assert relative.startswith("E101 INVALID_ARGUMENT: workspace:")
        assert (await error_text(client, "parhelia_events_list", since="yesterday-ish")
                ).startswith("E101 INVALID_ARGUMENT: since:")
        # Past int64: an E101, not "Error executing tool" (protobuf's ValueError).
        assert (await error_text(client, "parhelia_events_since", after_id=2**70)
                ).startswith("E101 INVALID_ARGUMENT: after_id:")

        # Containers, sessions, checkpoints of the finished task.
        containers = await call(client, "parhelia_containers", task_id=task_id)
        assert [c["state"] for c in containers["containers"]] == ["exited"]
        shown = await call(client, "parhelia_container_show",
                           container_id=task["container_id"])
        assert shown["container"]["task_id"] == task_id
        cevents = await call(client, "parhelia_container_events",
                             container_id=task["container_id"])
        assert "worker_exited" in [e["type"] for e in cevents["events"]]
        sessions = await call(client, "parhelia_session_list", include_finished=True)
        assert task["session_id"] in [s["id"] for s in sessions["sessions"]]
        attach = await call(client, "parhelia_session_attach_info",
                            session_id=task["session_id"])
        assert attach["command"] == f"parhelia session attach {task['session_id']}"
        assert attach["attachable"] is False and attach["status"] == "completed"
        assert f"parhelia resume {task['session_id']}" in attach["reason"]
        assert attach["backend"] == "local" and "ssh_command" not in attach
        cp = await call(client, "parhelia_checkpoint_create", session_id=task["session_id"],
                        message="from mcp")
        assert cp["manual"] is True and cp["message"] == "from mcp"
        cps = await call(client, "parhelia_checkpoint_list", session_id=task["session_id"])
        assert cps["checkpoints"][0]["id"] == cp["id"]
        first = cps["checkpoints"][-1]["id"]  # checkpoint zero: the uploaded workspace
        restored = await call(client, "parhelia_checkpoint_restore", checkpoint_id=first)
        assert restored["restored"]["id"] == first and restored["safety_checkpoint"]["id"]

        # events_since pages through the log oldest first, without gaps or repeats.
        everything = [e["id"] for e in
                      (await call(client, "parhelia_events_list", limit=10_000))["events"]]
        pulled: list[int] = []
        after, pages = 0, 0
        while True:
            page = await call(client, "parhelia_events_since", after_id=after, limit=7)
            pulled += [e["id"] for e in page["events"]]
            after, pages = page["next_after_id"], pages + 1
            if not page["has_more"]:
                break
        assert pulled[: len(everything)] == everything and pages > 1
        tail = await call(client, "parhelia_events_since", after_id=after)
        assert tail == {"events": [], "next_after_id": after, "has_more": False}
        mine = await call(client, "parhelia_events_since", after_id=0, task_id=task_id,
                          types=["task_created", "task_completed"], limit=1000)
        assert [e["type"] for e in mine["events"]] == ["task_created", "task_completed"]

        # Budget, health, reconciler, estimate: the shapes of their --json.
        budget = await call(client, "parhelia_budget_status")
        assert budget["used_micros"] > 0 and budget["ceiling_usd"] == "50.000000"
        assert {"remaining_micros", "reserved_micros", "used_percent", "period", "tasks",
                "exceeded", "warning"} <= set(budget)
        # An agent may lower the ceiling, never raise it past budget.agent_max_ceiling_usd
        # (0 here): a prompt injection must not decide what the user spends (E403).
        raised = await error_text(client, "parhelia_budget_set", amount_usd=5000)
        assert raised.startswith("E403 LIMITED_FOR_AGENTS:") and "agent_max" in raised
        assert (await call(client, "parhelia_budget_status"))["ceiling_usd"] == "50.000000"
        assert (await call(client, "parhelia_budget_set", amount_usd="40"))[
            "ceiling_usd"] == "40.000000"
        health = await call(client, "parhelia_health")
        assert health["status"]["tasks_by_status"]["completed"] == 1
        assert health["status"]["socket_path"] == str(mcp_daemon.socket)
        assert {"by_health", "by_state", "orphans", "attention"} <= set(health["containers"])
        assert health["needs_attention"] is False
        recon = await call(client, "parhelia_reconciler_status")
        assert recon["last_run"] is not None and "poll_interval_seconds" in recon
        estimate = await call(client, "parhelia_budget_estimate", timeout=1800, max_turns=5)
        assert 0 < estimate["low_micros"] <= estimate["high_micros"]
        assert {p["name"] for p in estimate["parts"]} == {"compute", "api"}


def inspector_bin() -> str:
    path = os.environ.get("PARHELIA_INSPECTOR_BIN") or \
        str(REPO / ".ci" / "cache" / "inspector" / "node_modules" / ".bin" / "inspector")
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        unavailable("the MCP Inspector", f"{path} is not an executable file: run `bash "
                    ".ci/install-inspector.sh` (.ci/run does, and exports PARHELIA_INSPECTOR_BIN)")
    return path


class Inspector:
    """The MCP Inspector's CLI running ``parhelia mcp-server`` against ``daemon``, with a
    scratch HOME. The Inspector starts the server with the MCP SDK's default environment
    (HOME, PATH and a few more), not its own: the daemon's variables go with ``-e``, and
    autostart is off, so a server that missed them fails instead of starting a daemon of
    its own (in the user's real home, without the scratch HOME)."""

    PASSED = ("PARHELIA_HOME", "PARHELIA_SOCKET", "PARHELIA_NO_AUTOSTART", "NO_COLOR")

    def __init__(self, daemon: RunningDaemon, scratch: str) -> None:
        self.bin = inspector_bin()
        self.scratch = scratch
        self.env = {**daemon.env, "HOME": scratch, "PARHELIA_NO_AUTOSTART": "1"}
        self.server_env = [f"{k}={self.env[k]}" for k in self.PASSED if k in self.env]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        passed = [a for kv in self.server_env for a in ("-e", kv)]
        return subprocess.run([self.bin, "--cli", *passed, *args, "--", *cli_argv(),
                               "mcp-server"], env=self.env, capture_output=True, text=True,
                              timeout=120)

    def no_daemon_of_its_own(self) -> bool:
        return not (Path(self.scratch) / ".local" / "state" / "parhelia").exists()


def test_mcp_inspector_cli(mcp_daemon: RunningDaemon) -> None:
    with tempfile.TemporaryDirectory(prefix="ph-insp-") as scratch:
        inspect = Inspector(mcp_daemon, scratch).run

        listed = inspect("--method", "tools/list")
        assert listed.returncode == 0, listed.stderr
        tools = json.loads(listed.stdout)["tools"]
        assert {t["name"] for t in tools} == READ_TOOLS | ACTING_TOOLS
        by_name = {t["name"]: t for t in tools}
        assert by_name["parhelia_task_list"]["annotations"]["readOnlyHint"] is True
        assert by_name["parhelia_task_cancel"]["annotations"]["destructiveHint"] is True

        created = inspect("--method", "tools/call", "--tool-name", "parhelia_task_create",
                          "--tool-arg", "prompt=Say hi", "--tool-arg", "no_dispatch=true")
        assert created.returncode == 0, created.stdout + created.stderr
        task_id = json.loads(created.stdout)["structuredContent"]["id"]

        called = inspect("--method", "tools/call", "--tool-name", "parhelia_task_list")
        assert called.returncode == 0, called.stderr
        answer = json.loads(called.stdout)
        assert answer["isError"] is False
        assert [t["id"] for t in answer["structuredContent"]["tasks"]] == [task_id]
        assert answer["structuredContent"]["tasks"][0]["status"] == "pending"

        missing = inspect("--method", "tools/call", "--tool-name", "parhelia_task_show",
                          "--tool-arg", "task_id=t-nope")
        assert missing.returncode != 0
        assert "E201 TASK_NOT_FOUND" in missing.stdout
        # The server spoke to the test's daemon: the CLI sees the task it created there.
        shown = subprocess.run([*cli_argv(), "task", "show", task_id, "--json"],
                               env=mcp_daemon.env, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == task_id, shown
        # Nothing was written into the real home, and the scratch home stays small.
        assert Inspector(mcp_daemon, scratch).no_daemon_of_its_own()
        assert sum(1 for _ in Path(scratch).rglob("*")) < 50


async def test_autostart_and_reconnect_keep_stdout_clean(parhelia_home: Path) -> None:
    """With autostart on, the first call starts parheliad (its notice goes to stderr, so
    the protocol on stdout is intact); when the daemon goes away, the next read call
    reconnects and starts it again."""
    write_config(parhelia_home)
    env = {k: v for k, v in daemon_env(parhelia_home).items() if k != "PARHELIA_NO_AUTOSTART"}
    env["ANTHROPIC_API_KEY"] = "test-key"

    def daemon_status() -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli_argv(), "daemon", "status", "--json"], env={
            **env, "PARHELIA_NO_AUTOSTART": "1"}, capture_output=True, text=True, timeout=60)

    try:
        async with connect(env) as client:
            assert daemon_status().returncode != 0  # nothing runs before the first call
            assert await call(client, "parhelia_task_list") == {"tasks": [],
                                                                "next_page_token": None}
            first = json.loads(daemon_status().stdout)
            stopped = subprocess.run([*cli_argv(), "daemon", "stop"], env=env,
                                     capture_output=True, text=True, timeout=60)
            assert stopped.returncode == 0, stopped.stderr
            budget = await call(client, "parhelia_budget_status")
            assert budget["ceiling_usd"] == "50.000000"
            second = json.loads(daemon_status().stdout)
            assert second["pid"] != first["pid"]
    finally:
        subprocess.run([*cli_argv(), "daemon", "stop"], env=env, capture_output=True,
                       timeout=60)


def test_malformed_json_rpc_gets_its_error_over_raw_stdio(daemon) -> None:
    """Raw bytes on the server's stdin: each bad line is answered with the JSON-RPC error
    for it (-32700 parse error, -32600 invalid request), and the session goes on."""
    import subprocess

    from tests.helpers.daemon import cli_argv

    lines = [
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":'
        b'"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}',
        b"not json at all",
        b"\xff\xfe\x00\x1b[2J binary",
        b'{"jsonrpc":"2.0","id":7}',
        b'{"jsonrpc":"2.0","id":"s8","method":7}',
        b"[1, 2]",
        b'{"jsonrpc":"2.0","id":9,"method":"tools/list"}',
    ]
    # Like a real client, stdin stays open until the last answer has come (a server may
    # end at EOF before answering what is still in flight).
    proc = subprocess.Popen([*cli_argv(), "mcp-server"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=daemon.env)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"\n".join(lines) + b"\n")
    proc.stdin.flush()
    raw: list[bytes] = []
    try:
        while len(raw) < 7:
            line = proc.stdout.readline()
            if not line:
                break
            raw.append(line)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, b"".join(raw), b"")
    replies = [json.loads(line) for line in out.stdout.splitlines()]
    by_id = {}
    errors = []
    for reply in replies:
        if "error" in reply:
            errors.append((reply["id"], reply["error"]["code"]))
        else:
            by_id[reply["id"]] = reply
    assert errors == [(None, -32700), (None, -32700), (7, -32600), ("s8", -32600),
                      (None, -32600)], out.stdout
    assert 1 in by_id and by_id[9]["result"]["tools"], out.stdout



def one_shot(daemon: RunningDaemon, messages: list[dict[str, Any]]
             ) -> tuple[dict[Any, dict[str, Any]], subprocess.CompletedProcess[bytes]]:
    """``messages`` written to a fresh server's stdin, which is then closed at once: the
    answers by request id, and the finished process."""
    out = subprocess.run([*cli_argv(), "mcp-server"], env=daemon.env,
                         input="".join(json.dumps(m) + "\n" for m in messages).encode(),
                         capture_output=True, timeout=120)
    replies = {r["id"]: r for r in map(json.loads, out.stdout.splitlines()) if "id" in r}
    return replies, out


def slow_and_quick_calls(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """A task_create that waits for the task's end (a few seconds), then a quick call."""
    prompt = fake_prompt({"turn": True}, {"sleep": 2}, {"turn": True})
    return [
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            **meta, "name": "parhelia_task_create",
            "arguments": {"prompt": prompt, "wait": True}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            **meta, "name": "parhelia_task_list", "arguments": {}}},
    ]


def assert_calls_answered(replies: dict[Any, dict[str, Any]]) -> None:
    created, listed = replies[2].get("result"), replies[3].get("result")
    assert created is not None and created["isError"] is False, replies[2]
    assert created["structuredContent"]["status"] == "completed", created
    assert listed is not None and listed["isError"] is False, replies[3]


def test_requests_in_flight_at_eof_are_answered_before_exit(mcp_daemon: RunningDaemon
                                                            ) -> None:
    """A client that writes its requests and closes stdin at once (a one-shot script, a
    pipe) gets every answer: at EOF the server stops reading, finishes what it received
    (here a task_create that waits for the task's end), writes the answers, exits 0."""
    replies, out = one_shot(mcp_daemon, [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "oneshot", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        *slow_and_quick_calls({}),
        {"jsonrpc": "2.0", "id": "last", "method": "ping"},
    ])
    assert set(replies) == {1, 2, 3, "last"}, out.stdout + out.stderr
    assert "result" in replies[1] and replies["last"] == {
        "jsonrpc": "2.0", "id": "last", "result": {}}
    assert_calls_answered(replies)
    assert out.returncode == 0, out.stderr


def test_a_listen_stream_is_stopped_at_eof_after_the_calls_are_answered(
        mcp_daemon: RunningDaemon) -> None:
    """Protocol 2026-07-28 (no handshake, an envelope per request): a subscriptions/listen
    stream never ends on its own, so at EOF it is ended (its answer closes it) while the
    calls received with it are finished and answered; the server exits 0."""
    meta = {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "oneshot", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}}
    replies, out = one_shot(mcp_daemon, [
        {"jsonrpc": "2.0", "id": "listen", "method": "subscriptions/listen", "params": {
            **meta, "notifications": {"resourceSubscriptions": [
                "parhelia://events?types=task_completed"]}}},
        *slow_and_quick_calls(meta),
    ])
    assert set(replies) == {"listen", 2, 3}, out.stdout + out.stderr
    assert_calls_answered(replies)
    assert out.returncode == 0, out.stderr
