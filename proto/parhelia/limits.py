"""Limits every process checks the same way (daemon, CLI, MCP bridge)."""

INT32_MAX = 2**31 - 1
"""The largest value of an int32 field of the API: no count or size may exceed it."""

MAX_LIST = 10_000
"""The most rows one list (tasks, sessions, checkpoints, containers, events, ledger)
returns; a --limit above it is refused (E101), not clipped silently."""

MAX_SECONDS = 100 * 366 * 24 * 3600
"""The longest duration anything accepts (100 years): longer ones are typos, and beyond
it dates and timers overflow."""

MAX_USD_MICROS = 10**15
"""The largest amount of money (USD 1,000,000,000 in micro-dollars) any option accepts."""

PATH_MAX = 4096
"""The longest path a request may name (Linux's PATH_MAX)."""

MAX_PROMPT_CHARS = 1_000_000
"""A task's prompt: it reaches the agent on its standard input (never its command line),
so the OS argument limit does not apply; this bound keeps one task's row reasonable."""
