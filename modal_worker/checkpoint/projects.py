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


@dataclass(frozen=True)
class Conversation:
    """One Claude session's files: ``<uuid>.jsonl`` and the ``<uuid>/`` directory."""

    project_dir: Path
    session_uuid: str

    def files(self) -> list[str]:
        """Relative paths of the session's regular files that exist now."""
        out = []
        transcript = f"{self.session_uuid}.jsonl"
        if (self.project_dir / transcript).is_file():
            out.append(transcript)
        side = self.project_dir / self.session_uuid
        if side.is_dir() and not side.is_symlink():
            for dirpath, dirnames, filenames in os.walk(side):
                dirnames.sort()
                rel = Path(dirpath).relative_to(self.project_dir).as_posix()
                for name in sorted(filenames):
                    if (Path(dirpath) / name).is_file() and not (Path(dirpath) / name).is_symlink():
                        out.append(f"{rel}/{name}")
        return out
