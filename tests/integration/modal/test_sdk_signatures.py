"""Every ``modal`` callable and keyword the backend uses exists in the installed SDK.

The backend runs a whole lifecycle against the fake SDK through a recorder that notes each
call (``Sandbox.create.aio`` with its keywords, ``sb.poll.aio()``, ``vol.batch_upload.aio``,
``batch.put_file``...) and each exception class it reaches for; each recorded call is then
bound to the REAL installed SDK's ``inspect.signature``. An SDK upgrade that renames or drops
anything we use fails here. The fake's own signatures must be a subset of the real ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import modal
import modal.app
import modal.container_process
import modal.volume
import pytest

from parhelia.clonejob import CloneRequest
from parhelia.environment import CACHE_ROOT_MODAL, Step, WorkerEnvironment
from parhelia.errors import ParheliaError
from parhelia.volume import LocalVolume
from parheliad.backends.base import EnvironmentLaunch
from parheliad.backends.modal import setup as modal_setup
from parheliad.environments.model import (
    BASE_DEBIAN_SLIM,
    BASE_DOCKERFILE,
    BASE_REGISTRY,
    Base,
    ImageRecipe,
)
from tests.helpers.gitrepo import init_repo
from tests.helpers.modal_backend import (
    OWNER,
    container_spec,
    follow,
    make_backend,
    script,
    start,
    worker_spec,
)
from tests.helpers.paths import REPO

# Fake class name -> the real SDK's class.
REAL_CLASSES: dict[str, Any] = {
    "App": modal.App, "Image": modal.Image, "Sandbox": modal.Sandbox, "Secret": modal.Secret,
    "Volume": modal.Volume, "ContainerProcess": modal.container_process.ContainerProcess,
    "_Upload": modal.volume.VolumeUploadContextManager,
    "AppSandboxesManager": modal.app.AppSandboxesManager,
    "experimental": modal.experimental, "OutboundPolicy": modal.experimental.OutboundPolicy,
}


STATIC_IMAGES = ("Image.debian_slim", "Image.from_registry", "Image.from_dockerfile",
                 "Image.from_id")
"""Image constructors (static): every other Image step is called on an image."""
IMPLICIT_FIRST = ("Image.from_id", "Volume.objects.delete.aio")
"""Calls whose real signature shows its implicit first argument (``cls`` of a classmethod,
``self`` of the ``Volume.objects`` manager) although the caller passes none."""


class Calls:
    def __init__(self) -> None:
        self.calls: set[tuple[str, bool, int, tuple[str, ...]]] = set()
        self.exceptions: set[str] = set()


class Recorder:
    """Wraps the fake SDK (or an object it returned); notes calls by class-level path."""

    def __init__(self, target: Any, path: str, log: Calls, bound: bool = False) -> None:
        self._t, self._p, self._log, self._bound = target, path, log, bound

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._t, name)
        path = f"{self._p}.{name}" if self._p else name
        if path.startswith("exception."):
            self._log.exceptions.add(name)
            return value  # the class itself: used in except clauses
        if name in ("object_id", "app_id", "returncode", "stdout", "stderr", "stdin"):
            return value
        if _is_instance(value):  # a property giving an SDK object (``app.sandboxes``)
            return Recorder(value, type(value).__name__, self._log, bound=True)
        return Recorder(value, path, self._log, self._bound or _is_instance(self._t))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._log.calls.add((self._p, self._bound, len(args), tuple(sorted(kwargs))))
        args = tuple(_unwrap(a) for a in args)
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        return _wrap(self._t(*args, **kwargs), self._log)

    async def __aenter__(self) -> Any:
        return _wrap(await self._t.__aenter__(), self._log)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._t.__aexit__(*exc)

    def __aiter__(self) -> Any:
        return self._agen()

    async def __anext__(self) -> Any:  # an async generator the SDK returned
        return _wrap(await self._t.__anext__(), self._log)

    async def aclose(self) -> None:
        await self._t.aclose()

    async def _agen(self) -> Any:
        async for item in self._t:
            yield _wrap(item, self._log)


def _unwrap(value: Any) -> Any:
    if isinstance(value, Recorder):
        return value._t
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value


def _is_instance(obj: Any) -> bool:
    return type(obj).__name__ in REAL_CLASSES


def _wrap(value: Any, log: Calls) -> Any:
    if inspect.iscoroutine(value):
        async def awaited() -> Any:
            return _wrap(await value, log)
        return awaited()
    if inspect.isasyncgen(value):
        return Recorder(value, "", log)
    if _is_instance(value):
        return Recorder(value, type(value).__name__, log, bound=True)
    return value


def _resolve_real(path: str) -> Any:
    head, *rest = path.split(".")
    obj = REAL_CLASSES[head]
    for part in rest:
        obj = getattr(obj, part)
    return obj


@pytest.fixture
async def recorded(fake_modal, tmp_path: Path) -> Calls:
    log = Calls()
    backend = make_backend(fake_modal)
    backend._sdk_obj = Recorder(fake_modal.sdk, "", log)
    local = LocalVolume(tmp_path / "local")
    await modal_setup.run_setup(backend)
    # The named secret: the sandbox gets the credential through the outbound policy.
    fake_modal.create_secret("anthropic-api-key", {"ANTHROPIC_API_KEY": "sk-ant-sig"})
    # The agent outlives every call below, so that `terminate` finds the sandbox running
    # and really calls Sandbox.terminate (a 2 s agent ended first on an idle machine).
    spec = worker_spec(backend, script({"write": "a.txt", "content": "A"}, {"sleep": 120}),
                       "c-sig-1")
    sb_id = await start(backend, local, spec)
    await follow(backend, "c-sig-1", until="agent_started")
    await backend.statuses([(sb_id, "c-sig-1")])
    fresh = make_backend(fake_modal)  # a restarted daemon: knows no sandbox yet
    fresh._sdk_obj = Recorder(fake_modal.sdk, "", log)
    assert [c.container_id for c in await fresh.list(OWNER)] == ["c-sig-1"]
    with contextlib.suppress(ParheliaError):  # the call is what counts here
        await backend.control(sb_id, "c-sig-1", {"type": "checkpoint", "message": "now"})
    # An attach (no TUI runs here: tmux exits at once; the exec's keywords are what count).
    term = await backend.open_terminal(sb_id, "c-sig-1", backend.terminal_argv("c-sig-1"),
                                       24, 80, "xterm")
    await term.resize(30, 100)
    await term.wait()
    with contextlib.suppress(ParheliaError):  # no port 22 declared: E601 after the call
        await backend.ssh_endpoint(sb_id)
    with contextlib.suppress(ParheliaError):  # no port 22 declared: E601 after the call
        await backend.ssh_endpoint(sb_id)
    await backend.terminate(sb_id, grace_seconds=0.2)
    fake_modal.wait_ended(sb_id)
    third = make_backend(fake_modal)  # another restart, after the sandbox ended
    third._sdk_obj = Recorder(fake_modal.sdk, "", log)
    await follow(third, "c-sig-1", until="checkpoint_created")
    await fresh.pull(local, [f"results/{spec.container_id}.json", "cas/blobs/aa/" + "a" * 64],
                     session_id=spec.session_id)
    local.put("checkpoints/s/x.json", b"{}")
    await fresh.push(local, ["checkpoints/s/x.json"], session_id="s")
    await fresh.statuses([(sb_id, "c-sig-1")])
    await fresh.credentials()
    await fresh.compute_costs([("c-sig-1", 0.0)])
    # A clone sandbox (ADR 0055) with the named secret, on a repository of this machine.
    fake_modal.create_secret("github-token", {"GITHUB_TOKEN": "ghp_fake"})
    repo = tmp_path / "repo"
    init_repo(repo, {"a.txt": "a\n"})
    assert await fresh.has_secret("github-token")
    done = await fresh.clone_with_secret("sig", CloneRequest(url=f"file://{repo}", ref=None),
                                         "github-token", local)
    assert done.ok, done
    await _environments(fresh, fake_modal, local, tmp_path)
    return log


async def _environments(backend: Any, fake_modal: Any, local: LocalVolume,
                        tmp_path: Path) -> None:
    """Environments: images from each kind of base, a setup sandbox snapshotted, the
    agent's sandbox from the snapshot with its allowlist and the cache volume, a warm
    start by image id, a cache volume deleted (ADR 0052)."""
    build = tmp_path / "build"
    (build / "context").mkdir(parents=True)
    (build / "Dockerfile").write_text("FROM python:3.12-slim\n")
    for base in (Base(BASE_REGISTRY, image="ubuntu:24.04", python="3.12"),
                 Base(BASE_DOCKERFILE, dockerfile="Dockerfile", build_args={"V": "1"},
                      python="3.12")):
        await backend.build_image(ImageRecipe(base=base, apt=("libpq-dev",), run=("true",),
                                              hash=f"img-sig-{base.kind}"), build)
    image_id = await backend.build_image(ImageRecipe(base=Base(BASE_DEBIAN_SLIM,
                                                               python="3.11"),
                                                     hash="img-sig"), None)
    fake_modal.create_secret("sig-setup", {"SIG": "x"})
    snapshots: list[str] = []

    async def record(snapshot_id: str) -> None:
        snapshots.append(snapshot_id)

    for cid, warm in (("c-sig-env", ""), ("c-sig-warm", None)):
        spec = dataclasses.replace(
            worker_spec(backend, script({"write": "b.txt", "content": "B"}), cid,
                        session_id=f"s-{cid}"),
            environment=WorkerEnvironment(hash="env-sig", setup=(Step("s", run="true"),),
                                          cache_root=CACHE_ROOT_MODAL,
                                          cache_dirs=("~/.cache/x",)))
        launch = EnvironmentLaunch(
            hash="env-sig", image_hash="img-sig", image_id=image_id, setup=True,
            setup_secrets=("sig-setup",), agent_hosts=("api.anthropic.com",),
            cache_volume="parhelia-cache-sig",
            warm_image_id=snapshots[0] if warm is None else warm, on_snapshot=record)
        key = f"specs/{cid}.json"
        local.put(key, json.dumps(spec.to_dict()).encode())
        await backend.push(local, [key], session_id=spec.session_id)
        await backend.launch(dataclasses.replace(container_spec(spec), environment=launch))
        await follow(backend, cid, timeout=90)
    assert await backend.delete_cache("parhelia-cache-sig")


async def test_every_call_the_backend_makes_binds_to_the_installed_sdk(recorded: Calls):
    paths = {p for p, _, _, _ in recorded.calls}
    # The lifecycle above reached every part of the SDK the backend uses.
    for expected in ("App.lookup.aio", "Image.debian_slim", "Image.build.aio",
                     "Sandbox.create.aio", "Sandbox.from_name.aio", "Sandbox.list.aio",
                     "Sandbox.poll.aio", "Sandbox.terminate.aio", "Sandbox.exec.aio",
                     "Sandbox.get_tags.aio", "Volume.from_name", "Volume.read_file.aio",
                     "Volume.listdir.aio", "Volume.batch_upload.aio", "_Upload.put_file",
                     "Volume.hydrate.aio", "Secret.from_name", "Secret.from_dict",
                     "Secret.hydrate.aio", "ContainerProcess.wait.aio", "Sandbox.tunnels.aio",
                     "AppSandboxesManager.stats.aio", "Volume.with_mount_options",
                     "Volume.copy_files.aio", "experimental.OutboundPolicy",
                     "OutboundPolicy.with_header_replacement", "Image.from_registry",
                     "Image.from_dockerfile", "Image.from_id", "Image.apt_install",
                     "Image.run_commands", "Sandbox.snapshot_filesystem.aio",
                     "Volume.objects.delete.aio", "Sandbox.wait.aio", "Volume.remove_file.aio"):
        assert expected in paths, expected
    problems = []
    for path, bound, nargs, keywords in sorted(recorded.calls):
        if path.startswith("Image.") and path.count(".") == 1 and path not in STATIC_IMAGES:
            bound = True  # chained builder steps are called on an image
        real = _resolve_real(path)
        try:
            sig = inspect.signature(real)
        except (TypeError, ValueError) as exc:
            problems.append(f"{path}: no signature ({exc})")
            continue
        implicit = (bound and "self" in sig.parameters) or path in IMPLICIT_FIRST
        placeholders = [None] * (nargs + (1 if implicit else 0))
        try:
            sig.bind(*placeholders, **dict.fromkeys(keywords))
        except TypeError as exc:
            problems.append(f"{path}({nargs} args, {keywords}): {exc}")
    assert not problems, "\n".join(problems)


async def test_every_exception_class_the_backend_catches_exists_in_the_sdk(recorded: Calls):
    assert {"NotFoundError", "AlreadyExistsError"} <= recorded.exceptions
    from parheliad.backends import modal as package

    source = "".join(p.read_text() for p in Path(package.__file__).parent.glob("*.py"))
    import re

    named = set(re.findall(r"errors\.([A-Z][A-Za-z]+)", source))
    assert named, "the backend names no Modal exception?"
    for name in recorded.exceptions | named:
        cls = getattr(modal.exception, name)
        assert issubclass(cls, modal.exception.Error), name


def _public(cls: Any) -> dict[str, Any]:
    return {n: getattr(cls, n) for n in vars(cls) if not n.startswith("_") and callable(
        getattr(cls, n))}


FAKE_PATHS = {"OutboundPolicy": "experimental.OutboundPolicy"}
"""Where the fake keeps a class that is not at the top of its package."""


@pytest.mark.parametrize("name", sorted(REAL_CLASSES))
def test_the_fakes_signatures_are_a_subset_of_the_real_ones(fake_modal, name: str):
    fake_cls = fake_modal.sdk
    for part in FAKE_PATHS.get(name, name).split("."):
        fake_cls = getattr(fake_cls, part)
    real_cls = REAL_CLASSES[name]
    for attr, fake_fn in _public(fake_cls).items():
        assert hasattr(real_cls, attr), f"{name}.{attr} is not in the real SDK"
        real_fn = getattr(real_cls, attr)
        fake_sig = inspect.signature(fake_fn)
        real_sig = inspect.signature(real_fn)
        for pname, param in fake_sig.parameters.items():
            assert pname in real_sig.parameters, f"{name}.{attr}: {pname} not in the real SDK"
            real_param = real_sig.parameters[pname]
            assert param.kind == real_param.kind, f"{name}.{attr}: {pname} kind differs"
            plain = (type(None), bool, int, float, str, list, dict, tuple)
            if param.default is not inspect.Parameter.empty \
                    and isinstance(real_param.default, plain):
                assert real_param.default == param.default, \
                    f"{name}.{attr}: {pname} default {param.default!r} != {real_param.default!r}"
        if hasattr(fake_fn, "aio"):
            assert hasattr(real_fn, "aio"), f"{name}.{attr} has no .aio in the real SDK"


def test_the_fakes_exceptions_have_the_real_hierarchy(fake_modal):
    fake = fake_modal.sdk.exception
    for name in dir(fake):
        fake_exc = getattr(fake, name)
        if not (isinstance(fake_exc, type) and issubclass(fake_exc, Exception)):
            continue
        real_exc = getattr(modal.exception, name)
        for base in fake_exc.__mro__[1:]:
            if base.__module__ == fake.__name__:
                assert issubclass(real_exc, getattr(modal.exception, base.__name__)), name


def test_the_real_sdk_is_the_pinned_minor(fake_modal):
    assert modal.__version__.startswith("1.6."), modal.__version__
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"modal>=1.6,<1.7"' in pyproject
    lock = json.dumps((REPO / "uv.lock").read_text())
    assert 'name = \\"modal\\"\\nversion = \\"1.6.' in lock


def test_the_live_tests_cleanup_call_exists():
    sig = inspect.signature(modal.Volume.objects.delete.aio)
    sig.bind(None, "name", allow_missing=True)  # bound method of the manager: self first
