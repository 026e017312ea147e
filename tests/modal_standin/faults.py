"""The stand-in's fault model: what a test makes Modal's service do, as gRPC statuses and
timings (docs/adr/0035-modal-stand-in-and-fault-model.md).

A test writes ``faults.json`` in the service's root (``StandIn`` does, atomically); the
stand-in re-reads it when it changes, so a fault applies from the next call on, also to a
daemon in another process. Its shape::

    {"rules": [{"id": 1, "rpc": "SandboxCreateV2" | "Sandbox*" | "*",
                "effect": "status" | "hang" | "drop_reply" | "init_failure" | "delay",
                "status": "UNAVAILABLE", "message": "...", "seconds": 12.0,
                "times": 3 | null}],
     "latency": {"*": 0.05, "VolumeGetFile2": 4.0},
     "refused": false,
     "gpu_capacity": true,
     "inert": false}

- ``status``: the call fails with that gRPC status (the SDK retries the transient ones
  itself, then raises its exception class for the status).
- ``hang``: the call is accepted and never answered while the rule stands (Modal's SDK has
  no deadline on most calls).
- ``drop_reply``: the call is carried out, then answered UNAVAILABLE (a reply lost on the
  way: a retried create finds its own sandbox by name).
- ``init_failure``: a sandbox created by the call fails to start (INIT_FAILURE, with the
  rule's message as Modal's).
- ``delay``: the call waits ``seconds`` before it runs (with ``times``: a few slow calls,
  where ``latency`` slows every one); ``calls.log`` says ``delayed:<rpc>`` for each.
- ``times``: how many calls the rule applies to (null: until removed).
- ``latency``: seconds added to every call (``*``) or to the named ones, before it runs.
  ``BlobGet``/``BlobPut`` name the volume's block downloads and uploads over HTTP.
- ``refused``: the service's port refuses connections (its listener is closed).
- ``gpu_capacity``: false makes every GPU sandbox wait, unscheduled, until it is true.
- ``inert``: sandboxes created meanwhile only exist (no process runs): for benches that
  measure the client's side of hundreds of sandboxes.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpclib import GRPCError, Status

from tests.modal_host import state

STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "PERMISSION_DENIED",
            "UNAUTHENTICATED", "RESOURCE_EXHAUSTED", "NOT_FOUND", "CANCELLED", "UNKNOWN",
            "FAILED_PRECONDITION", "ALREADY_EXISTS", "INVALID_ARGUMENT")
EFFECTS = ("status", "hang", "drop_reply", "init_failure", "delay")
FAULTS_FILE = "faults.json"
POLL_S = 0.05


@dataclass
class Faults:
    """The faults in force, re-read from ``faults.json`` when it changes."""

    path: Path
    rules: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, float] = field(default_factory=dict)
    refused: bool = False
    gpu_capacity: bool = True
    inert: bool = False
    _used: dict[int, int] = field(default_factory=dict)
    _mtime: int = -1

    @classmethod
    def at(cls, root: Path) -> Faults:
        faults = cls(root / FAULTS_FILE)
        faults.reload()
        return faults

    def reload(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            data = json.loads(self.path.read_text()) if mtime else {}
        except (OSError, ValueError):
            return  # a half-written file is never read: the writer replaces it whole
        self.rules = list(data.get("rules") or [])
        self.latency = {str(k): float(v) for k, v in (data.get("latency") or {}).items()}
        self.refused = bool(data.get("refused"))
        self.gpu_capacity = bool(data.get("gpu_capacity", True))
        self.inert = bool(data.get("inert"))

    def delay(self, rpc: str) -> float:
        self.reload()
        return self.latency.get(rpc, self.latency.get("*", 0.0))

    def take(self, rpc: str, effect: str) -> dict[str, Any] | None:
        """The first rule with ``effect`` for ``rpc`` still in force; a use is counted."""
        self.reload()
        for rule in self.rules:
            if rule.get("effect", "status") != effect or not fnmatch.fnmatchcase(
                    rpc, str(rule.get("rpc", "*"))):
                continue
            times, rid = rule.get("times"), int(rule.get("id", 0))
            if times is not None and self._used.get(rid, 0) >= int(times):
                continue
            self._used[rid] = self._used.get(rid, 0) + 1
            return rule
        return None

    def _hanging(self, rpc: str) -> bool:
        self.reload()
        return any(r.get("effect") == "hang" and fnmatch.fnmatchcase(rpc, str(r.get("rpc", "*")))
                   for r in self.rules)

    async def wait(self, rpc: str) -> None:
        """The call's added latency, a delay rule's wait, and its hang while a hang rule
        stands."""
        if (delay := self.delay(rpc)) > 0:
            await asyncio.sleep(delay)
        if (slow := self.take(rpc, "delay")) is not None:
            state.log_call(f"delayed:{rpc}")  # for the test to see that it applied
            await asyncio.sleep(float(slow.get("seconds") or 0))
        if self.take(rpc, "hang") is not None:
            while self._hanging(rpc):
                await asyncio.sleep(POLL_S)

    async def before(self, rpc: str) -> None:
        """Applied before a call runs: latency, a hang, a failing status."""
        await self.wait(rpc)
        if (rule := self.take(rpc, "status")) is not None:
            raise as_error(rule, rpc)

    def after(self, rpc: str) -> None:
        """Applied after a call ran: a lost reply."""
        if (rule := self.take(rpc, "drop_reply")) is not None:
            raise GRPCError(Status.UNAVAILABLE, rule.get("message")
                            or f"connection reset after {rpc} (the reply was lost)")


def as_error(rule: dict[str, Any], rpc: str) -> GRPCError:
    name = str(rule.get("status", "UNAVAILABLE"))
    return GRPCError(Status[name], str(rule.get("message") or f"{name} (stand-in fault on {rpc})"))
