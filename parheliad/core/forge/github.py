"""The forge of GitHub: pull requests through its REST API (``2022-11-28``).

Calls made: ``GET /repos/{owner}/{repo}/pulls/{number}``, ``GET
/repos/{owner}/{repo}/pulls?head=OWNER:BRANCH&state=open``, ``POST
/repos/{owner}/{repo}/pulls`` and ``PATCH /repos/{owner}/{repo}/pulls/{number}``, each
with ``Authorization: Bearer TOKEN``; and, to turn an open pull request into a draft or
ready for review (which the REST API cannot), GraphQL's ``convertPullRequestToDraft`` or
``markPullRequestReadyForReview`` at ``POST /graphql`` (a GitHub Enterprise Server's
``/api/graphql``). The token goes to the configured API URL only:
redirects are refused, never followed with the header.

What an answer means:
- 401: the token is refused (expired, revoked): E400 with every way to give one;
- 403 or 429 with ``Retry-After``, or with ``X-RateLimit-Remaining: 0``: a rate limit;
  the call waits as told (up to :data:`MAX_WAIT_SECONDS` in all) and is tried again,
  else E500 saying when to retry;
- other 403, and 404: the token does not reach the repository or lacks a permission:
  E401 naming the token's scopes (``X-OAuth-Scopes``) and the ones needed;
- 422 "A pull request already exists": the open one is looked up and updated;
- anything else: E608 with GitHub's message; no answer at all: E502.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

from parhelia import __version__
from parhelia.errors import ParheliaError
from parheliad.core.forge.base import PullRequest, PullRequestDraft

NAME = "github"
API_VERSION = "2022-11-28"
PUBLIC_HOST = "github.com"
PUBLIC_API = "https://api.github.com"
MAX_WAIT_SECONDS = 120.0
"""The longest a call waits in all for rate limits before it gives up (E500)."""
CALL_TIMEOUT = 30.0
MAX_BODY_CHARS = 65_000
"""GitHub refuses a pull request body over 65,536 characters."""
_API_BASE = re.compile(r"^(https://[^/@\s]+|http://(127\.0\.0\.1|localhost)(:\d+)?)(/\S*)?$")
NEEDED = ("a classic token needs the `repo` scope (`public_repo` for a public repository); "
          "a fine-grained token needs Pull requests: Read and write and Contents: Read and "
          "write on the repository")


def api_url(host: str, configured: str) -> str:
    """The REST API base of ``host``: api.github.com for github.com, else the configured
    one or GitHub Enterprise Server's ``https://HOST/api/v3``."""
    if host == PUBLIC_HOST:
        return PUBLIC_API
    return configured.rstrip("/") if configured else f"https://{host}/api/v3"


SET_DRAFT = {True: "convertPullRequestToDraft", False: "markPullRequestReadyForReview"}


def graphql_url(api_base: str) -> str:
    """GitHub's GraphQL endpoint beside the REST base ``api_base``."""
    base = api_base.rstrip("/")
    return base[:-len("/v3")] + "/graphql" if base.endswith("/api/v3") else base + "/graphql"


@dataclass(frozen=True)
class Answer:
    status: int
    data: Any
    headers: Message | Mapping[str, str]

    def header(self, name: str) -> str:
        return str(self.headers.get(name) or "")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer, never a second request carrying the token


class GitHub:
    """One repository's pull requests (``owner/repo``) with one token."""

    name = NAME

    def __init__(self, base_url: str, token: str, owner: str, repo: str, *,
                 token_source: str = "the token",  # noqa: S107 - words, not a token
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        if not _API_BASE.match(base_url):  # the token goes there: https, or this machine
            raise ParheliaError("E101", f"github.api_url: {base_url!r} is not an https:// "
                                "URL (http:// only to 127.0.0.1 or localhost)")
        self._base = base_url.rstrip("/")
        self._token = token
        self._owner, self._repo = owner, repo
        self._source = token_source
        self._sleep, self._clock = sleep, clock
        self._opener = urllib.request.build_opener(_NoRedirect)
        self.waited = 0.0
        """Seconds spent waiting for rate limits (for the caller's record)."""

    @property
    def slug(self) -> str:
        return f"{self._owner}/{self._repo}"

    # -- the calls ----------------------------------------------------------------------

    def publish(self, draft: PullRequestDraft, known: int | None) -> PullRequest:
        """Open the pull request of ``draft.head`` into ``draft.base``, or update the one
        already open for it (``known``: the number recorded last time)."""
        if known:
            current = self._call("GET", f"pulls/{known}")
            if current.status == 200 and isinstance(current.data, dict) and \
                    current.data.get("state") == "open":
                return self._update(known, draft)
        made = self._call("POST", "pulls", {
            "title": draft.title, "head": f"{self._owner}:{draft.head}", "base": draft.base,
            "body": _body(draft.body), "draft": draft.draft}, accept=(201, 422))
        if made.status == 201:
            return _pull(made.data, created=True)
        if _already_exists(made.data):
            found = self._call("GET", "pulls", query={
                "head": f"{self._owner}:{draft.head}", "state": "open"})
            open_ = found.data if isinstance(found.data, list) else []
            if open_ and isinstance(open_[0], dict) and open_[0].get("number"):
                return self._update(int(open_[0]["number"]), draft)
        raise ParheliaError("E608", f"GitHub refused the pull request on {self.slug}: "
                            f"{_message(made.data)}", status=made.status)

    def _update(self, number: int, draft: PullRequestDraft) -> PullRequest:
        done = self._call("PATCH", f"pulls/{number}", {
            "title": draft.title, "body": _body(draft.body), "base": draft.base})
        data = done.data
        if draft.change_draft and isinstance(data, dict) and \
                bool(data.get("draft")) != draft.draft:
            data = {**data, "draft": self._set_draft(number, str(data.get("node_id") or ""),
                                                     draft.draft)}
        return _pull(data, created=False)

    def _set_draft(self, number: int, node_id: str, draft: bool) -> bool:
        """Turn pull request ``number`` into a draft, or ready for review; its state
        after."""
        mutation = SET_DRAFT[draft]
        query = (f"mutation($id: ID!) {{ {mutation}(input: {{pullRequestId: $id}}) "
                 "{ pullRequest { isDraft } } }")
        done = self._call("POST", "", {"query": query, "variables": {"id": node_id}},
                          url=graphql_url(self._base))
        data = done.data if isinstance(done.data, dict) else {}
        state: Any = data
        for key in ("data", mutation, "pullRequest", "isDraft"):
            state = state.get(key) if isinstance(state, dict) else None
        errors = data.get("errors")
        if errors or not isinstance(state, bool):
            said = "; ".join(str(e.get("message")) for e in
                             (errors if isinstance(errors, list) else [])
                             if isinstance(e, dict))[:500] or "no answer"
            raise ParheliaError("E608", f"GitHub did not make pull request #{number} of "
                                f"{self.slug} {'a draft' if draft else 'ready for review'}: "
                                f"{said}", status=done.status)
        return state

    # -- one request ----------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
              query: Mapping[str, str] | None = None,
              accept: tuple[int, ...] = (200,), url: str = "") -> Answer:
        url = url or f"{self._base}/repos/{self.slug}/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        while True:
            answer = self._send(method, url, body)
            if answer.status in accept:
                return answer
            wait = self._rate_limited(answer)
            if wait is None:
                break
            if self.waited + wait > MAX_WAIT_SECONDS:
                raise ParheliaError("E500", f"GitHub's rate limit stops calls for "
                                    f"{round(wait)} s more; run the command again then",
                                    retry_after_seconds=round(wait))
            self._sleep(wait)
            self.waited += wait
        raise self._error(answer)

    def _send(self, method: str, url: str, body: Mapping[str, Any] | None) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={  # noqa: S310
            "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
            "Authorization": f"Bearer {self._token}",
            "User-Agent": f"parhelia/{__version__}",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            with self._opener.open(request, timeout=CALL_TIMEOUT) as resp:
                return Answer(resp.status, _json(resp.read()), resp.headers)
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, _json(exc.read()), exc.headers)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ParheliaError("E502", f"GitHub's API at {self._base} could not be reached: "
                                f"{type(reason).__name__}") from None

    def _rate_limited(self, answer: Answer) -> float | None:
        """Seconds to wait before trying again, or None when this is no rate limit."""
        if answer.status not in (403, 429):
            return None
        retry_after = answer.header("Retry-After")
        if retry_after.strip().isdigit():
            return float(retry_after.strip())
        if answer.header("X-RateLimit-Remaining") == "0":
            reset = answer.header("X-RateLimit-Reset")
            if reset.strip().isdigit():
                return max(1.0, float(reset) - self._clock())
            return 60.0
        if answer.status == 429 or "rate limit" in _message(answer.data).lower():
            return 60.0  # a secondary rate limit without a time: at least a minute
        return None

    def _error(self, answer: Answer) -> ParheliaError:
        said = _message(answer.data)
        if answer.status == 401:
            return ParheliaError("E400", f"GitHub refused {self._source} ({said}): it is "
                                 "invalid, expired or revoked; give a new one with "
                                 "`parhelia auth set --github`", status=401)
        if answer.status in (403, 404):
            scopes = answer.header("X-OAuth-Scopes")
            held = (f"its scopes are: {scopes}" if scopes else
                    "it has no classic scopes (a fine-grained or app token)"
                    if "X-OAuth-Scopes" in answer.headers else "its scopes are not known")
            return ParheliaError(
                "E401", f"GitHub answered {answer.status} ({said}) for {self.slug} with "
                f"{self._source}; {held}. The token must reach the repository: {NEEDED}",
                status=answer.status)
        return ParheliaError("E608", f"GitHub answered {answer.status} for {self.slug}: "
                             f"{said}", status=answer.status)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _message(data: Any) -> str:
    if not isinstance(data, dict):
        return "no message"
    parts = [str(data.get("message") or "no message")]
    for err in data.get("errors") or []:
        if isinstance(err, dict):
            parts.append(str(err.get("message") or
                             f"{err.get('field', '')} {err.get('code', '')}".strip()))
        elif isinstance(err, str):
            parts.append(err)
    return "; ".join(p for p in parts if p)[:500]


def _already_exists(data: Any) -> bool:
    return "already exists" in _message(data).lower()


def _body(text: str) -> str:
    if len(text) <= MAX_BODY_CHARS:
        return text
    return text[:MAX_BODY_CHARS - 40] + "\n\n*(shortened to GitHub's limit)*\n"


def _pull(data: Any, *, created: bool) -> PullRequest:
    if not isinstance(data, dict) or not data.get("number") or not data.get("html_url"):
        raise ParheliaError("E608", "GitHub's answer did not describe a pull request")
    return PullRequest(number=int(data["number"]), url=str(data["html_url"]),
                       state=str(data.get("state") or "open"), draft=bool(data.get("draft")),
                       created=created)
