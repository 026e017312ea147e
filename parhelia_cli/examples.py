"""Runnable examples behind ``parhelia examples TOPIC``.

Each example is ``(comment, command)``; commands are real command lines. Lines whose
command group is not available in this version are flagged when shown.
"""

from __future__ import annotations

Example = tuple[str, str]

EXAMPLES: dict[str, list[Example]] = {
    "task": [
        ("Run a task on the repository around you and wait for the result",
         'parhelia task create "Run the test suite and fix what fails" --sync'),
        ("Start it in the background; only the id is printed",
         'ID=$(parhelia task create "Refactor the auth module into smaller functions")'),
        ("Follow it live, or read the raw agent output", 'parhelia task watch "$ID"'),
        ("", 'parhelia task logs "$ID" -f'),
        ("Bring the result back as a branch, then merge it",
         'parhelia task pull "$ID" && git merge "parhelia/$ID"'),
        ("List what failed, as JSON", "parhelia task list --status failed --json"),
        ("Cancel, giving the worker 30 s to checkpoint", 'parhelia task cancel "$ID" --grace 30'),
    ],
    "gpu": [
        ("Train on one A10G on Modal, with a wall-clock and a cost cap",
         'parhelia task create "Train the model in train.py for 3 epochs" --gpu A10G '
         '--backend modal --timeout 2h --max-cost 10'),
        ("Two H100s for an inference benchmark",
         'parhelia task create "Benchmark bench/infer.py at batch sizes 1-64" --gpu H100:2 '
         '--backend modal --memory 64GiB'),
        ("Check the estimate before paying for it",
         'parhelia task create "Fine-tune on data/" --gpu A100-80GB --timeout 4h --estimate-only'),
    ],
    "checkpoint": [
        ("List a session's checkpoints, newest first", "parhelia checkpoint list SESSION"),
        ("Take one before a risky change",
         'parhelia checkpoint create SESSION -m "before the big refactor"'),
        ("See what changed between two checkpoints, files and conversation",
         "parhelia checkpoint diff CP_A CP_B --files --conversation"),
        ("Environment and git state of one, or its raw manifest",
         "parhelia checkpoint show CP_A && parhelia checkpoint show CP_A --manifest"),
        ("Go back (a safety checkpoint is taken first)", "parhelia checkpoint rollback CP_A -y"),
        ("Verify every blob of a checkpoint", "parhelia checkpoint verify CP_A"),
        ("See what a garbage collection would free, then do it",
         "parhelia checkpoint gc --dry-run && parhelia checkpoint gc"),
    ],
    "budget": [
        ("Where the money goes", "parhelia budget show"),
        ("Set the ceiling to $50", "parhelia budget set 50.00"),
        ("Spend per day, or per task", "parhelia budget history --by task"),
        ("Cap one task at $2.50",
         'parhelia task create "Upgrade all dependencies" --max-cost 2.50'),
    ],
    "parallel": [
        ("Three independent tasks at once, each in its own workspace",
         'for f in src/a.py src/b.py src/c.py; do parhelia task create "Add type hints to $f"; '
         "done"),
        ("Watch them", "parhelia task list --status running"),
        ("Queue work now, start it later",
         'parhelia task create "Update the changelog" --no-dispatch && parhelia task dispatch'),
        ("Collect every completed task as a branch",
         "parhelia task list --status completed --json | python3 -c "
         "'import json,sys; [print(t[\"id\"]) for t in json.load(sys.stdin)[\"tasks\"]]' "
         "| xargs -n1 parhelia task pull"),
    ],
    "session": [
        ("Every session, newest first", "parhelia session list"),
        ("Only those not completed (active and stopped), as JSON",
         "parhelia session list --active --json"),
        ("One session: task, conversation, containers, latest checkpoint",
         "parhelia session show SESSION"),
        ("Stop a session, checkpointing first (no prompt)", "parhelia session kill SESSION -y"),
        ("Continue it later and wait for the result", "parhelia resume SESSION --sync"),
    ],
    "events": [
        ("Errors of the last hour", "parhelia events list --level error --since 1h"),
        ("One task's history", "parhelia events list --task TASK --limit 200"),
        ("Follow container lifecycle events as JSON lines",
         "parhelia events watch --type container_started,container_exited,container_lost --json"),
        ("Everything since a date, to a file",
         "parhelia events list --since 2026-11-01T00:00:00Z --limit 10000 --json > events.json"),
        ("Export everything (streamed)", "parhelia events export events.jsonl"),
    ],
    "container": [
        ("Running containers", "parhelia container list --state running"),
        ("Details and recent heartbeats", "parhelia container show CONTAINER"),
        ("Health summary", "parhelia container health"),
        ("A container's history", "parhelia container events CONTAINER"),
    ],
    "config": [
        ("The effective configuration and where each value comes from", "parhelia config show"),
        ("A project override of per-task keys: bigger containers, a longer timeout",
         "mkdir -p .parhelia && printf '[modal]\\ncpu_count = 8\\nmemory_mb = 32768\\n"
         "default_timeout_hours = 8\\n' > .parhelia/config.toml"),
        ("Daemon-wide keys (workers, budget, reconciler) go in the user file",
         "printf '[orchestrator]\\nmax_concurrent_workers = 4\\n' >> "
         "~/.config/parhelia/config.toml"),
        ("Check it is picked up", "parhelia config show --json"),
        ("Preview what of ~/.claude would travel with tasks (secrets stripped)",
         "parhelia config sync --dry-run"),
        ("Send it now (task create also re-syncs by itself when it changed)",
         "parhelia config sync"),
    ],
    "recovery": [
        ("What went wrong with a task",
         "parhelia task show TASK && parhelia events list --task TASK"),
        ("Run it again from checkpoint zero", "parhelia task retry TASK"),
        ("Guided recovery of a session", "parhelia session recover SESSION"),
        ("The same in a script: resume from the latest checkpoint",
         "parhelia session recover SESSION --action resume"),
        ("Continue from the latest checkpoint", "parhelia resume SESSION"),
        ("Or from an older one", "parhelia resume SESSION --checkpoint CP"),
        ("The daemon will not start", "parhelia daemon logs -n 50 && parhelia doctor"),
        ("Find and stop orphaned sandboxes", "parhelia cleanup --terminate"),
    ],
    "mcp": [
        ("Give Claude Code the Parhelia tools (tasks, checkpoints, budget, health...)",
         "claude mcp add -s user parhelia -- parhelia mcp-server"),
        ("List the tools and their schemas with the MCP Inspector",
         "npx @modelcontextprotocol/inspector --cli parhelia mcp-server --method tools/list"),
        ("Call one from the command line",
         "npx @modelcontextprotocol/inspector --cli parhelia mcp-server --method tools/call "
         "--tool-name parhelia_task_show --tool-arg task_id=TASK"),
        ("Never start the daemon from the MCP server",
         "claude mcp add -s user parhelia -- parhelia mcp-server --no-autostart"),
    ],
}


def render_examples(topic: str, available: set[str]) -> str:
    """The examples of ``topic`` as shell text; unavailable commands are flagged."""
    out = [f"# parhelia examples {topic}"]
    for comment, command in EXAMPLES[topic]:
        if comment:
            out.append(f"\n# {comment}")
        note = ""
        group = _group_of(command)
        if group and group not in available:
            note = f"    # `parhelia {group}` is not available in this version yet"
        out.append(command + note)
    return "\n".join(out) + "\n"


def _group_of(command: str) -> str | None:
    """The first top-level command after ``parhelia`` in a command line."""
    words = command.replace("$(", " ").replace("&&", " ").split()
    for i, word in enumerate(words[:-1]):
        if word == "parhelia" and not words[i + 1].startswith("-"):
            return words[i + 1]
    return None
