"""Modal's exceptions -> the error catalogue, each with a recovery line.

Takes the SDK's ``exception`` module as an argument (the real one or the tests' fake):
this module never imports ``modal``. Modal's own message is kept (redacted, shortened),
because it is the only place that says which GPU has no capacity or which name clashed.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from parhelia.errors import ParheliaError
from parhelia.redact import redact
from parheliad.backends.base import BackendUnreachable, NoCapacity

__all__ = ["BackendUnreachable", "NoCapacity", "map_error", "modal_message"]

MAX_MODAL_MESSAGE = 300


def modal_message(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = redact(text)
    return text if len(text) <= MAX_MODAL_MESSAGE else text[:MAX_MODAL_MESSAGE - 1] + "…"


def map_error(exc: BaseException, action: str, errors: ModuleType | Any) -> ParheliaError:
    """The catalogue error for ``exc``, raised by Modal while doing ``action``."""
    said = modal_message(exc).rstrip(".")  # ("Modal server." said in a sentence of ours)
    if isinstance(exc, errors.AuthError):
        return ParheliaError(
            "E400", f"Modal refused the credentials while {action}: {said}. Recovery: run "
            "`modal token new` (or `modal token set`, or export MODAL_TOKEN_ID and "
            "MODAL_TOKEN_SECRET where the daemon runs), then `parhelia daemon stop`.",
            modal_error=type(exc).__name__)
    if isinstance(exc, errors.ResourceExhaustedError):
        return NoCapacity(f"Modal has no capacity while {action}: {said}. Recovery: nothing "
                          "to do, the task stays queued and is retried; choose another "
                          "--gpu to start sooner.")
    if isinstance(exc, (errors.ConnectionError, errors.TimeoutError, errors.InternalFailure)):
        return BackendUnreachable(f"Modal could not be reached while {action}: {said}. "
                                  "Recovery: nothing is stopped meanwhile; check the network "
                                  "and https://status.modal.com.")
    if isinstance(exc, errors.NotFoundError):
        return ParheliaError("E203", f"Modal does not know it ({action}): {said}. Recovery: "
                             "`parhelia container list` shows what the daemon knows; "
                             "`parhelia modal setup` recreates the app and volume.",
                             modal_error=type(exc).__name__)
    if isinstance(exc, errors.InvalidError):
        return ParheliaError("E503", f"Modal refused the request while {action}: {said}. "
                             "Recovery: check the task's --gpu/--cpu/--memory/--timeout and the "
                             "`modal.*` configuration (`parhelia config show`).",
                             modal_error=type(exc).__name__)
    return ParheliaError("E503", f"Modal failed while {action}: {said}. Recovery: retry with "
                         "`parhelia task retry ID`; `parhelia doctor` checks the setup.",
                         modal_error=type(exc).__name__)
