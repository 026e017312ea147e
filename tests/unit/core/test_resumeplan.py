"""The resume plan (parheliad.core.resumeplan): what a dispatch of a task runs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from parhelia.prompts import continuation_prompt
from parheliad.core.resumeplan import Launch, ResumePoint, launch_for, resume_point


def _task(**kw: Any) -> Any:
    return SimpleNamespace(prompt="fix the bug", status_reason="", session_id=None, **kw)


def _session(latest: str | None) -> Any:
    return SimpleNamespace(latest_checkpoint_id=latest)


@pytest.mark.parametrize(("point", "latest", "expected"), [
    (None, None, Launch("fix the bug", resume=False, restore_checkpoint_id=None)),
    (None, "cp-zero", Launch("fix the bug", resume=False, restore_checkpoint_id="cp-zero")),
    (ResumePoint("cp-zero", sent=True), "cp-zero",
     Launch("fix the bug", resume=True, restore_checkpoint_id="cp-zero")),
    (ResumePoint("cp-3"), "cp-3",
     Launch(continuation_prompt("cp-3", "its worker stopped"), resume=True,
            restore_checkpoint_id="cp-3")),
    (ResumePoint("cp-3"), "cp-4", Launch("fix the bug", resume=False,
                                         restore_checkpoint_id="cp-4")),
], ids=["first-run", "from-upload", "sent-conversation", "resume", "stale-point"])
def test_launch_for(point: ResumePoint | None, latest: str | None, expected: Launch) -> None:
    """A sent conversation gets the task's prompt as its next message; a resumed one the
    continuation prompt; a resume point that is not the latest checkpoint is no resume."""
    assert launch_for(_task(), _session(latest), point) == expected


async def test_a_conversation_sent_with_checkpoint_zero_is_the_resume_point(store) -> None:
    zero = SimpleNamespace(id="cp-zero", conversation={"a.jsonl": "x"})
    assert await resume_point(store, None, _task(), zero) == ResumePoint(  # type: ignore[arg-type]
        "cp-zero", sent=True)
    without = SimpleNamespace(id="cp-zero", conversation={})
    assert await resume_point(store, None, _task(), without) is None  # type: ignore[arg-type]
