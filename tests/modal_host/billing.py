"""What the local Modal service bills: ``app.sandboxes.stats`` as modal 1.6.4 returns it.

Each sandbox's cost over the part of its life inside [since, until): its requested
resources x its run time x the service's prices (``billing.json`` in the service's
root overrides the defaults), grouped by the values of ``group_by_tags``. The range
rules are the service's (``since`` on a UTC hour boundary, at most 7 days).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.modal_host import state

PRICES = {"CPU": "0.0000131", "Memory": "0.00000222", "T4": "0.000164", "L4": "0.000222",
          "A10G": "0.000306", "L40S": "0.000542", "A100-40GB": "0.000583",
          "A100-80GB": "0.000694", "H100": "0.001097", "H200": "0.001261",
          "B200": "0.001736"}
"""USD per core, GiB or GPU second."""
MAX_RANGE = timedelta(days=7)
Group = tuple[dict[str, str | None], dict[str, Decimal]]


class InvalidRange(ValueError):
    """The range is one Modal refuses (its message is the error's)."""


def prices() -> dict[str, Decimal]:
    out = {k: Decimal(v) for k, v in PRICES.items()}
    overrides = state.root() / "billing.json"
    if overrides.exists():
        out.update({k: Decimal(v) for k, v in state.read_json(overrides).items()})
    return out


def check_range(since: datetime, until: datetime | None) -> datetime:
    """The range's end (now without ``until``); InvalidRange with Modal's message."""
    now = datetime.now(UTC)
    end = until if until is not None else now
    if since >= now:
        raise InvalidRange("`since` must be in the past.")
    if since >= end:
        raise InvalidRange("`since` must be before `until`.")
    if since != since.replace(minute=0, second=0, microsecond=0):
        raise InvalidRange("`since` must be on a UTC hour boundary.")
    if end - since > MAX_RANGE:
        raise InvalidRange("The maximum time range is 7 days.")
    return end


def group_costs(app_id: str, since: datetime, end: datetime, group_by: list[str],
                tags: dict[str, str]) -> list[Group]:
    """``(group tags, cost by resource)`` per combination of ``group_by`` values among the
    app's sandboxes carrying at least ``tags``."""
    table = prices()
    groups: dict[tuple[str | None, ...], dict[str, Decimal]] = {}
    for sb_id in state.all_sandboxes():
        meta = state.sandbox_meta(sb_id)
        if meta is None or meta["app_id"] != app_id:
            continue
        if any(meta["tags"].get(k) != v for k, v in tags.items()):
            continue
        record = state.sandbox_state(sb_id)
        start = float(record.get("started_at") or meta["created_at"])
        stop = float(record.get("finished_at") or time.time())
        lo, hi = max(start, since.timestamp()), min(stop, end.timestamp())
        if hi <= lo:
            continue
        seconds = Decimal(str(round(hi - lo, 3)))
        key = tuple(meta["tags"].get(n) for n in group_by)
        group = groups.setdefault(key, {})
        usage = {"CPU": Decimal(str(meta.get("cpu") or 0.125)),
                 "Memory": Decimal(int(meta.get("memory") or 128)) / 1024}
        if meta.get("gpu"):
            gpu, _, count = str(meta["gpu"]).partition(":")
            usage[gpu] = Decimal(int(count or 1))
        for resource, amount in usage.items():
            cost = amount * seconds * table.get(resource, Decimal(0))
            group[resource] = group.get(resource, Decimal(0)) + cost
    return [(dict(zip(group_by, key, strict=True)), costs) for key, costs in groups.items()]
