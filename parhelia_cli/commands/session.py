"""``parhelia session ...`` (list, show, kill, pull, recover) and the top-level ``parhelia resume``.

Each command is one ``SessionService`` RPC plus rendering (``session recover`` at a
terminal makes a second one with the action the person chose).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Any

import click

from parhelia_cli import complete, confirm, params, render
from parhelia_cli.context import json_option, quiet_option, settings
from parhelia_cli.convert import task_dict, to_dict
from parhelia_cli.durations import human_bytes
from parhelia_cli.errors import CliError, TaskOutcome, invalid
from parhelia_cli.flows.events import event_line
from parhelia_cli.flows.follow import follow
from parhelia_cli.flows.session import claude_config_dir, resume_command

SESSION_STYLES = {"headless": "blue", "detached": "magenta", "attached": "cyan",
                  "stopped": "yellow", "completed": "green"}
ACTIONS = ("resume", "restart", "wait")
ACTION_HELP = {
    "resume": "continue the same conversation from {checkpoint} in a new container",
    "restart": "start over from checkpoint zero in a fresh session (the task runs again)",
    "wait": "leave it as it is for now; nothing is changed",
}


@click.group()
def session() -> None:
    """List, inspect, stop and recover sessions (alias: s).

    A session is the long-lived execution of a task: its Claude conversation, its
    checkpoints and the chain of containers that ran it. Ids may be shortened to any
    unique prefix; a task id (t-...) stands for its session.
    """


def _status_text(s: dict[str, Any]) -> str:
    """``attached (2 clients)``, ``detached``, ``headless``..."""
    word = s["status"] or "unknown"
    clients = int(s.get("attached_clients") or 0)
    if word == "attached":
        word += f" ({clients} client{'s' if clients != 1 else ''})"
    return word


def _status_word(status: str | None) -> str:
    word = status or "unknown"
    return render.style(word, SESSION_STYLES.get(word, ""))


@session.command("list")
@click.option("--active", is_flag=True,
              help="Only sessions not completed (active and stopped), like `task list "
                   "--active`.")
@click.option("--all", "show_all", is_flag=True, hidden=True,
              help="Every session (the default; kept for scripts).")
@click.option("--limit", type=params.LIMIT, default=None,
              help="At most N sessions, newest first (default: the daemon's, 100).")
@quiet_option
@params.page_option
@json_option
def list_sessions(active: bool, show_all: bool, limit: int | None, quiet: bool,
                  page_token: str) -> None:
    """List sessions, newest first: all of them, like `task list` (--active: only those
    not completed)."""
    if active and show_all:
        raise invalid("--active and --all contradict each other")
    obj = settings()
    resp = obj.api().sessions.list(include_finished=not active, limit=limit,
                                   page_token=page_token)
    found = [to_dict(s) for s in resp.sessions]
    if obj.json:
        render.emit_page("sessions", found, resp.next_page_token)
        return
    if quiet:
        render.ids(s["id"] for s in found)
        return
    rows = [(s["id"], s["task_id"], (_status_text(s), SESSION_STYLES.get(s["status"] or "", "")),
             s["current_container_id"] or "", s["containers"], s["checkpoints"],
             s["latest_checkpoint_id"] or "", render.age(s["updated_at"] or s["created_at"]))
            for s in found]
    render.table(("ID", "TASK", "STATUS", "CONTAINER", "RUNS", "CHECKPOINTS",
                  "LATEST CHECKPOINT", "UPDATED"), rows,
                 empty="No active or stopped sessions." if active else "No sessions.")
    render.showing(len(rows), resp.total, "sessions", resp.next_page_token)


@session.command()
@click.argument("session_id", metavar="ID", shell_complete=complete.SESSION)
@json_option
def show(session_id: str) -> None:
    """Show a session: its task, conversation, containers and latest checkpoint."""
    obj = settings()
    s = to_dict(obj.api().sessions.get(session_id))
    if obj.json:
        render.emit_resource(s)
        return
    render.fields([
        ("Status", render.style(_status_text(s), SESSION_STYLES.get(s["status"] or "", ""))),
        ("Task", s["task_id"]),
        ("Conversation", s["agent_session_id"]),
        ("Created", render.when(s["created_at"])),
        ("Updated", render.when(s["updated_at"])),
        ("Container", s["current_container_id"] or "none running"),
        ("Containers", s["containers"]),
        ("Checkpoints", s["checkpoints"]),
        ("Latest checkpoint", s["latest_checkpoint_id"] or "none"),
    ], title=f"Session {s['id']}")
    render.line()
    render.line(f"Checkpoints: parhelia checkpoint list {s['id']}   "
                f"history: parhelia events list --session {s['id']}")
    if s["status"] == "stopped":
        render.line(f"Continue it: parhelia resume {s['id']}   "
                    f"or be guided: parhelia session recover {s['id']}")


@session.command()
@click.argument("session_id", metavar="ID", shell_complete=complete.SESSION)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def kill(session_id: str, yes: bool) -> None:
    """Stop a session now: its task is cancelled and its worker stopped (it checkpoints on
    the way out). `parhelia resume` continues it later. Asks for confirmation unless -y."""
    confirm.confirm(f"Kill session {session_id}? (its task is cancelled; the worker "
                    "checkpoints, then stops)", yes, "killing a session")
    obj = settings()
    s = to_dict(obj.api().sessions.kill(session_id))
    if obj.json:
        render.emit_resource(s)
        return
    render.line(f"Stopped session {s['id']} (now {_status_word(s['status'])}).")
    render.line(f"Resume it later with `parhelia resume {s['id']}`.")


# --- attaching (what to run) -------------------------------------------------------------





# --- take it home -----------------------------------------------------------------------





@session.command()
@click.argument("session_id", metavar="ID", shell_complete=complete.SESSION)
@click.option("--to", "directory", required=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=str),
              help="A new (or empty) directory to write the workspace into.")
@click.option("--checkpoint", "checkpoint_id", metavar="CP", shell_complete=complete.CHECKPOINT,
              help="Pull this checkpoint of the session (default: the latest).")
@json_option
def pull(session_id: str, directory: str, checkpoint_id: str | None) -> None:
    """Take a session home: the workspace of its latest checkpoint into the new DIR, and
    its Claude conversation into your own Claude config (CLAUDE_CONFIG_DIR or ~/.claude),
    so that `cd DIR && claude --resume UUID` continues it on this machine. Nothing that
    exists is overwritten."""
    import os

    from parhelia_cli import progress

    obj = settings()
    with progress.reporting(obj.json) as on_progress:
        resp = obj.api().sessions.pull(
            session_id, os.path.abspath(os.path.expanduser(directory)),
            claude_config_dir=claude_config_dir(), checkpoint_id=checkpoint_id,
            on_progress=on_progress)
    data = to_dict(resp)
    command = resume_command(resp.directory, resp.agent_session_id)
    if obj.json:
        render.emit_json({**data, "resume_command": command})
        return
    render.info(f"Wrote {resp.files} files ({human_bytes(resp.bytes)}) of {resp.checkpoint_id} "
                f"into {render.safe(resp.directory)}"
                + (f": {resp.git}" if resp.git else "") + ".")
    render.info(f"Installed conversation {resp.agent_session_id} "
                f"({resp.conversation_files} file(s)) at {render.safe(resp.transcript_path)}.")
    if resp.left_out:
        render.info(f"Left out {len(resp.left_out)} path(s): "
                    + "; ".join(render.safe(x) for x in list(resp.left_out)[:5])
                    + (" ..." if len(resp.left_out) > 5 else ""))
    render.info("Continue it here with:")
    render.line(command)


# --- interactive: attach, take over, release -------------------------------------------

@session.command()
@click.argument("session_id", metavar="ID", shell_complete=complete.SESSION)
@click.option("--take-over", is_flag=True,
              help="A headless session: take it over without asking (checkpoint, the "
                   "headless agent stops, the TUI resumes the same conversation).")
@click.option("--print", "print_only", is_flag=True,
              help="Print the attach command instead of running it.")
@click.option("--ssh", "use_ssh", is_flag=True,
              help="Modal: a real SSH session through the sandbox's tunnel (the session's own "
                   "key, its host key pinned, keep-alives, reconnection) instead of the SDK.")
@json_option
def attach(session_id: str, take_over: bool, print_only: bool, use_ssh: bool) -> None:
    """Put this terminal in the session's interactive Claude Code TUI (tmux).

    Ctrl-B D detaches (inside your own tmux: Ctrl-B Ctrl-B D); the session goes on
    running and a checkpoint is taken. A headless session is offered to be taken over:
    checkpointed, its headless agent stopped, and the TUI started on the same
    conversation in the same workspace. `parhelia session release ID` hands it back.
    """
    obj = settings()
    api = obj.api()
    current = api.sessions.get(session_id)
    if current.status == "headless" and not take_over and not obj.json and \
            confirm.interactive() and render.is_tty():
        if not click.confirm(f"Session {current.id} runs headless. Take it over? (a "
                             "checkpoint, the headless agent stops, the TUI resumes the "
                             "conversation)", default=False, err=True):
            render.info("Nothing was done.")
            raise TaskOutcome(1)
        take_over = True
    resp = api.sessions.attach(current.id or session_id, take_over=take_over)
    s = to_dict(resp.session)
    if use_ssh:
        got = api.sessions.ssh_session(s["id"])  # E601 unless the sandbox runs sshd
        if obj.json or print_only:
            if obj.json:
                render.emit_json({**to_dict(got), "session": s, "taken_over": resp.taken_over,
                                  "detach_hint": resp.detach_hint})
            else:
                render.line(shlex.join(got.argv))
            return
    if obj.json or print_only:
        if obj.json:
            render.emit_json({"argv": list(resp.argv), "unset_env": list(resp.unset_env),
                              "session": s, "taken_over": resp.taken_over,
                              "detach_hint": resp.detach_hint,
                              "through_daemon": resp.through_daemon})
        elif resp.through_daemon:
            render.line(shlex.join(["parhelia", "session", "attach", s["id"]]))
        else:
            unset = " ".join(f"-u {shlex.quote(n)}" for n in resp.unset_env)
            render.line(f"env {unset} {shlex.join(resp.argv)}".replace("  ", " "))
        return
    if not (render.is_tty(sys.stdin) and render.is_tty(sys.stdout)):
        raise CliError("E601", "session attach needs a terminal (stdin and stdout)",
                       hint=f"`parhelia session attach {s['id']} --print` prints the command")
    if resp.taken_over:
        render.info(f"Took over session {s['id']}: the headless agent stopped at a checkpoint.")
    render.info(f"Attaching to session {s['id']} ({resp.detach_hint}).")
    env = {k: v for k, v in os.environ.items() if k not in set(resp.unset_env)}
    if use_ssh:
        from parhelia_cli import sshattach

        render.info(f"Host key pinned: {got.host_key_fingerprint}.")
        code = sshattach.run(api, s["id"])
    elif resp.through_daemon:  # Modal: the daemon's exec with a PTY, relayed (ADR 0022)
        from parhelia_cli.terminal import relay

        code = relay(api, s["id"])
    else:
        code = subprocess.call(list(resp.argv), env=env)
    render.info(f"Left session {s['id']}; it goes on running. Again: `parhelia session attach "
                f"{s['id']}`; hand it back: `parhelia session release {s['id']}`.")
    if code != 0:
        raise TaskOutcome(1)


@session.command()
@click.argument("session_id", metavar="ID", shell_complete=complete.SESSION)
@click.argument("instruction", required=False, default="")
@json_option
def release(session_id: str, instruction: str) -> None:
    """Hand an interactive session back: a checkpoint, the TUI closes (attached clients
    leave), and the agent continues headless on the same conversation with INSTRUCTION
    (default: carry on with the task)."""
    obj = settings()
    s = to_dict(obj.api().sessions.release(session_id, instruction=instruction))
    if obj.json:
        render.emit_resource(s)
        return
    render.line(f"Session {s['id']} continues headless. "
                f"Follow it with `parhelia task watch {s['task_id']}`.")


# --- recovery ---------------------------------------------------------------------------

@session.command()
@click.argument("session_id", metavar="ID", shell_complete=complete.SESSION)
@click.option("--action", type=click.Choice(ACTIONS),
              help="Act without asking: resume (from the latest checkpoint, or --checkpoint), "
                   "restart (from checkpoint zero), wait (change nothing).")
@click.option("--checkpoint", "checkpoint_id", metavar="CP", shell_complete=complete.CHECKPOINT,
              help="Resume from this checkpoint instead of the latest.")
@json_option
def recover(session_id: str, action: str | None, checkpoint_id: str | None) -> None:
    """Guided recovery: what happened, the last checkpoints, what was done since the newest,
    and the choices. At a terminal it asks which one to take; --action is for scripts."""
    if checkpoint_id and action not in (None, "resume"):
        raise invalid(f"--checkpoint {checkpoint_id} applies to --action resume, "
                      f"not {action}")
    obj = settings()
    data = _recover(session_id, action or "", checkpoint_id)
    if action:
        _print_outcome(data, action, obj.json)
        return
    if obj.json:
        render.emit_json(data)
        return
    _print_guide(data, checkpoint_id)
    if not (confirm.interactive() and render.is_tty()):
        return
    choices = [c for c in (_choice_word(c) for c in data["choices"]) if c in ACTIONS]
    picked = confirm.choose("What now?", choices)
    if picked is None:
        render.info("Nothing was done.")
        return
    sid = (data["session"] or {}).get("id") or session_id
    _print_outcome(_recover(sid, picked, checkpoint_id if picked == "resume" else None),
                   picked, False)


def _recover(session_id: str, action: str, checkpoint_id: str | None) -> dict[str, Any]:
    resp = settings().api().sessions.recover(session_id, action=action,
                                             checkpoint_id=checkpoint_id)
    data = to_dict(resp)
    if resp.HasField("task"):
        data["task"] = task_dict(resp.task)
    return data


def _choice_word(choice: str) -> str:
    """``"resume"`` from ``"resume"`` or ``"resume: continue from ..."``."""
    return choice.split(":", 1)[0].split(None, 1)[0].strip().lower() if choice.strip() else ""


def _print_guide(data: dict[str, Any], checkpoint_id: str | None) -> None:

    s, t = data["session"] or {}, data["task"] or {}
    sid = s.get("id") or "SESSION"
    head = f"Session {sid}"
    if t:
        head += f" of task {t['id']} ({render.status_word(t['status'])})"
    render.line(render.style(head, "bold"))
    render.line()
    render.line(render.style("What happened", "bold"))
    for text in render.safe(data["what_happened"] or "Nothing is recorded for this session.",
                            multiline=True).splitlines():
        render.line(f"  {text}")
    render.line()
    cps = data["recent_checkpoints"]
    if cps:
        render.line(render.style("Latest checkpoints (newest first)", "bold"))
        render.table(("ID", "TRIGGER", "CREATED", "FILES", "SIZE", "MESSAGE"), [
            (cp["id"], cp["trigger"] or "?", render.age(cp["created_at"]),
             (cp["stats"] or {}).get("files", 0),
             human_bytes((cp["stats"] or {}).get("bytes", 0)), cp["message"] or "")
            for cp in cps])
    else:
        render.line("No checkpoints: a resume would start from an empty workspace.")
    render.line()
    since = data["since_latest_checkpoint"]
    newest = cps[0]["id"] if cps else None
    if newest:
        title = f"Done since {newest} (not in any checkpoint)"
        render.line(render.style(title, "bold"))
        if since:
            for e in since:
                render.line("  " + event_line(e))
        else:
            render.line("  nothing: no work is lost by resuming from it")
        render.line()
    words = [w for w in (_choice_word(c) for c in data["choices"]) if w]
    render.line(render.style("Choices", "bold"))
    if not words:
        render.line("  none: the session needs no recovery.")
    target = checkpoint_id or newest or "the latest checkpoint"
    for word in words:
        description = ACTION_HELP.get(word, "").format(checkpoint=target)
        command = f"parhelia session recover {sid} --action {word}"
        if word == "resume" and checkpoint_id:
            command += f" --checkpoint {checkpoint_id}"
        render.line(f"  {word:<8} {description}")
        render.line(f"           {command}")


def _print_outcome(data: dict[str, Any], action: str, as_json: bool) -> None:
    """After ``--action``: the daemon's sentence of what it did; for resume and restart
    the task id on stdout (like ``task create``) and how to follow it."""
    if as_json:
        render.emit_json(data)
        return
    s, t = data["session"] or {}, data["task"] or {}
    taken = data["action_taken"] or "nothing changed"
    sentence = taken[:1].upper() + taken[1:]
    if action == "wait" or not t:
        render.line(f"{sentence}: session {s.get('id') or ''} is "
                    f"{_status_word(s.get('status'))}"
                    + (f", task {t['id']} is {render.status_word(t['status'])}" if t else "")
                    + ".")
        return
    render.line(t["id"])
    render.info(f"{sentence}. Task {t['id']} is {render.status_word(t['status'])}; follow it "
                f"with `parhelia task watch {t['id']}`.")


# --- resume (top level) -----------------------------------------------------------------

@click.command()
@click.argument("session_id", metavar="SESSION", shell_complete=complete.SESSION)
@click.option("--checkpoint", "checkpoint_id", metavar="CP", shell_complete=complete.CHECKPOINT,
              help="Resume from this checkpoint of the session (default: the latest).")
@click.option("--sync", is_flag=True, help="Wait for the result, showing live progress.")
@json_option
def resume(session_id: str, checkpoint_id: str | None, sync: bool) -> None:
    """Continue a stopped SESSION in a new container: the workspace and the conversation
    are restored from its latest checkpoint (or --checkpoint) and Claude carries on."""
    obj = settings()
    api = obj.api()
    t = api.sessions.resume(session_id, checkpoint_id=checkpoint_id)
    if sync:
        follow(api, t.id, obj.json)
        return
    if obj.json:
        render.emit_resource(task_dict(t))
        return
    render.line(t.id)
    render.info(f"Resumed session {t.session_id or session_id} as task {t.id}"
                + (f" from {checkpoint_id}" if checkpoint_id else "")
                + f". Follow it with `parhelia task watch {t.id}`.")
