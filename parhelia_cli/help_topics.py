"""The guides behind ``parhelia help TOPIC`` (plain text; imports only the standard library
and the contract package, which is standard library only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    summary: str
    body: str
    commands: tuple[str, ...] = ()
    """Top-level commands this topic is about (to flag those not available yet)."""


TOPICS: dict[str, Topic] = {}


def _topic(name: str, summary: str, body: str, commands: tuple[str, ...] = ()) -> None:
    TOPICS[name] = Topic(name, summary, body.strip("\n"), commands)


_topic("task", "Create, follow and collect tasks", """
A task is one prompt for Claude Code plus the options it runs with. The daemon
(parheliad) stores it, dispatches it to a backend and keeps it alive through failures.

  parhelia task create "Run the test suite and fix what fails" --sync

Source of the workspace (what the agent works on):
  default          the git repository around the current directory, if any: tracked
                   and untracked-not-ignored files are uploaded as checkpoint zero
  --workspace DIR  upload DIR instead (git-aware when DIR is in a repository)
  --no-workspace   start in an empty directory
  --repo URL       a repository you do not have locally (--branch B, or --ref
                   BRANCH|TAG|SHA): the daemon clones it into checkpoint zero; private
                   GitHub repositories with your GitHub token (parhelia auth set
                   --github, GITHUB_TOKEN or GH_TOKEN, or gh auth login); the agent
                   never holds a git credential
The upload is incremental: unchanged files are not sent twice.

Resources and limits:
  --gpu TYPE[:N]   {gpu_types}
  --cpu CORES      physical cores (float), --memory 4096 | 16GiB
  --timeout 30m    wall-clock limit (seconds or 90s, 30m, 4h)
  --max-turns N    agent turns, --max-cost 2.50 (USD cap for this task)
  --model M, --permission-mode {permission_modes}
  --backend {backends}  (default from config; local runs isolated worker processes)

Following a task:
  --sync           wait, with live progress (turns, tokens, cost, elapsed, last tool);
                   Ctrl-C detaches, the task keeps running
  task watch ID    re-attach to live progress        task logs ID -f   raw agent output
  task list, task show ID [--json]                   task cancel ID [--grace 30]
  task retry ID    run again from checkpoint zero    task delete ID [--force]
  parhelia top     every task live, full screen: w watch, l logs, c cancel, q quit

Two live tasks of the same repository that changed the same paths are marked (task
list: running!, task show: Overlap, top), with the paths; each records overlap_detected.

Results come back as a branch, a patch or a pull request, never written into your
working tree:
  parhelia task diff ID [--stat]
  parhelia task pull ID                 # creates branch parhelia/<id> from the base commit
  parhelia task pull ID --patch fix.patch
  parhelia task pr ID [--base B] [--draft|--ready] [--title T]
                                        # pushes that branch from the daemon's side and
                                        # opens its pull request (again: updates both)
  task create ... --pr                  # opens it when the task completes with changes

States: pending -> running -> completed | failed | cancelled; running -> recovering ->
running (a lost worker is resumed from its latest checkpoint); running -> paused (budget
or user) -> pending. Ids can be shortened to any unique prefix.
""", ("task",))

_topic("session", "Sessions: the long-lived execution of a task", """
Every task that runs gets a session. The session owns the Claude Code conversation
(its UUID), the checkpoints and the chain of containers that ran it. When a worker dies
the session continues in a new container from its latest checkpoint: the workspace and
the conversation transcript are restored together, at the same fixed path, so Claude
resumes the same conversation (`claude --resume`). A session is headless (a worker runs
`claude -p`), detached or attached (a worker runs the interactive Claude Code TUI in tmux,
with no client or with N clients attached), stopped (no worker; it can be resumed) or
completed (its task completed).

  parhelia session list [--active] [--limit N]  every session (--active: not completed)
  parhelia session attach SESSION [--take-over] put this terminal in its TUI (tmux);
                                              detach with Ctrl-B D, it goes on running.
                                              A headless session is taken over first
  parhelia session release SESSION ["next"]   hand an interactive session back: the TUI
                                              closes, the agent continues headless
  parhelia session show SESSION               task, conversation, containers, latest checkpoint
  parhelia session kill SESSION [-y]          stop its worker, checkpointing first
  parhelia session recover SESSION            guided: what happened, the last checkpoints,
                                              what was done since the newest, the choices
  parhelia session recover SESSION --action resume|restart|wait [--checkpoint CP]
  parhelia resume SESSION [--checkpoint CP] [--sync]
                                              continue from the latest (or CP) checkpoint;
                                              prints the task id to follow

`session kill` asks for confirmation at a terminal; scripts pass -y (without it a
non-terminal stdin is refused with E102). `session recover` without --action prompts
for a choice at a terminal and only prints the guide otherwise (exit 0).
""", ("session", "resume"))

_topic("checkpoint", "Checkpoints: what they hold, when they are taken, how to restore", """
A checkpoint is an immutable, content-addressed snapshot of a session: the workspace
tree, the Claude conversation transcript, the environment (agent version, model,
Parhelia version, config bundle) and the git state (branch, HEAD, dirty files, stash).
Blobs are shared between checkpoints, so each one costs only the bytes that changed.

Taken automatically: at task start (the uploaded workspace is checkpoint zero), after
completed agent turns (debounced), periodically ([checkpoint] interval_seconds), before
risky tool calls (rm -rf, git reset --hard, ...), on errors, on SIGTERM and before a
timeout, and on completion. On demand and for inspection:

  parhelia checkpoint create SESSION [-m "before the refactor"]
                                         a running worker snapshots itself; a stopped
                                         session is checkpointed from its last state
  parhelia checkpoint list [SESSION] [--limit N]      newest first; * = manual (kept by gc)
  parhelia checkpoint show CP [--manifest]            environment, git, stats (or the manifest)
  parhelia checkpoint diff CP_A CP_B [--files] [--conversation]
                                         files added/removed/modified with sizes; --files
                                         the unified diff, --conversation the turns added
  parhelia checkpoint rollback CP [-y]   a safety checkpoint first; a running session is
                                         stopped, restored and resumed
  parhelia checkpoint verify CP          re-hash every blob (exit 1, E600, on a problem)
  parhelia checkpoint gc [--dry-run]     apply [checkpoint] keep_last / max_age_days;
                                         manual checkpoints are kept; prints bytes freed
  parhelia resume SESSION [--checkpoint CP]

Restores treat a manifest as untrusted: paths must stay inside the workspace, symlinks
may not leave it, every blob hash is verified, and a refused manifest restores nothing.
""", ("checkpoint", "resume"))

_topic("recovery", "When a worker dies: automatic recovery and what you can do", """
A container that dies without a result (killed, crashed, heartbeats dead, vanished)
while its task is unfinished moves the task to `recovering`; the daemon resumes it from
the latest checkpoint in a new container, up to [recovery] max_restarts times with
backoff. Every step is an event (`parhelia events list --task TASK`). Work done after the
newest checkpoint is the only work that can be lost.

When it stops for good (restarts or budget exhausted, or you killed it):
  parhelia session recover SESSION       what happened, the latest checkpoints, what was
                                         done since the newest one, and the choices:
    resume    continue the same conversation from the latest checkpoint (or --checkpoint)
    restart   start over from checkpoint zero in a fresh session
    wait      change nothing
  parhelia session recover SESSION --action resume      the same, for scripts
  parhelia resume SESSION --checkpoint CP               resume from an older checkpoint
  parhelia checkpoint rollback CP -y                    go back inside a live session
  parhelia task retry TASK                              a new run from checkpoint zero
""", ("session", "resume"))

_topic("budget", "Budget: one ledger for compute and API spend", """
Spend = compute (seconds x (cores x CPU rate + GiB x memory rate + GPU rate)) + API
(the cost the agent reports). Local workers cost no compute. Claude Code reports its
cost only when a run ends, so while it runs its spend is priced from its tokens as each
reply is billed (input, output, cache writes at 1.25x and reads at 0.1x the input price
of its model): the ceiling and --max-cost act at the reply that reaches them. A run
stopped before its result is booked with the cost Claude Code kept in its transcript;
one killed outright at the tokens' price, marked "estimated" (budget history's
ESTIMATED column, the ledger's note).

When spend is checked: as it is booked. Each reply's billed usage reaches the daemon
as the reply ends, and the same step that books it checks the task's --max-cost and the
ceiling and stops the workers at once; compute is booked on a timer
(budget.accrual_interval_seconds). A task whose agent has returned its result when a
limit is reached completes (raising the ceiling does not run it again).

What a running task reserves: what it can spend before the budget sees it - one
answer (a full 200,000-token context read and a 32,000-token reply, Claude Code's cap
per request, at its model's prices: $1.80 on the default prices, $1.08 for sonnet)
plus its compute over one accrual interval and the stop grace; no more than its
--max-cost. The reservation does not shrink as the task spends, and is released when
the task stops running. A dispatch waits (E300, the task stays pending) while used +
every running task's reservation + its own would pass the ceiling; so a $10 ceiling
runs five tasks at once on the default prices.
The guarantee: the ceiling is crossed by at most one answer per running task (the
answers in flight when it is reached) - never by a timer's worth of work.

Estimate (task create --estimate-only, budget estimate): what a whole task may cost
  compute  rate x ceil(timeout / 4) .. rate x timeout          (0 on the local backend)
  api      ceil(turns / 4) x (2,000 in + 300 out tokens) ..
           turns x (20,000 in + 1,500 out tokens), at the model's prices
  both capped at --max-cost when given.
Crossing the warning threshold records one E301 event per period and every command
shows a banner once. At the ceiling running tasks are checkpointed and paused; raising
the ceiling enough for one more answer of a task (what it reserves, `budget estimate`)
resumes it from its checkpoint (--resume). A task reaching its
--max-cost is stopped and fails with E300.

  parhelia budget show                   ceiling, used, reserved, remaining, tokens
  parhelia budget set 50.00              ceiling in USD (kept across restarts)
  parhelia budget history [--by day|task] [--since 7d]
  parhelia budget ledger [--task ID]     the entries themselves
  parhelia task create "..." --max-cost 2.50     per-task cap (also passed to the agent)
  parhelia task create "..." --estimate-only     estimate without creating anything
  parhelia budget estimate [--gpu A10G] [--max-turns N] ...   the same, by itself

Config: [budget] default_ceiling_usd, warning_threshold_percent, period (month|total),
accrual_interval_seconds; [rates] cpu_core_per_second, memory_gib_per_second, gpu,
model_input_per_mtok, model_output_per_mtok (USD per million tokens by family).
""", ("budget",))

_topic("container", "Containers: the incarnations of a worker", """
A container is one run of the worker for a session: a local process (its own process
session and workspace) or a Modal sandbox. States: created -> starting -> running ->
exited | failed | terminated | lost; `orphaned` marks a sandbox carrying this daemon's
owner tag that the database does not own (the reconciler finds those).

Health comes from heartbeats (CPU, memory, disk, agent alive, turns, tokens, cost):
healthy, degraded after 1 missed heartbeat, unhealthy after 3, dead after 5 -- a dead
container's task is recovered from its latest checkpoint.

  parhelia container list [--state running]
  parhelia container show CONTAINER      details and recent heartbeats
  parhelia container events CONTAINER    its event history
  parhelia container health              summary by health and state
  parhelia container watch               live updates
  parhelia container terminate CONTAINER [-y]
                                         end it now; a running task resumes from its
                                         latest checkpoint (cancel the task to stop it)

Config: [heartbeat] interval_seconds (health counts missed intervals; a heartbeat is
missed once it is half an interval late), retention_per_container.
""", ("container",))

_topic("events", "The event log: query, follow, export", """
Every state change and notable worker observation is an event: an id (global,
increasing), a type, a level (debug, info, warning, error), a time, and the task,
session and container it concerns.

  parhelia events list [--type T ...] [--level warning] [--since 30m|2d|1w|RFC3339]
                       [--until ...] [--task ID] [--session ID] [--container ID]
                       [--limit 50] [--json]
  parhelia events watch [same filters] [--json]      live; one line (or JSON line) per event
  parhelia events export FILE [--format jsonl|json] [same filters]
                                                     everything matching, oldest first,
                                                     written as it streams (flat memory)
  parhelia events replay CONTAINER [--from-start | --since 1h]
                                                     a container's history as a timeline

--level is a minimum: `--level warning` shows warnings and errors. --type takes several
values (repeat it or separate with commas). Types by category:
{event_types}
""", ("events",))

_topic("config", "Configuration files and keys", """
Configuration is TOML. The user file is $PARHELIA_HOME/config.toml when PARHELIA_HOME
is set, else $XDG_CONFIG_HOME/parhelia/config.toml (~/.config/parhelia/config.toml). A
project's .parhelia/config.toml (found from the current directory upwards) overrides
it. Unknown or ill-typed keys are errors (E101) naming the key and the file.

  parhelia config show [--json]          every key, its value and where it came from
  parhelia config sync [--dry-run] [--json]
                                         send your Claude Code setup to workers (no secrets)

  [modal]        volume_name, cpu_count, memory_mb, default_timeout_hours
  [budget]       default_ceiling_usd, warning_threshold_percent, period (month|total),
                 accrual_interval_seconds
  [rates]        cpu_core_per_second, memory_gib_per_second, gpu, model_input_per_mtok,
                 model_output_per_mtok
  [orchestrator] db_path, max_concurrent_workers, default_backend, dispatch_interval_seconds,
                 cancel_grace_seconds
  [reconciler]   poll_interval_seconds, stale_threshold_seconds, auto_terminate_orphans
  [agent]        command (default ["claude"]), model, permission_mode, max_turns
  [checkpoint]   interval_seconds, risky_patterns, keep_last, max_age_days
  [recovery]     max_restarts, backoff_seconds, backoff_max_seconds
  [heartbeat]    interval_seconds, retention_per_container
  [sync]         pass_env (names of settings/MCP env values given to workers as
                 environment variables), exclude_mcp (MCP servers never sent)
`parhelia config show` is the authority: it lists every key this daemon knows.

A running daemon reads the file when it starts and again on `parhelia daemon reload`
(or SIGHUP): changed keys apply at once, without a restart, except those it reads only
at start - orchestrator.db_path, daemon.log_level and the Modal app, volume, secret and
call/launch timeouts - which the reload names and `parhelia daemon restart` applies. A
bad file changes nothing (E101). Until then `config show` adds a DAEMON USES column for
the keys whose value in use differs from the file's.

Your Claude configuration (CLAUDE.md, settings, agents, commands, skills, output styles,
plugins, user MCP servers) travels with tasks through `parhelia config sync`, which
strips secrets by rule and shows a dry run first (--dry-run: every file, every exclusion
with its reason, every path rewrite). Credentials files, settings.local.json, account
state, transcripts and history never leave; literal env/header values and apiKeyHelper
are removed, and the names in sync.pass_env reach workers as environment variables
only. `task create` re-syncs by itself when the config changed.
""", ("config",))

_topic("reconciler", "The reconciler: drift, lost and orphaned containers", """
The reconciler runs periodically ([reconciler] poll_interval_seconds) and compares the
daemon's database with what the backends report:
  lost         a container the database believes alive is gone -> its task is recovered
  orphaned     a sandbox with this daemon's owner tag that nothing here owns -> reported,
               terminated only with auto_terminate_orphans = true or `cleanup --terminate`
  state_drift  the states disagree -> the database is corrected and an event recorded
It only ever touches sandboxes tagged with this daemon's instance id. It also runs once
at daemon start, so a worker that died while the daemon was down is found at once.
[reconciler] stale_threshold_seconds is how long a container the backend no longer lists
may stay silent before it counts as lost.

  parhelia reconciler status             last run, findings, next run
  parhelia reconciler run                run now
  parhelia cleanup [--terminate]         list (or terminate) orphans and what they cost
""", ("reconciler", "cleanup"))

_topic("gpu", "GPU tasks", """
GPUs run on the Modal backend. Choose a type with --gpu, optionally ':N' for N GPUs:
{gpu_types}.
--gpu selects the Modal backend by itself; --gpu with --backend local is refused (E101):
the local backend has no GPUs.

  parhelia task create "Train the model in train.py for 3 epochs" --gpu A10G
  parhelia task create "Benchmark inference" --gpu H100:2 --timeout 2h --max-cost 20

GPU time dominates the cost: set --timeout and --max-cost, and check the estimate
first with --estimate-only. Checkpoints work the same as on CPU, so a preempted or
failed GPU container resumes from the latest checkpoint.
""", ("task",))

_topic("parallel", "Running several tasks at once", """
Every task has its own session and workspace, so parallel agents never write into the
same tree; results come back as separate branches (parhelia/<task id>) or patches.

  for t in "Fix the flaky test in tests/test_io.py" "Add type hints to utils.py"; do
      parhelia task create "$t"
  done
  parhelia task list --status running

The dispatcher starts pending tasks in creation order, at most
[orchestrator] max_concurrent_workers at a time. `--no-dispatch` creates a task
without starting it; `parhelia task dispatch` runs a dispatch pass now.
""", ("task",))

_topic("daemon", "The parheliad daemon", """
parheliad owns all state (SQLite), the scheduler, the dispatcher, the reconciler and
the budget ledger, and serves the gRPC API parhelia.v1 on a Unix socket. The socket is
--socket, else $PARHELIA_SOCKET, else $XDG_RUNTIME_DIR/parhelia/parheliad.sock (with
PARHELIA_HOME set: $PARHELIA_HOME/run/parheliad.sock). Its directory is 0700 and the
socket 0600: file permissions are the authentication boundary.

Any command that needs the daemon starts it in the background when nothing answers,
and waits up to ~5 s. Set PARHELIA_NO_AUTOSTART=1 to turn that off (then E504, exit 5).

  parhelia daemon start [--foreground]   start (and wait until it answers)
  parhelia daemon stop                   shut down cleanly (running local workers survive
                                         and are re-adopted at the next start)
  parhelia daemon status                 running?  version, pid, uptime
  parhelia daemon logs [-n 100] [-f]     its log file
  parhelia daemon install [--print] [--manager systemd|launchd]
                                         a systemd user unit or a launchd agent
  parhelia status / parhelia doctor      overall status / what needs fixing
  parhelia --version                     client and daemon versions
""", ("daemon",))

_topic("mcp", "The MCP server: Parhelia's tools for Claude Code and other MCP clients", """
`parhelia mcp-server` speaks MCP over stdin/stdout. Each tool makes the same call to
parheliad as the matching command and returns the JSON of its --json; errors come back
as tool errors carrying the code ("E201 TASK_NOT_FOUND: ..."). The daemon is started on
the first tool call when it is not running (--no-autostart or PARHELIA_NO_AUTOSTART=1
turns that off). Logs go to stderr only.

  claude mcp add -s user parhelia -- parhelia mcp-server      register it with Claude Code
  {"mcpServers": {"parhelia": {"command": "parhelia", "args": ["mcp-server"]}}}
                                         Claude Desktop: claude_desktop_config.json

Tools (read-only ones are marked for the client; (!) marks the destructive ones):
  parhelia_task_create          run a prompt; wait:true returns it finished, with progress
  parhelia_task_list            tasks, newest first                         read-only
  parhelia_task_show            one task, with usage and result             read-only
  parhelia_task_diff            what a task changed (a bounded patch)       read-only
  parhelia_task_logs            the agent's raw output, a bounded tail      read-only
  parhelia_task_pull            its changes as a branch or a patch file (never the tree)
  parhelia_task_pr              push its branch and open (or update) its pull request
  parhelia_task_cancel          (!) stop a task (checkpoint, then kill after the grace)
  parhelia_task_retry           run a finished task again from checkpoint zero
  parhelia_containers           worker containers, newest first             read-only
  parhelia_container_show       one container, with recent heartbeats       read-only
  parhelia_container_events     a container's events                        read-only
  parhelia_container_terminate  (!) end a container (its task resumes elsewhere)
  parhelia_events_list          the newest events matching filters          read-only
  parhelia_events_since         events after an id, oldest first (a cursor) read-only
  parhelia_events_replay        a container's history in order              read-only
  parhelia_events_subscribe     follow events matching filters (a live watch)
  parhelia_events_stream        long-poll: wait up to N s for events after a cursor
  parhelia_events_unsubscribe   end a subscription
  parhelia_checkpoint_create    checkpoint a session now
  parhelia_checkpoint_list      checkpoints, newest first                   read-only
  parhelia_checkpoint_diff      what changed between two checkpoints        read-only
  parhelia_checkpoint_rollback  (!) roll a session back (safety checkpoint first)
  parhelia_checkpoint_restore   (!) the earlier name of checkpoint_rollback
  parhelia_session_list         sessions, newest first                      read-only
  parhelia_session_resume       continue a stopped session in a new container
  parhelia_session_kill         (!) stop a session (it stays resumable)
  parhelia_session_attach_info  the command a person runs to attach to it   read-only
  parhelia_budget_status        the ceiling and where spending stands       read-only
  parhelia_budget_estimate      the cost range of a task's options          read-only
  parhelia_budget_set           (!) set the ceiling (lowering it pauses tasks)
  parhelia_health               status + container health summary          read-only
  parhelia_reconciler_status    the reconciler's last and next run          read-only
  parhelia_cleanup              orphaned containers; terminate:true ends them (!)
  parhelia_doctor               what Parhelia needs, and how to fix it      read-only

Resources (resources/subscribe sends notifications/resources/updated on each change):
  parhelia://tasks/{task_id}    a task (its JSON as parhelia_task_show)
  parhelia://events?task_id=..&session_id=..&container_id=..&types=a,b&level=..
                                the newest 50 matching events

Deleting tasks stays a command a person types. Try it without a client:
  npx @modelcontextprotocol/inspector --cli parhelia mcp-server --method tools/list
""", ("mcp-server",))

_topic("json", "Machine-readable output (--json) and confirmations", """
Every command that prints something takes --json (or `parhelia --json COMMAND`): stable
snake_case fields, RFC 3339 UTC times, money as `*_micros` integers plus `*_usd` exact
decimal strings, unset values as null. One shape per kind of command:

  show, create and actions on one thing   the object itself, its "id" at the top level
    (task show/create/cancel/retry,       related data rides along under its own key:
     session show/kill, checkpoint        checkpoint show adds "manifest", container show
     show/create, container show/         adds "recent_heartbeats"
     terminate, resume)
      parhelia task create "..." --json | jq -r .id
  task delete                             {"id": "t-...", "deleted": true}
  lists                                   {"tasks": [...], "next_page_token": ...}
                                          (sessions, checkpoints, containers, events,
                                          entries alike): the newest --limit items; a
                                          token (null: no more) is the next page's
                                          --page-token
  reports of an operation (diff, pull,    one object of the operation's own fields
   verify, gc, rollback, recover, status,
   dispatch, estimate)
  watch/follow streams                    one JSON object per line
  errors                                  {"error": {"code": "E201", "name": "...",
                                          "message": "..."}} on stderr

Destructive commands (task delete, session kill, checkpoint rollback, container
terminate, checkpoint gc, cleanup --terminate) ask for confirmation at a terminal and
take -y/--yes to skip it. When stdin is not a terminal (a script, a pipe) they refuse
with E102 unless -y is given, so nothing is destroyed because a pipe supplied a "y".
""")


_topic("env", "Environments: what a task's machine holds and runs before the agent", """
A task runs in its repository's environment, defined in the repository (reviewed like
code), the same file for both backends. Sources, first found wins:
  .parhelia/environment.toml     Parhelia's own file (below)
  .devcontainer/devcontainer.json  image, build.dockerfile/context/args, containerEnv,
                                 remoteEnv, onCreate/updateContent/postCreateCommand
                                 (setup), postStartCommand (start); other keys ignored
  detection                      uv.lock, poetry.lock, requirements*.txt, pyproject.toml,
                                 package-lock.json, pnpm-lock.yaml, yarn.lock,
                                 Cargo.lock, go.mod, Gemfile.lock decide a plan

.parhelia/environment.toml:
  python = "3.12"                  # or: image = "registry/tag" | dockerfile = "path"
  apt = ["libpq-dev"]              # image layers (Modal), cached by content
  run = ["pip install poetry"]     # image layers (Modal), cached by content
  env = { PYTHONUNBUFFERED = "1" }   # non-secret, for setup, start and the agent
  setup = ["uv sync --frozen"]     # each new sandbox or machine, before the agent
  start = []                       # each incarnation, after the restore
  setup_secrets = ["pypi-token"]   # Modal secrets / daemon variables: setup only
  network = "trusted"              # full | trusted | none (the agent phase)
  allow = ["pypi.example.com"]     # extra hosts for trusted
  cache = ["~/.cache/uv", "~/.npm"]  # kept per repository between tasks (Modal)
  allow_commands = ["pytest"]      # run without asking by an uncontained agent
  setup_timeout_minutes = 30

A failing setup or start command fails the task with E606 before the agent starts (no
model token is spent); its last lines are in `task show`, the whole output in
`parhelia task logs ID --setup` (setup secrets shown as ***).

On Modal an image is built once per environment and reused; a task whose image is not
built yet waits, saying "building environment". Setup runs in a sandbox of its own
(network, setup secrets); the agent's sandbox starts from its snapshot, without the
secrets, with its network level. The next task of the same environment and base commit
starts from that snapshot. Inside a sandbox the agent runs bypassPermissions unless you
chose a mode; outside one (local) it keeps the narrower default and allow_commands.

A repository's file may only narrow your own configuration: environment.network and
agent.allow_commands (see `parhelia help config`); --trust-project-config trusts it.

  parhelia env show [DIR] [--backend modal] [--gpu]   resolved, with where each part
                                                      came from, its hashes
  parhelia env build [DIR]                            build the image now (Modal)
  parhelia env list                                   images, warm starts, caches
  parhelia env prune [--older-than 7d] [--all]        forget them, delete caches
""", commands=("env",))


_topic("errors", "Error codes and exit codes", """
Every failure carries a code; `parhelia help E###` says what happened, why and how to
recover. With --json, errors are printed on stderr as
{{"error": {{"code": "E201", "name": "TASK_NOT_FOUND", "message": "..."}}}}.

Exit codes: 0 ok, 1 error, 2 usage (invalid or missing values), 3 not found,
4 budget, 5 daemon unavailable. `parhelia status` also exits 1, without an error, when
something needs attention: unhealthy or dead containers, orphans still running, tasks
recovering, or a reconciler that stopped running (its health section says which).

{error_codes}
""")


def render_topic(name: str, available: set[str]) -> str:
    """The text of topic ``name``; commands not in ``available`` are flagged."""
    topic = TOPICS[name]
    body = topic.body
    if any("{" + key + "}" in body for key in _PLACEHOLDERS):
        body = body.format(**{key: fill() for key, fill in _PLACEHOLDERS.items()})
    missing = [c for c in topic.commands if c not in available]
    if topic.commands and len(missing) == len(topic.commands):
        note = (f"Note: the `parhelia {' / '.join(missing)}` commands are not available in "
                "this version yet; this page describes how they work.\n\n")
        body = note + body
    return f"{topic.name}: {topic.summary}\n\n{body}\n"


def _gpu_types() -> str:
    from parhelia import gpus

    return ", ".join(gpus.ACCEPTED)


def _permission_modes() -> str:
    from parhelia.permissions import PERMISSION_MODES

    return "|".join(PERMISSION_MODES)


def _backends() -> str:
    from parhelia.backends import BACKENDS

    return "|".join(BACKENDS)


def _event_types() -> str:
    from parhelia import events

    lines = []
    for category in events.CATEGORIES:
        names = [k.type for k in events.CATALOGUE.values() if k.category == category]
        lines.append(f"  {category + ':':<12} " + ", ".join(names))
    return "\n".join(lines)


def _error_codes() -> str:
    from parhelia import errors

    return "\n".join(f"  {s.code} {s.name:<22} exit {int(s.exit)}  {s.what}"
                     for s in errors.CATALOGUE.values())


def render_error_code(code: str) -> str:
    """``parhelia help E201``: what happened, why, how to recover."""
    from parhelia import errors

    s = errors.CATALOGUE[code.upper()]
    return (f"{s.code} {s.name} (exit code {int(s.exit)})\n\n"
            f"What happened:\n  {s.what}\n\nWhy:\n  {s.why}\n\nHow to recover:\n  {s.recover}\n")


_PLACEHOLDERS: dict[str, Callable[[], str]] = {
    "event_types": _event_types, "error_codes": _error_codes, "gpu_types": _gpu_types,
    "permission_modes": _permission_modes, "backends": _backends,
}
"""What a topic's ``{name}`` stands for: the vocabularies are defined once, in the
contract package, and the guides list them from there."""
