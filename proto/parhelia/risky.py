"""The default risky-command patterns, defined once.

A Bash command containing one of these substrings is checkpointed before it runs (a
Claude Code ``PreToolUse`` hook installed by the worker, see ``modal_worker.hooks``).
The default of the configuration key ``checkpoint.risky_patterns`` and of the worker
spec's ``checkpoint.risky_patterns``. Standard library only.
"""

from __future__ import annotations

from typing import Final

DEFAULT_RISKY_PATTERNS: Final[tuple[str, ...]] = (
    "rm -rf", "git reset --hard", "git clean", "git checkout --",
)
