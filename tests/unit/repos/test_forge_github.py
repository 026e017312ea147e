"""The GitHub forge against the loopback fake of its REST API: open, find and update,
errors mapped to codes, rate limits waited out, the token never sent elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from parhelia import gitremote
from parhelia.errors import ParheliaError
from parheliad.core.forge import PullRequestDraft, compare_url
from parheliad.core.forge.github import MAX_BODY_CHARS, GitHub, api_url, graphql_url
from tests.helpers import loopback
from tests.helpers.fake_github import FakeGitHub
from tests.helpers.git_server import GitServer
from tests.helpers.loopback import Loopback


@pytest.fixture
def repo(git_server: GitServer) -> GitServer:
    head = git_server.create("o", "r", {"a": "a\n"})
    subprocess_git(git_server, "update-ref", "refs/heads/feature", head)
    git_server.commit_on("o", "r", "feature", {"b": "b\n"})
    return git_server


def subprocess_git(server: GitServer, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "-C", str(server.repo("o", "r")), *args], check=True)


def client(fake: FakeGitHub, token: str | None = None, **kw: Any) -> GitHub:
    waits: list[float] = []
    gh = GitHub(fake.api_url, token or fake.token, "o", "r", token_source="TEST_TOKEN",
                sleep=waits.append, **kw)
    gh.waits = waits  # type: ignore[attr-defined]
    return gh


DRAFT = PullRequestDraft(head="feature", base="main", title="T", body="B", draft=True)


def test_open_then_update_the_same_pull_request(repo: GitServer,
                                                fake_github: FakeGitHub) -> None:
    gh = client(fake_github)
    first = gh.publish(DRAFT, None)
    assert first.created and first.draft and first.number == 1
    again = gh.publish(PullRequestDraft("feature", "main", "T2", "B2", False), first.number)
    assert not again.created and again.number == first.number
    assert fake_github.pull("o", "r", 1)["title"] == "T2"
    # Not recorded (another machine opened it): 422 "already exists", found, updated.
    third = client(fake_github).publish(PullRequestDraft("feature", "main", "T3", "B", False),
                                        None)
    assert third.number == 1 and not third.created
    assert len(fake_github.pulls["o/r"]) == 1
    assert all(r.authorization == f"Bearer {fake_github.token}" for r in fake_github.requests)


def test_the_draft_state_of_an_open_pull_request_changes_only_when_asked(
        repo: GitServer, fake_github: FakeGitHub) -> None:
    """REST's PATCH cannot change ``draft``: an explicit request goes through GraphQL's
    mutations; no request, or the state it already has, makes no GraphQL call."""
    gh = client(fake_github)

    def graphql() -> list[dict[str, Any]]:
        return [r.body for r in fake_github.calls("POST") if r.path == "/graphql"]

    assert gh.publish(DRAFT, None).draft
    kept = gh.publish(PullRequestDraft("feature", "main", "T", "B", False), 1)
    assert kept.draft and fake_github.pull("o", "r", 1)["draft"] is True and graphql() == []
    ready = gh.publish(PullRequestDraft("feature", "main", "T", "B", False, True), 1)
    assert not ready.draft and fake_github.pull("o", "r", 1)["draft"] is False
    (call,) = graphql()
    assert "markPullRequestReadyForReview" in call["query"]
    assert call["variables"] == {"id": fake_github.pull("o", "r", 1)["node_id"]}
    again = gh.publish(PullRequestDraft("feature", "main", "T", "B", False, True), 1)
    assert not again.draft and len(graphql()) == 1
    back = gh.publish(PullRequestDraft("feature", "main", "T", "B", True, True), 1)
    assert back.draft and "convertPullRequestToDraft" in graphql()[-1]["query"]

    fake_github._graphql = lambda body: (200, {  # type: ignore[method-assign]
        "data": None, "errors": [{"message": "Could not resolve to a node"}]})
    with pytest.raises(ParheliaError) as err:
        gh.publish(PullRequestDraft("feature", "main", "T", "B", False, True), 1)
    assert err.value.code == "E608" and "ready for review" in err.value.message
    assert "Could not resolve" in err.value.message
    assert all(r.authorization == f"Bearer {fake_github.token}" for r in fake_github.requests)
    assert graphql_url("https://ghe.example/api/v3") == "https://ghe.example/api/graphql"
    assert graphql_url("https://api.github.com") == "https://api.github.com/graphql"


def test_a_closed_recorded_pull_request_gives_way_to_a_new_one(
        repo: GitServer, fake_github: FakeGitHub) -> None:
    first = client(fake_github).publish(DRAFT, None)
    fake_github.pull("o", "r", first.number)["state"] = "closed"
    second = client(fake_github).publish(DRAFT, first.number)
    assert second.created and second.number != first.number


@pytest.mark.parametrize("status,body,headers,code,words", [
    (401, {"message": "Bad credentials"}, {}, "E400", "auth set --github"),
    (403, {"message": "Resource not accessible by personal access token"},
     {"X-OAuth-Scopes": "read:user"}, "E401", "its scopes are: read:user"),
    (403, {"message": "Forbidden"}, {"X-OAuth-Scopes": ""}, "E401", "no classic scopes"),
    (404, {"message": "Not Found"}, {}, "E401", "Pull requests: Read and write"),
    (422, {"message": "Validation Failed", "errors": [{"message": "No commits between main "
                                                                  "and feature"}]}, {},
     "E608", "No commits between"),
    (502, {"message": "Server Error"}, {}, "E608", "502"),
])
def test_errors_map_to_codes(repo: GitServer, fake_github: FakeGitHub, status: int,
                             body: dict[str, Any], headers: dict[str, str], code: str,
                             words: str) -> None:
    fake_github.fail_next(status, body, headers)
    with pytest.raises(ParheliaError) as err:
        client(fake_github).publish(DRAFT, None)
    assert err.value.code == code and words in err.value.message
    assert fake_github.token not in err.value.message


def test_rate_limits_are_waited_out_or_reported(repo: GitServer,
                                                fake_github: FakeGitHub) -> None:
    fake_github.fail_next(429, {"message": "slow down"}, {"Retry-After": "7"})
    fake_github.fail_next(403, {"message": "API rate limit exceeded"},
                          {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1030"})
    gh = client(fake_github, clock=lambda: 1000.0)
    assert gh.publish(DRAFT, None).created
    assert gh.waits == [7.0, 30.0]  # type: ignore[attr-defined]
    fake_github.fail_next(429, {"message": "slow down"}, {"Retry-After": "3600"})
    with pytest.raises(ParheliaError) as err:
        client(fake_github).publish(DRAFT, 1)
    assert err.value.code == "E500" and "3600 s" in err.value.message


def test_the_body_is_cut_to_githubs_limit(repo: GitServer, fake_github: FakeGitHub) -> None:
    big = PullRequestDraft("feature", "main", "T", "x" * (MAX_BODY_CHARS * 2), False)
    client(fake_github).publish(big, None)
    assert len(fake_github.pull("o", "r", 1)["body"]) <= MAX_BODY_CHARS


@pytest.fixture
def redirector() -> Iterator[tuple[str, list[str]]]:
    """An API that redirects every call to another server, which records whether the
    Authorization header followed."""
    seen: list[str] = []

    class Elsewhere(loopback.Handler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization", ""))
            self.answer(200, [], b"{}")

        do_POST = do_GET

    other = Loopback(Elsewhere)

    class Redirect(loopback.Handler):
        def do_POST(self) -> None:  # noqa: N802
            self.answer(307, [("Location", f"http://127.0.0.1:{other.port}{self.path}")], b"")

        do_GET = do_POST

    api = Loopback(Redirect)
    yield f"http://127.0.0.1:{api.port}", seen
    for server in (other, api):
        server.stop()


def test_a_redirect_never_carries_the_token(redirector: tuple[str, list[str]]) -> None:
    url, seen = redirector
    with pytest.raises(ParheliaError) as err:
        GitHub(url, "ghp_secret", "o", "r").publish(DRAFT, None)
    assert err.value.code == "E608" and seen == []


def test_the_api_url_must_be_https_or_this_machine() -> None:
    assert api_url("github.com", "http://127.0.0.1:1") == "https://api.github.com"
    assert api_url("ghe.example.com", "") == "https://ghe.example.com/api/v3"
    for bad in ("http://evil.example/api", "file:///etc/passwd", "ftp://x"):
        with pytest.raises(ParheliaError) as err:
            GitHub(bad, "t", "o", "r")
        assert err.value.code == "E101"


@pytest.mark.parametrize("url,expected", [
    ("https://gitlab.com/g/p.git", "https://gitlab.com/g/p/-/compare/main...feat"),
    ("git@gitlab.example.org:g/p.git", "https://gitlab.example.org/g/p/-/compare/main...feat"),
    ("https://bitbucket.org/t/p.git", "https://bitbucket.org/t/p/branch/feat?dest=main"),
    ("https://codeberg.org/o/p", "https://codeberg.org/o/p/compare/main...feat"),
    ("https://git.example.com/o/p.git", None),
    ("file:///srv/p.git", None),
])
def test_compare_urls(url: str, expected: str | None) -> None:
    assert compare_url(gitremote.parse(url), "main", "feat") == expected
