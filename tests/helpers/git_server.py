"""A loopback git server: git's own ``git http-backend`` (smart HTTP) behind a tiny HTTP
server on 127.0.0.1, answering clone, fetch and push only with a token.

``GitServer.start(root)`` serves the bare repositories under ``root`` as
``http://127.0.0.1:PORT/<owner>/<name>.git``. Every request must carry HTTP basic
authentication whose password is the server's token (any user name, as GitHub takes
``x-access-token:TOKEN``); without it the answer is 401 with a ``WWW-Authenticate``
challenge, as GitHub answers for a private repository; a wrong token gets 403. Pushes are
accepted from an authenticated client (``REMOTE_USER`` set), so the repositories' own
hooks (``pre-receive``) can refuse them, as branch protection does.

It records each request's method, path and whether it carried the token, so a test can
show the credential went to this server and that an unauthenticated try was refused.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import loopback
from tests.helpers.gitrepo import init_repo
from tests.helpers.loopback import Loopback

BACKEND = "git-http-backend"


def _backend() -> str:
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                               check=True).stdout.strip()
    return str(Path(exec_path) / BACKEND)


@dataclass
class Seen:
    method: str
    path: str
    authorized: bool
    auth_header: str


@dataclass
class GitServer:
    root: Path
    token: str
    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    public: set[str] = field(default_factory=set)
    """Repository paths (``owner/name.git``) anyone may read."""
    gate: threading.Event | None = None
    """When set, a fetch's pack request waits until the event is set (a test looks at the
    client processes meanwhile)."""
    _server: Loopback | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, owner: str, name: str) -> str:
        return f"{self.base}/{owner}/{name}.git"

    def repo(self, owner: str, name: str) -> Path:
        return self.root / owner / f"{name}.git"

    def create(self, owner: str, name: str, files: dict[str, str | bytes]) -> str:
        """A new bare repository with one commit of ``files`` on ``main``; its sha."""
        bare = self.repo(owner, name)
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git(None, "init", "-q", "--bare", "-b", "main", str(bare))
        _git(bare, "config", "uploadpack.allowReachableSHA1InWant", "true")
        work = self.root / ".work" / owner / name
        shutil.rmtree(work, ignore_errors=True)
        init_repo(work, files)
        _git(work, "push", "-q", str(bare), "HEAD:refs/heads/main")
        return _git(bare, "rev-parse", "refs/heads/main")

    def commit_on(self, owner: str, name: str, branch: str, files: dict[str, str],
                  message: str = "more", start: str = "main") -> str:
        """Another commit on ``branch`` (made directly in the bare repository; a new
        branch starts at ``start``)."""
        bare = self.repo(owner, name)
        work = self.root / ".work" / owner / name
        source = branch if self.ref(owner, name, f"refs/heads/{branch}") else start
        _git(work, "fetch", "-q", str(bare), f"+refs/heads/{source}:refs/remotes/b/{branch}")
        _git(work, "checkout", "-q", "-B", branch, f"refs/remotes/b/{branch}")
        for rel, content in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(content)
        _git(work, "add", "-A")
        _git(work, "-c", "user.name=Owner", "-c", "user.email=owner@example.com", "commit",
             "-qm", message)
        _git(work, "push", "-q", str(bare), f"HEAD:refs/heads/{branch}")
        return _git(bare, "rev-parse", f"refs/heads/{branch}")

    def ref(self, owner: str, name: str, ref: str) -> str | None:
        proc = subprocess.run(["git", "-C", str(self.repo(owner, name)), "rev-parse",
                               "--verify", "-q", ref], capture_output=True, text=True,
                              check=False)
        return proc.stdout.strip() or None

    def protect(self, owner: str, name: str, branch: str, message: str) -> None:
        """Refuse pushes to ``branch`` (a pre-receive hook saying ``message``)."""
        hook = self.repo(owner, name) / "hooks" / "pre-receive"
        hook.write_text("#!/bin/sh\nwhile read old new ref; do\n"
                        f'  if [ "$ref" = "refs/heads/{branch}" ]; then\n'
                        f'    echo "{message}" >&2; exit 1\n  fi\ndone\n')
        hook.chmod(0o755)

    def start(self) -> GitServer:
        server = self
        backend = _backend()

        class Handler(loopback.Handler):
            def _auth(self) -> bool:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return False
                try:
                    pair = base64.b64decode(header[6:]).decode()
                except ValueError:
                    return False
                return pair.partition(":")[2] == server.token

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                path, _, query = self.path.partition("?")
                body = self._body() if self.command == "POST" else b""
                authorized = self._auth()
                header = self.headers.get("Authorization", "")
                server.seen.append(Seen(self.command, path, authorized, header))
                if server.gate is not None and path.endswith("/git-upload-pack"):
                    server.gate.wait(60)
                repo_path = path.lstrip("/").split(".git/", 1)[0] + ".git"
                readable = repo_path in server.public and "git-receive-pack" not in self.path
                if not authorized and not readable:
                    challenge = [] if header else [("WWW-Authenticate",
                                                    'Basic realm="loopback git"')]
                    self.answer(403 if header else 401, challenge, b"")
                    return
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                       "GIT_PROJECT_ROOT": str(server.root), "GIT_HTTP_EXPORT_ALL": "1",
                       "REQUEST_METHOD": self.command, "PATH_INFO": path,
                       "QUERY_STRING": query, "REMOTE_ADDR": "127.0.0.1",
                       "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                       "CONTENT_LENGTH": str(len(body)), "HOME": str(server.root),
                       "GIT_CONFIG_NOSYSTEM": "1"}
                if authorized:
                    env["REMOTE_USER"] = "token-user"
                for name in ("Content-Encoding", "Git-Protocol"):
                    if self.headers.get(name):
                        env["HTTP_" + name.upper().replace("-", "_")] = self.headers[name]
                proc = subprocess.run([backend], input=body, env=env, capture_output=True,
                                      check=False)
                sep, width = proc.stdout.find(b"\r\n\r\n"), 4
                if sep < 0:
                    sep, width = proc.stdout.find(b"\n\n"), 2
                head, payload = proc.stdout[:max(sep, 0)], proc.stdout[sep + width:]
                status, headers = 200, []
                for line in head.decode(errors="replace").splitlines():
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.answer(status, headers, payload)

            do_GET = _handle
            do_POST = _handle

        self._server = Loopback(Handler, self.port)
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


def _git(repo: Path | None, *args: str) -> str:
    cmd = ["git", *(["-C", str(repo)] if repo is not None else []), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null")
    return subprocess.run(cmd, check=True, capture_output=True, text=True,
                          env=env).stdout.strip()
