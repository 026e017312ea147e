"""``parhelia task ...``: create, list, show, watch, logs, cancel, delete, retry,
dispatch, diff and pull. Each command is one RPC (or one stream) plus rendering."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from parhelia import sandbox
from parhelia import statuses as words
from parhelia.limits import MAX_PROMPT_CHARS
from parhelia_cli import complete, params, render
from parhelia_cli.api import task_options
from parhelia_cli.context import json_option, quiet_option, settings
from parhelia_cli.convert import task_dict, to_dict
from parhelia_cli.durations import human_seconds, usd_short
from parhelia_cli.errors import invalid, missing
from parhelia_cli.flows.follow import follow, unsaved, wait_text, waits
from parhelia_cli.flows.submit import check_credential, find_git_root, submit_task

if TYPE_CHECKING:
    pass

"""Recent events `task watch` prints first, so re-attaching shows what happened."""


@click.group()
def task() -> None:
    """Create, follow and manage tasks (alias: t).

    Ids may be shortened to any unique prefix.
    """


def _read_prompt(prompt: str) -> str:
    if prompt == "-":
        prompt = sys.stdin.read()
    if len(prompt) > MAX_PROMPT_CHARS:  # refused before any workspace is uploaded
        raise invalid(f"the prompt has {len(prompt):,} characters; at most "
                      f"{MAX_PROMPT_CHARS:,}")
    if not prompt.strip():
        raise missing("the prompt is empty; give the task something to do "
                      '(`parhelia task create "Run the tests"`, or - to read it from stdin)')
    return prompt


FROM_SESSION_PROMPT = "Continue where we left off."
"""The prompt of `task create --from-session UUID` given without one."""


@task.command("create")
@click.argument("prompt", required=False)
@params.sizing_options
@click.option("--permission-mode", type=click.Choice(params.PERMISSION_MODES),
              help="Claude Code permission mode (default: config).")
@click.option("--backend", type=click.Choice(params.BACKENDS), help="Where to run it "
              "(default: config).")
@click.option("--workspace", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Directory to upload (default: the git repository around the current dir).")
@click.option("--no-workspace", is_flag=True, help="Start with an empty workspace.")
@click.option("--include-secret-file", "include_secret", multiple=True, metavar="PATH",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Upload this file although it looks like a credential (.env, *.pem, "
                   "id_rsa...); repeatable. Such files are left out by default.")
@click.option("--repo", metavar="URL",
              help="Work on this repository instead of a local one: the daemon clones it "
                   "(private GitHub repositories with your GitHub token, see `parhelia auth "
                   "set --github`); the agent never sees a git credential.")
@click.option("--from-session", "from_session", metavar="UUID",
              help="Continue this local Claude Code conversation remotely: its transcript "
                   "(from CLAUDE_CONFIG_DIR or ~/.claude) goes with the workspace and the "
                   "task resumes it; PROMPT is its next message (default: "
                   f"{FROM_SESSION_PROMPT!r}).")
@click.option("--ref", "--branch", "ref", metavar="REF",
              help="Branch, tag or commit of --repo (--branch B is the same).")
@click.option("--sync", is_flag=True, help="Wait for the result, showing live progress.")
@click.option("--no-dispatch", is_flag=True, help="Create it pending; `task dispatch` starts it.")
@click.option("--estimate-only", is_flag=True,
              help="Print the cost range (compute + API) and create nothing.")
@click.option("--notify/--no-notify", default=None,
              help="Notify when this task ends or needs you (desktop notification and "
                   "the [notify] command); default: the daemon's [notify] config.")
@click.option("--interactive", is_flag=True,
              help="Run the interactive Claude Code TUI (in tmux) with PROMPT as its first "
                   "message; `parhelia session attach` puts you in it.")
@click.option("--pr", "open_pr", is_flag=True,
              help="Open a pull request when the task completes with changes (as `parhelia "
                   "task pr` does).")
@click.option("--trust-project-config", is_flag=True,
              help="Let the project's .parhelia/config.toml widen your own settings "
                   "(permission mode, turns, timeout, size, backend) for this task.")
@json_option
def create(prompt: str | None, gpu: str | None, cpu: float | None, memory: int | None,
           timeout: int | None, max_turns: int | None, max_cost: int | None,
           model: str | None, permission_mode: str | None, backend: str | None,
           workspace: Path | None, no_workspace: bool, include_secret: tuple[Path, ...],
           repo: str | None, from_session: str | None, ref: str | None, sync: bool,
           no_dispatch: bool, estimate_only: bool, notify: bool | None, interactive: bool,
           open_pr: bool, trust_project_config: bool) -> None:
    """Create a task running PROMPT (use - to read the prompt from stdin)."""
    if from_session and (repo or no_workspace):
        raise invalid("--from-session sends the conversation with the workspace of this "
                      "directory; it cannot be combined with --repo or --no-workspace")
    prompt = _read_prompt(FROM_SESSION_PROMPT if prompt is None and from_session
                          else prompt or "")
    if repo and (workspace or no_workspace):
        raise invalid("--repo is the task's workspace (the daemon clones it); it cannot be "
                      "combined with --workspace or --no-workspace")
    if workspace and no_workspace:
        raise invalid("--workspace and --no-workspace contradict each other")
    if ref and not repo:
        raise invalid(f"--ref/--branch {ref!r} needs --repo URL")
    if include_secret and (repo or no_workspace):
        raise invalid("--include-secret-file adds a file to the uploaded workspace; there is "
                      "none with --repo or --no-workspace")
    if open_pr and no_workspace:
        raise invalid("--pr needs a repository: an empty workspace (--no-workspace) has no "
                      "remote to open a pull request on")
    if sync and no_dispatch:
        raise invalid("--sync waits for a result that --no-dispatch never starts")
    options = task_options(gpu=gpu, cpu=cpu, memory_mb=memory, timeout_seconds=timeout,
                           max_turns=max_turns, max_cost_micros=max_cost, model=model,
                           permission_mode=permission_mode, backend=backend,
                           interactive=interactive)
    obj = settings()
    api = obj.api()
    if estimate_only:
        from parhelia_cli.flows.estimate import print_estimate

        print_estimate(to_dict(api.tasks.estimate(options)), obj.json)
        return
    check_credential(api, backend)

    directory: Path | None = None
    if not repo and not no_workspace:
        directory = workspace.absolute() if workspace else find_git_root(Path.cwd())
        if directory is None:
            directory = Path.cwd()
            render.info(f"No git repository around the current directory: uploading "
                        f"{directory} as it is (--no-workspace starts empty).")
    included = [_relative_to(p, directory) for p in include_secret] if directory else []
    created = submit_task(api, prompt, options, directory=directory, repo=repo, ref=ref,
                          no_dispatch=no_dispatch, quiet=obj.json,
                          include_secret=included,
                          trust_project_config=trust_project_config,
                          notify="" if notify is None else ("on" if notify else "off"),
                          conversation=from_session or "", open_pr=open_pr)
    if not sync:
        if obj.json:
            render.emit_resource(task_dict(created))
        else:
            render.line(created.id)
            done = task_dict(created)
            if waits(done) and done["status_code"]:
                render.warn(f"It cannot start now: {wait_text(done)}")
            elif interactive:
                render.info(f"Attach to it with `parhelia session attach {created.id}`.")
            elif render.is_tty(sys.stderr):
                render.info(f"Follow it with `parhelia task watch {created.id}`.")
        return
    follow(api, created.id, obj.json)


def _relative_to(path: Path, directory: Path) -> str:
    """``--include-secret-file`` as a path inside the workspace (E101 outside it)."""
    full = Path(os.path.abspath(path))
    try:
        return full.relative_to(Path(os.path.abspath(directory))).as_posix()
    except ValueError:
        raise invalid(f"--include-secret-file {path}: not inside the workspace "
                      f"{directory}") from None


@task.command()
@click.argument("task_id", metavar="ID", shell_complete=complete.TASK)
@json_option
def watch(task_id: str) -> None:
    """Follow a task live until it finishes (Ctrl-C detaches)."""
    obj = settings()
    follow(obj.api(), task_id, obj.json, history=True)


# --- reading ----------------------------------------------------------------------------

@task.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice(words.TASK_STATUSES),
              help="Only tasks in this state (repeatable).")
@click.option("--active", is_flag=True,
              help="Only tasks not finished (pending, running, recovering, paused), like "
                   "`session list --active`.")
@click.option("--limit", type=params.LIMIT, default=None,
              help="At most N tasks, newest first (default: 100).")
@quiet_option
@params.page_option
@json_option
def list_tasks(statuses: tuple[str, ...], active: bool, limit: int | None, quiet: bool,
               page_token: str) -> None:
    """List tasks, newest first: all of them (--active: only unfinished ones)."""
    from parhelia_cli import views

    if active and statuses:
        raise invalid("--active and --status are alternatives; give one")
    obj = settings()
    resp = views.task_list(obj.api(), statuses=statuses, active=active, limit=limit,
                           page_token=page_token)
    if obj.json:
        render.emit_json(views.task_page(resp))
        return
    if quiet:
        render.ids(t.id for t in resp.tasks)
        return
    rows, notes = [], []
    for t in map(task_dict, resp.tasks):
        opts = t["options"] or {}
        where = opts.get("backend") or ""
        if opts.get("gpu"):
            where = f"{where} {opts['gpu']}".strip()
        prompt = (t["prompt"] or "").strip().splitlines()[0].strip() if t["prompt"] else ""
        word, colour = render.status_cell(t["status"])
        if waits(t) or unsaved(t):
            word += "*"
            notes.append(f"* {t['id']}: " + render.safe(wait_text(t)))
        overlaps = overlap_lines(t, paths=1)
        if overlaps:
            word += "!"
            notes.extend(f"! {t['id']}: {text}" for text in overlaps)
        rows.append((t["id"], (word, colour), render.age(t["created_at"]),
                     where, (t["usage"] or {}).get("turns", 0),
                     usd_short((t["usage"] or {}).get("total_cost_micros", 0)), prompt))
    if active:
        empty = "No unfinished tasks (`parhelia task list` shows all)."
    elif statuses:
        empty = f"No {' or '.join(statuses)} tasks (`parhelia task list` shows all)."
    else:
        empty = "No tasks. Create one with `parhelia task create \"...\"`."
    render.table(("ID", "STATUS", "CREATED", "BACKEND", "TURNS", "TOTAL", "PROMPT"), rows,
                 empty=empty, flex=("PROMPT",))
    render.showing(len(rows), resp.total, "tasks", resp.next_page_token)
    if notes:
        render.line()
        for note in notes:
            render.line(note)


OVERLAP_PATHS_SHOWN = 3
OVERLAP_PATH_WIDTH = 60


def overlap_lines(t: dict[str, Any], paths: int = OVERLAP_PATHS_SHOWN,
                  width: int = OVERLAP_PATH_WIDTH) -> list[str]:
    """One line per other live task that changed the same paths (``Task.overlaps``):
    its id, how many paths, the first few (escaped, long ones shortened)."""
    out = []
    for o in t.get("overlaps") or []:
        shown = ", ".join(render.clip(render.safe(p), width) for p in o["paths"][:paths])
        count = o["path_count"] or len(o["paths"])
        more = f" (+{count - paths} more)" if count > paths else ""
        out.append(f"task {o['task_id']} also changed {count} of the same path(s): "
                   f"{shown}{more}")
    return out


@task.command()
@click.argument("task_id", metavar="ID", shell_complete=complete.TASK)
@json_option
def show(task_id: str) -> None:
    """Show a task: status, times, container, turns, tokens, cost, result."""
    from parhelia_cli import views

    obj = settings()
    t = views.task_show(obj.api(), task_id)
    degraded = t["resume_degraded"]
    if obj.json:
        render.emit_json(t)
        return
    o, u, src, r = t["options"] or {}, t["usage"] or {}, t["source"] or {}, t["result"] or {}
    resources = ", ".join(x for x in (
        f"gpu {o['gpu']}" if o.get("gpu") else "",
        f"{o['cpu']:g} cpu" if o.get("cpu") else "",
        f"{o['memory_mb']} MiB" if o.get("memory_mb") else "") if x) or "defaults"
    limits = ", ".join(x for x in (
        f"timeout {human_seconds(o['timeout_seconds'])}" if o.get("timeout_seconds") else "",
        f"max {o['max_turns']} turns" if o.get("max_turns") else "",
        f"max {usd_short(o['max_cost_micros'])}" if o.get("max_cost_micros") else "") if x)
    source = (f"repo {src['repo_url']}" + (f"@{src['repo_ref']}" if src.get("repo_ref") else "")
              if src.get("repo_url") else
              (f"workspace {t['workspace_path'] or ''} ({src['workspace_id']})".strip()
               if src.get("workspace_id") else "empty workspace"))
    render.fields([
        ("Status", render.status_word(t["status"]) + (f" ({render.safe(t['status_reason'])})"
                                                      if t["status_reason"] and not waits(t)
                                                      and not unsaved(t) else "")),
        ("Waiting", render.safe(wait_text(t)) if waits(t) else None),
        ("Backend", o.get("backend")), ("Resources", resources), ("Limits", limits or None),
        ("Model", o.get("model")), ("Permission", _permission(t)),
        ("Environment", _environment(t)),
        ("Set by", _set_by(t.get("option_sources") or {})),
        ("Source", source), ("Base commit", t["base_commit"]),
        ("Pull request", pull_request_text(t)),
        ("Created", render.when(t["created_at"])), ("Started", render.when(t["started_at"])),
        ("Finished", render.when(t["finished_at"])),
        ("Session", t["session_id"]), ("Container", t["container_id"]),
        ("Isolation", sandbox.describe(t.get("isolation", ""), t.get("credential", ""))
         if t.get("isolation") or t.get("credential") else None),
        ("Restarts", t["restarts"] or None),
        ("Resume", "; ".join(
            "a new conversation from a summary of the stored one "
            f"({(e.get('data') or {}).get('reason')})" for e in degraded) or None),
        ("Turns", u.get("turns", 0)),
        ("Tokens", f"{u.get('input_tokens', 0)} in / {u.get('output_tokens', 0)} out / "
                   f"{u.get('cache_read_input_tokens', 0)} cache read"),
        ("Cost", f"{usd_short(u.get('total_cost_micros', 0))} (api "
                 f"{usd_short(u.get('api_cost_micros', 0))}"
                 + (f" + ~{usd_short(u['inflight_api_cost_micros'])} in flight"
                    if u.get("inflight_api_cost_micros") else "")
                 + f", compute {usd_short(u.get('compute_cost_micros', 0))})"),
        ("Last tool", render.safe(t["last_tool"])),
        ("Overlap", render.style("; ".join(overlap_lines(t, paths=10)), "yellow") or None),
        ("Result", render.safe(r.get("subtype"))),
        ("Error", f"{r['error_code']}: {render.safe(r.get('error_message'))}"
         if r.get("error_code") else None),
    ], title=f"Task {t['id']}")
    render.line("\nPrompt:")
    for text in render.safe(t["prompt"], multiline=True).rstrip("\n").splitlines():
        render.line(f"  {text}")
    if r.get("text"):
        render.line("\n" + render.safe(r["text"], multiline=True).rstrip("\n"))


def _permission(t: dict[str, Any]) -> str | None:
    """The agent's mode as it runs (the sandbox default on Modal), and why."""
    env = t.get("environment")
    if not env:
        return (t["options"] or {}).get("permission_mode")
    allowed = env.get("allow_commands") or []
    pre = (f"; pre-approved: {', '.join(render.safe(c) for c in allowed)}"
           if allowed and env["permission_mode"] != "bypassPermissions" else "")
    return f"{env['permission_mode']} ({env['permission_reason']}){pre}"


def _environment(t: dict[str, Any]) -> str | None:
    """Which environment the task runs in and how long its setup took."""
    env = t.get("environment")
    if not env:
        return None
    where = render.safe(env["source_file"]) if env["source_file"] else env["source"]
    setup = env["setup_status"] or ("not started" if env["setup_steps"] else "no setup")
    if env["setup_ms"]:
        setup += f" in {int(env['setup_ms']) / 1000:.1f}s"
    return (f"{env['hash']} from {where}: {render.safe(env['base'])}; network "
            f"{env['network']}; setup {setup}")


def pull_request_text(t: dict[str, Any]) -> str | None:
    """The task's pull request (or pushed branch) in one line; None when it has none."""
    pr = t.get("pull_request") or {}
    if not pr.get("branch"):
        return "opened when it completes (--pr)" if t.get("open_pr") else None
    if pr.get("number"):
        return f"#{pr['number']} {pr.get('url') or ''} ({pr['branch']} -> {pr.get('base')})"
    compare = f"; compare: {pr['url']}" if pr.get("url") else ""
    return f"branch {pr['branch']} pushed to {render.safe(pr.get('remote'))}{compare}"


def _set_by(sources: dict[str, str]) -> str | None:
    """Which file (or flag) chose each option that is not a built-in default."""
    by: dict[str, list[str]] = {}
    for option, source in sorted(sources.items()):
        if source != "default":
            by.setdefault(source.replace(":", " ", 1), []).append(option)
    return "; ".join(f"{', '.join(opts)}: {src}" for src, opts in by.items()) or None


@task.command()
@click.argument("task_id", metavar="ID", shell_complete=complete.TASK)
@click.option("-f", "--follow", "follow_logs", is_flag=True, help="Keep streaming new output.")
@click.option("--raw", is_flag=True,
              help="The agent's own stream-json lines, unchanged (for jq and scripts).")
@click.option("--setup", is_flag=True,
              help="The environment's setup and start output instead (secrets shown as ***; "
                   "with --raw, its bytes unchanged).")
def logs(task_id: str, follow_logs: bool, raw: bool, setup: bool) -> None:
    """What the agent did, as a person reads it: its turns, each tool call with its
    input summarised, the tool's result, the agent's text and its result (every
    incarnation of the task, oldest first). --raw prints the stream-json itself;
    --setup the output of the environment's setup and start commands."""
    import codecs

    from parhelia_cli.agentlog import AgentLog

    api = settings().api()
    out = sys.stdout.buffer
    view = None if raw or setup else AgentLog()
    # Setup output is the repository's commands' own: shown, it is made safe for the
    # terminal (an escape sequence in it must not reach it); --raw keeps the bytes.
    text = codecs.getincrementaldecoder("utf-8")("replace") if setup and not raw else None
    try:
        for chunk in api.tasks.logs(task_id, follow=follow_logs, setup=setup):
            if text is not None:
                sys.stdout.write(render.safe(text.decode(chunk.data), multiline=True))
                sys.stdout.flush()
                continue
            if view is None:
                out.write(chunk.data)
                out.flush()
                continue
            for line in view.feed(chunk.container_id, chunk.data):
                render.line(line)
        for line in view.finish() if view is not None else ():
            render.line(line)
    except KeyboardInterrupt:
        return


# --- acting -----------------------------------------------------------------------------

@task.command()
@click.argument("task_id", metavar="ID", shell_complete=complete.TASK)
@click.option("--grace", type=params.SECONDS, default=None,
              help="Seconds the worker gets to checkpoint before it is killed (default: config).")
@json_option
def cancel(task_id: str, grace: int | None) -> None:
    """Cancel a task: graceful stop with a checkpoint, then kill after the grace period."""
    obj = settings()
    t = obj.api().tasks.cancel(task_id, grace_seconds=grace)
    _print_task_action(task_dict(t), "Cancelled", obj.json)


@task.command()
@click.argument("task_id", metavar="ID", shell_complete=complete.TASK)
@click.option("--force", is_flag=True,
              help="Delete a running task too (its worker is stopped first).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def delete(task_id: str, force: bool, yes: bool) -> None:
    """Delete a task and its records, for good: a finished one, or one with no worker
    (pending, held, paused: cancelled first); --force for a running one.
    Asks for confirmation unless -y."""
    from parhelia_cli import confirm

    confirm.confirm(f"Delete task {task_id} with its sessions, checkpoints and events? "
                    "This cannot be undone", yes, f"deleting task {task_id}")
    obj = settings()
    resp = obj.api().tasks.delete(task_id, force=force)
    deleted = resp.task_id or task_id  # the full id (an older daemon does not send it)
    if obj.json:
        render.emit_resource({"id": deleted, "deleted": True})
    else:
        render.line(f"Deleted task {deleted}.")


@task.command()
@click.argument("task_id", metavar="ID", shell_complete=complete.TASK)
@click.option("--max-cost", type=params.USD, help="A new cost cap for the retry, USD.")
@click.option("--max-turns", type=params.COUNT, help="A new turn limit.")
@click.option("--timeout", type=params.TIMEOUT, help="A new wall-clock limit: seconds, 30m, 4h.")
@click.option("--model", help="Another Claude model for the retry.")
@json_option
def retry(task_id: str, max_cost: int | None, max_turns: int | None, timeout: int | None,
          model: str | None) -> None:
    """Run a finished task again, in a fresh session from checkpoint zero (options
    given here replace the task's own)."""
    obj = settings()
    options = task_options(max_cost_micros=max_cost, max_turns=max_turns,
                           timeout_seconds=timeout, model=model)
    t = obj.api().tasks.retry(task_id, options)
    _print_task_action(task_dict(t), "Retrying", obj.json)


def _print_task_action(t: dict[str, Any], verb: str, as_json: bool) -> None:
    if as_json:
        render.emit_resource(t)
    else:
        render.line(f"{verb} task {t['id']} (now {render.status_word(t['status'])}).")


@task.command()
@click.argument("task_ids", metavar="[ID]...", nargs=-1)
@json_option
def dispatch(task_ids: tuple[str, ...]) -> None:
    """Start pending tasks now, within the concurrency limit.

    Releases the given held tasks (created with --no-dispatch), or every held task when
    no ID is given, then runs a dispatch pass. A task that cannot start says why.
    """
    obj = settings()
    resp = to_dict(obj.api().tasks.dispatch(task_ids))
    if obj.json:
        render.emit_json(resp)
        return
    started = resp["dispatched_task_ids"]
    render.line(f"Dispatched {len(started)} task(s)" + (f": {', '.join(started)}" if started
                                                          else "."))
    for refusal in resp["refusals"]:
        render.line(f"Refused {refusal['task_id']}: {refusal['code']} {refusal['message']}")
    waiting = [t for t in resp["released_task_ids"] if t not in started]
    if waiting:
        render.line(f"Released {len(waiting)} held task(s) to the queue: {', '.join(waiting)}")
    if resp["detail"]:
        render.line(resp["detail"])


@task.command()
@click.argument("task_id", metavar="ID", shell_complete=complete.TASK)
@click.option("--stat", is_flag=True, help="Only the changed files and line counts.")
@click.option("--against", type=click.Choice(["upload", "base"]), default="upload",
              show_default=True,
              help="upload: the task's own changes, against your working tree as uploaded "
                   "(what `task pull --patch` holds). base: against the base commit, your "
                   "uncommitted changes included (what the pulled branch holds).")
@json_option
def diff(task_id: str, stat: bool, against: str) -> None:
    """What the task changed: against your working tree as uploaded (default), or
    against the base commit (--against base)."""
    obj = settings()
    resp = to_dict(obj.api().tasks.diff(task_id, stat_only=stat, against=against))
    if obj.json:
        render.emit_json(resp)
        return
    base = (resp.get("base_commit") or "")[:12]
    if against == "base":
        render.info(f"Against the base commit {base} (your uncommitted changes at upload "
                    "included).")
    else:
        render.info("Against your working tree as uploaded"
                    + (f" (base {base} + your uncommitted changes)." if base else "."))
    if stat or not resp["patch"]:
        _print_stat(resp["files"])
    else:
        sys.stdout.write(resp["patch"])
        sys.stdout.flush()


def _print_stat(files: list[dict[str, Any]]) -> None:
    if not files:
        render.line("No changes.")
        return
    added = sum(f["lines_added"] for f in files)
    removed = sum(f["lines_removed"] for f in files)
    for f in files:
        counts = "binary" if f["binary"] else f"+{f['lines_added']} -{f['lines_removed']}"
        render.line(f" {f['change'] or 'modified':<8} {render.safe(f['path'])}  {counts}")
    render.line(f" {len(files)} file(s) changed, {added} insertion(s), {removed} deletion(s)")


@task.command()
@click.argument("task_id", metavar="ID", shell_complete=complete.TASK)
@click.option("--branch", help="Branch to create (default: parhelia/<task id>).")
@click.option("--patch", "patch_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a patch file instead of creating a branch.")
@click.option("--repo-path", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Repository to create the branch in (default: where the task came from).")
@click.option("--force", is_flag=True, help="Replace the --patch file if it exists.")
@json_option
def pull(task_id: str, branch: str | None, patch_file: Path | None,
         repo_path: Path | None, force: bool) -> None:
    """Bring a task's changes back as a branch (or a patch); your working tree and current
    branch are never touched."""

    if branch and patch_file:
        raise invalid("--branch and --patch are alternatives; give one")
    if patch_file is not None and str(patch_file) == "-":
        raise invalid("--patch names a file (the daemon writes it); to print the patch, "
                      "use `parhelia task diff ID` (the same comparison; binary files are "
                      "named, not included)")
    from parhelia_cli import progress

    obj = settings()
    with progress.reporting(obj.json) as on_progress:
        resp = to_dict(obj.api().tasks.pull(
            task_id, branch=branch or "",
            patch_path=str(patch_file.absolute()) if patch_file else "",
            repo_path=str(repo_path.absolute()) if repo_path else "", force=force,
            on_progress=on_progress))
    if obj.json:
        render.emit_json(resp)
        return
    n = len(resp["files"])
    base = (resp["base_commit"] or "")[:12]
    upload = (resp.get("upload_commit") or "")[:12]
    for skipped in resp.get("skipped") or []:
        render.warn(f"Skipped {render.safe(skipped)}")
    repo = shlex.quote(resp["repo_path"])
    if resp["patch_path"]:
        against = (f"your working tree as uploaded (base {base} + your uncommitted changes)"
                   if upload else f"{base}")
        render.line(f"Wrote {resp['patch_path']} ({n} file(s) changed by the task, against "
                    f"{against}).")
        where = f"-C {repo} " if resp["repo_path"] else ""
        render.line(f"Apply it with: git {where}apply {shlex.quote(resp['patch_path'])}")
        return
    render.line(f"Created branch {resp['branch']} at {(resp['commit'] or '')[:12]} in "
                f"{resp['repo_path']} ({n} file(s) changed" + (f", from {base}" if base else "")
                + "). Your working tree and current branch were not touched.")
    if upload:
        render.line(f"Its first commit ({upload}) holds your uncommitted changes as uploaded; "
                    "the next one is the task's work.")
        render.line(f"To take only the task's work into your working tree as it is: "
                    f"parhelia task pull {task_id} --patch FILE, then git apply FILE")
    else:
        render.line(f"Merge it with: git merge {resp['branch']}   (review first: git log -p "
                    f"{base or 'HEAD'}..{resp['branch']})")


@task.command("pr")
@click.argument("task_id", metavar="ID", shell_complete=complete.TASK)
@click.option("--base", metavar="BRANCH",
              help="Branch the pull request goes into (default: the one recorded, else the "
                   "branch you uploaded from when the remote has it, else its default branch).")
@click.option("--draft/--ready", default=None,
              help="Open it as a draft, or ready for review (default: github.draft).")
@click.option("--title", help="Its title (default: the first line of the task's prompt).")
@click.option("--branch", metavar="NAME",
              help="Branch to push (default: the one recorded, else parhelia/<task id>).")
@json_option
def pr(task_id: str, base: str | None, draft: bool | None, title: str | None,
       branch: str | None) -> None:
    """Push the task's branch and open a pull request (a second run updates both).

    The branch holds the same commits as `task pull`'s. It is pushed from the daemon's
    side with your GitHub token (`parhelia auth status` says which one): from your own
    clone when the task came from one, else from the daemon's mirror of the repository.
    On a remote that is not on GitHub the branch is pushed and a compare page printed when
    one is known.
    """
    from parhelia_cli import progress

    obj = settings()
    with progress.reporting(obj.json) as on_progress:
        resp = obj.api().tasks.pr(task_id, base=base or "", title=title or "",
                                  branch=branch or "", draft=draft, on_progress=on_progress)
    data = to_dict(resp)
    data["task"] = task_dict(resp.task)
    if obj.json:
        render.emit_json(data)
        return
    p = data["pull_request"] or {}
    for skipped in data.get("skipped") or []:
        render.warn(f"Skipped {render.safe(skipped)}")
    pushed = (f"Pushed {p['branch']} at {(p.get('commit') or '')[:12]} to "
              f"{render.safe(p.get('remote'))}" if data["pushed"] else
              f"{p['branch']} on {render.safe(p.get('remote'))} is already at "
              f"{(p.get('commit') or '')[:12]}")
    render.line(f"{pushed} ({len(data['files'])} file(s) changed).")
    if p.get("number"):
        verb = "Opened" if data["created"] else "Updated"
        kind = "draft pull request" if data.get("draft") else "pull request"
        render.line(f"{verb} {kind} #{p['number']} into {p.get('base')}: {p.get('url')}")
    elif p.get("url"):
        render.line(f"Compare and open a merge request: {p['url']}")
    else:
        render.line("This remote has no forge Parhelia opens pull requests on; open one "
                    f"from {p['branch']} into {p.get('base')} there.")
