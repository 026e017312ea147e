"""The gRPC server on the Unix socket, as a daemon component (``start``/``stop``).

Serves every ``parhelia.v1`` service (unimplemented RPCs answer UNIMPLEMENTED),
``grpc.health.v1`` (SERVING for "" and each service) and reflection. The socket is
bound under umask 0177, so it is created 0600; file permissions are the only
authentication grpcio offers on Unix sockets (see docs/adr/0005-socket-auth-boundary.md).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from parheliad.api.budget import BudgetServicer
from parheliad.api.checkpoints import CheckpointServicer
from parheliad.api.config import ConfigServicer
from parheliad.api.containers import ContainerServicer
from parheliad.api.environments import EnvironmentServicer
from parheliad.api.events import EventServicer
from parheliad.api.interceptor import ErrorInterceptor
from parheliad.api.reconciler import ReconcilerServicer
from parheliad.api.registry import Registration, register
from parheliad.api.sessions import SessionServicer
from parheliad.api.system import SystemServicer
from parheliad.api.tasks import TaskServicer
from parheliad.context import DaemonContext

log = structlog.get_logger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SOCKET_UMASK = 0o177


class ApiServer:
    """Component ``api``: last to start (clients only connect to a ready daemon), first
    to stop (watch streams end cleanly before the server closes)."""

    name = "api"

    def __init__(self, ctx: DaemonContext, socket: Path, grace_seconds: float = 5.0) -> None:
        self._ctx = ctx
        self._socket = socket
        self._grace = grace_seconds
        self._server: grpc.aio.Server | None = None
        self._health: health_aio.HealthServicer | None = None
        self.registration: Registration | None = None

    async def start(self) -> None:
        ctx = self._ctx
        interceptor = ErrorInterceptor(frozenset())
        server = grpc.aio.server(interceptors=[interceptor], options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ])
        system = SystemServicer(ctx)
        reg = register(server, {"SystemService": system, "TaskService": TaskServicer(ctx),
                                "BudgetService": BudgetServicer(ctx),
                                "EventService": EventServicer(ctx),
                                "ContainerService": ContainerServicer(ctx),
                                "ReconcilerService": ReconcilerServicer(ctx),
                                "CheckpointService": CheckpointServicer(ctx),
                                "SessionService": SessionServicer(ctx),
                                "ConfigService": ConfigServicer(ctx),
                                "EnvironmentService": EnvironmentServicer(ctx)})
        interceptor.implemented = reg.implemented
        system.capabilities = reg.capabilities
        self.registration = reg

        self._health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for name in ("", *reg.service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (*reg.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), server)

        previous = os.umask(SOCKET_UMASK)
        try:
            server.add_insecure_port(f"unix://{self._socket}")  # binds now
        finally:
            os.umask(previous)
        os.chmod(self._socket, 0o600)
        await server.start()
        self._server = server
        log.info("api.serving", socket=str(self._socket), rpcs=len(reg.implemented))

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        # End watch streams ourselves: server.stop() would cut them with UNAVAILABLE.
        self._ctx.bus.close()
        await server.stop(self._grace)
        with contextlib.suppress(FileNotFoundError):
            self._socket.unlink()
        log.info("api.stopped")
