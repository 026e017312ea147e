"""Modal's exceptions -> the error catalogue, each with a recovery line.

Every exception class of ``modal.exception`` (modal 1.6.4) has a kind in ``KINDS``, by
name; a class not named there takes its nearest named base's kind, and a test over the
installed SDK's classes fails on any class the table does not name (an SDK upgrade shows
what is new). The kinds, and what the daemon does with them:

- ``unreachable``: service trouble — what modal 1.6.4 raises for UNAVAILABLE,
  DEADLINE_EXCEEDED, CANCELLED and UNKNOWN (``ServiceError``, after its own ~0.7 s of
  retries), INTERNAL (``InternalError``), a refused or cut connection, a call that does
  not answer: ``BackendUnreachable``. Nothing is stopped or relaunched meanwhile, a launch
  is re-queued with a backoff, a stop is retried until the sandbox ends.
- ``no_capacity``: ``NoCapacity`` (the task waits, re-queued).
- ``auth`` (E400) and ``permission`` (E401): the token, with the command that fixes it.
- ``not_found`` (E203), ``ended`` (``SandboxEnded``, E203: an exec on a sandbox that
  finished is the sandbox's end, not an error), ``invalid`` and ``failed`` (E503).

Takes the SDK's ``exception`` module as an argument (the real one or the tests' fake):
this module never imports ``modal``. Modal's own message is kept (redacted, shortened),
because it is the only place that says which GPU has no capacity or which name clashed.
"""

from __future__ import annotations

import asyncio
import socket
from types import ModuleType
from typing import Any

from parhelia.errors import ParheliaError
from parhelia.redact import redact
from parheliad.backends.base import BackendUnreachable, NoCapacity

__all__ = ["KINDS", "BackendUnreachable", "NoCapacity", "SandboxEnded", "kind_of", "map_error",
           "modal_message", "unreachable"]

MAX_MODAL_MESSAGE = 300
UNREACHABLE, NO_CAPACITY, AUTH, PERMISSION = "unreachable", "no_capacity", "auth", "permission"
NOT_FOUND, ENDED, INVALID, FAILED = "not_found", "ended", "invalid", "failed"

KINDS: dict[str, str] = {
    # the service's trouble: nothing is concluded about the sandboxes
    "ServiceError": UNREACHABLE, "InternalError": UNREACHABLE, "InternalFailure": UNREACHABLE,
    "ConnectionError": UNREACHABLE, "TimeoutError": UNREACHABLE, "ClientClosed": UNREACHABLE,
    "MountUploadTimeoutError": UNREACHABLE, "VolumeUploadTimeoutError": UNREACHABLE,
    "InteractiveTimeoutError": UNREACHABLE, "LogsFetchError": UNREACHABLE,
    # a block transfer the service refused or cut (modal.volume: a 5xx other than 503)
    "ExecutionError": UNREACHABLE,
    "ResourceExhaustedError": NO_CAPACITY,
    "AuthError": AUTH,
    "PermissionDeniedError": PERMISSION,
    "NotFoundError": NOT_FOUND,
    # the sandbox finished: its end, not a failure of the call
    "ConflictError": ENDED, "SandboxTerminatedError": ENDED, "SandboxTimeoutError": ENDED,
    "InvalidError": INVALID, "AlreadyExistsError": INVALID, "RequestSizeError": INVALID,
    "Error": FAILED, "RemoteError": FAILED, "ImageBuildError": FAILED,
    "UnimplementedError": FAILED, "VersionError": FAILED, "DataLossError": FAILED,
    "ExecTimeoutError": FAILED, "FunctionTimeoutError": FAILED, "OutputExpiredError": FAILED,
    "DeserializationError": FAILED, "SerializationError": FAILED,
    "WorkspaceManagementError": FAILED, "SnapshotCreationError": FAILED,
    "SandboxFilesystemError": FAILED, "SandboxFilesystemNotFoundError": FAILED,
    "SandboxFilesystemDirectoryNotEmptyError": FAILED,
    "SandboxFilesystemIsADirectoryError": FAILED,
    "SandboxFilesystemNotADirectoryError": FAILED,
    "SandboxFilesystemPermissionError": FAILED, "SandboxFilesystemFileTooLargeError": FAILED,
    "SandboxFilesystemPathAlreadyExistsError": FAILED,
    "ModuleNotMountable": FAILED,  # an image's local source the SDK cannot find
}
"""The kind of every exception class of ``modal.exception`` that a call can raise."""

NOT_RAISED = frozenset({"_GRPCErrorWrapper", "_CliUserExecutionError", "InputCancellation",
                        "DeprecationError", "ServerWarning", "AsyncUsageWarning",
                        "InternalAPIWarning"})
"""Classes of ``modal.exception`` no call of ours raises: bases of others, the CLI's and
a Function container's own, and warnings."""

BUILTIN_UNREACHABLE = (ConnectionError, TimeoutError, asyncio.TimeoutError, socket.gaierror)
"""What the SDK's streams raise as builtins once their retries are spent (the task command
router's stdio raises ``ConnectionError(str(e))``)."""

TRANSPORT_UNREACHABLE = frozenset({("grpclib.exceptions", "StreamTerminatedError")})
"""The transport's exceptions (module, class) that modal 1.6.4 lets out as they are: a
connection cut during the last attempt of a call is re-raised unchanged once its retries
are spent (``modal/_utils/grpc_utils.py``, ``process_exception_before_retry``). Named, not
imported: this module never imports the SDK or its transport."""


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` is the network's failure rather than Modal's answer: a builtin the
    SDK's streams raise, or its transport's cut connection."""
    return isinstance(exc, BUILTIN_UNREACHABLE) or any(
        (cls.__module__, cls.__name__) in TRANSPORT_UNREACHABLE for cls in type(exc).__mro__)


TOKEN_FIX = ("`parhelia modal setup --token-id ID --token-secret SECRET` with a token from "  # noqa: S105
             "https://modal.com/settings/tokens (or export MODAL_TOKEN_ID and "
             "MODAL_TOKEN_SECRET where the daemon runs), then `parhelia daemon stop`")


class SandboxEnded(ParheliaError):
    """A call on a sandbox that already finished (an exec refused with
    ``ConflictError``/``NotFoundError``, a wait that saw it end): its end, which the
    caller reads with a poll, not a failure."""

    def __init__(self, message: str) -> None:
        super().__init__("E203", message)


def modal_message(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = redact(text)
    return text if len(text) <= MAX_MODAL_MESSAGE else text[:MAX_MODAL_MESSAGE - 1] + "…"


def kind_of(exc: BaseException) -> str:
    """The kind of an exception raised by a Modal call (its class or nearest named base)."""
    for cls in type(exc).__mro__:
        if cls.__module__.endswith("exception") and cls.__name__ in KINDS:
            return KINDS[cls.__name__]
    return UNREACHABLE if unreachable(exc) else FAILED


def map_error(exc: BaseException, action: str, errors: ModuleType | Any = None) -> ParheliaError:
    """The catalogue error for ``exc``, raised by Modal while doing ``action``."""
    said = modal_message(exc).rstrip(".")  # ("Modal server." said in a sentence of ours)
    kind = kind_of(exc)
    name = type(exc).__name__
    if kind == UNREACHABLE:
        return BackendUnreachable(f"Modal could not be reached while {action}: {said}. "
                                  "Recovery: nothing is stopped meanwhile and it is tried "
                                  "again; check the network and https://status.modal.com.")
    if kind == NO_CAPACITY:
        return NoCapacity(f"Modal has no capacity while {action}: {said}. Recovery: nothing "
                          "to do, the task stays queued and is retried; choose another "
                          "--gpu to start sooner.")
    if kind == AUTH:
        return ParheliaError("E400", f"Modal refused the credentials while {action}: {said}. "
                             f"Recovery: {TOKEN_FIX}.", modal_error=name)
    if kind == PERMISSION:
        return ParheliaError("E401", f"Modal's token may not do this ({action}): {said}. "
                             "Recovery: use a token of the workspace that holds the "
                             "`modal.app_name` app and `modal.volume_name` volume "
                             f"({TOKEN_FIX}), or ask the workspace's owner for access.",
                             modal_error=name)
    if kind == ENDED:
        return SandboxEnded(f"the sandbox has already finished ({action}): {said}")
    if kind == NOT_FOUND:
        return ParheliaError("E203", f"Modal does not know it ({action}): {said}. Recovery: "
                             "`parhelia container list` shows what the daemon knows; "
                             "`parhelia modal setup` recreates the app and volume.",
                             modal_error=name)
    if name == "ImageBuildError":
        image_id = getattr(exc, "image_id", "") or ""
        where = f" Its log: `modal image logs {image_id}`." if image_id else ""
        return ParheliaError("E606", f"the environment's image did not build ({action}): "
                             f"{said}.{where} Recovery: fix the base, apt or run layers of the "
                             "environment (`parhelia env show`), then `parhelia env build`.",
                             modal_error=name)
    if kind == INVALID:
        return ParheliaError("E503", f"Modal refused the request while {action}: {said}. "
                             "Recovery: check the task's --gpu/--cpu/--memory/--timeout and the "
                             "`modal.*` configuration (`parhelia config show`).",
                             modal_error=name)
    return ParheliaError("E503", f"Modal failed while {action}: {said}. Recovery: retry with "
                         "`parhelia task retry ID`; `parhelia doctor --check-modal` checks the "
                         "setup against Modal now.", modal_error=name)
