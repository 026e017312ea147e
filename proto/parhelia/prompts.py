"""The words Parhelia itself gives the agent.

The daemon writes the continuation into a resumed worker's spec, and the worker uses it
when it resumes on its own (a conversation it restored, a fresh start after a lost one):
one text, whichever side resumes.
"""

from __future__ import annotations


def continuation_prompt(checkpoint_id: str | None, reason: str) -> str:
    where = f"checkpoint {checkpoint_id}" if checkpoint_id else "its last state"
    return (f"[Parhelia] This session was interrupted ({reason}) and has been resumed from "
            f"{where}. The workspace holds the files as of that checkpoint. Continue the "
            "task from where you left off; do not start over, and check the workspace "
            "before redoing work.")
