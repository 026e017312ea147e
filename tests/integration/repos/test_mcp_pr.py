"""The MCP bridge over a private repository: `parhelia_task_create` with a repo and
`open_pr`, `parhelia_task_pr` (the same JSON as `task pr --json`), the pull request on
`parhelia_task_show`, and a refusal carrying its code."""

from __future__ import annotations

from collections.abc import Callable

from mcp import Client

from tests.helpers.fake_github import FakeGitHub
from tests.helpers.git_server import GitServer
from tests.helpers.harness import Harness, fake_prompt
from tests.helpers.waiting import wait_for
from tests.integration.cli.test_mcp_server import call, error_text, server_params
from tests.integration.repos.common import FILES, NAME, OWNER, start

WORK = fake_prompt({"write": "app.py", "content": "print('v2')\n"},
                   {"answer": "Greeting updated."}, {"turn": True}, text="Update the greeting")


async def test_pull_requests_through_the_mcp_tools(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub) -> None:
    git_server.create(OWNER, NAME, FILES)
    harness = start(harness_factory, git_server, fake_github)
    url = git_server.url(OWNER, NAME)
    async with Client(server_params(harness.daemon.env)) as client:
        made = await call(client, "parhelia_task_create", prompt=WORK, repo=url, wait=True)
        assert made["status"] == "completed" and made["source"]["repo_url"] == url
        opened = await call(client, "parhelia_task_pr", task_id=made["id"], draft=True)
        pr = opened["pull_request"]
        assert opened["created"] and pr["number"] >= 1 and pr["branch"] == f"parhelia/{made['id']}"
        assert fake_github.pull(OWNER, NAME, pr["number"])["draft"] is True
        assert "Greeting updated." in fake_github.pull(OWNER, NAME, pr["number"])["body"]
        shown = await call(client, "parhelia_task_show", task_id=made["id"])
        assert shown["pull_request"]["url"] == pr["url"]
        again = await call(client, "parhelia_task_pr", task_id=made["id"], title="Renamed")
        assert not again["created"] and again["pull_request"]["number"] == pr["number"]

        auto = await call(client, "parhelia_task_create", prompt=fake_prompt({"turn": True}),
                          repo=url, open_pr=True, wait=True)
        assert auto["open_pr"] is True and auto["status"] == "completed"
        said = await error_text(client, "parhelia_task_pr", task_id=auto["id"])
        assert "E605" in said
    # The --pr task changed nothing: no pull request, and an event that says why.
    event = wait_for(lambda: harness.events("--task", auto["id"], "--type",
                                            "pull_request_not_opened") or None, 30,
                     what="the --pr task's outcome")[0]
    assert event["data"]["code"] == "E605"
