"""Budget, health, reconciler, cleanup and doctor tools."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from parhelia.backends import Backend
from parhelia_cli import views
from parhelia_cli.convert import to_dict
from parhelia_cli.errors import CliError
from parhelia_cli.mcp_server.schema import (
    READ,
    Cpu,
    Gpu,
    MaxCost,
    MaxTurns,
    Memory,
    Model,
    Timeout,
    acts,
    task_options_of,
)
from parhelia_cli.mcp_server.tools import Registrar


def register(tools: Registrar) -> None:
    """The system tools, on ``tools``."""
    tool, api = tools.tool, tools.api

    @tool("parhelia_budget_status", READ)
    def budget_status() -> dict[str, Any]:
        """The spending ceiling and where it stands: used (compute + API), reserved,
        remaining, percentage, period, tasks, tokens, warning/exceeded flags. Same as
        `parhelia budget show --json`."""
        return to_dict(api.budget.get())

    @tool("parhelia_budget_set", acts(destructive=True, idempotent=True,
                                      title="Set the spending ceiling"))
    def budget_set(
        amount_usd: Annotated[float | str, Field(description=(
            "The new ceiling in USD, like 50 or '12.50' (at most 6 decimals)."))],
    ) -> dict[str, Any]:
        """Set the spending ceiling (kept across restarts). Raising it resumes the tasks
        the ceiling paused; lowering it below what is used pauses running tasks. Returns
        the budget as parhelia_budget_status does. Same as
        `parhelia budget set AMOUNT --json`."""
        text = format(amount_usd, "f") if isinstance(amount_usd, float) else str(amount_usd)
        return to_dict(api.budget.set_ceiling(text.strip()))

    @tool("parhelia_budget_estimate", READ)
    def budget_estimate(
        gpu: Gpu = None, cpu: Cpu = None, memory: Memory = None, timeout: Timeout = None,
        max_turns: MaxTurns = None, max_cost_usd: MaxCost = None, model: Model = None,
        backend: Annotated[Backend | None, Field(description=(
            "Where it would run (default: config)."))] = None,
    ) -> dict[str, Any]:
        """The cost range (compute + API, low and high) of a task with these options,
        with how each part was computed. Creates nothing. Same as
        `parhelia task create ... --estimate-only --json`."""
        options = task_options_of(gpu, cpu, memory, timeout, max_turns, max_cost_usd, model, None,
                                  backend)
        return to_dict(api.tasks.estimate(options))

    @tool("parhelia_health", READ)
    def health() -> dict[str, Any]:
        """The daemon's status (version, uptime, tasks by state, backends, health and
        what needs attention) and the containers' health summary (by health and state,
        orphans, those needing attention). needs_attention mirrors the exit status of
        `parhelia status`. Same as `parhelia status --json` plus
        `parhelia container health --json`."""
        status = to_dict(api.system.status())
        summary = to_dict(api.containers.health_summary())
        attention = bool(status["health"] and status["health"]["needs_attention"])
        return {"status": status, "containers": summary, "needs_attention": attention}

    @tool("parhelia_reconciler_status", READ)
    def reconciler_status() -> dict[str, Any]:
        """The reconciler (which compares the database with what the backends really run):
        its last run (when, duration, findings: lost, orphaned, state drift), next run,
        interval, and whether orphans are terminated automatically. Same as
        `parhelia reconciler status --json`."""
        return to_dict(api.reconciler.status())

    @tool("parhelia_cleanup", acts(destructive=True, title="End orphaned containers"))
    def cleanup(
        terminate: Annotated[bool, Field(description=(
            "Terminate every orphan found (default: a dry run that only lists them)."))
                             ] = False,
    ) -> dict[str, Any]:
        """Orphaned containers (tagged as Parhelia's on a backend, unknown to the
        database) with their age and accrued cost; with terminate they are ended. A dry
        run by default. Same as `parhelia cleanup [--terminate -y] --json`."""
        return views.cleanup(api, terminate=terminate)

    @tool("parhelia_doctor", READ)
    def doctor() -> dict[str, Any]:
        """Check what Parhelia needs: the daemon, config, agent binary, credentials, disk
        and Modal; each failed check says how to fix it; ok is false when any failed. Same
        as `parhelia doctor --json` (an unreachable daemon is a failed check, not an
        error)."""
        try:
            resp = api.system.doctor()
        except CliError as exc:
            if exc.code != "E504":
                raise
            checks = [{"name": "daemon", "status": "fail", "detail": exc.message,
                       "fix": "parhelia daemon start; parhelia daemon logs"}]
        else:
            checks = [to_dict(c) for c in resp.checks]
        return {"checks": checks, "ok": all(c["status"] != "fail" for c in checks)}
