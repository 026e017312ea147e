"""What the tests of private repositories and pull requests share: a daemon configured
for the loopback git server and GitHub fake, on either backend, and the scan for the
token."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from tests.fake_modal.fixture import FakeModal
from tests.helpers.fake_gh import fake_gh
from tests.helpers.fake_github import FakeGitHub
from tests.helpers.git_server import GitServer
from tests.helpers.harness import Harness

OWNER, NAME = "acme", "secret-app"
FILES = {"app.py": "print('v1')\n", "README.md": "# secret app\n"}


def github_config(git: GitServer, github: FakeGitHub | None, *, draft: bool = False) -> str:
    api = f'api_url = "{github.api_url}"\n' if github is not None else ""
    return (f'[github]\nhosts = ["{git.host}"]\n{api}'
            + ("draft = true\n" if draft else ""))


def start(factory: Callable[..., Harness], git: GitServer, github: FakeGitHub | None,
          *, backend: str = "local", fake: FakeModal | None = None, extra: str = "",
          with_token: bool = True, gh_token: str | None = None, **env: str) -> Harness:
    """A daemon whose GitHub hosts are the loopback server's (and API the fake's),
    holding the token in its environment unless ``with_token`` is false. Its PATH starts
    with a fake ``gh``, logged in only with ``gh_token`` (whatever this machine has
    installed, the test decides what `gh auth token` says), and its HOME is empty."""
    if with_token:
        env.setdefault("GITHUB_TOKEN", git.token)
    for name in ("GH_TOKEN", "GITHUB_TOKEN"):
        env.setdefault(name, "")
    tools = fake_gh(git.root.parent / "tools", gh_token)
    env.setdefault("PATH", f"{tools}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    home = git.root.parent / "user-home"
    home.mkdir(exist_ok=True)
    env.setdefault("HOME", str(home))
    env.update(fake.env() if fake is not None else {})
    heartbeat = 1.5 if fake is not None else 0.5
    return factory(github_config(git, github) + extra,
                   f'default_backend = "{backend}"\n', heartbeat=heartbeat, **env)


def token_forms(token: str) -> list[bytes]:
    """The token as bytes, and in the form git sends it (base64 of user:token)."""
    pair = base64.b64encode(f"x-access-token:{token}".encode())
    return [token.encode(), pair]


def files_holding(roots: Iterable[Path], needles: list[bytes],
                  skip: Callable[[Path], bool] = lambda p: False) -> list[str]:
    """Every regular file under ``roots`` whose bytes hold one of ``needles``."""
    found: list[str] = []
    seen = 0
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                if skip(path) or path.is_symlink() or not path.is_file():
                    continue
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                seen += 1
                if any(n in data for n in needles):
                    found.append(str(path))
    assert seen > 10, f"the scan read only {seen} files: it would prove nothing"
    return found
