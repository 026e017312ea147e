"""The agent's container finds its command where the command names it: a `bin/claude`
that is a symlink into its package (npm's `.bin`, `~/.local/bin`) under a directory the
container hides (the user's home, /tmp) runs inside it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from parhelia import container
from parhelia import sandbox as policy
from tests.helpers.sandbox import require_bwrap


def test_a_symlinked_command_under_a_hidden_home_runs_in_the_container(
        tmp_path: Path) -> None:
    require_bwrap()
    home = tmp_path / "home"
    package = home / ".local" / "share" / "tool" / "1.0"
    package.mkdir(parents=True)
    (package / "tool").write_text("#!/bin/sh\necho tool-ran \"$@\"\n")
    (package / "tool").chmod(0o755)
    bin_dir = home / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "tool").symlink_to(os.path.relpath(package / "tool", bin_dir))
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("SECRET-KEY")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    command = [str(bin_dir / "tool")]
    planned = container.plan(policy.SandboxSpec(mode=policy.MODE_AUTO, hide=(), read_only=()),
                             workspace=workspace, writable=(), command=command,
                             environ={**os.environ, "HOME": str(home)})
    assert isinstance(planned, container.Container), planned
    ran = subprocess.run(planned.argv([*command, "x"]), capture_output=True, text=True,
                         timeout=60, check=False)
    assert ran.returncode == 0 and "tool-ran x" in ran.stdout, ran.stderr
    # the rest of the home stays hidden
    peek = subprocess.run(planned.argv(["cat", str(home / ".ssh" / "id_ed25519")]),
                          capture_output=True, text=True, timeout=60, check=False)
    assert "SECRET-KEY" not in peek.stdout and peek.returncode != 0
