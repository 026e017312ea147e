"""Git over the network, with a credential used for that one operation only.

Every network git operation of Parhelia (the daemon's clone of a ``--repo``, the push of
``task pr``, the Modal clone sandbox's fetch) goes through here, on top of
:mod:`parhelia.gitsafe` (no system or global configuration, no hooks, no credential
helper, no prompt). What this module adds:

* **One protocol per call.** ``GIT_ALLOW_PROTOCOL`` names only the scheme of the URL the
  user gave (``https``, ``ssh``, ``file``; ``http`` only to this machine), so a redirect
  or a submodule cannot switch transports.
* **The token never on a command line, in a URL or in a file.** It reaches git as an
  ``Authorization`` header through ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/
  ``GIT_CONFIG_VALUE_n`` (environment, visible in ``/proc`` only to the same user),
  scoped to the remote's origin (``http.<scheme>://<host>/.extraHeader``) and with
  redirects refused, so it is sent to that host and no other. Nothing is written to any
  repository's config, and remote URLs are passed as arguments, never stored.
* **Errors in words, without the secret.** git's stderr is cut to its last lines, the
  token (and its base64 form) replaced by ``***``, and classified: authentication,
  network, or other.

Standard library only: the worker image imports it too (``modal_worker.clone``).
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from parhelia import gitsafe
from parhelia.redact import redact

NETWORK_TIMEOUT = 900
"""Seconds one fetch or push may take (a large first clone)."""
LS_REMOTE_TIMEOUT = 120
TOKEN_USER = "x-access-token"  # noqa: S105 - GitHub's user name for tokens
"""The user name GitHub (and most forges) take with a token as the password."""

_SCP = re.compile(r"^(?P<user>[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
LOOPBACK_NAMES = ("localhost",)
LOCAL_RECEIVE_PACK = "git -c core.hooksPath=/dev/null -c receive.denyCurrentBranch=refuse " \
    "receive-pack"
"""The receive side of a push to a ``file://`` remote: its repository's hooks never run."""


@dataclass(frozen=True)
class RemoteUrl:
    """A repository URL the user gave, parsed: what the credential is scoped to."""

    raw: str
    scheme: str
    """``https``, ``http`` (this machine only), ``ssh`` (also ``user@host:path``) or ``file``."""
    host: str
    """``host`` or ``host:port``, lower case; ``""`` for ``file``."""
    path: str
    """The repository's path on the host, without slashes around it or ``.git``."""

    @property
    def origin(self) -> str:
        """``scheme://host/``: what an http credential is scoped to."""
        return f"{self.scheme}://{self.host}/"

    @property
    def http(self) -> bool:
        return self.scheme in ("https", "http")

    @property
    def hostname(self) -> str:
        """The host without its port."""
        if self.host.startswith("["):
            return self.host[1:].split("]", 1)[0]
        return self.host.rsplit(":", 1)[0] if ":" in self.host else self.host


def _is_loopback(host: str) -> bool:
    name = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
    if name.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse(url: str) -> RemoteUrl:
    """``url`` as a :class:`RemoteUrl`; ValueError saying why it is not one we accept."""
    if not url or url != url.strip() or any(c in url for c in "\0\n\r\t "):
        raise ValueError("must be one URL without spaces or control characters")
    if url.startswith("-"):
        raise ValueError("must not start with '-'")
    match = re.match(r"^([a-z][a-z0-9+.-]*)://([^/]*)(/.*)?$", url)
    if match is None:
        scp = _SCP.match(url)
        if scp is None or "::" in url:
            raise ValueError("must be an https://, ssh://, git@host:path or file:// URL")
        host, path = scp.group("host").lower(), scp.group("path")
        return RemoteUrl(url, "ssh", host, _clean_path(path))
    scheme, authority, path = match.group(1), match.group(2), match.group(3) or ""
    if scheme == "file":
        if authority not in ("", "localhost"):
            raise ValueError("a file:// URL names a path on this machine (file:///path)")
        if not path.strip("/"):
            raise ValueError("a file:// URL needs a path")
        return RemoteUrl(url, "file", "", path.rstrip("/"))
    if scheme not in ("https", "http", "ssh"):
        raise ValueError(f"the {scheme}:// scheme is not supported; use https://, ssh://, "
                         "git@host:path or file://")
    user, _, host = authority.rpartition("@")
    if ":" in user:
        raise ValueError("must not carry a password or token")
    if not host or not _HOST.match(host):
        raise ValueError(f"{host!r} is not a host name")
    if scheme == "http" and not _is_loopback(host):
        raise ValueError("plain http:// is accepted only for this machine (127.0.0.1, "
                         "localhost); use https://")
    if "?" in path or "#" in path:
        raise ValueError("must not carry a query or fragment")
    return RemoteUrl(url, scheme, host.lower(), _clean_path(path))


def _clean_path(path: str) -> str:
    path = path.strip("/")
    return path[:-4] if path.endswith(".git") else path


# -- running git against a remote -------------------------------------------------------


def auth_header(token: str) -> str:
    """The ``Authorization`` header git sends with ``token`` (HTTP basic, as GitHub takes
    a token over git's smart HTTP)."""
    pair = base64.b64encode(f"{TOKEN_USER}:{token}".encode()).decode()
    return f"Authorization: Basic {pair}"


PASSED = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
          "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")
"""What a network call takes of the daemon's environment besides the credential: how the
user's machine reaches the internet (a proxy) and trusts it (a CA bundle)."""


def network_env(remote: RemoteUrl, token: str | None,
                environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables one network git call gets on top of :func:`parhelia.gitsafe.env`:
    the one protocol, no redirects, the credential as a header scoped to the remote's
    origin (only when ``token`` is given and the URL is http(s)), the proxy and CA
    bundle variables of ``environ`` (:data:`PASSED`), and for ssh the user's agent socket
    (``environ``'s ``SSH_AUTH_SOCK``) in batch mode."""
    config = [("http.followRedirects", "false"), ("http.lowSpeedLimit", "1000"),
              ("http.lowSpeedTime", "120")]
    if token and remote.http:
        config.append((f"http.{remote.origin}.extraHeader", auth_header(token)))
    env = {"GIT_ALLOW_PROTOCOL": remote.scheme, "GIT_CONFIG_COUNT": str(len(config))}
    for n, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{n}"] = key
        env[f"GIT_CONFIG_VALUE_{n}"] = value
    given = environ or {}
    env.update({name: given[name] for name in PASSED if given.get(name)})
    if remote.scheme == "ssh":
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
        sock = given.get("SSH_AUTH_SOCK")
        if sock:
            env["SSH_AUTH_SOCK"] = sock
    return env


@dataclass(frozen=True)
class Failure:
    """Why a network git call failed, in words safe to show (no secret)."""

    kind: str
    """``auth`` (the remote wants a credential, or refused the one given), ``network``
    (the host could not be reached) or ``other``."""
    message: str


_AUTH_SIGNS = ("authentication failed", "could not read username", "could not read password",
               "http 401", "error: 401", "returned error: 401", "returned error: 403",
               "permission denied (publickey", "invalid username or password",
               "repository not found", "terminal prompts disabled", "http basic: access denied")
_NETWORK_SIGNS = ("could not resolve host", "failed to connect", "connection refused",
                  "connection timed out", "operation timed out", "network is unreachable",
                  "could not connect", "ssl", "tls", "empty reply from server",
                  "connection reset", "transfer closed", "operation too slow")


def scrub(text: str, token: str | None) -> str:
    """``text`` without ``token`` (plain or in its header's base64) and other secrets."""
    if token:
        for form in (token, auth_header(token).split(" ", 2)[2]):
            text = text.replace(form, "***")
    return redact(text)


def failure(stderr: bytes, token: str | None, limit: int = 600) -> Failure:
    """Classify a failed call from its stderr; the message is its last lines, scrubbed."""
    text = scrub(stderr.decode(errors="replace"), token)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = " ".join(lines[-4:])[-limit:] or "git failed without a message"
    low = text.lower()
    if any(sign in low for sign in _AUTH_SIGNS):
        return Failure("auth", message)
    if any(sign in low for sign in _NETWORK_SIGNS):
        return Failure("network", message)
    return Failure("other", message)


def run(args: Sequence[str], remote: RemoteUrl, token: str | None, *,
        environ: Mapping[str, str] | None = None, cwd: str | None = None,
        home: str | None = None, timeout: float = NETWORK_TIMEOUT,
        stdin: IO[bytes] | None = None, input: bytes | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    """``git ARGS`` through :func:`parhelia.gitsafe.run` with :func:`network_env`.

    ``args`` name the remote by its URL (``remote.raw``) where git needs it; the
    caller passes ``--git-dir=...`` when the call needs a repository. Without ``cwd``
    git runs in an empty private directory whose parent is a ceiling: no repository
    around the daemon's own working directory is found, so none of its config is read."""
    env = network_env(remote, token, environ)
    with tempfile.TemporaryDirectory(prefix="parhelia-net-") as nowhere:
        if cwd is None:
            env["GIT_CEILING_DIRECTORIES"] = os.path.dirname(nowhere)
        return gitsafe.run(list(args), cwd=Path(cwd or nowhere), home=home, extra_env=env,
                           timeout=timeout, stdin=stdin, input=input)


# -- what a ref names on the remote -----------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """What ``git ls-remote --symref`` said: refs -> sha, and the branch HEAD names."""

    refs: dict[str, str]
    head_branch: str | None


def parse_ls_remote(out: str) -> Listing:
    refs: dict[str, str] = {}
    head: str | None = None
    for line in out.splitlines():
        left, _, name = line.partition("\t")
        if left.startswith("ref: ") and name == "HEAD":
            target = left[5:].strip()
            if target.startswith("refs/heads/"):
                head = target[len("refs/heads/"):]
        elif SHA_RE.match(left) and name:
            refs[name] = left
    return Listing(refs, head)


class RemoteError(Exception):
    """A network git call failed (:class:`Failure` says how)."""

    def __init__(self, failed: Failure) -> None:
        super().__init__(failed.message)
        self.failure = failed


def ls_remote(remote: RemoteUrl, token: str | None, patterns: Sequence[str], *,
              environ: Mapping[str, str] | None = None, git_dir: str | None = None,
              home: str | None = None) -> Listing:
    """``git ls-remote --symref URL PATTERNS`` (RemoteError when it fails)."""
    args = [f"--git-dir={git_dir}"] if git_dir else []
    proc = run([*args, "ls-remote", "--symref", "--", remote.raw, *patterns], remote, token,
               environ=environ, home=home, timeout=LS_REMOTE_TIMEOUT)
    if proc.returncode != 0:
        raise RemoteError(failure(proc.stderr, token))
    return parse_ls_remote(proc.stdout.decode(errors="replace"))


@dataclass(frozen=True)
class Resolved:
    """A ref of the remote resolved to a commit."""

    commit: str
    source: str
    """What to fetch: ``refs/heads/B``, ``refs/tags/T`` or the commit id itself."""
    branch: str | None
    """The branch the commit is the tip of (``--ref B``, or the default branch)."""
    default_branch: str | None


def resolve(remote: RemoteUrl, token: str | None, ref: str | None, *,
            environ: Mapping[str, str] | None = None, git_dir: str | None = None,
            home: str | None = None) -> Resolved:
    """``ref`` (a branch, a tag, a full commit id, or None for the default branch) on
    the remote. LookupError when the remote has no such ref; RemoteError when it could
    not be asked."""
    patterns = ["HEAD"]
    if ref:
        patterns += [f"refs/heads/{ref}", f"refs/tags/{ref}", f"refs/tags/{ref}^{{}}"]
    listing = ls_remote(remote, token, patterns, environ=environ, git_dir=git_dir, home=home)
    default = listing.head_branch
    if not ref:
        head = listing.refs.get("HEAD")
        if head is None:
            raise LookupError("the remote repository is empty (it has no HEAD)")
        return Resolved(head, f"refs/heads/{default}" if default else head, default, default)
    if f"refs/heads/{ref}" in listing.refs:
        return Resolved(listing.refs[f"refs/heads/{ref}"], f"refs/heads/{ref}", ref, default)
    if f"refs/tags/{ref}" in listing.refs:
        peeled = listing.refs.get(f"refs/tags/{ref}^{{}}", listing.refs[f"refs/tags/{ref}"])
        return Resolved(peeled, f"refs/tags/{ref}", None, default)
    if SHA_RE.match(ref):
        return Resolved(ref, ref, None, default)
    if re.fullmatch(r"[0-9a-f]{4,63}", ref):
        raise LookupError(f"{ref!r} is not a branch or tag of the remote; an abbreviated "
                          "commit id cannot be fetched: give the full commit id")
    raise LookupError(f"the remote has no branch or tag named {ref!r}")


def fetch(git_dir: str, remote: RemoteUrl, token: str | None, source: str, target: str, *,
          environ: Mapping[str, str] | None = None, home: str | None = None,
          depth: int = 1) -> None:
    """Fetch ``source`` (a ref or commit id of the remote) into ``git_dir`` as ``target``,
    history cut at ``depth`` (RemoteError when it fails)."""
    proc = run([f"--git-dir={git_dir}", "fetch", "--quiet", "--no-tags",
                "--no-write-fetch-head", "--no-recurse-submodules", f"--depth={depth}",
                "--", remote.raw, f"+{source}:{target}"], remote, token, environ=environ,
               home=home)
    if proc.returncode != 0:
        raise RemoteError(failure(proc.stderr, token))


def has_commit(git_dir: str, commit: str) -> bool:
    proc = gitsafe.run([f"--git-dir={git_dir}", "cat-file", "-e", f"{commit}^{{commit}}"])
    return proc.returncode == 0


def fetch_commit(git_dir: str, remote: RemoteUrl, token: str | None, resolved: Resolved,
                 target: str, *, environ: Mapping[str, str] | None = None) -> None:
    """Make ``resolved.commit`` present in ``git_dir`` (one commit deep) under
    ``target``, unless it is there already; when the branch moved between the listing
    and the fetch, the commit itself is fetched. RemoteError when the fetch fails or
    brings something else."""
    if not has_commit(git_dir, resolved.commit):
        fetch(git_dir, remote, token, resolved.source, target, environ=environ)
        if resolved.source != resolved.commit and not has_commit(git_dir, resolved.commit):
            fetch(git_dir, remote, token, resolved.commit, target, environ=environ)
    if not has_commit(git_dir, resolved.commit):
        raise RemoteError(Failure("other", f"the fetch did not bring commit {resolved.commit}"))


@dataclass(frozen=True)
class Pushed:
    """The outcome of :func:`push_branch`: ``ok``, or ``rejected`` with the remote's reason."""

    ok: bool
    reason: str = ""


_REJECT = re.compile(r"^!\t[^\t]*\t(.*)$", re.MULTILINE)


def push_branch(git_dir: str, remote: RemoteUrl, token: str | None, commit: str, branch: str,
         expect: str | None, *, environ: Mapping[str, str] | None = None,
         home: str | None = None, extra: Sequence[str] = ()) -> Pushed:
    """Point ``refs/heads/<branch>`` of the remote at ``commit``, only if it is now at
    ``expect`` (``None``: only if it does not exist) — a lease, so the push replaces
    Parhelia's own earlier push and never someone else's commits. A refusal by the
    remote (branch protection, a hook, a moved branch) is ``Pushed(False, reason)``;
    a failure to talk to it raises RemoteError. ``extra`` are git options before the
    command (``--work-tree``...)."""
    ref = f"refs/heads/{branch}"
    # A file:// remote's receive-pack runs here, on this machine, where git drops our
    # `-c` settings for the other side: that repository's hooks would run. Not ours to run.
    local = [f"--receive-pack={LOCAL_RECEIVE_PACK}"] if remote.scheme == "file" else []
    proc = run([f"--git-dir={git_dir}", *extra, "push", "--porcelain", "--no-verify", *local,
                f"--force-with-lease={ref}:{expect or ''}", "--", remote.raw,
                f"{commit}:{ref}"], remote, token, environ=environ, home=home)
    out = scrub(proc.stdout.decode(errors="replace"), token)
    if proc.returncode == 0:
        return Pushed(True)
    rejected = _REJECT.search(out)
    if rejected is None:
        raise RemoteError(failure(proc.stderr, token))
    remote_says = [line[len("remote:"):].strip()
                   for line in scrub(proc.stderr.decode(errors="replace"), token).splitlines()
                   if line.startswith("remote:") and line[7:].strip()]
    reason = rejected.group(1).strip()
    if remote_says:
        reason += " — the remote said: " + " / ".join(remote_says[-4:])
    return Pushed(False, reason[:800])
