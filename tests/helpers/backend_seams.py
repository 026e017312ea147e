"""The seams every backend offers (worker paths, credentials, volume copies), for the
in-process scripted backends of the core tests: the backend's volume is a directory of
its own, and ``push``/``pull`` really copy between it and the daemon's volume."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from parhelia.volume import LocalVolume, Volume
from parheliad.backends.base import Credentials, WorkerPaths


def copy_keys(src: Volume, dst: Volume, keys: Sequence[str],
              copied: list[str] | None = None) -> int:
    """Copy ``keys`` (blobs only when ``dst`` lacks them, absent ones skipped); the keys
    really copied are appended to ``copied``."""
    sent = 0
    for key in keys:
        if key.startswith("cas/") and dst.exists(key):
            continue
        try:
            data = src.get(key)
        except FileNotFoundError:
            continue
        dst.put(key, data)
        sent += len(data)
        if copied is not None:
            copied.append(key)
    return sent


class SeamsMixin:
    volume: LocalVolume
    pushed: list[str]

    def available(self) -> tuple[bool, str]:
        return True, "scripted"

    def worker_paths(self, session_id: str, container_id: str) -> WorkerPaths:
        return WorkerPaths("/vol", "/workspace", "/root/.claude", ("sync", "/vol"))

    async def aclose(self) -> None:
        return None

    async def compute_costs(self, containers: Sequence[tuple[str, float]]) -> dict[str, Decimal]:
        return {}

    async def credentials(self) -> Credentials:
        return Credentials(True, "scripted", {})

    async def push(self, local: Volume, keys: Sequence[str]) -> int:
        """``pushed``: the keys really sent, in order."""
        return copy_keys(local, self.volume, keys, self.__dict__.setdefault("pushed", []))

    async def pull(self, local: Volume, keys: Sequence[str]) -> int:
        return copy_keys(self.volume, local, keys)
