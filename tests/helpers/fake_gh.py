"""A stand-in for the ``gh`` CLI on a daemon's PATH: whatever this machine has installed,
the test decides what ``gh auth token`` says."""

from __future__ import annotations

from pathlib import Path

FAKE_GH = """#!/bin/sh
# A stand-in for the gh CLI: `gh auth token` prints the token of the file gh.token beside
# it (a login), else fails as gh does when nobody is logged in.
here=$(dirname "$0")
if [ "$1" = auth ] && [ "$2" = token ] && [ -f "$here/gh.token" ]; then
  cat "$here/gh.token"; exit 0
fi
echo "no oauth token found for the host" >&2; exit 1
"""


def fake_gh(directory: Path, token: str | None = None) -> Path:
    """A fake ``gh`` in ``directory`` (logged in with ``token`` when given)."""
    directory.mkdir(parents=True, exist_ok=True)
    gh = directory / "gh"
    gh.write_text(FAKE_GH)
    gh.chmod(0o755)
    if token is not None:
        (directory / "gh.token").write_text(token + "\n")
    return directory
