"""Booking API spend with enforcement in the same writer unit (ADR 0045).

    uv run python bench/booking.py                    # 1, 100 and 1,000 live containers
    uv run python bench/booking.py --live 500 --units 200

The listener books every usage record through ``Budget.book_agent_usage`` and, when a
unit changed some usage, runs ``Budget.enforce_booked`` (caps, ceiling, warning) before
the unit ends. This measures one such unit on a real SQLite store: ``--live`` running
containers (each with its task and a ledger history of 20 entries), each unit raising
the usage of one of them as a heartbeat would, and the same unit without enforcement,
so the figure printed is what checking at booking time adds. Nothing here reaches the
ceiling (no worker is stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proto"))

from parhelia import records
from parheliad.config import Config
from parheliad.core.budget import Budget
from parheliad.store import Tx, open_store


def _seed(tx: Tx, live: int) -> list[str]:
    ids = []
    for i in range(live):
        task = tx.tasks.insert(dict(prompt=f"p{i}", cpu=1.0, memory_mb=1024,
                                    timeout_seconds=600, max_turns=50,
                                    permission_mode="acceptEdits", backend="local",
                                    max_cost_micros=100_000_000, status="running"))
        c = tx.containers.insert(task_id=task.id, backend="local", cpu=1.0, memory_mb=1024,
                                 gpu="")
        tx.containers.update(c.id, state="starting")
        tx.containers.update(c.id, state="running")
        for _ in range(20):
            tx.ledger.insert("api", 1_000, task_id=task.id, container_id=c.id,
                             note="agent usage")
        ids.append(c.id)
    return ids


async def _measure(live: int, units: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(Path(tmp) / "db.sqlite")
        try:
            cfg = Config()
            budget = Budget(store, lambda: cfg)
            ids = await store.write(lambda tx: _seed(tx, live))
            timings: dict[bool, list[float]] = {True: [], False: []}
            for n in range(units):
                for enforce in (False, True):
                    cid = ids[n % len(ids)]
                    tokens = 1_000 * (2 * n + enforce + 1)

                    def unit(tx: Tx, cid: str = cid, tokens: int = tokens,
                             enforce: bool = enforce) -> None:
                        c = tx.containers.get(cid)
                        assert c is not None
                        usage = records.Usage(turns=tokens, input_tokens=tokens,
                                              output_tokens=tokens // 10)
                        if budget.book_agent_usage(tx, c, usage) and enforce:
                            assert budget.enforce_booked(tx) == []

                    start = time.perf_counter()
                    await store.write(unit)
                    timings[enforce].append(time.perf_counter() - start)
            return statistics.median(timings[False]), statistics.median(timings[True])
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", type=int, action="append",
                        help="live containers (repeatable; default 1, 100, 1000)")
    parser.add_argument("--units", type=int, default=100, help="units measured per size")
    args = parser.parse_args()
    print(f"{'live':>6} {'booking only':>14} {'+ enforcement':>14} {'added':>10}")
    for live in args.live or [1, 100, 1000]:
        plain, enforced = asyncio.run(_measure(live, args.units))
        print(f"{live:>6} {plain * 1000:>11.2f} ms {enforced * 1000:>11.2f} ms "
              f"{(enforced - plain) * 1000:>7.2f} ms")


if __name__ == "__main__":
    main()
