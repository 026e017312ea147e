"""Heartbeat thread: resource usage and agent progress every few seconds."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modal_worker.channel import Channel, send
from modal_worker.stream import AgentStats
from parhelia import records

psutil: Any
try:  # optional: more precise, but the worker must run without it
    import psutil
except ImportError:  # pragma: no cover - exercised by forcing psutil=None in tests
    psutil = None

log = logging.getLogger(__name__)
DISK_REFRESH_SECONDS = 30.0


def disk_usage(root: Path) -> int:
    """Bytes allocated by the files under ``root`` (symlinks not followed)."""
    total = 0
    stack = [str(root)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for de in it:
                    try:
                        st = de.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
                    if de.is_dir(follow_symlinks=False):
                        stack.append(de.path)
        except OSError:
            continue
    return total


class ProcSampler:
    """CPU and memory of the worker plus the agent's process group, from /proc."""

    def __init__(self) -> None:
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.page = os.sysconf("SC_PAGE_SIZE")
        self._last: tuple[float, int] | None = None

    def _stat(self, pid: int) -> tuple[int, int, int] | None:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            return None
        fields = data[data.rfind(b")") + 2:].split()
        # fields[0] is state (field 3): pgrp is field 5, utime 14, stime 15, rss 24
        return int(fields[2]), int(fields[11]) + int(fields[12]), int(fields[21])

    def sample(self, agent_pgid: int | None) -> tuple[float, int]:
        pids = {os.getpid()}
        if agent_pgid is not None:
            for name in os.listdir("/proc"):
                if name.isdigit():
                    st = self._stat(int(name))
                    if st is not None and st[0] == agent_pgid:
                        pids.add(int(name))
        cpu_ticks = 0
        rss = 0
        for pid in pids:
            st = self._stat(pid)
            if st is not None:
                cpu_ticks += st[1]
                rss += st[2] * self.page
        now = time.monotonic()
        percent = 0.0
        if self._last is not None and now > self._last[0]:
            used = max(0, cpu_ticks - self._last[1]) / self.ticks
            percent = 100.0 * used / (now - self._last[0])
        self._last = (now, cpu_ticks)
        return round(percent, 1), rss


class PsutilSampler:
    def __init__(self) -> None:
        assert psutil is not None
        self._procs: dict[int, Any] = {}

    def sample(self, agent_pid: int | None) -> tuple[float, int]:
        assert psutil is not None
        wanted = [psutil.Process()]
        if agent_pid is not None:
            try:
                agent = psutil.Process(agent_pid)
                wanted += [agent, *agent.children(recursive=True)]
            except psutil.Error:
                pass
        cpu, rss = 0.0, 0
        live: dict[int, Any] = {}
        for proc in wanted:
            proc = self._procs.get(proc.pid, proc)
            try:
                cpu += proc.cpu_percent(None)
                rss += proc.memory_info().rss
                live[proc.pid] = proc
            except psutil.Error:
                continue
        self._procs = live
        return round(cpu, 1), rss


def make_sampler() -> ProcSampler | PsutilSampler:
    return PsutilSampler() if psutil is not None else ProcSampler()


class Heartbeat(threading.Thread):
    def __init__(self, channel: Channel, interval: float, workspace: Path, stats: AgentStats,
                 agent_pid: Callable[[], int | None], agent_alive: Callable[[], bool]) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.channel = channel
        self.interval = interval
        self.workspace = workspace
        self.stats = stats
        self.agent_pid = agent_pid
        self.agent_alive = agent_alive
        self.sampler = make_sampler()
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self._disk: tuple[float, int] | None = None

    def stop(self) -> None:
        self._stop_event.set()
        self._wake.set()

    def beat_now(self) -> None:
        """Beat at once, out of turn: the agent's usage changed in a way the daemon must
        see now (a reply's billed output arrived), not an interval later."""
        self._wake.set()

    def beat(self) -> dict[str, Any]:
        cpu, memory = self.sampler.sample(self.agent_pid())
        now = time.monotonic()
        if self._disk is None or now - self._disk[0] >= max(DISK_REFRESH_SECONDS, self.interval):
            self._disk = (now, disk_usage(self.workspace))
        record = records.Heartbeat(cpu_percent=cpu, memory_bytes=memory,
                                   disk_bytes=self._disk[1], agent_alive=self.agent_alive(),
                                   usage=self.stats.usage())
        send(self.channel, record)
        return record.to_dict()

    def run(self) -> None:
        """Beat at once (the daemon learns the worker is alive without waiting a whole
        interval), then every interval until stopped."""
        while True:
            try:
                self.beat()
            except Exception:
                log.exception("heartbeat failed")
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop_event.is_set():
                return
