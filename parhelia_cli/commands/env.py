"""``parhelia env show|build|list|prune``: a repository's environment (ADR 0050)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from parhelia_cli import params, render
from parhelia_cli.context import json_option, settings
from parhelia_cli.convert import to_dict
from parhelia_cli.errors import CliError
from parhelia_cli.flows.submit import find_git_root


@click.group()
def env() -> None:
    """A repository's environment: what a task's machine holds, what runs before its
    agent (setup, start) and what the agent may reach.

    It comes from .parhelia/environment.toml, else .devcontainer/devcontainer.json, else
    the repository's lockfiles. `parhelia help env` describes the file.
    """


def _directory(directory: Path | None) -> str:
    chosen = directory.absolute() if directory else (find_git_root(Path.cwd()) or Path.cwd())
    return str(chosen)


_TARGET = [
    click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True),
                   required=False),
    click.option("--gpu", is_flag=True, help="As for a task that asks for a GPU."),
    click.option("--backend", type=click.Choice(["local", "modal"]), default=None,
                 help="As on this backend (default: the configured one; build: modal)."),
    click.option("--trust-project-config", is_flag=True,
                 help="Let the repository's file widen your configuration (network level, "
                      "pre-approved commands)."),
]


def _target(f: Any) -> Any:
    for decorator in reversed(_TARGET):
        f = decorator(f)
    return f


@env.command()
@_target
@json_option
def show(directory: Path | None, gpu: bool, backend: str | None,
         trust_project_config: bool) -> None:
    """Print DIRECTORY's resolved environment, where each part comes from, its network
    level and its hashes (default: the repository around the current directory)."""
    obj = settings()
    view = to_dict(obj.api().environments.show(
        _directory(directory), gpu=gpu, trust_project_config=trust_project_config,
        backend=backend or ""))
    if obj.json:
        render.emit_json(view)
        return
    source = render.safe(view["source_file"]) if view["source_file"] else view["source"]
    built = (f"built ({view['image_id']})" if view["image_built"]
             else "not built yet" if view["backend"] == "modal" else "no image (local)")
    render.fields([("Environment", view["hash"]), ("From", source),
                   ("Image", f"{view['image_hash']}, {built}"),
                   ("Backend", view["backend"]),
                   ("Agent reaches", _reach(view))],
                  title="Environment")
    render.line("")
    rows = []
    for part in view["parts"] or []:
        values = [render.safe(v) for v in part["values"] or []] or [""]
        for i, value in enumerate(values):
            rows.append((part["name"] if i == 0 else "", value,
                         render.safe(part["origin"]) if i == 0 else "",
                         part["note"] if i == 0 else ""))
    render.table(("PART", "VALUE", "FROM", "NOTE"), rows)
    if view["ignored"]:
        render.line(f"\nIgnored keys: {render.safe(', '.join(view['ignored']))}")
    for warning in view["warnings"] or []:
        render.warn(render.safe(warning))


def _reach(view: dict[str, Any]) -> str:
    """The agent phase's network in a line (the hosts themselves are in --json)."""
    hosts = view["agent_hosts"] or []
    if not hosts:
        words = "any host (network full)"
    elif len(hosts) == 1:
        words = f"{hosts[0]} only (network none)"
    else:
        words = f"{hosts[0]} and {len(hosts) - 1} other hosts (network trusted: the package " \
                "registries and the environment's allow list)"
    return words + ("; not enforced on the local backend" if view["backend"] == "local" else "")


@env.command()
@_target
@json_option
def build(directory: Path | None, gpu: bool, backend: str | None,
          trust_project_config: bool) -> None:
    """Build DIRECTORY's environment image ahead of time (Modal), with a progress line,
    then print the build's record."""
    obj = settings()
    last: dict[str, Any] | None = None
    tty = render.is_tty(sys.stderr) and not obj.json
    for progress in obj.api().environments.build(
            _directory(directory), gpu=gpu, trust_project_config=trust_project_config,
            backend=backend or ""):
        last = to_dict(progress)
        if last["done"]:
            break
        if tty:
            sys.stderr.write("\r\033[K" + render.safe(last["line"]))
            sys.stderr.flush()
        elif not obj.json:
            render.info(render.safe(last["line"]))
    if tty:
        sys.stderr.write("\r\033[K")
    if last is None or not last["done"]:
        raise CliError("E502", "the build's progress stopped before it ended; `parhelia env "
                              "list` says where it is")
    if obj.json:
        render.emit_json(last)
    else:
        render.line(render.safe(last["log"], multiline=True))
    if last["error"]:
        raise CliError("E606", render.safe(last["error"], multiline=True))


@env.command("list")
@json_option
def list_environments() -> None:
    """List the images built, the prepared filesystems kept for warm starts and the
    dependency caches."""
    obj = settings()
    data = to_dict(obj.api().environments.list())
    if obj.json:
        render.emit_json(data)
        return
    render.table(("IMAGE", "BACKEND", "STATUS", "BUILT", "LAST USED", "WHAT"), [
        (i["image_hash"], i["backend"], i["status"],
         f"{int(i['build_ms']) / 1000:.0f}s" if i["built_at"] else "-",
         render.age(i["last_used_at"]) if i["last_used_at"] else "-",
         render.safe(i["error"] or i["description"])) for i in data["images"] or []],
        title="Images", empty="No environment images.")
    render.line("")
    render.table(("ENVIRONMENT", "BASE", "IMAGE", "EXPIRES", "LAST USED"), [
        (s["environment_hash"], (s["base"] or "-")[:12], s["image_id"],
         render.when(s["expires_at"]) or "-",
         render.age(s["last_used_at"]) if s["last_used_at"] else "-")
        for s in data["snapshots"] or []],
        title="Prepared filesystems (warm starts)", empty="No prepared filesystems.")
    render.line("")
    render.table(("CACHE", "BACKEND", "REPOSITORY", "LAST USED"), [
        (c["name"], c["backend"], render.safe(c["repository"]),
         render.age(c["last_used_at"]) if c["last_used_at"] else "-")
        for c in data["caches"] or []], title="Dependency caches", empty="No caches.")


@env.command()
@click.option("--older-than", "older_than", type=params.TIMEOUT, default=None,
              help="Unused for at least this long (default: 7 days).")
@click.option("--all", "everything", is_flag=True, help="Everything, however recent.")
@click.option("--dry-run", is_flag=True, help="Say what would go; remove nothing.")
@json_option
def prune(older_than: int | None, everything: bool, dry_run: bool) -> None:
    """Forget images and prepared filesystems and delete the dependency caches not used
    for a while (the next task builds or sets up again; checkpoints are not touched)."""
    obj = settings()
    data = to_dict(obj.api().environments.prune(
        older_than_hours=(older_than or 0) / 3600, everything=everything, dry_run=dry_run))
    if obj.json:
        render.emit_json(data)
        return
    verb = "Would remove" if dry_run else "Removed"
    for kind, key in (("image(s)", "images"), ("prepared filesystem(s)", "snapshots"),
                      ("cache(s)", "caches")):
        items = data[key] or []
        render.line(f"{verb} {len(items)} {kind}" + (f": {', '.join(items)}" if items else ""))
