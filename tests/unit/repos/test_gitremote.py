"""parhelia.gitremote: which URLs are accepted, how the token reaches git (and where it
never goes), how failures read, and pushes under a lease."""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from parhelia import gitremote
from tests.helpers import loopback
from tests.helpers.git_server import GitServer
from tests.helpers.loopback import Loopback


@pytest.mark.parametrize("url,scheme,host,path", [
    ("https://github.com/o/r.git", "https", "github.com", "o/r"),
    ("https://GitHub.com/o/r", "https", "github.com", "o/r"),
    ("git@github.com:o/r.git", "ssh", "github.com", "o/r"),
    ("ssh://git@example.com:2222/o/r.git", "ssh", "example.com:2222", "o/r"),
    ("http://127.0.0.1:8080/o/r.git", "http", "127.0.0.1:8080", "o/r"),
    ("http://localhost/o/r.git", "http", "localhost", "o/r"),
    ("file:///srv/repos/r.git", "file", "", "/srv/repos/r.git"),
])
def test_accepted_urls(url: str, scheme: str, host: str, path: str) -> None:
    remote = gitremote.parse(url)
    assert (remote.scheme, remote.host, remote.path) == (scheme, host, path)


@pytest.mark.parametrize("url,why", [
    ("http://example.com/o/r.git", "only for this machine"),
    ("https://user:pw@github.com/o/r.git", "password or token"),
    ("ext::sh -c touch% /tmp/x", "one URL"),
    ("--upload-pack=touch", "'-'"),
    ("ftp://example.com/r.git", "not supported"),
    ("https://github.com/o/r.git?token=abc", "query"),
    ("https://gith ub.com/o/r", "one URL"),
    ("file://otherhost/r.git", "this machine"),
    ("https://github.com/o/r\n", "one URL"),
    ("", "one URL"),
])
def test_refused_urls(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        gitremote.parse(url)


def test_the_token_is_a_header_scoped_to_the_origin_in_the_environment_only() -> None:
    remote = gitremote.parse("https://github.com/o/r.git")
    env = gitremote.network_env(remote, "ghp_secret", {
        "SSH_AUTH_SOCK": "/agent", "HTTPS_PROXY": "http://proxy:3128", "AWS_SECRET": "x"})
    keys = {env[f"GIT_CONFIG_KEY_{n}"]: env[f"GIT_CONFIG_VALUE_{n}"]
            for n in range(int(env["GIT_CONFIG_COUNT"]))}
    header = keys["http.https://github.com/.extraHeader"]
    assert header == "Authorization: Basic " + base64.b64encode(
        b"x-access-token:ghp_secret").decode()
    assert keys["http.followRedirects"] == "false"
    assert env["GIT_ALLOW_PROTOCOL"] == "https" and "SSH_AUTH_SOCK" not in env
    assert env["HTTPS_PROXY"] == "http://proxy:3128" and "AWS_SECRET" not in env
    # No token: no header; ssh gets the agent and batch mode, never a header.
    assert not any("extraHeader" in v for v in gitremote.network_env(remote, None).values())
    ssh = gitremote.network_env(gitremote.parse("git@github.com:o/r"), "ghp_secret",
                                {"SSH_AUTH_SOCK": "/agent"})
    assert ssh["SSH_AUTH_SOCK"] == "/agent" and "BatchMode=yes" in ssh["GIT_SSH_COMMAND"]
    assert "ghp_secret" not in repr(ssh)


def test_failures_are_classified_and_scrubbed() -> None:
    token = "ghp_" + "a" * 36
    pair = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    said = gitremote.failure(f"fatal: Authentication failed for 'https://x/'\n"
                             f"debug: {token} {pair}\n".encode(), token)
    assert said.kind == "auth" and token not in said.message and pair not in said.message
    assert gitremote.failure(b"fatal: unable to access: Could not resolve host: x\n",
                             None).kind == "network"
    assert gitremote.failure(b"fatal: something else\n", None).kind == "other"


def test_ls_remote_listing() -> None:
    listing = gitremote.parse_ls_remote(
        "ref: refs/heads/main\tHEAD\n" + "a" * 40 + "\tHEAD\n" + "b" * 40 +
        "\trefs/heads/main\n" + "c" * 40 + "\trefs/tags/v1\n" + "d" * 40 + "\trefs/tags/v1^{}\n")
    assert listing.head_branch == "main" and listing.refs["refs/tags/v1^{}"] == "d" * 40


def _bare(path: Path) -> str:
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return str(path)


def test_resolve_fetch_and_push_under_a_lease(git_server: GitServer, tmp_path: Path) -> None:
    head = git_server.create("o", "r", {"a.txt": "a\n"})
    subprocess.run(["git", "-C", str(git_server.repo("o", "r")), "-c", "user.name=T",
                    "-c", "user.email=t@example.com", "tag", "-a", "-m", "t", "v1", head],
                   check=True)
    remote = gitremote.parse(git_server.url("o", "r"))
    token = git_server.token
    assert gitremote.resolve(remote, token, None).branch == "main"
    tag = gitremote.resolve(remote, token, "v1")
    assert tag.commit == head and tag.branch is None  # the tag peeled to its commit
    with pytest.raises(LookupError, match="full commit id"):
        gitremote.resolve(remote, token, head[:10])
    with pytest.raises(gitremote.RemoteError) as refused:
        gitremote.resolve(remote, None, None)
    assert refused.value.failure.kind == "auth"

    mine = _bare(tmp_path / "mine.git")
    gitremote.fetch_commit(mine, remote, token, gitremote.resolve(remote, token, head),
                           "refs/base")
    assert gitremote.has_commit(mine, head)
    assert (tmp_path / "mine.git" / "shallow").read_text().strip() == head
    # The lease: absent -> pushed; moved by someone else -> refused, theirs kept.
    assert gitremote.push_branch(mine, remote, token, head, "b", None).ok
    theirs = git_server.commit_on("o", "r", "b", {"x": "theirs\n"})
    refused_push = gitremote.push_branch(mine, remote, token, head, "b", head)
    assert not refused_push.ok and "stale info" in refused_push.reason
    assert git_server.ref("o", "r", "refs/heads/b") == theirs
    assert gitremote.push_branch(mine, remote, token, head, "b", theirs).ok
    assert git_server.ref("o", "r", "refs/heads/b") == head
    # Nothing of the token was written into the repository the push came from.
    for dirpath, _, names in os.walk(mine):
        for name in names:
            assert token.encode() not in (Path(dirpath) / name).read_bytes()


def test_a_push_to_a_file_remote_runs_none_of_its_hooks(tmp_path: Path) -> None:
    target = tmp_path / "target.git"
    _bare(target)
    ran = tmp_path / "hook-ran"
    for hook in ("pre-receive", "update", "post-receive", "post-update"):
        script = target / "hooks" / hook
        script.write_text(f"#!/bin/sh\ntouch {ran}\n")
        script.chmod(0o755)
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=a", "-c", "user.email=b",
                    "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    sha = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    done = gitremote.push_branch(str(work / ".git"), gitremote.parse(f"file://{target}"),
                                 None, sha, "x", None)
    assert done.ok and not ran.exists()
    subprocess.run(["git", "-C", str(work), "push", "-q", str(target), "HEAD:refs/heads/y"],
                   check=True)
    assert ran.exists()  # the same hooks run for a plain push: the test sees them


def test_network_git_finds_no_repository_around_the_daemons_cwd(
        git_server: GitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A repository around the daemon's working directory (whose config could rewrite
    URLs, name headers or programs) is never read by the daemon's network git."""
    git_server.create("o", "r", {"a.txt": "a\n"})
    git_server.public.add("o/r.git")
    around = tmp_path / "around"
    subprocess.run(["git", "init", "-q", str(around)], check=True)
    subprocess.run(["git", "-C", str(around), "config", f"url.{git_server.base}/.insteadOf",
                    "http://127.0.0.1:9/"], check=True)
    monkeypatch.chdir(around)
    (around / "tmp").mkdir()  # even a TMPDIR inside that repository
    monkeypatch.setattr(tempfile, "tempdir", str(around / "tmp"))
    remote = gitremote.parse("http://127.0.0.1:9/o/r.git")
    proc = gitremote.run(["ls-remote", remote.raw], remote, None, timeout=30)
    assert proc.returncode != 0 and git_server.seen == []
    # The same call inside the repository's own git would have been redirected.
    plain = subprocess.run(["git", "-C", str(around), "ls-remote", remote.raw],
                           capture_output=True, check=False)
    assert plain.returncode == 0 and git_server.seen


def _cmdlines() -> dict[int, bytes]:
    out = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                out[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
    return out


def test_the_token_is_in_no_command_line_while_git_runs(git_server: GitServer,
                                                        tmp_path: Path) -> None:
    """Other users can read every process's command line (/proc/PID/cmdline); only the
    owner reads its environment. While a fetch is in flight, every process on the machine
    is looked at: the token is in no argv, and it is in the environment of git's own
    processes only (a proof that the look found them)."""
    head = git_server.create("o", "r", {"a.txt": "a\n"})
    remote = gitremote.parse(git_server.url("o", "r"))
    resolved = gitremote.resolve(remote, git_server.token, None)
    git_server.seen.clear()
    git_server.gate = threading.Event()
    mine = _bare(tmp_path / "mine.git")
    failed: list[BaseException] = []

    def fetch() -> None:
        try:
            gitremote.fetch_commit(mine, remote, git_server.token, resolved, "refs/base")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failed.append(exc)

    worker = threading.Thread(target=fetch)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not any(s.path.endswith("/git-upload-pack") for s in git_server.seen):
            assert time.monotonic() < deadline, "the fetch never asked for a pack"
            time.sleep(0.02)
        lines = _cmdlines()
        forms = (git_server.token.encode(),
                 base64.b64encode(f"x-access-token:{git_server.token}".encode()))
        holders = []
        for pid in lines:
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if any(form in environ for form in forms):
                holders.append(pid)
    finally:
        git_server.gate.set()
        worker.join(60)
    assert not failed and gitremote.has_commit(mine, head)
    assert [pid for pid, line in lines.items() if any(f in line for f in forms)] == []
    assert holders, "no git process was seen holding the header: the look proves nothing"
    assert all(b"git" in lines.get(pid, b"") for pid in holders), holders


def test_a_redirect_takes_no_token_along(git_server: GitServer) -> None:
    """A server that redirects git elsewhere: git does not follow, and the other host
    never sees the header."""
    git_server.create("o", "r", {"a.txt": "a\n"})
    seen: list[str] = []

    class Elsewhere(loopback.Handler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization", ""))
            self.answer(404, [], b"")

    other = Loopback(Elsewhere)

    class Redirect(loopback.Handler):
        def do_GET(self) -> None:  # noqa: N802
            self.answer(301, [("Location", f"http://127.0.0.1:{other.port}{self.path}")],
                        b"")

    first = Loopback(Redirect)
    try:
        remote = gitremote.parse(f"http://127.0.0.1:{first.port}/o/r.git")
        with pytest.raises(gitremote.RemoteError):
            gitremote.ls_remote(remote, git_server.token, ["HEAD"])
    finally:
        first.stop()
        other.stop()
    assert seen == []
