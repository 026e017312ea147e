"""Each vocabulary is defined once, in the contract package (``parhelia.backends``,
``parhelia.permissions``, ``parhelia.risky``, ``parhelia.gpus``), and every layer that
accepts a word takes it from there: what the one definition lists is accepted by the
configuration, task validation, the worker spec, the CLI and the MCP bridge, and a word
it does not list is refused by each of them. Nothing here needs a daemon."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import anyio
import click
import pytest

from parhelia import gpus
from parhelia.backends import BACKENDS, DEFAULT_BACKEND
from parhelia.errors import ParheliaError
from parhelia.paths import Paths, resolve
from parhelia.permissions import (
    DEFAULT_PERMISSION_MODE,
    PERMISSION_MODES,
    PERMISSION_RANK,
    wider,
)
from parhelia.risky import DEFAULT_RISKY_PATTERNS
from parheliad.config import Config, load_config, project_widenings
from parheliad.core.tasks import TaskDefaults, TaskOptions, validate_options

UNKNOWN = "kubernetes"


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return resolve(env={"PARHELIA_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)})


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- the layers, each asked whether it accepts a word --------------------------------------


def config_accepts(paths: Paths, section: str, key: str, value: str) -> bool:
    write(paths.config_file, f"[{section}]\n{key} = {json.dumps(value)}\n")
    try:
        cfg = load_config(paths)
    except ParheliaError as exc:
        assert exc.code == "E101" and f"{section}.{key}" in exc.message
        return False
    assert getattr(getattr(cfg, section), key) == value
    return True


def daemon_accepts(**options: Any) -> bool:
    try:
        validate_options(TaskOptions(**options), TaskDefaults.from_config(Config()))
    except ParheliaError as exc:
        assert exc.code == "E101"
        return False
    return True


def worker_accepts(tmp_path: Path, **fields: Any) -> bool:
    from parhelia.spec import load_spec

    agent = {"session_uuid": str(uuid.uuid4()), **fields.pop("agent", {})}
    raw = {"container_id": "c-1", "task_id": "t-1", "session_id": "s-1",
           "volume_dir": str(tmp_path / "vol"), "workspace_dir": str(tmp_path / "ws"),
           "claude_config_dir": str(tmp_path / "claude"), "prompt": "hello",
           "agent": agent, **fields}
    path = write(tmp_path / "spec.json", json.dumps(raw))
    try:
        load_spec(path)
    except ParheliaError as exc:
        assert exc.code == "E100"
        return False
    return True


def cli_accepts(*args: str) -> bool:
    from parhelia_cli.commands.task import task

    create = task.commands["create"]
    try:
        create.make_context("create", ["a prompt", *args])
    except click.UsageError:
        return False
    return True


def mcp_schema(tool: str) -> dict[str, Any]:
    from parhelia_cli import mcp_server

    server = mcp_server.build(mcp_server.Bridge(None, autostart=False))
    tools = {t.name: t for t in anyio.run(server.list_tools)}
    schema: dict[str, Any] = tools[tool].input_schema
    return schema


def enum_of(schema: dict[str, Any], name: str) -> list[str]:
    """The words a JSON schema property accepts (``X | None`` is an ``anyOf``)."""
    prop = schema["properties"][name]
    for branch in prop.get("anyOf", [prop]):
        if "$ref" in branch:
            branch = schema["$defs"][branch["$ref"].rsplit("/", 1)[1]]
        if "enum" in branch:
            return list(branch["enum"])
    raise AssertionError(f"{name}: no enum in {prop}")


# --- backend names -------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_name_is_accepted_everywhere(paths: Paths, tmp_path: Path,
                                                   name: str) -> None:
    assert config_accepts(paths, "orchestrator", "default_backend", name)
    assert daemon_accepts(backend=name)
    assert worker_accepts(tmp_path, backend=name)
    assert cli_accepts("--backend", name)


def test_an_unknown_backend_is_refused_everywhere(paths: Paths, tmp_path: Path) -> None:
    assert not config_accepts(paths, "orchestrator", "default_backend", UNKNOWN)
    assert not daemon_accepts(backend=UNKNOWN)
    assert not worker_accepts(tmp_path, backend=UNKNOWN)
    assert not cli_accepts("--backend", UNKNOWN)


def test_the_daemon_builds_each_backend_under_its_name() -> None:
    from parheliad.backends.local import LocalBackend
    from parheliad.backends.modal import ModalBackend
    from parheliad.backends.registry import FACTORIES

    assert tuple(FACTORIES) == BACKENDS
    assert {LocalBackend.name, ModalBackend.name} == set(BACKENDS)
    assert Config().orchestrator.default_backend == TaskDefaults().backend == DEFAULT_BACKEND
    assert gpus.GPU_BACKEND in BACKENDS


def test_mcp_schemas_offer_exactly_the_backends_and_modes() -> None:
    for tool in ("parhelia_task_create", "parhelia_budget_estimate"):
        schema = mcp_schema(tool)
        assert enum_of(schema, "backend") == list(BACKENDS), tool
    create = mcp_schema("parhelia_task_create")
    assert enum_of(create, "permission_mode") == list(PERMISSION_MODES)
    description = json.dumps(create["properties"]["gpu"])
    assert all(name in description for name in gpus.ACCEPTED)


# --- permission modes ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", PERMISSION_MODES)
def test_every_permission_mode_is_accepted_everywhere(paths: Paths, tmp_path: Path,
                                                      mode: str) -> None:
    assert config_accepts(paths, "agent", "permission_mode", mode)
    assert daemon_accepts(permission_mode=mode)
    assert worker_accepts(tmp_path, agent={"permission_mode": mode})
    assert cli_accepts("--permission-mode", mode)


def test_an_unknown_permission_mode_is_refused_everywhere(paths: Paths,
                                                          tmp_path: Path) -> None:
    # "default" is Claude Code's own ask-for-everything mode: nobody answers a headless task.
    for mode in ("yolo", "default"):
        assert not config_accepts(paths, "agent", "permission_mode", mode)
        assert not daemon_accepts(permission_mode=mode)
        assert not worker_accepts(tmp_path, agent={"permission_mode": mode})
        assert not cli_accepts("--permission-mode", mode)


def test_every_mode_has_a_rank_and_the_default_is_one_of_them() -> None:
    assert set(PERMISSION_RANK) == set(PERMISSION_MODES)
    assert DEFAULT_PERMISSION_MODE in PERMISSION_MODES
    assert Config().agent.permission_mode == TaskDefaults().permission_mode \
        == DEFAULT_PERMISSION_MODE


@pytest.mark.parametrize("mine", PERMISSION_MODES)
def test_a_project_file_may_narrow_the_mode_never_widen_it(paths: Paths, tmp_path: Path,
                                                           mine: str) -> None:
    """The ranking is what project-config narrowing uses: a project file (perhaps from a
    cloned repository) choosing a mode that lets the agent do more is named, a mode of the
    same or a lower rank is not."""
    write(paths.config_file, f"[agent]\npermission_mode = {json.dumps(mine)}\n")
    user = load_config(paths)
    for theirs in PERMISSION_MODES:
        project = tmp_path / f"project-{theirs}"
        write(project / ".parhelia" / "config.toml",
              f"[agent]\npermission_mode = {json.dumps(theirs)}\n")
        found = [(k, a, b) for k, a, b, _ in project_widenings(user, load_config(paths, project))]
        widens = PERMISSION_RANK[theirs] > PERMISSION_RANK[mine]
        assert wider(theirs, mine) is widens
        assert found == ([("agent.permission_mode", mine, theirs)] if widens else []), theirs
    assert wider("bypassPermissions", "plan") and not wider("plan", "bypassPermissions")
    assert wider("something-new", "bypassPermissions")  # unknown counts as the widest


# --- risky-command defaults ----------------------------------------------------------------


def test_risky_defaults_are_the_same_for_the_daemon_and_the_worker() -> None:
    from modal_worker import hooks
    from parhelia.spec import CheckpointPolicy

    assert Config().checkpoint.risky_patterns == list(DEFAULT_RISKY_PATTERNS)
    assert CheckpointPolicy().risky_patterns == list(DEFAULT_RISKY_PATTERNS)
    # Each default really catches a command the agent might run, spacing aside.
    commands = {"rm -rf": "cd build &&  rm  -rf  out", "git clean": "git clean -fdx",
                "git reset --hard": "git reset --hard HEAD~1",
                "git checkout --": "git checkout -- src/"}
    assert set(commands) == set(DEFAULT_RISKY_PATTERNS)
    for pattern, command in commands.items():
        assert hooks.risky(command, Config().checkpoint.risky_patterns) == pattern
    assert hooks.risky("git status && ls -la", DEFAULT_RISKY_PATTERNS) is None


# --- GPU names -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", gpus.ACCEPTED)
def test_every_gpu_name_is_accepted_by_the_cli_and_the_daemon(name: str) -> None:
    assert cli_accepts("--gpu", name)
    assert cli_accepts("--gpu", f"{name.lower()}:2")
    assert daemon_accepts(gpu=name)
    assert set(Config().rates.gpu) == set(gpus.GPU_TYPES)  # a default rate for each type


def test_an_unknown_gpu_is_refused_by_the_cli_and_the_daemon() -> None:
    assert not cli_accepts("--gpu", "V100")
    assert not daemon_accepts(gpu="V100")
    assert not daemon_accepts(gpu="H100", backend="local")  # only Modal has GPUs


def test_help_lists_the_vocabularies() -> None:
    from parhelia_cli.help_topics import render_topic
    from parhelia_cli.main import COMMANDS

    task = render_topic("task", set(COMMANDS))
    assert "|".join(PERMISSION_MODES) in task and "|".join(BACKENDS) in task
    assert ", ".join(gpus.ACCEPTED) in task
    assert ", ".join(gpus.ACCEPTED) in render_topic("gpu", set(COMMANDS))


def test_the_error_code_type_is_the_catalogue() -> None:
    """``parhelia.errors.Code`` (a Literal, for mypy) and the catalogue name the same
    codes, in the same order."""
    from parhelia import errors

    missing = [c for c in errors.CATALOGUE if c not in errors.CODES]
    assert tuple(errors.CATALOGUE) == errors.CODES, (
        f"parhelia.errors.Code must list the catalogue's codes in its order: add {missing}, "
        f"drop {[c for c in errors.CODES if c not in errors.CATALOGUE]}")
    assert all(errors.is_code(c) for c in errors.CATALOGUE)
    assert not errors.is_code("E10l") and errors.code_of("E10l") == "E900"
    assert errors.code_of(None, "E604") == "E604" and errors.code_of("E501") == "E501"


def test_mypy_refuses_an_e_code_that_is_not_in_the_catalogue(tmp_path: Path) -> None:
    """Planted: a typo in a code (``E10l``) fails the type check; the right code passes."""
    import os
    import subprocess
    import sys

    from tests.helpers.paths import REPO

    def check(code: str) -> subprocess.CompletedProcess[str]:
        planted = tmp_path / f"planted_{code}.py"
        planted.write_text("from parhelia.errors import ParheliaError\n\n\n"
                           "def fail() -> ParheliaError:\n"
                           f"    return ParheliaError({code!r}, 'x')\n")
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent",
             "--ignore-missing-imports", "--python-version", "3.11", str(planted)],
            env={**os.environ, "MYPYPATH": str(REPO / "proto")},
            capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)

    bad = check("E10l")
    assert bad.returncode == 1 and 'Argument 1 to "ParheliaError" has incompatible type' \
        in bad.stdout, bad.stdout + bad.stderr
    good = check("E101")
    assert good.returncode == 0, good.stdout + good.stderr
