"""Where Claude Code keeps a conversation: ``$CLAUDE_CONFIG_DIR/projects/<encoded cwd>/``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_ENCODED = 200


def _djb2_base36(text: str) -> str:
    h = 0
    for unit in _utf16_units(text):
        h = ((h << 5) - h + unit) & 0xFFFFFFFF
    if h & 0x80000000:
        h -= 1 << 32
    n = abs(h)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _utf16_units(text: str) -> list[int]:
    data = text.encode("utf-16-le", "surrogatepass")
    return [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]


def encode_project_dir(cwd: str) -> str:
    """Claude Code's directory name for a working directory.

    Every character outside ``[A-Za-z0-9]`` becomes ``-`` (counted in UTF-16 code
    units, as JavaScript does); names longer than 200 characters are truncated
    and suffixed with a hash of the path (the Node fallback's 32-bit string hash
    in base 36). Parhelia keeps workspace paths short, so the hash branch is not
    reached in practice: the native CLI may use a different hash there.
    """
    units = _utf16_units(cwd)
    encoded = "".join(
        chr(u) if u < 128 and chr(u).isascii() and chr(u).isalnum() else "-" for u in units
    )
    if len(encoded) <= MAX_ENCODED:
        return encoded
    return f"{encoded[:MAX_ENCODED]}-{_djb2_base36(cwd)}"


def project_dir(config_dir: Path, cwd: Path | str) -> Path:
    """The transcript directory for ``cwd`` (resolved like the agent's own ``getcwd``)."""
    return config_dir / "projects" / encode_project_dir(os.path.realpath(cwd))


SIDE_STORES: tuple[str, ...] = ("@file-history", "@session-env", "@tasks")
"""Manifest prefixes of the session's files kept outside its project directory
(docs/contracts.md, "Claude Code's session files"). ``@`` never starts a name Claude
Code writes in a project directory, so these cannot clash with transcript paths."""

TMP_SUBDIR = "tmp"
"""``CLAUDE_CODE_TMPDIR`` of the agent: inside its config dir, so background-task output
lives with the session (the CLI's default is the system temp directory)."""


@dataclass(frozen=True)
class Conversation:
    """One Claude session's files: ``<uuid>.jsonl`` and the ``<uuid>/`` directory of its
    project dir, plus (when ``config_dir`` is known) the session's file-history,
    session-env and background-task output directories."""

    project_dir: Path
    session_uuid: str
    config_dir: Path | None = None

    def side_dirs(self) -> dict[str, Path]:
        """Manifest prefix -> the directory on disk that belongs wholly to this session."""
        if self.config_dir is None:
            return {}
        sid = self.session_uuid
        return {
            "@file-history": self.config_dir / "file-history" / sid,
            "@session-env": self.config_dir / "session-env" / sid,
            "@tasks": (self.config_dir / TMP_SUBDIR / f"claude-{os.getuid()}"
                       / self.project_dir.name / sid / "tasks"),
        }

    def path_of(self, rel: str) -> Path | None:
        """Where the manifest path ``rel`` lives on disk (``None``: a store not known here)."""
        head, _, rest = rel.partition("/")
        if head.startswith("@"):
            root = self.side_dirs().get(head)
            return root / rest if root is not None and rest else None
        return self.project_dir / rel

    def files(self) -> list[str]:
        """Relative paths of the session's regular files that exist now."""
        out = []
        transcript = f"{self.session_uuid}.jsonl"
        if (self.project_dir / transcript).is_file():
            out.append(transcript)
        out += _regular_files(self.project_dir / self.session_uuid, self.session_uuid)
        for prefix, root in self.side_dirs().items():
            out += _regular_files(root, prefix)
        return out


def session_conversation(config_dir: Path, workspace: Path | str,
                         session_uuid: str) -> Conversation:
    """The conversation of the agent session ``session_uuid`` run in ``workspace``."""
    return Conversation(project_dir(config_dir, workspace), session_uuid, config_dir)


def _regular_files(root: Path, prefix: str) -> list[str]:
    """``prefix/<rel>`` for every regular file under ``root`` (never following symlinks)."""
    out: list[str] = []
    if not root.is_dir() or root.is_symlink():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).as_posix()
        base = prefix if rel == "." else f"{prefix}/{rel}"
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                out.append(f"{base}/{name}")
    return out
