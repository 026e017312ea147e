"""A sandbox controls its volume and its channel: it can write any manifest and announce it
with a forged ``checkpoint_created`` record (issue 22, finding 1). Every daemon operation
that reads a checkpoint -- ``session pull``, ``task pull``, ``checkpoint rollback`` --
refuses each manifest of the shared hostile table (tests/helpers/hostile_manifests.py)
with E600 before its first write: nothing appears in the user's directories, the
pull's destination or the session's workspace."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from parhelia.checkpoint import Manifest, snapshot
from parhelia.checkpoint.manifest import canonical_json
from parhelia.checkpoint.projects import Conversation, encode_project_dir
from parhelia.errors import ParheliaError
from parheliad.core import results
from parheliad.core.runtime import Runtime
from parheliad.store import Store
from tests.helpers.gitrepo import init_repo
from tests.helpers.hostile_manifests import MUTATIONS
from tests.helpers.scripted_backend import ScriptedBackend

OPERATIONS = ("session pull", "task pull", "checkpoint rollback")
DAEMON_OWNED = ("vol", "data", "state")
"""The daemon's own directories under tmp_path (its volume and database may grow)."""


def _files(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel.parts and rel.parts[0] in DAEMON_OWNED:
            dirnames[:] = []
            continue
        out.update(str(rel / n) for n in (*dirnames, *filenames))
    return out


def _forge(raw: dict[str, Any]) -> str:
    """The id a manifest's content hashes to, computed as the worker computes it (so the
    daemon's id check passes); a manifest the parser refuses gets a hash of its JSON."""
    body = {k: v for k, v in raw.items() if k != "id"}
    try:
        raw["id"] = Manifest.from_dict(body).compute_id()
    except ParheliaError:
        raw["id"] = "cp-" + hashlib.sha256(canonical_json(body)).hexdigest()[:16]
    return str(raw["id"])


async def _session_with(tmp_path: Path, store: Store, runtime: Runtime,
                        backend: ScriptedBackend, case: str) -> tuple[str, str, str]:
    """A dispatched task whose sandbox wrote the hostile manifest ``case`` and announced
    it; (task id, session id, checkpoint id)."""
    repo = tmp_path / "repo"
    base = init_repo(repo, {"a.txt": "alpha", "sub/b.txt": "beta"})
    task = await store.write(lambda tx: tx.tasks.insert(dict(
        prompt="p", cpu=1.0, memory_mb=1024, timeout_seconds=600, max_turns=5,
        permission_mode="acceptEdits", backend="modal", max_cost_micros=1_000_000,
        workspace_path=str(repo), base_commit=base)))
    assert (await runtime.dispatcher.run_pass()).dispatched == [task.id]
    task = await store.tasks.get(task.id)
    assert task.session_id and task.container_id
    uuid = (await store.sessions.get(task.session_id)).agent_session_id
    # What the worker wrote: a workspace and its conversation, checkpointed.
    ws, cfg = tmp_path / "sandbox" / "ws", tmp_path / "sandbox" / "cfg"
    (ws / "sub").mkdir(parents=True)
    (ws / "a.txt").write_text("alpha")
    (ws / "sub" / "b.txt").write_text("beta!")
    (ws / "link").symlink_to("a.txt")
    project = cfg / "projects" / encode_project_dir(str(ws))
    project.mkdir(parents=True)
    (project / f"{uuid}.jsonl").write_text('{"type":"user"}\n')
    good = snapshot(ws, volume=backend.volume, session_id=task.session_id, parent_id=None,
                    trigger="turn", conversation=Conversation(project, uuid, cfg))
    raw = json.loads(good.to_json())
    MUTATIONS[case](raw)
    checkpoint_id = _forge(raw)
    backend.volume.put(f"checkpoints/{task.session_id}/{checkpoint_id}.json",
                       json.dumps(raw).encode())
    backend.emit(task.container_id, "checkpoint_created", checkpoint_id=checkpoint_id,
                 trigger="turn", created_at=good.created_at)
    backend.emit(task.container_id, "worker_exited", exit_code=0, status="completed")
    await runtime.listener.drain_all()
    row = await store.checkpoints.get(checkpoint_id)  # indexed: the record was well formed
    return task.id, task.session_id, row.id


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("case", sorted(MUTATIONS))
async def test_a_forged_hostile_checkpoint_is_refused_before_any_write(
        tmp_path: Path, store: Store, runtime: Runtime, backend: ScriptedBackend,
        case: str, operation: str) -> None:
    task_id, session_id, checkpoint_id = await _session_with(tmp_path, store, runtime,
                                                             backend, case)
    before = _files(tmp_path)
    workspace, _config = runtime.paths.session_dirs(session_id)
    with pytest.raises(ParheliaError) as err:
        if operation == "session pull":
            await runtime.sessions.pull_home(session_id, str(tmp_path / "home" / "pulled"),
                                             str(tmp_path / "home" / ".claude"),
                                             checkpoint_ref=checkpoint_id)
        elif operation == "task pull":
            task, changes = await runtime.changes(task_id)
            results.pull(runtime.volume, task, changes, repo_path="", branch="",
                         patch_path=str(tmp_path / "out.patch"))
        else:
            await runtime.checkpoints.rollback(checkpoint_id)
    assert err.value.code == "E600", err.value.message
    assert _files(tmp_path) == before
    assert not workspace.exists()
