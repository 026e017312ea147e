"""A task's cost estimate for people: `budget estimate` and `task create --estimate-only`
print it the same way (the MCP tool returns the same object as JSON)."""

from __future__ import annotations

from typing import Any

from parhelia_cli import render
from parhelia_cli.durations import usd_short


def print_estimate(est: dict[str, Any], as_json: bool) -> None:
    """An estimate (``EstimateTask``'s answer) as JSON, or a line per part."""
    if as_json:
        render.emit_json(est)
        return
    render.line(f"Estimated cost: {usd_short(est['low_micros'])}-"
                f"{usd_short(est['high_micros'])}")
    for part in est["parts"]:
        render.line(f"  {part['name']:<8} {usd_short(part['low_micros'])}-"
                    f"{usd_short(part['high_micros'])}" + (f"  ({part['basis']})"
                                                           if part["basis"] else ""))
    render.line("Nothing was created.")
