"""The MCP bridge, complete (issue 17): every tool over stdio with the SDK's client against
a real daemon (the agent is the scripted fake Claude), error cases included; resource
subscriptions driven by the daemon's watch; progress during a waiting task_create; the
README and `parhelia help mcp` listing exactly the server's tools."""

from __future__ import annotations

import json
import re
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp import types as mcp_types

from tests.helpers.daemon import RunningDaemon, cli_argv
from tests.helpers.harness import fake_prompt
from tests.helpers.paths import REPO
from tests.integration.cli.test_mcp_server import (
    call,
    error_text,
    mcp_daemon,
    server_params,
    wait_final,
)

__all__ = ["mcp_daemon"]  # the fixture, shared with test_mcp_server



def cli(daemon: RunningDaemon, *args: str) -> str:
    """The real CLI against ``daemon``; its stdout (fails the test on a non-zero exit)."""
    out = subprocess.run([*cli_argv(), *args], env=daemon.env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def git_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "T")
    (path / "README.md").write_text("# project\n")
    git(path, "add", "README.md")
    git(path, "commit", "-qm", "base")
    return path


async def server_tools() -> list[str]:
    from parhelia_cli import mcp_server

    server = mcp_server.build(mcp_server.Bridge(None, autostart=False))
    return sorted(t.name for t in await server.list_tools())


async def test_readme_and_help_list_every_tool_once(run: Any) -> None:
    tools = await server_tools()
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- mcp-tools")[1].split("<!-- /mcp-tools -->")[0]
    listed = re.findall(r"^- `(parhelia_\w+)` — \S", block, re.M)
    assert len(listed) == len(tools), (len(listed), len(tools))
    assert sorted(listed) == tools
    assert "claude mcp add -s user parhelia -- parhelia mcp-server" in readme
    assert "claude_desktop_config.json" in readme and '"mcpServers"' in readme
    helped = run("help", "mcp").stdout
    for name in tools:
        assert len(re.findall(rf"^  {name}\s+\S", helped, re.M)) == 1, name


async def test_every_new_tool_over_stdio(mcp_daemon: RunningDaemon, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async with Client(server_params(mcp_daemon.env)) as client:
        # task_create with wait: progress notifications (turns, cost), then the final task,
        # the same object `task create --json` prints (no wrapper).
        result = await client.call_tool("parhelia_task_create", {
            "prompt": fake_prompt({"write": "hello.txt", "content": "hi\n"}, {"turn": True},
                                  {"sleep": 1}, {"turn": True}),
            "workspace": str(repo), "wait": True}, progress_callback=on_progress)
        assert not result.is_error, result.content
        task = result.structured_content
        assert task is not None and task["status"] == "completed", task
        assert "task_id" not in task and task["id"].startswith("t-")
        assert progress, "no progress notification during the wait"
        assert [v for v, _ in progress] == sorted({v for v, _ in progress})  # increasing
        assert any(m and "turn" in m and "$" in m for _, m in progress), progress
        task_id = task["id"]

        # task_pull: a branch (the working tree and current branch untouched), or a patch.
        head_before = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
        pulled = await call(client, "parhelia_task_pull", task_id=task_id)
        assert pulled["branch"] == f"parhelia/{task_id}" and pulled["files"]
        assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == head_before
        assert git(repo, "status", "--porcelain") == "" and not (repo / "hello.txt").exists()
        assert "hello.txt" in git(repo, "show", "--stat", pulled["branch"])
        patch = tmp_path / "out" / "task.patch"
        patch.parent.mkdir()
        made = await call(client, "parhelia_task_pull", task_id=task_id,
                          patch_path=str(patch))
        assert made["patch_path"] == str(patch) and "+hi" in patch.read_text()
        assert (await error_text(client, "parhelia_task_pull", task_id=task_id,
                                 patch_path="rel.patch")).startswith("E101 INVALID_ARGUMENT:")
        assert (await error_text(client, "parhelia_task_pull", task_id=task_id, branch="b",
                                 patch_path=str(patch))).startswith("E101 INVALID_ARGUMENT:")
        assert (await error_text(client, "parhelia_task_pull", task_id="t-nope")
                ).startswith("E201 TASK_NOT_FOUND:")

        # Checkpoints: diff zero against the last, roll back (destructive: its hint).
        cps = (await call(client, "parhelia_checkpoint_list",
                          session_id=task["session_id"]))["checkpoints"]
        zero, last = cps[-1]["id"], cps[0]["id"]
        diff = await call(client, "parhelia_checkpoint_diff", from_checkpoint_id=zero,
                          to_checkpoint_id=last, files=True)
        assert "hello.txt" in [f["path"] for f in diff["files"]]
        assert "+hi" in diff["patch"] and diff["patch_truncated"] is False
        assert (await error_text(client, "parhelia_checkpoint_diff",
                                 from_checkpoint_id="cp-nope", to_checkpoint_id=last)
                ).startswith("E202 CHECKPOINT_NOT_FOUND:")
        rolled = await call(client, "parhelia_checkpoint_rollback", checkpoint_id=zero)
        assert rolled["restored"]["id"] == zero and rolled["safety_checkpoint"]["id"]

        # Replay a container's history; unknown ones are E203.
        replay = await call(client, "parhelia_events_replay",
                            container_id=task["container_id"], from_start=True)
        types = [e["type"] for e in replay["events"]]
        assert "container_created" in types and "worker_exited" in types
        assert replay["truncated"] is False
        assert (await error_text(client, "parhelia_events_replay", container_id="c-nope")
                ).startswith("E203 CONTAINER_NOT_FOUND:")
        assert (await error_text(client, "parhelia_container_terminate",
                                 container_id="c-nope")).startswith("E203")

        # Sessions: kill; an unknown one is E200.
        assert (await error_text(client, "parhelia_session_kill", session_id="s-nope")
                ).startswith("E200 SESSION_NOT_FOUND:")

        # Cleanup is a dry run unless asked.
        dry = await call(client, "parhelia_cleanup")
        assert dry == {"dry_run": True, "orphans": []}

        # Budget: set it, refuse nonsense, and a task that cannot fit is a refusal (E300)
        # for a waiting task_create, as for `task create --sync`.
        assert (await call(client, "parhelia_budget_set", amount_usd="20")
                )["ceiling_usd"] == "20.000000"
        assert (await error_text(client, "parhelia_budget_set", amount_usd="lots")
                ).startswith("E101 INVALID_ARGUMENT:")
        await call(client, "parhelia_budget_set", amount_usd=0.5)
        refused = await error_text(client, "parhelia_task_create", wait=True,
                                   prompt=fake_prompt({"turn": True}), max_turns=1000)
        assert refused.startswith("E300 BUDGET_EXCEEDED:") and "budget" in refused
        # An agent may lower the ceiling, never raise it past budget.agent_max_ceiling_usd
        # (0 by default); the user raises it.
        assert (await error_text(client, "parhelia_budget_set", amount_usd=50)
                ).startswith("E403")
        cli(mcp_daemon, "budget", "set", "50")
        waiting = (await call(client, "parhelia_task_list", status=["pending"]))["tasks"]
        for t in waiting:
            await call(client, "parhelia_task_cancel", task_id=t["id"])

        # The JSON agrees with the CLI's --json (the same object, same keys).
        shown = json.loads(cli(mcp_daemon, "task", "show", task_id, "--json"))
        assert await call(client, "parhelia_task_show", task_id=task_id) == shown


async def test_event_subscription_and_long_poll(mcp_daemon: RunningDaemon) -> None:
    async with Client(server_params(mcp_daemon.env)) as client:
        sub = await call(client, "parhelia_events_subscribe", types=["task_created"])
        assert sub["subscription_id"].startswith("sub-")
        assert sub["filter"] == {"types": ["task_created"]}
        cursor = sub["after_id"]
        nothing = await call(client, "parhelia_events_stream", after_id=cursor,
                             subscription_id=sub["subscription_id"], wait_seconds=0)
        assert nothing == {"events": [], "next_after_id": cursor, "has_more": False}

        async def create_soon() -> None:
            await anyio.sleep(1.5)
            cli(mcp_daemon, "task", "create", "later", "--no-workspace", "--no-dispatch")

        async with anyio.create_task_group() as tg:
            tg.start_soon(create_soon)
            page = await call(client, "parhelia_events_stream", after_id=cursor,
                              subscription_id=sub["subscription_id"], wait_seconds=30)
        assert [e["type"] for e in page["events"]] == ["task_created"]
        assert page["next_after_id"] == page["events"][0]["id"] > cursor

        # Without a subscription: the filters are given on the call.
        async with anyio.create_task_group() as tg:
            tg.start_soon(create_soon)
            plain = await call(client, "parhelia_events_stream",
                               after_id=page["next_after_id"], types=["task_created"],
                               wait_seconds=30)
        assert [e["type"] for e in plain["events"]] == ["task_created"]

        assert (await error_text(client, "parhelia_events_stream", after_id=0,
                                 subscription_id="sub-nope")).startswith("E101")
        assert (await error_text(client, "parhelia_events_stream", after_id=0,
                                 subscription_id=sub["subscription_id"], level="error")
                ).startswith("E101")
        assert (await error_text(client, "parhelia_events_stream", after_id=0,
                                 wait_seconds=3600)).startswith("E101")
        gone = await call(client, "parhelia_events_unsubscribe",
                          subscription_id=sub["subscription_id"])
        assert gone == {"subscription_id": sub["subscription_id"], "closed": True}
        again = await call(client, "parhelia_events_unsubscribe",
                           subscription_id=sub["subscription_id"])
        assert again["closed"] is False


async def subscribe(client: Client, uri: str) -> None:
    """resources/subscribe, the handshake-era way (what Claude Code and the Inspector
    speak; the SDK marks it deprecated for the 2026-07-28 protocol)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        await client.subscribe_resource(uri)


async def test_a_resource_subscription_receives_updates(mcp_daemon: RunningDaemon) -> None:
    """resources/subscribe on parhelia://tasks/{id}: a state change of the task (driven by
    the daemon's watch) sends notifications/resources/updated; a read shows the change."""
    updated: list[str] = []
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            arrived.set()

    async with Client(server_params(mcp_daemon.env), mode="legacy",
                      message_handler=on_message) as client:
        caps = client.session.server_capabilities
        assert caps is not None and caps.resources is not None and caps.resources.subscribe
        templates = [t.uri_template for t in
                     (await client.list_resource_templates()).resource_templates]
        assert "parhelia://tasks/{task_id}" in templates
        task = await call(client, "parhelia_task_create", prompt=fake_prompt({"turn": True}),
                          no_dispatch=True)
        uri = f"parhelia://tasks/{task['id']}"
        read = await client.read_resource(uri)
        assert json.loads(read.contents[0].text)["status"] == "pending"
        await subscribe(client, uri)
        await call(client, "parhelia_task_cancel", task_id=task["id"])
        with anyio.fail_after(30):
            await arrived.wait()
        assert uri in updated
        after = json.loads((await client.read_resource(uri)).contents[0].text)
        assert after["status"] == "cancelled"

        # An unknown task cannot be subscribed to or read.
        with pytest.raises(Exception, match="E201"):
            await subscribe(client, "parhelia://tasks/t-nope")
        with pytest.raises(Exception, match="E201"):
            await client.read_resource("parhelia://tasks/t-nope")
        events_uri = f"parhelia://events?task_id={task['id']}"
        listed = json.loads((await client.read_resource(events_uri)).contents[0].text)
        assert "task_cancelled" in [e["type"] for e in listed["events"]]


async def test_cancelling_a_waiting_task_create_stops_the_wait_not_the_task(
        mcp_daemon: RunningDaemon) -> None:
    async with Client(server_params(mcp_daemon.env)) as client:
        started = anyio.Event()

        async def on_progress(value: float, total: float | None, message: str | None
                              ) -> None:
            if message and message.startswith("running"):
                started.set()

        with anyio.move_on_after(60) as scope:
            async with anyio.create_task_group() as tg:
                async def waiting() -> None:
                    await client.call_tool("parhelia_task_create", {
                        "prompt": fake_prompt({"turn": True}, {"sleep": 30}),
                        "wait": True}, progress_callback=on_progress)

                tg.start_soon(waiting)
                await started.wait()
                tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled
        assert not scope.cancelled_caught
        # The server still answers, and the task runs on.
        running = (await call(client, "parhelia_task_list", status=["running"]))["tasks"]
        assert len(running) == 1
        await call(client, "parhelia_task_cancel", task_id=running[0]["id"])
        final = await wait_final(client, running[0]["id"])
        assert final["status"] == "cancelled"


def test_subscriptions_are_bounded_and_expire(mcp_daemon: RunningDaemon) -> None:
    """In-process against the real daemon: a feed keeps at most `capacity` events, the
    subscriptions past the limit close the least recently used, and an idle one expires
    (its watch is closed)."""
    from parhelia_cli.api import event_filter
    from parhelia_cli.client import Client as DaemonClient
    from parhelia_cli.mcp_server import live as mcp_events

    daemon = DaemonClient.connect(str(mcp_daemon.socket), autostart=False)
    try:
        subs = mcp_events.Subscriptions(daemon.api, max_count=2, idle_seconds=1.0,
                                        capacity=3)
        first = subs.open(event_filter(types=["task_created"]))
        for _ in range(5):
            cli(mcp_daemon, "task", "create", "x", "--no-workspace", "--no-dispatch")
        deadline = time.monotonic() + 20
        while first.feed.dropped < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert first.feed.dropped == 2 and first.feed.pending(0) == 3
        second = subs.open(event_filter())
        subs.get(second.id)  # used: the first is now the least recently used
        third = subs.open(event_filter())
        with pytest.raises(Exception, match="E101"):
            subs.get(first.id)
        assert first.feed.wait_after(10**9, 5) is False and first.feed.ended
        time.sleep(1.2)
        subs.expire()
        for sub in (second, third):
            with pytest.raises(Exception, match="E101"):
                subs.get(sub.id)
        subs.close_all()
    finally:
        daemon.close()


def test_inspector_calls_new_tools(mcp_daemon: RunningDaemon, tmp_path: Path) -> None:
    from tests.integration.cli.test_mcp_server import Inspector

    inspector = Inspector(mcp_daemon, str(tmp_path))

    def inspect(*args: str) -> dict[str, Any]:
        out = inspector.run(*args)
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout)

    tools = {t["name"]: t for t in inspect("--method", "tools/list")["tools"]}
    assert tools["parhelia_checkpoint_rollback"]["annotations"]["destructiveHint"] is True
    assert tools["parhelia_events_stream"]["annotations"]["readOnlyHint"] is True
    dry = inspect("--method", "tools/call", "--tool-name", "parhelia_cleanup")
    assert dry["structuredContent"] == {"dry_run": True, "orphans": []}
    sub = inspect("--method", "tools/call", "--tool-name", "parhelia_events_subscribe")
    assert sub["structuredContent"]["subscription_id"].startswith("sub-")
    budget = inspect("--method", "tools/call", "--tool-name", "parhelia_budget_set",
                     "--tool-arg", "amount_usd=30")
    assert budget["structuredContent"]["ceiling_usd"] == "30.000000"
    # set on the test's daemon, not on one the server started for itself
    shown = subprocess.run([*cli_argv(), "budget", "show", "--json"], env=mcp_daemon.env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "30.000000" in shown.stdout or '"30' in shown.stdout, shown.stdout
    assert inspector.no_daemon_of_its_own()


async def test_acting_on_a_running_task(mcp_daemon: RunningDaemon, tmp_path: Path) -> None:
    """container_terminate, session_kill, session_resume and task_retry on a real
    running task: each returns the object the matching command's --json prints."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "notes.txt").write_text("checkpoint zero holds this\n")
    async with Client(server_params(mcp_daemon.env)) as client:
        task = await call(client, "parhelia_task_create", workspace=str(workspace),
                          prompt=fake_prompt({"turn": True}, {"sleep": 60}))

        async def running(task_id: str, not_container: str = "") -> dict[str, Any]:
            with anyio.fail_after(60):
                while True:
                    t = await call(client, "parhelia_task_show", task_id=task_id)
                    if t["status"] == "running" and t["container_id"] and \
                            t["container_id"] != not_container:
                        return t
                    await anyio.sleep(0.2)

        first = await running(task["id"])
        ended = await call(client, "parhelia_container_terminate",
                           container_id=first["container_id"])
        assert ended["id"] == first["container_id"] and ended["task_id"] == task["id"]
        again = await running(task["id"], not_container=first["container_id"])  # resumed

        killed = await call(client, "parhelia_session_kill", session_id=again["session_id"])
        assert killed["id"] == again["session_id"] and killed["task_id"] == task["id"]
        with anyio.fail_after(60):
            while (await call(client, "parhelia_task_show", task_id=task["id"])
                   )["status"] == "running":
                await anyio.sleep(0.2)
        resumed = await call(client, "parhelia_session_resume",
                             session_id=again["session_id"])
        assert resumed["id"] == task["id"] and "task_id" not in resumed
        await running(task["id"])
        await call(client, "parhelia_task_cancel", task_id=task["id"])
        assert (await wait_final(client, task["id"]))["status"] == "cancelled"

        retried = await call(client, "parhelia_task_retry", task_id=task["id"])
        assert retried["id"] == task["id"] and retried["status"] in ("pending", "running")
        await call(client, "parhelia_task_cancel", task_id=task["id"])
        assert (await wait_final(client, task["id"]))["status"] == "cancelled"


async def test_a_listen_stream_receives_updates(mcp_daemon: RunningDaemon) -> None:
    """The 2026-07-28 protocol's subscriptions/listen (the SDK client's default): a stream
    naming parhelia://tasks/{id} receives ResourceUpdated when the task changes state."""
    async with Client(server_params(mcp_daemon.env)) as client:
        assert client.protocol_version == "2026-07-28"
        task = await call(client, "parhelia_task_create", prompt=fake_prompt({"turn": True}),
                          no_dispatch=True)
        uri = f"parhelia://tasks/{task['id']}"
        async with client.listen(resource_subscriptions=[uri]) as stream:
            await call(client, "parhelia_task_cancel", task_id=task["id"])
            with anyio.fail_after(30):
                async for event in stream:
                    if getattr(event, "uri", None) == uri:
                        break
        after = json.loads((await client.read_resource(uri)).contents[0].text)
        assert after["status"] == "cancelled"


async def test_list_tools_page_as_the_cli_does(mcp_daemon: RunningDaemon) -> None:
    """A list tool says there is more (next_page_token) and its token gives the next page:
    paged two at a time, the tasks are the CLI's list, newest first, each once."""
    for n in range(5):
        cli(mcp_daemon, "task", "create", f"paged {n}", "--no-workspace", "--no-dispatch")
    everything = [t["id"] for t in json.loads(cli(mcp_daemon, "task", "list", "--json",
                                                  "--limit", "10000"))["tasks"]]
    async with Client(server_params(mcp_daemon.env)) as client:
        paged: list[str] = []
        token = None
        while True:
            page = await call(client, "parhelia_task_list", limit=2,
                              **({"page_token": token} if token else {}))
            assert len(page["tasks"]) <= 2
            paged += [t["id"] for t in page["tasks"]]
            token = page["next_page_token"]
            if token is None:
                break
        assert paged == everything and len(everything) >= 5

        task_id = everything[0]
        cli(mcp_daemon, "task", "cancel", task_id)  # a second event
        events = json.loads(cli(mcp_daemon, "events", "list", "--task", task_id, "--json",
                                "--limit", "10000"))["events"]
        newest = await call(client, "parhelia_events_list", task_id=task_id, limit=1)
        assert [e["id"] for e in newest["events"]] == [events[-1]["id"]]
        older = await call(client, "parhelia_events_list", task_id=task_id, limit=1,
                           page_token=newest["next_page_token"])
        assert [e["id"] for e in older["events"]] == [events[-2]["id"]]

        text = await error_text(client, "parhelia_task_list", page_token="not-a-token")
        assert "E101" in text and "page_token" in text
