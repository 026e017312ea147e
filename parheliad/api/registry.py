"""Which services exist, which RPCs this daemon implements, and its capabilities.

One table (:data:`SERVICES`) drives registration, the UNIMPLEMENTED answers and
``GetVersion.capabilities``: an RPC is implemented exactly when the servicer object
registered for it overrides the generated base method. Nothing is listed twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from parhelia.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    checkpoints_pb2,
    checkpoints_pb2_grpc,
    config_pb2,
    config_pb2_grpc,
    containers_pb2,
    containers_pb2_grpc,
    environments_pb2,
    environments_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    reconciler_pb2,
    reconciler_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
    system_pb2,
    system_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)


@dataclass(frozen=True)
class ServiceSpec:
    name: str                      # e.g. "TaskService"
    noun: str                      # capability prefix, e.g. "tasks"
    descriptor: ServiceDescriptor
    base: type                     # the generated *Servicer base class
    add: Callable[[Any, Any], None]


def _spec(noun: str, module: Any, grpc_module: Any, name: str) -> ServiceSpec:
    return ServiceSpec(name=name, noun=noun, descriptor=module.DESCRIPTOR.services_by_name[name],
                       base=getattr(grpc_module, f"{name}Servicer"),
                       add=getattr(grpc_module, f"add_{name}Servicer_to_server"))


SERVICES: tuple[ServiceSpec, ...] = (
    _spec("system", system_pb2, system_pb2_grpc, "SystemService"),
    _spec("tasks", tasks_pb2, tasks_pb2_grpc, "TaskService"),
    _spec("sessions", sessions_pb2, sessions_pb2_grpc, "SessionService"),
    _spec("checkpoints", checkpoints_pb2, checkpoints_pb2_grpc, "CheckpointService"),
    _spec("containers", containers_pb2, containers_pb2_grpc, "ContainerService"),
    _spec("events", events_pb2, events_pb2_grpc, "EventService"),
    _spec("budget", budget_pb2, budget_pb2_grpc, "BudgetService"),
    _spec("reconciler", reconciler_pb2, reconciler_pb2_grpc, "ReconcilerService"),
    _spec("config", config_pb2, config_pb2_grpc, "ConfigService"),
    _spec("environments", environments_pb2, environments_pb2_grpc, "EnvironmentService"),
)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def capability(spec: ServiceSpec, method: str) -> str:
    """``TaskService.CreateTask`` -> ``tasks.create``; ``SystemService.GetVersion`` ->
    ``system.get_version``: the service noun, then the method without it."""
    words = _snake(method).split("_")
    singular = spec.noun.removesuffix("s")
    trimmed = [w for w in words if w not in (spec.noun, singular)] or words
    return f"{spec.noun}.{'_'.join(trimmed)}"


def is_implemented(servicer: Any, spec: ServiceSpec, method: str) -> bool:
    return getattr(type(servicer), method, None) is not getattr(spec.base, method)


@dataclass(frozen=True)
class Registration:
    implemented: frozenset[str]       # full method names, "/parhelia.v1.TaskService/CreateTask"
    capabilities: tuple[str, ...]     # "tasks.create", ...
    service_names: tuple[str, ...]    # "parhelia.v1.TaskService", ...


def register(server: Any, servicers: dict[str, Any]) -> Registration:
    """Add every service to ``server``: the given servicer or the generated base
    (which the interceptor answers with UNIMPLEMENTED)."""
    implemented: set[str] = set()
    capabilities: list[str] = []
    for spec in SERVICES:
        servicer = servicers.get(spec.name) or spec.base()
        spec.add(servicer, server)
        for method in spec.descriptor.methods:
            if is_implemented(servicer, spec, method.name):
                implemented.add(f"/{spec.descriptor.full_name}/{method.name}")
                capabilities.append(capability(spec, method.name))
    return Registration(frozenset(implemented), tuple(capabilities),
                        tuple(spec.descriptor.full_name for spec in SERVICES))
