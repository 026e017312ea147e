"""The one error catalogue of Parhelia.

Every failure a user can see carries one of these codes: the daemon maps it to a
gRPC status (with the code in trailing metadata), the CLI maps it to an exit code,
``parhelia help E###`` explains it, and the MCP tools report it. Pure Python, no
dependencies: the worker ships it into the sandbox image.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, TypeGuard, get_args

METADATA_KEY = "parhelia-error-code"
"""Trailing-metadata key carrying the E-code on a failed RPC."""


class Exit(IntEnum):
    """CLI exit codes."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    BUDGET = 4
    DAEMON_UNAVAILABLE = 5


Code = Literal["E100", "E101", "E102", "E103", "E104",
               "E200", "E201", "E202", "E203",
               "E300", "E301",
               "E400", "E401", "E402", "E403",
               "E500", "E501", "E502", "E503", "E504", "E505", "E506",
               "E600", "E601", "E602", "E603", "E604", "E605", "E606", "E607", "E608", "E609",
               "E900"]
"""An E-code of the catalogue, as a type: mypy refuses ``ParheliaError("E10l", ...)``.
The values are the catalogue's codes (``tests/unit/test_vocabularies.py`` checks both
agree); a new entry of :data:`_SPECS` adds its code here."""

CODES: tuple[Code, ...] = get_args(Code)


def is_code(value: object) -> TypeGuard[Code]:
    """Whether ``value`` is a code of the catalogue (text from outside: a reply's metadata,
    a result file, ``parhelia help E###``)."""
    return value in CODES


def code_of(value: object, default: Code = "E900") -> Code:
    """The catalogue code ``value`` is, else ``default``."""
    return value if is_code(value) else default


@dataclass(frozen=True)
class ErrorSpec:
    code: Code
    name: str
    grpc_status: str  # name of a grpc.StatusCode member; kept as text so this module needs no grpc
    exit: Exit
    what: str
    why: str
    recover: str


_SPECS: tuple[ErrorSpec, ...] = (
    ErrorSpec(
        "E100", "VALIDATION_ERROR", "INVALID_ARGUMENT", Exit.USAGE,
        "A request or file did not pass validation.",
        "A value has the wrong shape, or several values contradict each other.",
        "Read the message: it names the field or key. Fix it and run the command again.",
    ),
    ErrorSpec(
        "E101", "INVALID_ARGUMENT", "INVALID_ARGUMENT", Exit.USAGE,
        "An argument, option or configuration key has an invalid value.",
        "The value is outside what Parhelia accepts: an unknown GPU type, a negative or "
        "overflowing number, a malformed duration or id, a path that is not allowed, an "
        "unknown config key...",
        "The message names the argument, option or key and what is accepted. "
        "`parhelia COMMAND --help` lists a command's options; `parhelia config show` shows "
        "the configuration keys and their values.",
    ),
    ErrorSpec(
        "E102", "MISSING_REQUIRED", "INVALID_ARGUMENT", Exit.USAGE,
        "A required argument or value is missing.",
        "The command needs a value you did not give (for example an empty prompt).",
        "Give the missing value; `parhelia COMMAND --help` lists what is required.",
    ),
    ErrorSpec(
        "E103", "ALREADY_EXISTS", "ALREADY_EXISTS", Exit.ERROR,
        "What the command would create already exists.",
        "A name you gave (or the default one, such as the branch `parhelia/<task id>` of "
        "`task pull`) is taken, and Parhelia never overwrites it.",
        "Choose another name (`parhelia task pull ID --branch NAME`), or delete the existing "
        "one yourself if you no longer need it (`git branch -D NAME`).",
    ),
    ErrorSpec(
        "E104", "AMBIGUOUS_ID", "INVALID_ARGUMENT", Exit.USAGE,
        "An id prefix matches more than one thing.",
        "Ids may be shortened to any unique prefix; this one is shared by several.",
        "Use one of the candidates listed in the message, or a longer prefix.",
    ),
    ErrorSpec(
        "E200", "SESSION_NOT_FOUND", "NOT_FOUND", Exit.NOT_FOUND,
        "No session has that id.",
        "The id is mistyped, or the session was deleted with its task (an ambiguous prefix "
        "is E104).",
        "List sessions with `parhelia session list` and use a full id or a longer prefix; a "
        "task id (t-...) stands for its session.",
    ),
    ErrorSpec(
        "E201", "TASK_NOT_FOUND", "NOT_FOUND", Exit.NOT_FOUND,
        "No task has that id.",
        "The id is mistyped, or the task was deleted (an ambiguous prefix is E104).",
        "List tasks with `parhelia task list` and use a full id or a longer prefix.",
    ),
    ErrorSpec(
        "E202", "CHECKPOINT_NOT_FOUND", "NOT_FOUND", Exit.NOT_FOUND,
        "No checkpoint has that id.",
        "The id is mistyped, or the checkpoint was removed by `parhelia checkpoint gc`.",
        "List checkpoints with `parhelia checkpoint list [SESSION]`.",
    ),
    ErrorSpec(
        "E203", "CONTAINER_NOT_FOUND", "NOT_FOUND", Exit.NOT_FOUND,
        "No container has that id.",
        "The id is mistyped, or it belongs to a deleted task.",
        "List containers with `parhelia container list`.",
    ),
    ErrorSpec(
        "E300", "BUDGET_EXCEEDED", "RESOURCE_EXHAUSTED", Exit.BUDGET,
        "The budget ceiling would be crossed.",
        "Spent plus reserved money, plus this task's estimate, is above the ceiling; or a "
        "running task reached the ceiling and was paused with a checkpoint.",
        "See `parhelia budget show`. Raise the ceiling with `parhelia budget set AMOUNT`: "
        "paused tasks resume from their checkpoints, pending ones are dispatched.",
    ),
    ErrorSpec(
        "E301", "BUDGET_WARNING", "OK", Exit.OK,
        "Spending crossed the warning threshold.",
        "Used money reached `budget.warning_threshold_percent` of the ceiling.",
        "Nothing stops yet. Check `parhelia budget show` and `parhelia budget history`; raise "
        "the ceiling or cancel tasks you do not need.",
    ),
    ErrorSpec(
        "E400", "UNAUTHORIZED", "UNAUTHENTICATED", Exit.ERROR,
        "A credential is missing or was refused: the agent's, or the GitHub token.",
        "None of ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN or CLAUDE_CODE_OAUTH_TOKEN reached the "
        "worker, or the API refused the one it had; or a private repository (`task create "
        "--repo`) or a pull request (`task pr`) needs a GitHub token the daemon does not "
        "have, or GitHub refused it.",
        "The agent: `parhelia auth set` (no restart), or export ANTHROPIC_API_KEY (or "
        "CLAUDE_CODE_OAUTH_TOKEN) where the daemon runs and `parhelia daemon stop`; then "
        "`parhelia task retry ID`. Modal workers get it as an ephemeral secret, or from the "
        "Modal secret `anthropic-api-key` (https://modal.com/secrets). A Modal token Modal "
        "refuses: `parhelia modal setup --token-id ID --token-secret SECRET`. GitHub: "
        "`parhelia auth set --github`, GITHUB_TOKEN or GH_TOKEN where the daemon runs, or "
        "`gh auth login`; for clones of Modal tasks also `modal secret create github-token "
        "GITHUB_TOKEN=...`. `parhelia auth status` shows what the daemon has.",
    ),
    ErrorSpec(
        "E401", "FORBIDDEN", "PERMISSION_DENIED", Exit.ERROR,
        "The operation is not allowed.",
        "The target is not owned by this daemon, or a file permission forbids it.",
        "Check ownership and permissions of the path in the message.",
    ),
    ErrorSpec(
        "E402", "TOKEN_EXPIRED", "UNAUTHENTICATED", Exit.ERROR,
        "A credential has expired.",
        "An OAuth token or a Modal token is no longer valid.",
        "Renew it (`claude setup-token`; for Modal, a new token from "
        "https://modal.com/settings/tokens: `parhelia modal setup --token-id ID "
        "--token-secret SECRET`) and retry.",
    ),
    ErrorSpec(
        "E403", "LIMITED_FOR_AGENTS", "PERMISSION_DENIED", Exit.ERROR,
        "An agent asked for more than you let agents decide.",
        "The request came through the MCP bridge (an agent's tool call), and raising the "
        "budget ceiling that far is yours to decide: `budget.agent_max_ceiling_usd` caps "
        "what an agent may set (0: it may lower the ceiling, never raise it).",
        "Raise it yourself with `parhelia budget set AMOUNT`, or set "
        "`budget.agent_max_ceiling_usd` in your config file.",
    ),
    ErrorSpec(
        "E500", "RESOURCE_UNAVAILABLE", "UNAVAILABLE", Exit.ERROR,
        "A resource the task needs is not available.",
        "A program (such as the `claude` binary), a backend, or disk space is missing.",
        "The message says which. Install Claude Code with "
        "`npm install -g @anthropic-ai/claude-code`, or set `agent.command` in config; "
        "`parhelia doctor` checks everything at once.",
    ),
    ErrorSpec(
        "E501", "TIMEOUT", "DEADLINE_EXCEEDED", Exit.ERROR,
        "An operation ran out of time.",
        "A task reached its `--timeout`, or the daemon did not answer in time.",
        "Give the task a longer `--timeout`, or `parhelia resume SESSION` to continue from the "
        "last checkpoint.",
    ),
    ErrorSpec(
        "E502", "NETWORK_ERROR", "UNAVAILABLE", Exit.ERROR,
        "A network operation failed.",
        "A remote service could not be reached.",
        "Check connectivity and retry; the task's checkpoints are kept.",
    ),
    ErrorSpec(
        "E503", "MODAL_ERROR", "UNAVAILABLE", Exit.ERROR,
        "Modal refused or failed an operation.",
        "Modal refused the request (an unknown GPU type, a name another daemon holds) or "
        "failed it in a way that will not pass by itself.",
        "Read Modal's message in the error. `parhelia doctor --check-modal` checks the token, "
        "app, volume and secret against Modal now; `parhelia modal setup --token-id ID "
        "--token-secret SECRET` stores a token.",
    ),
    ErrorSpec(
        "E504", "DAEMON_UNAVAILABLE", "UNAVAILABLE", Exit.DAEMON_UNAVAILABLE,
        "The Parhelia daemon is not reachable.",
        "parheliad is not running (and autostart is off or failed), or the socket path differs "
        "between the CLI and the daemon.",
        "Start it with `parhelia daemon start` (or install the service: `parhelia daemon "
        "install`). Check `PARHELIA_SOCKET`/`--socket` and `parhelia daemon logs`.",
    ),
    ErrorSpec(
        "E505", "SANDBOX_START_FAILED", "FAILED_PRECONDITION", Exit.ERROR,
        "Modal could not start the task's sandbox.",
        "The sandbox failed before its command ran (Modal's INIT_FAILURE: an image that "
        "cannot be pulled or built, a volume that cannot be mounted); Modal's own message "
        "says which.",
        "Fix what Modal's message names, then `parhelia task retry ID`; `parhelia modal "
        "setup` rebuilds the worker image and checks the volume.",
    ),
    ErrorSpec(
        "E506", "MODAL_VOLUME_GONE", "FAILED_PRECONDITION", Exit.ERROR,
        "The Modal volume Parhelia uses no longer exists.",
        "It was deleted outside Parhelia (`modal volume delete`, the dashboard) after the "
        "daemon opened it. Parhelia never recreates it empty behind your back: running "
        "sandboxes and checkpoints on it are gone with it.",
        "`parhelia modal setup` creates the volume again (`modal.volume_name`), then "
        "`parhelia daemon stop` so the daemon opens the new one; tasks resume from the "
        "checkpoints the daemon holds locally.",
    ),
    ErrorSpec(
        "E600", "CHECKPOINT_FAILED", "DATA_LOSS", Exit.ERROR,
        "A checkpoint could not be written, read or restored.",
        "The manifest was refused as unsafe (paths leaving the workspace, bad hashes), a blob is "
        "missing or corrupt, or the disk is full.",
        "Run `parhelia checkpoint verify CP`; restore an older checkpoint with "
        "`parhelia checkpoint rollback CP`. Nothing was written by a refused restore.",
    ),
    ErrorSpec(
        "E601", "ATTACH_FAILED", "FAILED_PRECONDITION", Exit.ERROR,
        "Could not attach to the session.",
        "The session is not interactive, or its container is not running.",
        "Check `parhelia session show SESSION`; start interactive tasks with `--interactive`.",
    ),
    ErrorSpec(
        "E602", "DISPATCH_FAILED", "UNAVAILABLE", Exit.ERROR,
        "A task could not be started on its backend.",
        "The backend refused to launch the worker (resources, credentials, image).",
        "See `parhelia task show ID` and `parhelia events list --task ID`; fix the cause and "
        "`parhelia task retry ID`.",
    ),
    ErrorSpec(
        "E603", "DISPATCH_REJECTED", "FAILED_PRECONDITION", Exit.ERROR,
        "The operation is not allowed in the task's current state.",
        "For example cancelling a finished task, or retrying a running one.",
        "Check the state with `parhelia task show ID`.",
    ),
    ErrorSpec(
        "E604", "AGENT_FAILED", "ABORTED", Exit.ERROR,
        "The agent finished with an error.",
        "Claude Code ended the run with an error result (it ran out of turns or of its "
        "per-task budget, an API call kept failing, or it crashed).",
        "Read `parhelia task show ID` and `parhelia task logs ID`. Give more room with "
        "`--max-turns`/`--max-cost`, or continue the conversation with `parhelia resume SESSION`.",
    ),
    ErrorSpec(
        "E605", "NO_CHANGES", "FAILED_PRECONDITION", Exit.ERROR,
        "The task changed nothing, so there is nothing to bring back.",
        "Its latest checkpoint holds the same files as the workspace it started from: no "
        "branch or patch is made from an empty change.",
        "Check what the agent did with `parhelia task show ID` and `parhelia task logs ID`; "
        "`parhelia resume SESSION` continues the conversation.",
    ),
    ErrorSpec(
        "E606", "SETUP_FAILED", "FAILED_PRECONDITION", Exit.ERROR,
        "A setup or start command of the task's environment failed.",
        "The repository's environment (.parhelia/environment.toml, its devcontainer.json, or "
        "what was detected from its lockfiles) runs commands before the agent starts; one "
        "exited with an error or ran past its time. The agent never started, so no model "
        "token was spent; the workspace was checkpointed as the setup left it.",
        "Read the failing step's last lines in `parhelia task show ID` and the whole output "
        "with `parhelia task logs ID --setup`; `parhelia env show DIR` prints the resolved "
        "environment and where each part came from. Fix the command (or the file), then "
        "`parhelia task retry ID`.",
    ),
    ErrorSpec(
        "E607", "PUSH_REJECTED", "FAILED_PRECONDITION", Exit.ERROR,
        "The remote refused the push of the task's branch.",
        "A branch protection rule or a hook of the remote refused it, or the remote branch "
        "holds commits Parhelia did not push there (pushing would drop them). The message "
        "carries the remote's reason.",
        "Push to another branch with `parhelia task pr ID --branch NAME`, or change the "
        "rule, or delete the remote branch if its commits are not wanted; `parhelia task "
        "pull ID` brings the branch to your clone instead.",
    ),
    ErrorSpec(
        "E608", "FORGE_ERROR", "FAILED_PRECONDITION", Exit.ERROR,
        "The forge (GitHub) refused to open or update the pull request.",
        "Its API answered with an error no other code describes (an invalid base branch, "
        "no commits between base and branch, a server error); the message carries its "
        "words.",
        "Fix what the message names (for example `--base BRANCH`) and run `parhelia task pr "
        "ID` again: the branch is already pushed and the pull request is updated, not "
        "duplicated.",
    ),
    ErrorSpec(
        "E609", "SANDBOX_UNAVAILABLE", "FAILED_PRECONDITION", Exit.ERROR,
        "The task's agent could not be contained, and the configuration requires it.",
        "`sandbox.local = \"required\"` and bubblewrap is missing here or cannot create a "
        "container (no user namespaces for this user, a seccomp or AppArmor policy).",
        "Install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`) and check "
        "`parhelia doctor`; or set `sandbox.local = \"auto\"` to run uncontained where it "
        "cannot be made (the task says so).",
    ),
    ErrorSpec(
        "E900", "INTERNAL_ERROR", "INTERNAL", Exit.ERROR,
        "Parhelia hit an unexpected internal error.",
        "A bug. The daemon logged the details under the request id shown.",
        "Look for the request id in `parhelia daemon logs`, and report it with those lines.",
    ),
)

CATALOGUE: dict[str, ErrorSpec] = {s.code: s for s in _SPECS}
BY_NAME: dict[str, ErrorSpec] = {s.name: s for s in _SPECS}


def spec(code: str) -> ErrorSpec:
    """The catalogue entry for ``code``; unknown codes read as E900."""
    return CATALOGUE.get(code.upper(), CATALOGUE["E900"])


class ParheliaError(Exception):
    """An expected failure with a catalogue code and a message safe to show users.

    The message must never contain secrets or raw exception text from libraries.
    """

    def __init__(self, code: Code, message: str, **details: object) -> None:
        if code not in CATALOGUE:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def spec(self) -> ErrorSpec:
        return CATALOGUE[self.code]

    def __str__(self) -> str:
        return f"{self.code} {self.spec.name}: {self.message}"


def invalid(message: str, **details: object) -> ParheliaError:
    return ParheliaError("E101", message, **details)


def missing(message: str, **details: object) -> ParheliaError:
    return ParheliaError("E102", message, **details)
