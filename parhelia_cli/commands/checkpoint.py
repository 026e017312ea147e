"""``parhelia checkpoint ...``: create, list, show, diff, rollback, verify and gc.

Each command is one ``CheckpointService`` RPC plus rendering; the daemon resolves id
prefixes and owns every rule (what a stopped session is checkpointed from, retention).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from parhelia_cli import complete, confirm, params, render
from parhelia_cli.context import json_option, quiet_option, settings
from parhelia_cli.convert import to_dict
from parhelia_cli.durations import human_bytes
from parhelia_cli.errors import CliError

MANUAL_MARK = "*"


@click.group()
def checkpoint() -> None:
    """Create, inspect, compare, roll back and verify checkpoints (alias: c).

    A checkpoint is an immutable snapshot of a session: workspace, conversation,
    environment and git state. Ids may be shortened to any unique prefix; a task id
    (t-...) stands for its session.
    """


def _stats(cp: dict[str, Any]) -> dict[str, Any]:
    return cp["stats"] or {"files": 0, "bytes": 0, "new_bytes": 0, "duration_ms": 0}


def _size_summary(cp: dict[str, Any]) -> str:
    s = _stats(cp)
    return (f"{s['files']} file(s), {human_bytes(s['bytes'])}, "
            f"{human_bytes(s['new_bytes'])} new")


def _trigger(cp: dict[str, Any]) -> str:
    return (cp["trigger"] or "?") + (f" {MANUAL_MARK}" if cp["manual"] else "")


@checkpoint.command()
@click.argument("session_id", metavar="SESSION|TASK", shell_complete=complete.SESSION)
@click.option("-m", "--message", default="", help="A note to remember it by.")
@json_option
def create(session_id: str, message: str) -> None:
    """Checkpoint SESSION now (a running worker is asked to snapshot; a stopped session
    is checkpointed from its last state). Manual checkpoints are kept by `gc`."""
    obj = settings()
    cp = to_dict(obj.api().checkpoints.create(session_id, message=message))
    if obj.json:
        render.emit_resource(cp)
        return
    render.line(cp["id"] or "")
    render.info(f"Created checkpoint {cp['id']} of session {cp['session_id']} "
                f"(trigger {cp['trigger']}): {_size_summary(cp)}.")


@checkpoint.command("list")
@click.argument("session_id", metavar="[SESSION|TASK]", required=False,
                shell_complete=complete.SESSION)
@click.option("--limit", type=params.LIMIT, default=None,
              help="At most N checkpoints, newest first (default: the daemon's, 100).")
@quiet_option
@params.page_option
@json_option
def list_checkpoints(session_id: str | None, limit: int | None, quiet: bool,
                     page_token: str) -> None:
    """List checkpoints, newest first (of one SESSION, or a TASK's session, or of all)."""
    obj = settings()
    resp = obj.api().checkpoints.list(session_id=session_id, limit=limit,
                                      page_token=page_token)
    found = [to_dict(c) for c in resp.checkpoints]
    if obj.json:
        render.emit_page("checkpoints", found, resp.next_page_token)
        return
    if quiet:
        render.ids(cp["id"] for cp in found)
        return
    rows = []
    for cp in found:
        s = _stats(cp)
        rows.append((cp["id"], cp["session_id"], _trigger(cp), " ".join(
                     (cp["message"] or "").split()),
                     render.age(cp["created_at"]), s["files"], human_bytes(s["bytes"]),
                     human_bytes(s["new_bytes"])))
    where = f" of session {session_id}" if session_id else ""
    render.table(("ID", "SESSION", "TRIGGER", "MESSAGE", "CREATED", "FILES", "SIZE", "NEW"),
                 rows, empty=f"No checkpoints{where}.", flex=("MESSAGE",))
    render.showing(len(rows), resp.total, "checkpoints", resp.next_page_token)
    if any(cp["manual"] for cp in found):
        render.line(f"{MANUAL_MARK} manual: kept by `parhelia checkpoint gc`")


@checkpoint.command()
@click.argument("checkpoint_id", metavar="CP", shell_complete=complete.CHECKPOINT)
@click.option("--manifest", "print_manifest", is_flag=True,
              help="Print the checkpoint's manifest (JSON) instead.")
@json_option
def show(checkpoint_id: str, print_manifest: bool) -> None:
    """Show a checkpoint: trigger, stats, environment, git state."""
    obj = settings()
    resp = obj.api().checkpoints.get(checkpoint_id)
    if print_manifest:
        text = resp.manifest_json or "{}"
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return
    data = to_dict(resp)
    if obj.json:
        render.emit_resource(data["checkpoint"] or {}, manifest=data["manifest"])
        return
    cp = data["checkpoint"] or {}
    manifest = _obj(data["manifest"])
    env, git, mstats = (_obj(manifest.get(k)) for k in ("environment", "git", "stats"))
    s = _stats(cp)
    conversation = [c for c in manifest.get("conversation") or [] if isinstance(c, dict)]
    render.fields([
        ("Session", cp.get("session_id")),
        ("Container", cp.get("container_id")),
        ("Parent", cp.get("parent_id")),
        ("Trigger", (cp.get("trigger") or "") + (" (manual: kept by gc)" if cp.get("manual")
                                                 else "")),
        ("Message", cp.get("message")),
        ("Created", render.when(cp.get("created_at"))),
        ("Files", f"{s['files']} ({human_bytes(s['bytes'])}, {human_bytes(s['new_bytes'])} new"
                  + (f", took {s['duration_ms']} ms" if s["duration_ms"] else "") + ")"),
        ("Conversation", f"{len(conversation)} file(s), "
                         f"{human_bytes(sum(int(c.get('size') or 0) for c in conversation))}"
         if conversation else "none"),
    ], title=f"Checkpoint {cp.get('id')}")
    render.line()
    render.fields([
        ("Agent", cp.get("agent_version") or env.get("agent_version") or "unknown"),
        ("Model", cp.get("model") or env.get("model") or "default"),
        ("Parhelia", env.get("parhelia_version") or "unknown"),
        ("Config bundle", cp.get("config_bundle_id") or env.get("config_bundle_id") or "none"),
    ], title="Environment")
    render.line()
    dirty = _dirty_paths(cp, git)
    stash = [str(x) for x in git.get("stash") or []]
    if not (git or cp.get("git_head") or cp.get("git_branch")):
        render.line(render.style("Git", "bold") + "\n  not a git repository")
    else:
        render.fields([
            ("Branch", cp.get("git_branch") or git.get("branch") or "(detached)"),
            ("HEAD", cp.get("git_head") or git.get("head") or "(no commits)"),
            ("Dirty", f"{len(dirty)} file(s)" if dirty else "clean"),
            ("Stash", f"{len(stash)} entr{'y' if len(stash) == 1 else 'ies'}" if stash
             else "empty"),
        ], title="Git")
        if dirty:
            render.line("  Dirty files:")
        for path in dirty[:20]:
            render.line(f"    {render.safe(path)}")
        if len(dirty) > 20:
            render.line(f"    ... and {len(dirty) - 20} more")
        if stash:
            render.line("  Stash entries:")
        for entry in stash[:10]:
            render.line(f"    {render.safe(entry)}")
    if mstats.get("skipped"):
        render.line(f"\n{len(mstats['skipped'])} path(s) were skipped by the snapshot "
                    "(see --manifest).")


def _obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else ``{}`` (a manifest is read defensively)."""
    return value if isinstance(value, dict) else {}


def _dirty_paths(cp: dict[str, Any], git: dict[str, Any]) -> list[str]:
    if cp.get("git_dirty"):
        return [str(p) for p in cp["git_dirty"]]
    out = []
    for item in git.get("dirty") or []:
        if isinstance(item, dict):
            out.append(f"{item.get('status', '').strip() or '?'} {item.get('path', '')}")
        else:
            out.append(str(item))
    return out


@checkpoint.command()
@click.argument("from_id", metavar="A", shell_complete=complete.CHECKPOINT)
@click.argument("to_id", metavar="B", shell_complete=complete.CHECKPOINT)
@click.option("--files", "with_files", is_flag=True,
              help="Also print the unified diff of text files.")
@click.option("--conversation", is_flag=True, help="Also print the conversation turns added.")
@json_option
def diff(from_id: str, to_id: str, with_files: bool, conversation: bool) -> None:
    """What changed from checkpoint A to checkpoint B: files added, removed and modified."""
    obj = settings()
    data = to_dict(obj.api().checkpoints.diff(from_id, to_id, files=with_files,
                                              conversation=conversation))
    if obj.json:
        render.emit_json(data)
        return
    files = data["files"]
    rows = []
    for f in files:
        change = f["change"] or "modified"
        rows.append(((change, _CHANGE_STYLE.get(change, "")), f["path"],
                     "" if change == "added" else human_bytes(f["old_size"]),
                     "" if change == "removed" else human_bytes(f["new_size"]),
                     "binary" if f["binary"] else f"+{f['lines_added']} -{f['lines_removed']}"))
    render.table(("CHANGE", "PATH", "OLD SIZE", "NEW SIZE", "LINES"), rows,
                 empty=f"No file changes between {from_id} and {to_id}.")
    if files:
        counts = {k: sum(1 for f in files if (f["change"] or "modified") == k)
                  for k in ("added", "removed", "modified")}
        render.line(", ".join(f"{n} {k}" for k, n in counts.items()))
    if with_files:
        render.line()
        _print_patch(data["patch"] or "")
    if conversation:
        turns = data["turns_added"]
        render.line()
        if not turns:
            render.line("No conversation turns added.")
        else:
            render.line(render.style(f"{len(turns)} conversation turn(s) added:", "bold"))
        for turn in turns:
            role = turn["role"] or "?"
            render.line(render.style(f"[{role}]", _ROLE_STYLE.get(role, "bold")) + " "
                        + (turn["text"] or "").rstrip("\n"))


_CHANGE_STYLE = {"added": "green", "removed": "red", "modified": "yellow"}
_ROLE_STYLE = {"user": "cyan", "assistant": "green"}


def _print_patch(patch: str) -> None:
    if not patch:
        render.line("No text differences.")
        return
    if not render.color_enabled():
        sys.stdout.write(patch if patch.endswith("\n") else patch + "\n")
        sys.stdout.flush()
        return
    for text in patch.splitlines():
        if text.startswith(("diff ", "--- ", "+++ ", "index ")):
            render.line(click.style(text, bold=True))
        elif text.startswith("@@"):
            render.line(click.style(text, fg="cyan"))
        elif text.startswith("+"):
            render.line(click.style(text, fg="green"))
        elif text.startswith("-"):
            render.line(click.style(text, fg="red"))
        else:
            render.line(text)


@checkpoint.command()
@click.argument("checkpoint_id", metavar="CP", shell_complete=complete.CHECKPOINT)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def rollback(checkpoint_id: str, yes: bool) -> None:
    """Restore the session's workspace and conversation to CP.

    A safety checkpoint of the current state is taken first; a running session is
    stopped, restored and resumed. Asks for confirmation unless -y.
    """
    confirm.confirm(f"Roll the session of checkpoint {checkpoint_id} back to it? (a safety "
                    "checkpoint is taken first; a running worker is restarted)", yes,
                    "rolling back")
    from parhelia_cli import progress

    obj = settings()
    with progress.reporting(obj.json) as on_progress:
        data = to_dict(obj.api().checkpoints.rollback(checkpoint_id, on_progress=on_progress))
    if obj.json:
        render.emit_json(data)
        return
    safety, restored = data["safety_checkpoint"] or {}, data["restored"] or {}
    if safety:
        render.line(f"Safety checkpoint {safety['id']} taken first ({_size_summary(safety)}); "
                    f"`parhelia checkpoint rollback {safety['id']} -y` undoes this.")
    render.line(f"Restored {restored.get('id') or checkpoint_id} into session "
                f"{restored.get('session_id') or '?'} ({_size_summary(restored)}).")
    session = restored.get("session_id") or "SESSION"
    if data["resumed"]:
        render.line(f"The session was resumed from it; see it with `parhelia session show "
                    f"{session}`.")
    else:
        render.line(f"The session was not running; continue it with `parhelia resume "
                    f"{session}`.")


@checkpoint.command()
@click.argument("checkpoint_id", metavar="CP", shell_complete=complete.CHECKPOINT)
@json_option
def verify(checkpoint_id: str) -> None:
    """Re-hash every blob of CP (exit 1, E600, when anything is missing or corrupt)."""
    obj = settings()
    data = to_dict(obj.api().checkpoints.verify(checkpoint_id))
    problems = data["problems"]
    if obj.json:
        render.emit_json(data)
    elif data["ok"]:
        render.line(f"OK: {checkpoint_id}: {data['blobs_checked']} blob(s), "
                    f"{human_bytes(data['bytes_checked'])} verified.")
    else:
        render.line(f"FAILED: {checkpoint_id}: {len(problems)} problem(s) in "
                    f"{data['blobs_checked']} blob(s) checked:")
        for problem in problems:
            render.line(f"  - {problem}")
    if not data["ok"]:
        raise CliError("E600", f"checkpoint {checkpoint_id} failed verification: "
                               f"{len(problems)} problem(s)"
                               + (f", first: {problems[0]}" if problems else ""))


@checkpoint.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def gc(dry_run: bool, yes: bool) -> None:
    """Remove checkpoints outside the retention policy ([checkpoint] keep_last,
    max_age_days) and blobs nothing references; manual checkpoints are kept. Asks for
    confirmation unless -y or --dry-run."""
    if not dry_run:
        confirm.confirm("Remove the checkpoints outside the retention policy for good? "
                        "(`--dry-run` lists them)", yes, "removing checkpoints")
    obj = settings()
    data = to_dict(obj.api().checkpoints.gc(dry_run=dry_run))
    data["dry_run"] = dry_run
    if obj.json:
        render.emit_json(data)
        return
    removed = data["removed_checkpoint_ids"]
    verb = "Would remove" if dry_run else "Removed"
    render.line(f"{verb} {len(removed)} checkpoint(s), {data['blobs_removed']} blob(s), "
                f"{'freeing' if not dry_run else 'which frees'} "
                f"{human_bytes(data['bytes_freed'])}.")
    for cp_id in removed:
        render.line(f"  {cp_id}")
    if dry_run and (removed or data["blobs_removed"]):
        render.line("Run `parhelia checkpoint gc` to remove them.")
