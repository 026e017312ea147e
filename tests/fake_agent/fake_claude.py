#!/usr/bin/env python3
"""A stand-in for Claude Code's headless mode (``claude -p ... --output-format stream-json``).

Speaks the stream-json protocol Parhelia reads, accepts the same argv, needs a credential
variable, and keeps a transcript under
``$CLAUDE_CONFIG_DIR/projects/<encoded cwd>/<session>.jsonl`` that ``--resume`` reads.

**Which real version it mirrors, and how that was checked.** Where the product reads the
stream it follows Claude Code 2.1.332, the version pinned in ``.ci/claude-version``, as
recorded by running that CLI against ``tests/fake_anthropic`` (docs/contracts.md, "Usage
and cost in stream-json"):

- every ``assistant`` line carries its message's input and cache tokens but
  ``output_tokens: 1``; the real output count is only in the message's ``message_delta``
  stream event (with ``--include-partial-messages``, emitted after the message's assistant
  lines and before its tool results) and in the ``result``;
- ``num_turns`` is one plus one per tool result (two parallel tool calls -> 3); the
  ``--max-turns`` limit counts API requests (``--max-turns 2`` with tool calls only ends
  ``error_max_turns`` after two requests, ``num_turns`` 3, exit 1);
- without credentials: an ``assistant`` line from model ``<synthetic>`` saying
  "Not logged in · Please run /login", then a ``result`` with subtype ``success``,
  ``is_error`` true, cost 0, ``terminal_reason`` ``api_error``; exit 1;
- at exit, SIGTERM included, a ``cost-state`` line with the session's ``totalCostUSD`` is
  appended to the transcript; ``--resume`` restores it, so a resumed run's
  ``total_cost_usd`` includes the earlier runs' cost (its ``usage`` does not).

``tests/e2e/test_fake_agent_fidelity.py`` runs this fake and the real CLI on the same
script and compares those fields, so a drift of either shows.

Scripted by the prompt: a line ``FAKE_SCRIPT: <json list>`` gives the steps
(``write``, ``turn``, ``sleep``, ``fail``, ``forever``, ``bash``, ``echo_prompt``,
``api_retry``, ``run``: an argv really run in the workspace, its output written to
``out``; ``answer``: the final text instead of "Done."). Tool steps emit an assistant
``tool_use`` line at once; their actions run and their ``tool_result`` lines follow
when the message ends (a ``turn`` step, or the end of the script), as in the real CLI.
On ``--resume`` the script continues after the last step whose results reached the
transcript.
Standard library only: it runs under any python3.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

VERSION = "2.1.332-fake"
MODEL = "claude-fake-1"
PERMISSION_MODES = {"acceptEdits", "auto", "bypassPermissions", "manual", "dontAsk", "plan",
                    "default"}
FLAGS = {"--print", "--verbose", "--fork-session", "--include-partial-messages",
         "--dangerously-skip-permissions", "--strict-mcp-config", "--no-session-persistence",
         "--continue"}
VALUES = {"--output-format", "--input-format", "--session-id", "--resume", "--permission-mode",
          "--max-turns", "--max-budget-usd", "--model", "--fallback-model", "--system-prompt",
          "--append-system-prompt", "--append-system-prompt-file", "--allowedTools",
          "--disallowedTools", "--settings", "--add-dir", "--mcp-config", "--setting-sources",
          "--plugin-dir", "--agents"}
ALIASES = {"-p": "--print", "-r": "--resume", "-c": "--continue"}
CREDENTIALS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
USAGE = {"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 10,
         "cache_read_input_tokens": 50}
# USD per million tokens: the list price the daemon's default [rates] give this model (the
# "default" family), with cache writes at 1.25x and reads at 0.1x input, so the figure it
# reports agrees with the daemon's in-flight pricing, as a real model's does.
PRICES = {"input_tokens": 5.0, "output_tokens": 25.0, "cache_creation_input_tokens": 6.25,
          "cache_read_input_tokens": 0.5}
DEFAULT_SCRIPT = [{"write": "hello.txt", "content": "hello from the fake agent\n"}, {"turn": True}]


class Fail(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def parse_args(argv: list[str]) -> tuple[dict[str, object], str | None]:
    opts: dict[str, object] = {}
    prompt = None
    i = 0
    ended = False
    while i < len(argv):
        arg = argv[i]
        if not ended and arg == "--":
            ended = True
        elif not ended and arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
            name = ALIASES.get(name, name)
            if name in FLAGS:
                opts[name] = True
            elif name in VALUES:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise Fail(f"error: option '{name} <value>' argument missing")
                    value = argv[i]
                opts[name] = value
            else:
                raise Fail(f"error: unknown option '{arg}'")
        elif prompt is None:
            prompt = arg
        else:
            raise Fail(f"error: too many arguments. Expected 1 argument but got {arg!r}.")
        i += 1
    return opts, prompt


def encode_cwd(cwd: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "-", cwd)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # noqa: UP017


class Agent:
    def __init__(self, opts: dict[str, object], prompt: str, session: str, transcript: Path,
                 resumed: bool) -> None:
        self.opts = opts
        self.prompt = prompt
        self.session = session
        self.transcript = transcript
        self.resumed = resumed
        self.cwd = os.getcwd()
        self.max_turns = int(str(opts["--max-turns"])) if "--max-turns" in opts else None
        self.partial = bool(opts.get("--include-partial-messages"))
        self.requests = 0  # API messages: what --max-turns limits
        self.tool_results = 0
        self.usage = {k: 0 for k in USAGE}
        self.base_cost = 0.0  # the session's cost restored on --resume
        self.msg_id = self._new_msg()
        self.msg_used = False
        self.pending: list[tuple[str, int, dict[str, object]]] = []
        self.parent: str | None = None
        self.started = time.monotonic()

    @staticmethod
    def _new_msg() -> str:
        return "msg_fake_" + uuid.uuid4().hex[:20]

    # -- output ---------------------------------------------------------------------------

    def out(self, obj: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def record(self, obj: dict[str, object], step: int | None = None) -> None:
        line_uuid = str(uuid.uuid4())
        entry = {"parentUuid": self.parent, "sessionId": self.session, "cwd": self.cwd,
                 "version": VERSION, "uuid": line_uuid, "timestamp": now(), **obj}
        if step is not None:
            entry["fake_step"] = step
        self.parent = line_uuid
        fd = os.open(self.transcript, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(entry) + "\n").encode())
        finally:
            os.close(fd)

    @property
    def turns(self) -> int:
        """The real CLI's num_turns: one, plus one per tool result."""
        return 1 + self.tool_results if self.requests else 0

    def stream_event(self, event: dict[str, object]) -> None:
        if self.partial:
            self.out({"type": "stream_event", "event": event, "session_id": self.session,
                      "parent_tool_use_id": None, "uuid": str(uuid.uuid4()),
                      "api_message_id": self.msg_id})

    def assistant(self, block: dict[str, object]) -> None:
        if not self.msg_used:
            self.check_turn_budget()
            self.requests += 1
            self.stream_event({"type": "message_start", "message": {
                "id": self.msg_id, "type": "message", "role": "assistant", "model": MODEL,
                "content": [], "stop_reason": None, "usage": dict(USAGE, output_tokens=1)}})
        self.msg_used = True
        # As the real CLI: the line's usage says 1 output token whatever the reply cost.
        message = {"id": self.msg_id, "type": "message", "role": "assistant", "model": MODEL,
                   "content": [block], "stop_reason": None,
                   "usage": dict(USAGE, output_tokens=1)}
        obj = {"type": "assistant", "message": message, "session_id": self.session,
               "uuid": str(uuid.uuid4()), "parent_tool_use_id": None}
        self.out(obj)
        self.record({"type": "assistant", "message": message})

    def check_turn_budget(self) -> None:
        if self.max_turns is not None and self.requests >= self.max_turns:
            self.result("error_max_turns", True, "", terminal="max_turns")
            raise SystemExit(1)

    def end_message(self) -> None:
        """The message's usage arrives (message_delta), then its tool actions run and their
        results follow."""
        if not self.msg_used:
            return
        for key, value in USAGE.items():
            self.usage[key] += value
        stop = "tool_use" if self.pending else "end_turn"
        self.stream_event({"type": "message_delta", "delta": {"stop_reason": stop,
                                                              "stop_sequence": None},
                           "usage": {"output_tokens": USAGE["output_tokens"]}})
        self.stream_event({"type": "message_stop"})
        for tool_id, step, action in self.pending:
            text = self.run_action(action)
            content = [{"tool_use_id": tool_id, "type": "tool_result", "content": text}]
            message = {"role": "user", "content": content}
            self.out({"type": "user", "message": message, "session_id": self.session,
                      "uuid": str(uuid.uuid4()), "parent_tool_use_id": None,
                      "tool_use_result": {"stdout": text}})
            self.record({"type": "user", "message": message}, step)
            self.tool_results += 1
        self.pending = []
        self.msg_id = self._new_msg()
        self.msg_used = False

    def run_action(self, action: dict[str, object]) -> str:
        kind = action["kind"]
        if kind == "write":
            path = Path(self.cwd) / str(action["path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(action["data"])  # type: ignore[arg-type]
            return f"File created successfully at: {path}"
        if kind == "run":
            proc = subprocess.run(action["argv"], cwd=self.cwd, capture_output=True,  # type: ignore[arg-type]
                                  check=False)
            text = (proc.stdout + proc.stderr).decode(errors="replace")
            if action.get("out"):
                Path(self.cwd, str(action["out"])).write_text(f"exit {proc.returncode}\n{text}")
            return text
        return "(fake agent: command not executed)"

    def tool(self, step: int, name: str, tool_input: dict[str, object],
             action: dict[str, object]) -> None:
        tool_id = "toolu_fake_" + uuid.uuid4().hex[:16]
        self.assistant({"type": "tool_use", "id": tool_id, "name": name, "input": tool_input})
        self.run_pre_tool_hooks(name, tool_input)
        self.pending.append((tool_id, step, action))

    def run_pre_tool_hooks(self, name: str, tool_input: dict[str, object]) -> None:
        """Like Claude Code: run the PreToolUse command hooks of
        ``$CLAUDE_CONFIG_DIR/settings.json`` whose matcher matches, the call as JSON on stdin."""
        settings = Path(os.environ.get("CLAUDE_CONFIG_DIR", "")) / "settings.json"
        try:
            hooks = json.loads(settings.read_text()).get("hooks", {}).get("PreToolUse", [])
        except (OSError, ValueError, AttributeError):
            return
        payload = json.dumps({"session_id": self.session, "hook_event_name": "PreToolUse",
                              "tool_name": name, "tool_input": tool_input, "cwd": self.cwd})
        for group in hooks if isinstance(hooks, list) else []:
            matcher = str(group.get("matcher") or "")
            if matcher and not re.fullmatch(matcher, name):
                continue
            for hook in group.get("hooks") or []:
                if hook.get("type") == "command":
                    subprocess.run(hook["command"], shell=True, input=payload.encode(),  # noqa: S602
                                   timeout=float(hook.get("timeout") or 60), check=False)

    def cost(self) -> float:
        """The session's cost, as the real CLI reports it: the restored one plus this run's."""
        return round(self.base_cost + sum(self.usage[k] * PRICES[k] for k in USAGE) / 1e6, 6)

    def save_cost(self) -> None:
        """Append the session's cost-state line (the real CLI does so at exit)."""
        fd = os.open(self.transcript, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps({"type": "cost-state", "sessionId": self.session,
                                      "totalCostUSD": self.cost()}) + "\n").encode())
        finally:
            os.close(fd)

    def result(self, subtype: str, is_error: bool, text: str, terminal: str) -> None:
        self.save_cost()
        self.out({
            "type": "result", "subtype": subtype, "is_error": is_error,
            "duration_ms": int((time.monotonic() - self.started) * 1000),
            "duration_api_ms": 1, "num_turns": self.turns, "result": text,
            "session_id": self.session, "total_cost_usd": self.cost(), "usage": dict(self.usage),
            "modelUsage": {MODEL: {"inputTokens": self.usage["input_tokens"],
                                   "outputTokens": self.usage["output_tokens"],
                                   "costUSD": self.cost()}},
            "permission_denials": [], "terminal_reason": terminal, "uuid": str(uuid.uuid4()),
        })

    # -- the script -----------------------------------------------------------------------

    def run(self, steps: list[dict[str, object]], first: int, earlier: int) -> int:
        self.out({"type": "system", "subtype": "init", "cwd": self.cwd,
                  "session_id": self.session, "tools": ["Bash", "Edit", "Read", "Write"],
                  "mcp_servers": [], "model": str(self.opts.get("--model") or MODEL),
                  "permissionMode": str(self.opts.get("--permission-mode") or "default"),
                  "slash_commands": [], "apiKeySource": "ANTHROPIC_API_KEY",
                  "claude_code_version": VERSION, "output_style": "default", "agents": [],
                  "skills": [], "plugins": [], "uuid": str(uuid.uuid4())})
        self.record({"type": "user", "message": {"role": "user", "content": self.prompt},
                     "fake_prompt": True})
        answer = next((str(s["answer"]) for s in steps if "answer" in s), "Done.")
        for index in range(first, len(steps)):
            step = steps[index]
            if "write" in step:
                content = str(step.get("content", ""))
                self.tool(index, "Write", {"file_path": os.path.join(self.cwd, str(step["write"])),
                                           "content": content},
                          {"kind": "write", "path": step["write"], "data": content.encode()})
            elif "echo_prompt" in step:
                target = str(step["echo_prompt"])
                self.tool(index, "Write", {"file_path": os.path.join(self.cwd, target),
                                           "content": self.prompt},
                          {"kind": "write", "path": target,
                           "data": os.fsencode(self.prompt)})
            elif "run" in step:
                argv = [str(a) for a in step["run"]]  # type: ignore[attr-defined]
                self.tool(index, "Bash", {"command": " ".join(argv),
                                          "description": "fake command"},
                          {"kind": "run", "argv": argv, "out": str(step.get("out", ""))})
            elif "bash" in step:
                self.tool(index, "Bash", {"command": str(step["bash"]),
                                          "description": "fake command"}, {"kind": "bash"})
            elif step.get("turn"):
                self.end_message()
                self.record({"type": "system", "subtype": "fake_progress"}, index)
            elif "sleep" in step:
                time.sleep(float(step["sleep"]))  # type: ignore[arg-type]
            elif "wait_file" in step:  # a gate the test opens (bounded: never hangs a run)
                gate = Path(str(step["wait_file"]))
                deadline = time.monotonic() + 120
                while not gate.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            elif "api_retry" in step:
                self.out({"type": "system", "subtype": "api_retry", "attempt": 1,
                          "max_retries": 10, "retry_delay_ms": 500,
                          "error_status": step["api_retry"], "error": "fake",
                          "session_id": self.session, "uuid": str(uuid.uuid4())})
            elif "answer" in step:  # the final text (default "Done.")
                pass
            elif "fail" in step:
                self.end_message()
                self.result("error_during_execution", True, str(step["fail"]),
                            terminal="error")
                return 1
            elif step.get("forever"):
                self.end_message()
                n = 0
                while True:
                    n += 1
                    self.tool(index, "Bash", {"command": f"echo tick {n}"}, {"kind": "bash"})
                    self.end_message()
                    time.sleep(0.02)
            else:
                raise Fail(f"fake agent: unknown script step {step!r}")
        self.end_message()
        text = answer
        if self.resumed:
            text += f" Resumed with {earlier} earlier messages."
            Path(self.cwd, ".fake_agent_resumed").write_text(str(earlier))
        self.assistant({"type": "text", "text": text})
        self.end_message()
        self.result("success", False, text, terminal="completed")
        return 0


def refuse_resume(session: str) -> None:
    """Like Claude Code 2.1.332 for a missing, empty or unreadable transcript: a result line
    (error_during_execution, no turn, no system/init before it), the reason on stderr, exit 1."""
    sys.stdout.write(json.dumps({
        "type": "result", "subtype": "error_during_execution", "duration_ms": 0,
        "is_error": True, "num_turns": 0, "session_id": session, "total_cost_usd": 0,
        "usage": {k: 0 for k in USAGE}, "permission_denials": []}) + "\n")
    raise Fail(f"No conversation found with session ID: {session}")


def script_from(prompt: str) -> list[dict[str, object]] | None:
    for line in prompt.splitlines():
        if line.startswith("FAKE_SCRIPT:"):
            steps = json.loads(line[len("FAKE_SCRIPT:"):])
            if not isinstance(steps, list):
                raise Fail("fake agent: FAKE_SCRIPT must be a JSON list")
            return steps
    return None


def main(argv: list[str]) -> int:
    opts, prompt = parse_args(argv)
    if not opts.get("--print"):
        raise Fail("fake agent: only -p/--print mode is implemented")
    fmt = opts.get("--output-format", "text")
    if fmt != "stream-json":
        raise Fail(f"fake agent: --output-format {fmt} is not implemented")
    if not opts.get("--verbose"):
        raise Fail("Error: When using --print, --output-format=stream-json requires --verbose")
    if "--session-id" in opts and "--resume" in opts and not opts.get("--fork-session"):
        raise Fail("Error: --session-id can only be used with --continue or --resume if "
                   "--fork-session is also specified.")
    mode = str(opts.get("--permission-mode", "default"))
    if mode not in PERMISSION_MODES:
        raise Fail(f"error: option '--permission-mode <mode>' argument '{mode}' is invalid.")
    bypass = mode == "bypassPermissions" or opts.get("--dangerously-skip-permissions")
    if bypass and os.geteuid() == 0 and os.environ.get("IS_SANDBOX") != "1":
        raise Fail("--dangerously-skip-permissions cannot be used with root/sudo privileges "
                   "for security reasons")
    for name in ("--max-turns", "--max-budget-usd"):
        if name in opts:
            try:
                float(str(opts[name]))
            except ValueError:
                raise Fail(f"error: {name} must be a number") from None
    if prompt is None and not sys.stdin.isatty():
        prompt = sys.stdin.read()  # as the real CLI: no prompt argument -> stdin
    if not prompt:
        raise Fail("Error: Input must be provided either through stdin or as a prompt argument "
                   "when using --print")

    config = Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    project = config / "projects" / encode_cwd(os.getcwd())
    project.mkdir(parents=True, exist_ok=True)
    resume = opts.get("--resume")
    session = str(resume or opts.get("--session-id") or uuid.uuid4())
    transcript = project / f"{session}.jsonl"
    earlier = 0
    done = -1
    first_prompt = None
    base_cost = 0.0
    if resume:
        if not transcript.is_file():
            refuse_resume(session)
        for line in transcript.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            if entry.get("type") in ("user", "assistant") and entry.get("uuid"):
                earlier += 1
            if entry.get("fake_prompt") and first_prompt is None:
                first_prompt = entry["message"]["content"]
            if isinstance(entry.get("fake_step"), int):
                done = max(done, entry["fake_step"])
            if entry.get("type") == "cost-state" and entry.get("sessionId") == session:
                base_cost = float(entry.get("totalCostUSD") or 0)
        if earlier == 0:  # nothing it can chain: the CLI says the same as for no file
            refuse_resume(session)
    elif transcript.exists():
        raise Fail(f"Error: Session ID {session} is already in use.")

    agent = Agent(opts, prompt, session, transcript, bool(resume))
    agent.base_cost = base_cost
    if not any(os.environ.get(name, "").strip() for name in CREDENTIALS):
        agent.out({"type": "system", "subtype": "init", "cwd": os.getcwd(), "session_id": session,
                   "tools": [], "mcp_servers": [], "model": MODEL, "permissionMode": mode,
                   "claude_code_version": VERSION, "apiKeySource": "none"})
        agent.requests = 1  # the real CLI counts the synthetic reply as its one turn
        zero = dict.fromkeys(USAGE, 0)
        agent.out({"type": "assistant", "message": {
            "id": str(uuid.uuid4()), "model": "<synthetic>", "role": "assistant",
            "type": "message", "stop_reason": "stop_sequence", "usage": zero,
            "content": [{"type": "text", "text": "Not logged in · Please run /login"}]},
            "parent_tool_use_id": None, "session_id": session, "uuid": str(uuid.uuid4())})
        agent.result("success", True, "Not logged in · Please run /login", terminal="api_error")
        return 1

    def on_term(signum: int, frame: object) -> None:
        agent.save_cost()  # as the real CLI: its cost survives a SIGTERM
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    steps = script_from(prompt)
    if steps is None and first_prompt is not None:
        steps = script_from(first_prompt)
    if steps is None:
        steps = DEFAULT_SCRIPT
    return agent.run(steps, done + 1, earlier)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Fail as exc:
        sys.stderr.write(f"{exc}\n")
        sys.exit(exc.code)
