"""Container tools: list, terminate, show, events."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from parhelia import statuses
from parhelia_cli import views
from parhelia_cli.convert import page, to_dict
from parhelia_cli.mcp_server.schema import READ, ContainerId, Limit, PageToken, acts
from parhelia_cli.mcp_server.tools import Registrar


def register(tools: Registrar) -> None:
    """The containers tools, on ``tools``."""
    tool, api = tools.tool, tools.api

    @tool("parhelia_containers", READ)
    def containers(
        state: Annotated[list[statuses.ContainerState] | None, Field(description=(
            "Only containers in these states."))] = None,
        health: Annotated[list[statuses.Health] | None, Field(description=(
            "Only containers with this health."))] = None,
        task_id: Annotated[str | None, Field(description="Only this task's containers.")
                           ] = None,
        limit: Limit = None,
        page_token: PageToken = None,
    ) -> dict[str, Any]:
        """List worker containers (one per incarnation of a task), newest first: state,
        health, heartbeats, backend, resources, cost; next_page_token (null on the last
        page) asks for the next page. Same as `parhelia container list --json`."""
        resp = api.containers.list(states=state, health=health, task_id=task_id, limit=limit,
                                   page_token=page_token or "")
        return page("containers", [to_dict(c) for c in resp.containers],
                    resp.next_page_token)

    @tool("parhelia_container_terminate", acts(destructive=True, idempotent=True,
                                               title="Terminate a container"))
    def container_terminate(container_id: ContainerId) -> dict[str, Any]:
        """Terminate a container now (its worker checkpoints first when it can). A running
        task whose container is terminated resumes in a new container from its latest
        checkpoint; parhelia_task_cancel stops a task for good. Returns the container.
        Same as `parhelia container terminate ID -y --json`."""
        return to_dict(api.containers.terminate(container_id))

    @tool("parhelia_container_show", READ)
    def container_show(container_id: ContainerId) -> dict[str, Any]:
        """One container: state and reason, health and missed heartbeats, task, session,
        incarnation, backend id, resources, times, exit code, cost, and its recent
        heartbeats (cpu, memory, disk, agent alive, usage). Same as
        `parhelia container show ID --json`."""
        return to_dict(api.containers.get(container_id))

    @tool("parhelia_container_events", READ)
    def container_events(container_id: ContainerId, limit: Limit = None) -> dict[str, Any]:
        """A container's events, oldest first (the newest `limit`, default 50). Same as
        `parhelia container events ID --json`."""
        return views.container_events(api, container_id, limit)
