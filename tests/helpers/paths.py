"""Where things are in this checkout."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository's root (holds ``pyproject.toml``)."""

FAKE_AGENT = REPO / "tests" / "fake_agent" / "claude"
"""The scripted fake Claude Code CLI (``tests/fake_agent/fake_claude.py``)."""
