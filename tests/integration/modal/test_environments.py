"""Environments on the Modal backend, against the fake SDK (which records every image
recipe, sandbox, snapshot and network setting, and runs the real worker): the image's
layers in order with Claude Code last but the sources, a Dockerfile base from a private
context, a base that cannot run the worker refused at build time, setup in a sandbox of
its own whose snapshot the agent's sandbox starts from, warm starts, the setup secrets
and the network allowlist where they belong, the cache volume kept between tasks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from parhelia.environment import CACHE_ROOT_MODAL, Step, WorkerEnvironment
from parhelia.errors import ParheliaError
from parhelia.volume import LocalVolume
from parheliad.backends.base import EnvironmentLaunch
from parheliad.backends.modal.image import BASE_CHECK, CLAUDE_CODE_VERSION
from parheliad.environments.model import (
    BASE_DEBIAN_SLIM,
    BASE_DOCKERFILE,
    BASE_REGISTRY,
    Base,
    ImageRecipe,
)
from tests.helpers.modal_backend import container_spec, follow, make_backend, script, worker_spec

pytestmark = pytest.mark.timeout(120)

SECRET = "modal-setup-secret-value-42"


def _steps(fake: Any, image_id: str) -> list[list[str]]:
    path = fake.root / "images" / image_id.removeprefix("im-")
    return json.loads(path.read_text())["steps"]


async def test_the_image_is_the_base_then_its_layers_then_claude_code_then_the_sources(
        fake_modal: Any) -> None:
    backend = make_backend(fake_modal)
    recipe = ImageRecipe(base=Base(BASE_DEBIAN_SLIM, python="3.12"), apt=("libpq-dev",),
                         run=("pip install poetry",), claude_version=CLAUDE_CODE_VERSION,
                         hash="img-1")
    steps = _steps(fake_modal, await backend.build_image(recipe, None))
    kinds = [s[0] for s in steps]
    assert steps[0] == ["debian_slim", "3.12"]
    assert steps[1] == ["apt", "libpq-dev"] and steps[2] == ["run", "pip install poetry"]
    # Parhelia's layers after the environment's, Claude Code pinned among them; the worker's
    # sources are mounted at start (not a build step, so never rebuilt for a code change).
    claude = next(i for i, s in enumerate(steps)
                  if any(f"claude-code@{CLAUDE_CODE_VERSION}" in c for c in s[1:]))
    assert claude > 2 and kinds[claude + 1:] == ["env"]
    assert "copy_python" not in kinds

    registry = ImageRecipe(base=Base(BASE_REGISTRY, image="ubuntu:24.04", python="3.12"),
                           claude_version=CLAUDE_CODE_VERSION, hash="img-2")
    steps = _steps(fake_modal, await backend.build_image(registry, None))
    assert steps[0] == ["registry", "ubuntu:24.04", "3.12"]
    assert steps[1] == ["run", BASE_CHECK]  # right after the base, before anything else


async def test_one_build_per_recipe_and_a_changed_copied_lockfile_rebuilds(
        fake_modal: Any, tmp_path: Path) -> None:
    backend = make_backend(fake_modal)
    build = tmp_path / "build"
    (build / "context").mkdir(parents=True)
    (build / "Dockerfile").write_text("FROM python:3.12-slim\nCOPY requirements.txt /r\n"
                                      "RUN pip install -r /r\n")
    (build / "context" / "requirements.txt").write_text("requests==2.32.0\n")
    recipe = ImageRecipe(base=Base(BASE_DOCKERFILE, dockerfile="Dockerfile"),
                         claude_version=CLAUDE_CODE_VERSION, hash="img-3")
    first = await backend.build_image(recipe, build)
    assert await backend.build_image(recipe, build) == first
    assert len(fake_modal.sdk.built_images()) == 1
    (build / "context" / "requirements.txt").write_text("requests==2.32.3\n")
    assert await backend.build_image(recipe, build) != first
    assert len(fake_modal.sdk.built_images()) == 2


async def test_a_base_that_cannot_run_the_worker_is_refused_when_it_is_built(
        fake_modal: Any) -> None:
    backend = make_backend(fake_modal)
    recipe = ImageRecipe(base=Base(BASE_REGISTRY, image="alpine:3.20"),
                         claude_version=CLAUDE_CODE_VERSION, hash="img-4")
    with pytest.raises(ParheliaError) as err:
        await backend.build_image(recipe, None)
    assert err.value.code == "E606"
    assert "Debian or Ubuntu" in err.value.message
    assert "modal image logs" in err.value.message  # where Modal's own build log is


def _environment_specs(backend: Any, fake: Any, container_id: str, *, setup: list[str],
                       image_id: str, warm: str = "", cache: str = "parhelia-cache-t1",
                       snapshots: list[str] | None = None,
                       agent: tuple[dict[str, Any], ...] = ({"write": "a.txt", "content": "A"},)
                       ) -> tuple[Any, Any]:
    env = WorkerEnvironment(hash="env-t1", env={"GREETING": "hi"},
                            setup=tuple(Step(f"setup[{i}]", run=c)
                                        for i, c in enumerate(setup, 1)),
                            cache_root=CACHE_ROOT_MODAL, cache_dirs=("~/.cache/tool",))
    spec = dataclasses.replace(
        worker_spec(backend, script(*agent), container_id,
                    session_id=f"s-{container_id}"), environment=env)

    async def record(snapshot_id: str) -> None:
        if snapshots is not None:
            snapshots.append(snapshot_id)

    launch = EnvironmentLaunch(
        hash="env-t1", image_hash="img-t1", image_id=image_id, setup=True,
        setup_secrets=("setup-secret",), agent_hosts=("api.anthropic.com", "pypi.org"),
        cache_volume=cache, warm_image_id=warm, setup_timeout_seconds=60,
        snapshot_ttl_seconds=3600, on_snapshot=record)
    return spec, dataclasses.replace(container_spec(spec), environment=launch)


async def _prepared_backend(fake: Any, tmp_path: Path) -> tuple[Any, str, LocalVolume]:
    """A backend, its environment's image built, the setup secret created on Modal, and
    the daemon's local volume."""
    backend = make_backend(fake)
    fake.create_secret("setup-secret", {"SETUP_TOKEN": SECRET})
    image_id = await backend.build_image(ImageRecipe(
        base=Base(BASE_DEBIAN_SLIM, python="3.11"), claude_version=CLAUDE_CODE_VERSION,
        hash="img-t1"), None)
    return backend, image_id, LocalVolume(tmp_path / "local")


async def _launch(backend: Any, local: LocalVolume, spec: Any, cspec: Any) -> str:
    key = f"specs/{spec.container_id}.json"
    local.put(key, json.dumps(spec.to_dict()).encode())
    await backend.push(local, [key], session_id=spec.session_id)
    return str(await backend.launch(cspec))


CACHED_STEP = ("if [ -f ~/.cache/tool/pkg ]; then echo cache-hit; else echo cache-miss; "
               "echo pkg > ~/.cache/tool/pkg; fi")


async def test_setup_runs_in_its_own_sandbox_and_the_agent_starts_from_its_snapshot(
        fake_modal: Any, tmp_path: Path) -> None:
    backend, image_id, local = await _prepared_backend(fake_modal, tmp_path)
    snapshots: list[str] = []
    spec, cspec = _environment_specs(
        backend, fake_modal, "c-env-1", image_id=image_id, snapshots=snapshots,
        setup=[CACHED_STEP, 'echo "token $SETUP_TOKEN" > /dev/null', "echo prepared > made.txt"],
        # The agent writes where setup's cache is linked: a package planted for later setups.
        agent=({"run": ["sh", "-c", "echo planted > ~/.cache/tool/planted"], "out": "ran.txt"},
               {"write": "a.txt", "content": "A"}))
    sb_id = await _launch(backend, local, spec, cspec)
    records, _ = await follow(backend, "c-env-1", timeout=90)
    types = [r["type"] for r in records]
    assert types.index("setup_completed") < types.index("worker_started")
    assert "setup_skipped" in types  # the agent's worker found its workspace prepared
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert next(r for r in records if r["type"] == "worker_exited")["data"]["exit_code"] == 0

    setup_sb, agent_sb = (fake_modal.sandbox("c-env-1-setup"), fake_modal.sandbox("c-env-1"))
    assert agent_sb["id"] == sb_id and setup_sb["tags"]["parhelia-phase"] == "setup"
    # Setup: the full network, the setup secret; the agent: its allowlist, no such secret.
    assert setup_sb["network"]["outbound_domain_allowlist"] is None
    assert agent_sb["network"]["outbound_domain_allowlist"] == ["api.anthropic.com",
                                                                "pypi.org"]
    assert setup_sb["secrets"] == 1 and agent_sb["secrets"] == 1  # the agent's: the model key
    # The agent's sandbox started from the snapshot of the prepared one (files made by
    # setup are there), which was recorded for warm starts.
    assert snapshots and agent_sb["image"] == snapshots[0]
    assert (fake_modal.sandbox_root(sb_id) / "workspace" / "made.txt").read_text().strip() \
        == "prepared"
    # Both mount only their session's area of the volume (ADR 0031).
    area = {"volume": "parhelia-data", "sub_path": "sessions/s-c-env-1", "read_only": False}
    assert setup_sb["volumes"] == {"/vol": area, "/cache": "parhelia-cache-t1"}
    # The agent's sandbox has no cache volume: its cache directory is its own and ends
    # with it, so nothing the agent writes there reaches a later task's setup.
    assert agent_sb["volumes"] == {"/vol": area}
    ran = fake_modal.sandbox_root(sb_id) / "workspace" / "ran.txt"
    assert ran.read_text().startswith("exit 0"), ran.read_text()  # it could write there

    # The next task of the same environment starts warm: no setup sandbox, and its setup
    # would have found the cache the first one filled.
    spec2, cspec2 = _environment_specs(backend, fake_modal, "c-env-2", image_id=image_id,
                                       warm=snapshots[0], setup=[CACHED_STEP])
    await _launch(backend, local, spec2, cspec2)
    await follow(backend, "c-env-2", timeout=90)
    assert not [s for s in fake_modal.sandboxes() if s["name"] == "c-env-2-setup"]
    # A third without the snapshot sets up again: its cache volume remembers the first.
    spec3, cspec3 = _environment_specs(backend, fake_modal, "c-env-3", image_id=image_id,
                                       setup=[CACHED_STEP])
    await _launch(backend, local, spec3, cspec3)
    await follow(backend, "c-env-3", timeout=90)
    sessions = fake_modal.root / "volumes" / "parhelia-data" / "sessions"
    log = sessions / "s-c-env-3" / "logs" / "c-env-3" / "setup.log"  # its session's area
    assert "cache-hit" in log.read_text(), log.read_text()
    cache_volume = fake_modal.root / "volumes" / "parhelia-cache-t1"
    assert any(cache_volume.rglob("pkg")) and not any(cache_volume.rglob("planted"))
    first_log = sessions / "s-c-env-1" / "logs" / "c-env-1" / "setup.log"
    assert "cache-miss" in first_log.read_text()
    assert SECRET not in first_log.read_text()


async def test_an_expired_snapshot_sets_up_again(fake_modal: Any, tmp_path: Path) -> None:
    backend, image_id, local = await _prepared_backend(fake_modal, tmp_path)
    spec, cspec = _environment_specs(backend, fake_modal, "c-env-4", image_id=image_id,
                                     warm="im-gone0000000000000000", setup=["true"])
    await _launch(backend, local, spec, cspec)
    await follow(backend, "c-env-4", timeout=90)
    assert fake_modal.sandbox("c-env-4-setup")  # Modal no longer had it: set up afresh


async def test_a_failed_setup_ends_in_its_sandbox_with_e606(fake_modal: Any,
                                                             tmp_path: Path) -> None:
    backend, image_id, local = await _prepared_backend(fake_modal, tmp_path)
    snapshots: list[str] = []
    spec, cspec = _environment_specs(backend, fake_modal, "c-env-5", image_id=image_id,
                                     snapshots=snapshots,
                                     setup=['echo "no luck with $SETUP_TOKEN"; exit 7'])
    sb_id = await _launch(backend, local, spec, cspec)
    records, _ = await follow(backend, "c-env-5", timeout=90)
    assert sb_id == fake_modal.sandbox("c-env-5-setup")["id"]  # the incarnation's sandbox
    exited = next(r for r in records if r["type"] == "worker_exited")["data"]
    assert exited["exit_code"] == 6 and exited["error_code"] == "E606"
    assert "exited with 7" in exited["error_message"]
    assert SECRET not in json.dumps(records) and "no luck with ***" in exited["error_message"]
    assert not snapshots and not [s for s in fake_modal.sandboxes() if s["name"] == "c-env-5"]
    assert any(r["type"] == "checkpoint_created" and r["data"]["trigger"] == "error"
               for r in records)
