"""The project's CLAUDE.md for an agent that does not load the project's settings.

An untrusted workspace runs the agent with ``--setting-sources user``: Claude Code 2.1.332
then loads none of the repository's ``.claude/settings*.json`` (hooks, ``env``,
``apiKeyHelper``, permissions), ``.mcp.json`` servers or skills - and none of its
``CLAUDE.md`` either. Instructions are text, not code, so the worker hands them back to the
agent with ``--append-system-prompt-file`` (docs/adr/0019-project-claude-settings.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from parhelia.safeio import read_regular

MEMORY_FILES = ("CLAUDE.md", ".claude/CLAUDE.md", "CLAUDE.local.md")
"""Where Claude Code looks for a project's instructions, relative to the workspace."""

PROJECT_MEMORY_FILE = "project-CLAUDE.md"
"""Its name in the worker's private directory (never inside the workspace)."""

MAX_MEMORY_BYTES = 128 * 1024
"""Per file; a longer one is cut there (Claude Code itself warns past about 40k characters)."""


def project_memory_text(workspace: Path) -> str:
    """The workspace's CLAUDE.md files as one text, each under a heading naming it; ""
    when there is none. Symlinks (of the file or of ``.claude``), FIFOs and devices are
    never opened: a repository must not make the worker read a file outside it."""
    parts: list[str] = []
    for rel in MEMORY_FILES:
        path = workspace / rel
        if path.parent != workspace and path.parent.is_symlink():
            continue
        got = read_regular(path, MAX_MEMORY_BYTES, truncate=True)
        if got is None:
            continue
        data, st = got
        body = data.decode("utf-8", errors="replace").replace("\0", "")
        if not body.strip():
            continue
        cut = (f"\n\n[cut at {MAX_MEMORY_BYTES} of {st.st_size} bytes]"
               if st.st_size > MAX_MEMORY_BYTES else "")
        parts.append(f"Contents of {rel} (project instructions from the repository):\n\n"
                     f"{body}{cut}")
    return "\n\n".join(parts)


def write_project_memory(workspace: Path, dest: Path) -> Path | None:
    """Write :func:`project_memory_text` to ``dest`` (0600, replaced atomically) and return
    it, or remove ``dest`` and return None when the workspace has no instructions."""
    text = project_memory_text(workspace)
    if not text:
        dest.unlink(missing_ok=True)
        return None
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, dest)
    return dest
