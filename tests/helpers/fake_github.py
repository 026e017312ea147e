"""A loopback fake of the GitHub REST endpoints Parhelia calls, on 127.0.0.1.

Pull requests of a repository (GitHub REST API v3, ``2022-11-28``):
``GET /repos/{owner}/{repo}/pulls?head=OWNER:BRANCH&state=open``,
``POST /repos/{owner}/{repo}/pulls`` (``title``, ``head``, ``base``, ``body``,
``draft``), ``GET`` and ``PATCH /repos/{owner}/{repo}/pulls/{number}`` (which, as on
GitHub, cannot change ``draft``), and ``POST /graphql`` with the mutations
``convertPullRequestToDraft`` and ``markPullRequestReadyForReview`` (by the pull
request's ``node_id``). As GitHub:
a request needs ``Authorization: Bearer TOKEN`` (401 "Bad credentials" otherwise); a
repository the token does not reach is 404 "Not Found"; the head branch must exist in
the repository (422 ``field: head, code: invalid``) and differ from the base; a second
open pull request for the same head is 422 "A pull request already exists for
OWNER:BRANCH."; every answer carries ``X-OAuth-Scopes`` (the token's scopes) and the
rate-limit headers.

The repositories are those of a :class:`tests.helpers.git_server.GitServer` (its bare
repositories say which branches exist and at which commit). ``fail_next`` queues
answers (a 429 with ``Retry-After``, a 403...) served before the real ones.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import loopback
from tests.helpers.git_server import GitServer
from tests.helpers.loopback import Loopback


@dataclass
class Request:
    method: str
    path: str
    body: dict[str, Any]
    authorization: str


@dataclass
class FakeGitHub:
    git: GitServer
    token: str
    scopes: str = "repo"
    port: int = 0
    pulls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    queued: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    reachable: set[str] | None = None
    """``owner/repo`` names the token reaches (None: every repository of the server)."""
    _server: Loopback | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, status: int, body: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None) -> None:
        self.queued.append((status, body or {"message": "scripted"}, headers or {}))

    def pull(self, owner: str, repo: str, number: int) -> dict[str, Any]:
        return next(p for p in self.pulls.get(f"{owner}/{repo}", []) if p["number"] == number)

    def calls(self, method: str | None = None) -> list[Request]:
        return [r for r in self.requests if method is None or r.method == method]

    def _answer(self, method: str, path: str, query: dict[str, str],
                body: dict[str, Any]) -> tuple[int, Any]:
        if path == "/graphql" and method == "POST":
            return self._graphql(body)
        match = re.fullmatch(r"/repos/([^/]+)/([^/]+)/pulls(?:/(\d+))?", path)
        if match is None:
            return 404, {"message": "Not Found"}
        owner, repo, number = match.group(1), match.group(2), match.group(3)
        name = f"{owner}/{repo}"
        if not self.git.repo(owner, repo).is_dir() or (
                self.reachable is not None and name not in self.reachable):
            return 404, {"message": "Not Found",
                         "documentation_url": "https://docs.github.com/rest"}
        pulls = self.pulls.setdefault(name, [])
        if number is None and method == "GET":
            head = query.get("head", "")
            state = query.get("state", "open")
            found = [p for p in pulls if (not head or p["head"]["label"] == head)
                     and (state == "all" or p["state"] == state)]
            return 200, found
        if number is None and method == "POST":
            head, base = str(body.get("head", "")), str(body.get("base", ""))
            branch = head.split(":", 1)[-1]
            sha = self.git.ref(owner, repo, f"refs/heads/{branch}")
            if sha is None:
                return 422, {"message": "Validation Failed", "errors": [
                    {"resource": "PullRequest", "field": "head", "code": "invalid"}]}
            if self.git.ref(owner, repo, f"refs/heads/{base}") is None:
                return 422, {"message": "Validation Failed", "errors": [
                    {"resource": "PullRequest", "field": "base", "code": "invalid"}]}
            label = f"{owner}:{branch}"
            if any(p["head"]["label"] == label and p["state"] == "open" for p in pulls):
                return 422, {"message": "Validation Failed", "errors": [
                    {"resource": "PullRequest", "code": "custom",
                     "message": f"A pull request already exists for {label}."}]}
            n = 1 + sum(len(v) for v in self.pulls.values())
            pr = {"number": n, "node_id": f"PR_kwfake{n}", "state": "open",
                  "title": body.get("title", ""),
                  "body": body.get("body", ""), "draft": bool(body.get("draft")),
                  "html_url": f"https://github.example/{name}/pull/{n}",
                  "url": f"{self.api_url}/repos/{name}/pulls/{n}", "merged": False,
                  "head": {"ref": branch, "sha": sha, "label": label},
                  "base": {"ref": base}}
            pulls.append(pr)
            return 201, pr
        pr = next((p for p in pulls if p["number"] == int(number or 0)), None)
        if pr is None:
            return 404, {"message": "Not Found"}
        if method == "GET":
            pr["head"]["sha"] = self.git.ref(owner, repo, f"refs/heads/{pr['head']['ref']}")
            return 200, pr
        if method == "PATCH":
            for key in ("title", "body", "state"):
                if key in body:
                    pr[key] = body[key]
            if "base" in body:
                pr["base"] = {"ref": body["base"]}
            pr["head"]["sha"] = self.git.ref(owner, repo, f"refs/heads/{pr['head']['ref']}")
            return 200, pr
        return 404, {"message": "Not Found"}

    def _graphql(self, body: dict[str, Any]) -> tuple[int, Any]:
        query = str(body.get("query", ""))
        node = str((body.get("variables") or {}).get("id", ""))
        found = re.search(r"\b(convertPullRequestToDraft|markPullRequestReadyForReview)\(",
                          query)
        pr = next((p for pulls in self.pulls.values() for p in pulls
                   if p["node_id"] == node), None)
        if found is None or pr is None:
            return 200, {"data": None, "errors": [
                {"type": "NOT_FOUND", "message": f"Could not resolve to a node with the "
                                                 f"global id of '{node}'"}]}
        pr["draft"] = found.group(1) == "convertPullRequestToDraft"
        return 200, {"data": {found.group(1): {"pullRequest": {"isDraft": pr["draft"]}}}}

    def start(self) -> FakeGitHub:
        fake = self

        class Handler(loopback.Handler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {}
                path, _, qs = self.path.partition("?")
                query = dict(urllib.parse.parse_qsl(qs))
                auth = self.headers.get("Authorization", "")
                headers = {"X-OAuth-Scopes": fake.scopes, "X-RateLimit-Limit": "5000",
                           "X-RateLimit-Remaining": "4999"}
                with fake._lock:
                    fake.requests.append(Request(self.command, path, body, auth))
                    if auth not in (f"Bearer {fake.token}", f"token {fake.token}"):
                        status, answer = 401, {"message": "Bad credentials"}
                        headers.pop("X-OAuth-Scopes")
                    elif fake.queued:
                        status, answer, extra = fake.queued.pop(0)
                        headers.update(extra)
                    else:
                        status, answer = fake._answer(self.command, path, query, body)
                self.answer(status, [("Content-Type", "application/json; charset=utf-8"),
                                     *headers.items()], json.dumps(answer).encode())

            do_GET = _handle
            do_POST = _handle
            do_PATCH = _handle

        self._server = Loopback(Handler, self.port)
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
