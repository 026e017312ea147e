"""Unary calls to parheliad by service and method name, over :mod:`parhelia_cli.unary`.

The part of reaching the daemon that needs no Click: open a connection, say hello
(``GetVersion``), make a call and decode its answer. Failures are raised as they come
(:class:`unary.RpcFailure`); :func:`rpc_error` says which E-code each is (the catalogue
is imported then), for :mod:`parhelia_cli.client` and :mod:`parhelia_cli.quick`. The
caller checks the socket's owner first (:func:`parhelia.ownership.socket_problem`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from parhelia import __version__
from parhelia_cli import lean, unary

if TYPE_CHECKING:
    from parhelia_cli.errors import CliError

PROBE_TIMEOUT = 3.0
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

STUBS = {
    "system": ("system", "SystemService"),
    "tasks": ("tasks", "TaskService"),
    "events": ("events", "EventService"),
    "config": ("config", "ConfigService"),
    "sessions": ("sessions", "SessionService"),
    "checkpoints": ("checkpoints", "CheckpointService"),
    "containers": ("containers", "ContainerService"),
    "budget": ("budget", "BudgetService"),
    "reconciler": ("reconciler", "ReconcilerService"),
    "environments": ("environments", "EnvironmentService"),
}
"""Service key (``api.Api``'s attribute) -> (generated module, service name)."""


def address(socket: object) -> str:
    return f"unix://{socket}"


# gRPC status -> E-code, for failures that carry no Parhelia code in their metadata.
_STATUS_CODES = {
    "INVALID_ARGUMENT": "E101",
    "NOT_FOUND": "E900",
    "RESOURCE_EXHAUSTED": "E300",
    "DEADLINE_EXCEEDED": "E501",
    "UNAUTHENTICATED": "E400",
    "PERMISSION_DENIED": "E401",
    "FAILED_PRECONDITION": "E603",
    "UNIMPLEMENTED": "E500",
}


def unavailable(socket: object, detail: str = "") -> CliError:
    """E504 with the docker-style message that says how to start the daemon."""
    from parhelia_cli.errors import CliError

    extra = f" ({detail})" if detail else ""
    return CliError(
        "E504",
        f"Cannot connect to the Parhelia daemon at {address(socket)}; is it running?{extra} "
        "Start it with `parhelia daemon start` (or install the service with "
        "`parhelia daemon install`); set PARHELIA_SOCKET or --socket if it listens elsewhere.",
        hint="`parhelia daemon logs` shows why it stopped; `parhelia help E504` has more.",
    )


def rpc_error(exc: Any, socket: object, method: str = "") -> CliError:
    """The CliError for a ``grpc.RpcError`` (or a :class:`unary.RpcFailure`): the E-code
    from trailing metadata if any."""
    from parhelia import errors as catalogue
    from parhelia_cli.errors import CliError

    code_name = exc.code().name if hasattr(exc, "code") and exc.code() is not None else "UNKNOWN"
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    metadata = dict(exc.trailing_metadata() or ()) if hasattr(exc, "trailing_metadata") else {}
    code = metadata.get(catalogue.METADATA_KEY)
    if isinstance(code, bytes):
        code = code.decode()
    if code:
        return CliError(catalogue.code_of(code), details or catalogue.spec(code).what)
    if code_name == "UNAVAILABLE":
        return unavailable(socket, "the connection was closed")
    if code_name == "UNIMPLEMENTED":
        return CliError("E500", f"this daemon does not implement {method or 'that call'} yet; "
                                "upgrade and restart it (`parhelia daemon stop`).")
    if code_name == "CANCELLED":
        return CliError("E900", "the call was cancelled")
    mapped = catalogue.code_of(_STATUS_CODES.get(code_name))
    return CliError(mapped, f"the daemon answered {code_name}" + (f": {details}" if
                                                                   mapped != "E900" else ""))


def pb2(name: str) -> Any:
    """The generated module ``parhelia.v1.<name>_pb2`` (imported on demand)."""
    lean.defer_python_backend()  # before the first generated module
    return importlib.import_module(f"parhelia.v1.{name}_pb2")


def _answer_type(service: str, method: str) -> Any:
    """The generated class of ``method``'s answer (found through the descriptors: an
    answer may be defined in another file, e.g. ``common.proto``'s ``Task``)."""
    module, name = STUBS[service]
    output = pb2(module).DESCRIPTOR.services_by_name[name].methods_by_name[method].output_type
    defining = importlib.import_module(output.file.name.removesuffix(".proto")
                                       .replace("/", ".") + "_pb2")
    return getattr(defining, output.name)


def unary_call(connection: unary.Connection, service: str, method: str, request: Any,
               timeout: float | None) -> Any:
    """One unary RPC over ``connection``: the answer message (``unary.RpcFailure`` when
    it is not OK)."""
    _module, name = STUBS[service]
    data = connection.call(f"/parhelia.v1.{name}/{method}", request.SerializeToString(),
                           timeout=timeout)
    return _answer_type(service, method).FromString(data)


def connect(socket: object) -> unary.Connection:
    """A new connection to ``socket`` (whose owner the caller has checked)."""
    return unary.Connection(str(socket), connect_timeout=PROBE_TIMEOUT,
                            max_message=MAX_MESSAGE_BYTES, user_agent=f"parhelia/{__version__}")


def hello(socket: object) -> tuple[Any, unary.Connection] | None:
    """``(GetVersionResponse, open connection)`` of the daemon on ``socket``, or None when
    nothing answers. GetVersion carries this client's version (for the daemon's logs);
    a daemon too old to know it answers an empty version."""
    system_pb2 = pb2("system")
    try:
        connection = connect(socket)
    except unary.RpcFailure:
        return None
    try:
        version = unary_call(connection, "system", "GetVersion",
                             system_pb2.GetVersionRequest(client_version=__version__),
                             PROBE_TIMEOUT)
    except unary.RpcFailure as exc:
        if exc.code().name != "UNIMPLEMENTED":
            connection.close()
            return None
        version = system_pb2.GetVersionResponse()
    return version, connection
