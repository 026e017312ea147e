"""Limits every process checks the same way (daemon, CLI, MCP bridge)."""

MAX_PROMPT_CHARS = 1_000_000
"""A task's prompt: it reaches the agent on its standard input (never its command line),
so the OS argument limit does not apply; this bound keeps one task's row reasonable."""
