"""Resume never dead-ends: when the agent cannot continue the stored conversation, the
worker starts a new one from a summary of it and says so (``resume_degraded``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from parhelia.checkpoint import project_dir
from tests.helpers.worker import log_text, make_spec, run_worker, script, spool, types


def _transcript(base: Path, session_uuid: str) -> Path:
    return project_dir(base / "claude", base / "ws") / f"{session_uuid}.jsonl"


def test_resume_without_a_transcript_starts_over_from_the_task_prompt(tmp_path: Path) -> None:
    task = script({"echo_prompt": "prompt.txt"}, {"turn": True}, text="MARKER-TASK")
    spec = dataclasses.replace(make_spec(tmp_path, "[Parhelia] continue", resume=True),
                               task_prompt=task)
    assert run_worker(spec, tmp_path) == 0, log_text(tmp_path)
    records = spool(tmp_path)
    degraded = [r["data"] for r in records if r["type"] == "resume_degraded"]
    assert len(degraded) == 1 and "no conversation transcript" in degraded[0]["reason"]
    started = [r["data"] for r in records if r["type"] == "agent_started"]
    assert [s["resume"] for s in started] == [False]
    prompt = (tmp_path / "ws" / "prompt.txt").read_text()
    assert "MARKER-TASK" in prompt and "could not be resumed" in prompt
    assert prompt.rstrip().endswith("[Parhelia] continue")
    assert types(records)[-1] == "worker_exited"


def test_a_transcript_the_agent_refuses_is_summarised_into_a_new_conversation(
        tmp_path: Path) -> None:
    first = make_spec(tmp_path, script({"write": "src/app.py", "content": "print(1)\n"},
                                       {"turn": True}, text="MARKER-ORIGINAL build the app"))
    assert run_worker(first, tmp_path) == 0, log_text(tmp_path)
    uuid = first.agent.session_uuid
    transcript = _transcript(tmp_path, uuid)
    # Valid JSON the agent cannot chain (no message ids): Claude Code answers "No
    # conversation found"; Parhelia can still read what the conversation said.
    lines = [json.loads(line) for line in transcript.read_text().splitlines()]
    transcript.write_text("".join(json.dumps({k: v for k, v in e.items() if k != "uuid"})
                                  + "\n" for e in lines))

    second = dataclasses.replace(
        make_spec(tmp_path, "[Parhelia] interrupted; continue", container_id="c-2",
                  session_uuid=uuid, resume=True),
        task_prompt=script({"echo_prompt": "prompt2.txt"}, {"turn": True},
                           text="MARKER-ORIGINAL build the app"))
    assert run_worker(second, tmp_path) == 0, log_text(tmp_path, "c-2")
    records = spool(tmp_path, "c-2")
    degraded = [r["data"] for r in records if r["type"] == "resume_degraded"]
    assert len(degraded) == 1, types(records)
    assert "No conversation found" in degraded[0]["reason"]
    assert degraded[0]["files_touched"] == 1
    started = [r["data"]["resume"] for r in records if r["type"] == "agent_started"]
    assert started == [True, False]
    # The refused attempt's error result is not reported as the task's result.
    results = [r["data"] for r in records if r["type"] == "agent_result"]
    assert [r["subtype"] for r in results] == ["success"]
    prompt = (tmp_path / "ws" / "prompt2.txt").read_text()
    assert "MARKER-ORIGINAL" in prompt
    assert str(tmp_path / "ws" / "src" / "app.py") in prompt  # files touched
    assert "File created successfully" in prompt  # its last tool result
    assert "Done." in prompt  # its last message
    assert (transcript.parent / f"{uuid}.jsonl.rejected").is_file()
    assert records[-1]["data"]["status"] == "completed"
