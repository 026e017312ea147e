"""A small Python project whose tests need a dependency that only its environment's setup
installs: the wheel is built here, byte by byte (no network, no build backend), and the
setup installs it offline with ``uv pip install --target``."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

from tests.helpers.gitrepo import init_repo

WHEEL_NAME = "greetdep"
WHEEL_VERSION = "1.0"
GREETING = "hello from greetdep"
SETUP_SECRET = "GREET_SETUP_TOKEN"
"""The setup secret's variable (a name of the daemon's environment on the local backend)."""


WHEEL_FILE = f"{WHEEL_NAME}-{WHEEL_VERSION}-py3-none-any.whl"


def build_wheel(*, greeting: str = GREETING, payload_bytes: int = 0) -> bytes:
    """A pure-Python wheel of ``greetdep`` (PEP 427): ``hello()`` returns ``greeting``.
    ``payload_bytes``: a data file of that size inside it (for benches)."""
    dist = f"{WHEEL_NAME}-{WHEEL_VERSION}.dist-info"
    files = {
        f"{WHEEL_NAME}/__init__.py": f"def hello():\n    return {greeting!r}\n".encode(),
        f"{dist}/METADATA": (f"Metadata-Version: 2.1\nName: {WHEEL_NAME}\n"
                             f"Version: {WHEEL_VERSION}\n").encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: parhelia-tests\n"
                         b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if payload_bytes:
        files[f"{WHEEL_NAME}/payload.bin"] = bytes(range(256)) * (payload_bytes // 256)

    def digest(data: bytes) -> str:
        raw = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        return f"sha256={raw}"

    record = "".join(f"{p},{digest(c)},{len(c)}\n" for p, c in files.items())
    record += f"{dist}/RECORD,,\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
        zf.writestr(f"{dist}/RECORD", record)
    return out.getvalue()


def uv() -> str:
    found = shutil.which("uv")
    assert found, "uv is needed (CI installs it first: .ci/run)"
    return found


def environment_toml(*, setup: list[str] | None = None, allow: tuple[str, ...] = ("pytest",),
                     extra: str = "") -> str:
    """The project's ``.parhelia/environment.toml``: setup installs the vendored wheel into
    ``.deps`` (on ``PYTHONPATH`` for the tests) and shows that it had the setup secret
    (its value must come out as ``***`` in the log)."""
    steps = setup if setup is not None else [
        f"{uv()} pip install --offline --no-deps --target .deps vendor/{WHEEL_FILE}",
        f'test -n "${SETUP_SECRET}" && echo "setup had the token ${SETUP_SECRET}"',
    ]
    return (f"setup = {json.dumps(steps)}\n"
            'env = { PYTHONPATH = ".deps" }\n'
            f'setup_secrets = ["{SETUP_SECRET}"]\n'
            f"allow_commands = {json.dumps(list(allow))}\n" + extra)


def make_project(path: Path, *, toml: str | None = None) -> str:
    """The project as a git repository, the wheel vendored; its base commit."""
    files: dict[str, str | bytes] = {
        "README.md": "# greet\n",
        "test_greet.py": ("import greetdep\n\n\ndef test_hello():\n"
                                f"    assert greetdep.hello() == {GREETING!r}\n"),
        ".parhelia/environment.toml": toml if toml is not None else environment_toml(),
        ".gitignore": ".deps/\n",
        f"vendor/{WHEEL_FILE}": build_wheel(),
    }
    return init_repo(path, files)
