"""A fake of the ``modal`` SDK (1.6.4) at its boundary, for tests without the network.

Put ``tests/fake_modal/shadow`` first on ``PYTHONPATH`` and set ``FAKE_MODAL_ROOT``: the
daemon then imports this instead of the real SDK. Behaviour follows the verified facts of
modal 1.6.4 (see docs/contracts.md "Modal backend"): lazy ``Volume``/``Secret`` handles,
``Sandbox.list`` returning running sandboxes only and without their tags, names unique per
app (``AlreadyExistsError``), ``timeout`` 300 by default and ``None`` refused, returncode
124 on timeout and 137 on ``terminate()``, volume writes inside a sandbox visible to the
client only after ``sync`` or the sandbox's end, ``batch_upload`` refusing an existing
path without ``force=True``, ``add_local_*`` steps last. Each sandbox runs its command (the
real worker) as a local process whose ``/vol``, ``/workspace`` and ``/root`` are per-sandbox
directories: sandboxes, volumes and their state are ``tests.modal_host``'s, shared with the
gRPC stand-in of Modal's service (``tests/modal_standin``) that the real SDK talks to.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import os
import shutil
import subprocess
import time
import warnings
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import IO, Any

from tests.modal_host import billing, sandboxes
from tests.modal_host import state as _service

from . import exception, experimental
from ._dual import gate_async, gate_sync, run_blocking, sdkmethod

__version__ = "1.6.4+fake"
__all__ = ["App", "AppSandboxesManager", "Image", "Sandbox", "SandboxGroupStats", "Secret",
           "Volume", "exception", "experimental"]

_GPUS = {"T4", "L4", "A10G", "L40S", "A100", "A100-40GB", "A100-80GB", "H100", "H200", "B200"}
READ_BLOCK = 1 << 16
"""The fake's ``Volume.read_file`` chunk (modal streams a file in blocks too)."""


class DeprecationError(UserWarning):
    pass


# -- App ----------------------------------------------------------------------------------


class App:
    def __init__(self, name: str | None = None, app_id: str | None = None) -> None:
        self.name = name
        self._app_id = app_id

    @property
    def app_id(self) -> str | None:
        return self._app_id

    @property
    def sandboxes(self) -> AppSandboxesManager:
        return AppSandboxesManager(self)

    def _lookup(name: str, *, client: Any = None, environment_name: str | None = None,
                create_if_missing: bool = False) -> App:
        path = _service.root() / "apps" / f"{name}.json"
        if not path.exists():
            if not create_if_missing:
                raise exception.NotFoundError(f"App '{name}' not found")
            _service.write_json(path, {"app_id": _service.new_id("ap")})
        return App(name, _service.read_json(path)["app_id"])

    lookup = sdkmethod(_lookup)


@dataclass(frozen=True)
class SandboxGroupStats:
    """modal 1.6.4's ``modal.types.SandboxGroupStats``."""

    tags: dict[str, str | None]
    cost: Decimal
    cost_by_resource: dict[str, Decimal]


FAKE_PRICES = billing.PRICES
"""USD per core, GiB or GPU second; ``billing.json`` in the service's root overrides them."""


class AppSandboxesManager:
    """``app.sandboxes``: ``stats`` as modal 1.6.4 returns it (``tests.modal_host.billing``)."""

    def __init__(self, app: App) -> None:
        self._app = app

    def _stats(self, *, since: datetime, until: datetime | None = None,
               group_by_tags: Sequence[str] | None = None,
               tags: dict[str, str] | None = None) -> list[SandboxGroupStats]:
        if self._app.app_id is None:
            raise exception.InvalidError(
                "`App.sandboxes.stats` requires a running, deployed or looked-up App.")
        since = (since if since.tzinfo else since.astimezone()).astimezone(UTC)
        if until is not None:
            until = (until if until.tzinfo else until.astimezone()).astimezone(UTC)
        try:
            end = billing.check_range(since, until)
        except billing.InvalidRange as exc:
            raise exception.InvalidError(str(exc)) from None
        return [SandboxGroupStats(group, sum(costs.values(), Decimal(0)), costs)
                for group, costs in billing.group_costs(self._app.app_id, since, end,
                                                        list(group_by_tags or []),
                                                        dict(tags or {}))]

    stats = sdkmethod(_stats, agen=True)


def _app_name(app_id: str) -> str | None:
    base = _service.root() / "apps"
    for path in base.glob("*.json") if base.is_dir() else []:
        if _service.read_json(path)["app_id"] == app_id:
            return path.stem
    return None


# -- Secret ---------------------------------------------------------------------------------


class Secret:
    def __init__(self, name: str | None = None, values: dict[str, str] | None = None,
                 required_keys: Sequence[str] = ()) -> None:
        self._name = name
        self._values = values
        self._required = list(required_keys)

    @staticmethod
    def from_name(name: str, *, environment_name: str | None = None,
                  required_keys: list[str] = [], client: Any = None) -> Secret:  # noqa: B006
        return Secret(name=name, required_keys=required_keys)

    @staticmethod
    def from_dict(env_dict: dict[str, str | None] = {}) -> Secret:  # noqa: B006
        return Secret(values={k: v for k, v in env_dict.items() if v is not None})

    def _resolve(self) -> dict[str, str]:
        if self._values is not None:
            return dict(self._values)
        path = _service.root() / "secrets" / f"{self._name}.json"
        if not path.exists():
            raise exception.NotFoundError(f"Secret '{self._name}' not found")
        values = _service.read_json(path)
        missing = [k for k in self._required if k not in values]
        if missing:
            raise exception.NotFoundError(
                f"Secret '{self._name}' is missing required keys: {', '.join(missing)}")
        return values

    def _hydrate(self, client: Any = None) -> Secret:
        self._resolve()
        return self

    hydrate = sdkmethod(_hydrate)


# -- Image ----------------------------------------------------------------------------------


class Image:
    def __init__(self, steps: tuple[tuple[str, ...], ...], local: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, image_id: str | None = None) -> None:
        self._steps = steps
        self._local = local
        self._env = dict(env or {})
        self.object_id: str | None = image_id

    def _add(self, *step: str, env: dict[str, str] | None = None) -> Image:
        if self._local:
            raise exception.InvalidError(
                "An image tried to run a build step after using `image.add_local_*` to include "
                "local files. Run `image.add_local_*` commands last in your image build, or "
                "set `copy=True`.")
        return Image(self._steps + (step,), self._local, {**self._env, **(env or {})})

    @staticmethod
    def debian_slim(python_version: str | None = None, force_build: bool = False) -> Image:
        return Image((("debian_slim", str(python_version)),))

    @staticmethod
    def from_registry(tag: str, secret: Secret | None = None, *,
                      setup_dockerfile_commands: list[str] = [],  # noqa: B006
                      force_build: bool = False, add_python: str | None = None,
                      **kwargs: Any) -> Image:
        return Image((("registry", tag, add_python or ""),))

    @staticmethod
    def from_dockerfile(path: str | Path, *, force_build: bool = False,
                        context_dir: Path | str | None = None, ignore: Any = None,
                        build_args: dict[str, str] = {},  # noqa: B006
                        registry_secret: Secret | None = None,
                        secrets: Collection[Secret] | None = None,
                        env: dict[str, str | None] | None = None, gpu: str | None = None,
                        add_python: str | None = None) -> Image:
        """The Dockerfile and its context are read here (modal 1.6.4 reads them when the
        image is loaded): the step records their digests, so a changed file rebuilds."""
        dockerfile = Path(path).expanduser().read_bytes()
        context = hashlib.sha256()
        base = Path(context_dir) if context_dir is not None else Path(path).parent
        for file in sorted(p for p in base.rglob("*") if p.is_file()):
            context.update(file.relative_to(base).as_posix().encode() + b"\0")
            context.update(file.read_bytes())
        return Image((("dockerfile", hashlib.sha256(dockerfile).hexdigest(),
                       context.hexdigest(), json.dumps(build_args, sort_keys=True),
                       add_python or ""),))

    @staticmethod
    def from_id(image_id: str, client: Any = None) -> Image:
        """A handle on a built image or a snapshot (lazy: an unknown id fails when a
        sandbox is created from it, NotFoundError, as modal 1.6.4 hydrates it then)."""
        return Image((("from_id", image_id),), image_id=image_id)

    def apt_install(self, *packages: str | list[str], force_build: bool = False,
                    env: dict[str, str | None] | None = None,
                    secrets: Collection[Secret] | None = None, gpu: str | None = None) -> Image:
        return self._add("apt", *_flat(packages))

    def run_commands(self, *commands: str | list[str], env: dict[str, str | None] | None = None,
                     secrets: Collection[Secret] | None = None,
                     volumes: dict[str, Volume] | None = None, gpu: str | None = None,
                     force_build: bool = False) -> Image:
        return self._add("run", *_flat(commands))

    def pip_install(self, *packages: str | list[str], find_links: str | None = None,
                    index_url: str | None = None, extra_index_url: str | None = None,
                    pre: bool = False, extra_options: str = "", force_build: bool = False,
                    env: dict[str, str | None] | None = None,
                    secrets: Collection[Secret] | None = None, gpu: str | None = None) -> Image:
        return self._add("pip", *_flat(packages))

    def env(self, vars: dict[str, str]) -> Image:
        return self._add("env", json.dumps(vars, sort_keys=True), env=vars)

    def workdir(self, path: str) -> Image:
        return self._add("workdir", str(path))

    def add_local_python_source(self, *modules: str, copy: bool = False,
                                ignore: Any = None) -> Image:
        for module in modules:
            __import__(module)  # the real SDK refuses a module it cannot find
        if copy:
            return self._add("copy_python", *modules)
        return Image(self._steps, self._local + modules, self._env)

    def _digest(self) -> str:
        if self._steps and self._steps[0][0] == "from_id":
            return self._steps[0][1]
        return hashlib.sha256(json.dumps(self._steps).encode()).hexdigest()[:24]

    def _build(self, app: App | None = None) -> Image:
        if self._steps and self._steps[0][0] == "from_id":
            _resolve_image(self)
            return self
        digest = self._digest()
        _check_base(self._steps, f"im-{digest}")
        path = _service.root() / "images" / digest
        if not path.exists():
            _service.write_json(path, {"steps": self._steps, "built_at": time.time(),
                                       "env": self._env})
        self.object_id = f"im-{digest}"
        return self

    build = sdkmethod(_build)


NO_GLIBC = ("alpine", "busybox", "scratch", "distroless")
"""Registry images the fake's builder treats as lacking glibc and apt-get: a build whose
steps check the base (Parhelia's check layer) fails on them, with the check's message."""


def _check_base(steps: tuple[tuple[str, ...], ...], image_id: str) -> None:
    base = steps[0] if steps else ()
    checked = any(step[0] == "run" and any("parhelia-base-check" in c for c in step[1:])
                  for step in steps)
    if checked and base[:1] == ("registry",) and any(word in base[1] for word in NO_GLIBC):
        raise exception.ImageBuildError(
            f"Image build for {image_id} failed with the exception:\nparhelia: the base "
            "image has no apt-get: it must be Debian or Ubuntu based", image_id)


def _resolve_image(image: Image) -> tuple[Path | None, dict[str, str]]:
    """What a sandbox created from ``image`` starts with: a snapshot's files (None for a
    built image: the fake runs the worker of this machine) and the image's environment.
    An id Modal does not know (or a snapshot past its ttl) is NotFoundError."""
    if not (image._steps and image._steps[0][0] == "from_id"):
        return None, dict(image._env)
    image_id = image._steps[0][1]
    snap = _service.root() / "snapshots" / f"{image_id}.json"
    if snap.exists():
        meta = _service.read_json(snap)
        if meta.get("expires_at") is not None and meta["expires_at"] < time.time():
            raise exception.NotFoundError(f"Image {image_id} not found (expired)")
        return snap.with_suffix(""), dict(meta.get("env") or {})
    built = _service.root() / "images" / image_id.removeprefix("im-")
    if image_id.startswith("im-") and built.exists():
        return None, dict(_service.read_json(built).get("env") or {})
    raise exception.NotFoundError(f"Image {image_id} not found")


def _flat(items: Sequence[str | list[str]]) -> list[str]:
    out: list[str] = []
    for item in items:
        out.extend(item if isinstance(item, list) else [item])
    return out


def built_images() -> list[str]:
    base = _service.root() / "images"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def snapshots() -> list[str]:
    base = _service.root() / "snapshots"
    return sorted(p.stem for p in base.glob("*.json")) if base.is_dir() else []


# -- Volume ---------------------------------------------------------------------------------


class FileEntryType(enum.IntEnum):
    UNSPECIFIED = 0
    FILE = 1
    DIRECTORY = 2
    SYMLINK = 3


@dataclass(frozen=True)
class FileEntry:
    path: str
    type: FileEntryType
    mtime: int
    size: int


def _rel(path: str) -> str:
    rel = str(path).lstrip("/")
    if any(part == ".." for part in rel.split("/")):
        raise exception.InvalidError(f"invalid volume path {path!r}")
    return rel


class Volume:
    def __init__(self, name: str, create_if_missing: bool, version: int | None,
                 sub_path: str | None = None, read_only: bool = False) -> None:
        self._name = name
        self._create = create_if_missing
        self._version = version
        self._sub_path = sub_path
        self._read_only = read_only
        self.object_id: str | None = None

    def _mount_spec(self) -> str | dict[str, Any]:
        """What a sandbox records of this mount (``tests.modal_host.state.volume_mounts``)."""
        if not self._sub_path and not self._read_only:
            return self._name
        return {"volume": self._name, "sub_path": self._sub_path or "",
                "read_only": self._read_only}

    def with_mount_options(self, *, read_only: bool | None = None,
                           sub_path: str | PurePosixPath | None = None) -> Volume:
        """A handle that mounts only ``sub_path`` of the volume (created when a container
        starts if missing; ``"/"`` is the whole volume), as modal 1.6.4's does. The
        options apply to mounts only, not to this handle's own calls."""
        sub = self._sub_path
        if sub_path is not None:
            text = PurePosixPath(sub_path).as_posix()
            sub = None if text == "/" else text.strip("/")
            if sub is not None:
                _rel(sub)
        other = Volume(self._name, self._create, self._version, sub,
                       self._read_only if read_only is None else read_only)
        other.object_id = self.object_id
        return other

    @staticmethod
    def from_name(name: str, *, environment_name: str | None = None,
                  create_if_missing: bool = False, version: int | None = None,
                  create_options: Any = None, client: Any = None) -> Volume:
        return Volume(name, create_if_missing, version)

    def _ensure(self) -> Path:
        """The volume's directory. A hydrated handle names the volume by its id, as modal
        1.6.4's does: a volume deleted since is NotFoundError, never recreated."""
        meta = _service.root() / "volumes" / f"{self._name}.json"
        if self.object_id is not None and (
                not meta.exists() or _service.read_json(meta)["id"] != self.object_id):
            raise exception.NotFoundError(f"Volume {self.object_id} not found")
        if not meta.exists():
            if not self._create:
                raise exception.NotFoundError(f"Volume '{self._name}' not found")
            _service.write_json(meta, {"version": self._version or 1,
                                       "id": _service.new_id("vo")})
        info = _service.read_json(meta)
        if self._version == 2 and info["version"] != 2:
            raise exception.InvalidError(f"Volume '{self._name}' is a v1 volume")
        self.object_id = info["id"]
        path = _service.volume_dir(self._name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _hydrate(self, client: Any = None) -> Volume:
        self._ensure()
        return self

    hydrate = sdkmethod(_hydrate)

    def _read_file(self, path: str) -> Iterator[bytes]:
        """Streamed a block at a time, as modal 1.6.4 does (never the whole file at once);
        an absent file is FileNotFoundError at the first chunk."""
        target = self._ensure() / _rel(path)
        try:
            fh = open(target, "rb")  # noqa: SIM115 - closed by the generator
        except (FileNotFoundError, IsADirectoryError):
            raise FileNotFoundError(f"No such file: {path}") from None
        with fh:
            first = True
            while (block := fh.read(READ_BLOCK)) or first:
                first = False
                yield block

    read_file = sdkmethod(_read_file, agen=True)

    def _listdir(self, path: str, *, recursive: bool = False) -> list[FileEntry]:
        base = self._ensure()
        start = base / _rel(path) if _rel(path) else base
        if start.is_file():
            st = start.stat()
            return [FileEntry(_rel(path), FileEntryType.FILE, int(st.st_mtime), st.st_size)]
        if not start.is_dir():
            raise exception.NotFoundError(f"No such file or directory: {path}")
        out: list[FileEntry] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".tmp-"))
            rel = Path(dirpath).relative_to(base)
            for d in dirnames:
                out.append(FileEntry((rel / d).as_posix(), FileEntryType.DIRECTORY, 0, 0))
            for name in sorted(filenames):
                if name.startswith(".tmp-"):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = (Path(dirpath) / name).stat()
                    out.append(FileEntry((rel / name).as_posix(), FileEntryType.FILE,
                                         int(st.st_mtime), st.st_size))
            if not recursive:
                break
        return out

    listdir = sdkmethod(_listdir)

    def _remove_file(self, path: str, recursive: bool = False) -> None:
        target = self._ensure() / _rel(path)
        if target.is_dir():
            if not recursive:
                raise exception.InvalidError(f"{path} is a directory")
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        else:
            raise exception.NotFoundError(f"No such file: {path}")

    remove_file = sdkmethod(_remove_file)

    def _copy_files(self, src_paths: Sequence[str], dst_path: str,
                    recursive: bool = False) -> None:
        """Copy within the volume on the service's side (nothing passes through the
        client). As modal's own test servicer: several sources go into ``dst_path`` as a
        directory; one source is copied to ``dst_path`` itself, or into it when it ends
        with ``/``. Directories on the way are implied (a v2 volume stores paths)."""
        base = self._ensure()
        srcs = [_rel(p) for p in src_paths]
        into = len(srcs) > 1 or dst_path.endswith("/")
        for src in srcs:
            source = base / src
            if not source.is_file():
                raise exception.NotFoundError(f"Source file not found: {src}")
            dst = base / _rel(dst_path) / Path(src).name if into else base / _rel(dst_path)
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".tmp-{os.urandom(6).hex()}")
            shutil.copyfile(source, tmp)
            os.replace(tmp, dst)

    copy_files = sdkmethod(_copy_files)

    def _batch_upload(self, force: bool = False) -> _Upload:
        return _Upload(self, force)

    batch_upload: Any = None  # set below: a context manager both ways


class _Upload:
    """``with vol.batch_upload() as b`` / ``async with vol.batch_upload.aio() as b``: files
    are sent when the block exits; an existing path without ``force`` is FileExistsError."""

    def __init__(self, volume: Volume, force: bool) -> None:
        self._volume = volume
        self._force = force
        self._files: list[tuple[bytes, str, int | None]] = []

    def put_file(self, local_file: Path | str | IO[bytes], remote_path: str,
                 mode: int | None = None) -> None:
        if isinstance(local_file, (str, Path)):
            data = Path(local_file).read_bytes()
        else:
            data = local_file.read()
        self._files.append((data, _rel(remote_path), mode))

    def put_directory(self, local_path: Path | str, remote_path: str,
                      recursive: bool = True) -> None:
        base = Path(local_path)
        for path in sorted(base.rglob("*") if recursive else base.iterdir()):
            if path.is_file():
                rel = path.relative_to(base).as_posix()
                self.put_file(path, f"{_rel(remote_path).rstrip('/')}/{rel}")

    def _commit(self) -> None:
        base = self._volume._ensure()
        if not self._force:
            for _, rel, _ in self._files:
                if (base / rel).exists():
                    raise FileExistsError(f"{rel}: already exists")
        for data, rel, mode in self._files:
            target = base / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".tmp-{os.urandom(6).hex()}")
            tmp.write_bytes(data)
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, target)

    def __enter__(self) -> _Upload:
        gate_sync("Volume.batch_upload")
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            self._commit()

    async def __aenter__(self) -> _Upload:
        await gate_async("Volume.batch_upload")
        return self

    async def __aexit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            await run_blocking(self._commit)


class _SyncAio:
    """A method whose blocking and ``.aio`` variants are given separately (``exec``,
    ``batch_upload``, ``ContainerProcess.wait``), with the blocking one's signature."""

    def __init__(self, sync: Any, aio: Any) -> None:
        self._sync, self.aio = sync, aio
        self.__wrapped__ = sync

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._sync(*args, **kwargs)

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return _SyncAioBound(self, obj)


class _SyncAioBound:
    def __init__(self, method: _SyncAio, obj: Any) -> None:
        self._method, self._obj = method, obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._method._sync(self._obj, *args, **kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        return self._method.aio(self._obj, *args, **kwargs)


Volume.batch_upload = _SyncAio(Volume._batch_upload, Volume._batch_upload)


class _VolumeManager:
    """``modal.Volume.objects``: ``delete(name, allow_missing=False)``."""

    def _delete(self, name: str, *, allow_missing: bool = False,
                environment_name: str | None = None, client: Any = None) -> None:
        meta = _service.root() / "volumes" / f"{name}.json"
        if not meta.exists():
            if allow_missing:
                return
            raise exception.NotFoundError(f"Volume '{name}' not found")
        shutil.rmtree(_service.volume_dir(name), ignore_errors=True)
        meta.unlink()

    delete = sdkmethod(_delete)


Volume.objects = _VolumeManager()  # type: ignore[attr-defined]


# -- Sandbox --------------------------------------------------------------------------------


def _secret_values(secrets: Collection[Secret] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for secret in secrets or ():
        out.update(secret._resolve())
    return out


def _sandbox_env(sb_id: str, env: dict[str, str | None] | None,
                 secrets: Collection[Secret] | None) -> dict[str, str]:
    """An exec's environment: nothing inherited from the client's process (as on Modal),
    only the image's, the ``secrets`` and ``env``."""
    meta = _service.sandbox_meta(sb_id) or {}
    return sandboxes.sandbox_env(sb_id, _secret_values(secrets), meta.get("image_env") or {},
                                 {k: v for k, v in (env or {}).items() if v is not None})


def _validate_gpu(gpu: str | None) -> str | None:
    if gpu is None:
        return None
    name, _, count = gpu.upper().partition(":")
    if name not in _GPUS or (count and not (count.isdigit() and 1 <= int(count) <= 8)):
        raise exception.InvalidError(f"Invalid GPU type: {gpu}")
    return gpu.upper()


@dataclass(frozen=True)
class _GenericResult:
    """The part of ``modal_proto.api_pb2.GenericResult`` a sandbox's end carries: its
    status (the proto's enum number), exit code and Modal's message."""

    status: int
    exitcode: int
    exception: str


_STATUS_NUMBERS = {"SUCCESS": 1, "FAILURE": 2, "TERMINATED": 3, "TIMEOUT": 4,
                   "INIT_FAILURE": 5, "INTERNAL_FAILURE": 6, "IDLE_TIMEOUT": 7,
                   "MEMORY_MANAGER_EVICTION": 8, "MEMORY_THRASHING_EVICTION": 9,
                   "KERNEL_OOM_KILL": 10}
"""``GenericResult.GenericStatus`` of modal_proto 1.6.4 (a test compares them)."""


class _Impl:
    """``sandbox._impl``: modal 1.6.4 keeps the sandbox's end there (``result``), with
    the status and message that ``poll()`` drops."""

    def __init__(self) -> None:
        self.result: _GenericResult | None = None


class Sandbox:
    def __init__(self, sb_id: str) -> None:
        self.object_id = sb_id
        self._returncode: int | None = None
        self._impl = _Impl()

    def __repr__(self) -> str:
        return f"Sandbox({self.object_id})"

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def _create(*args: str, app: App | None = None, name: str | None = None,
                tags: dict[str, str] | None = None, image: Image | None = None,
                env: dict[str, str | None] | None = None,
                secrets: Collection[Secret] | None = None,
                network_file_systems: dict[Any, Any] = {},  # noqa: B006
                timeout: int | None = 300, idle_timeout: int | None = None,
                workdir: str | None = None, gpu: str | None = None, cloud: str | None = None,
                region: str | Sequence[str] | None = None,
                cpu: float | tuple[float, float] | None = None,
                memory: int | tuple[int, int] | None = None,
                block_network: bool = False,
                outbound_cidr_allowlist: Sequence[str] | None = None,
                outbound_domain_allowlist: Sequence[str] | None = None,
                _experimental_outbound_policy: Any = None,
                inbound_cidr_allowlist: Sequence[str] | None = None,
                volumes: dict[Any, Volume] = {},  # noqa: B006
                pty: bool = False, encrypted_ports: Sequence[int] = [],  # noqa: B006
                unencrypted_ports: Sequence[int] = [],  # noqa: B006
                verbose: bool = False, client: Any = None,
                environment_name: str | None = None) -> Sandbox:
        if app is None or app.app_id is None:
            raise exception.InvalidError("Sandbox.create needs an app outside a Modal container")
        if timeout is None or not 1 <= int(timeout) <= 86400:
            raise exception.InvalidError("timeout must be between 1 second and 24 hours")
        gpu = _validate_gpu(gpu)
        if name is not None and not sandboxes.NAME_RE.match(name):
            raise exception.InvalidError(f"Invalid sandbox name {name!r}")
        if _service.switch_on("no_capacity"):
            raise exception.ResourceExhaustedError(
                _service.switch_value("no_capacity")
                or f"No capacity available for {gpu or 'CPU'} sandboxes; try again later")
        secret_env = _secret_values(secrets)
        for domain in outbound_domain_allowlist or ():
            if not isinstance(domain, str) or not domain:
                raise exception.InvalidError(f"Invalid domain in outbound_domain_allowlist: "
                                             f"{domain!r}")
        image_root, image_env = _resolve_image(image) if image is not None else (None, {})
        outbound: list[dict[str, Any]] = []
        if _experimental_outbound_policy is not None:
            # Validated and its secrets resolved here, on the service's side: their values
            # never reach the sandbox's environment (they are injected into its matching
            # requests, which a local process cannot show: the fake records the policy).
            _experimental_outbound_policy._validate()
            outbound = _experimental_outbound_policy._describe()
        mounts = {str(path): vol for path, vol in volumes.items()}
        for vol in mounts.values():
            vol._ensure()
        new = sandboxes.NewSandbox(
            app_id=app.app_id, cmd=list(args), timeout=int(timeout), name=name,
            tags=dict(tags or {}), gpu=gpu, cpu=cpu, memory=memory, workdir=workdir,
            env={k: v for k, v in (env or {}).items() if v is not None},
            image=image._digest() if image else None,
            image_env=image_env,
            volumes={p: v._mount_spec() for p, v in mounts.items()},
            unencrypted_ports=[int(p) for p in unencrypted_ports],
            extra={"network": {"block_network": block_network,
                               "outbound_cidr_allowlist": outbound_cidr_allowlist,
                               "outbound_domain_allowlist": outbound_domain_allowlist,
                               "inbound_cidr_allowlist": inbound_cidr_allowlist},
                   "outbound_policy": outbound,
                   "image_root": str(image_root) if image_root is not None else None})
        try:
            sb_id = sandboxes.create(new, secret_env, inert=_service.switch_on("inert"))
        except sandboxes.NameTaken:
            raise exception.AlreadyExistsError(
                f"Sandbox with name '{name}' already exists in app") from None
        if name is not None and _service.switch_on("name_clash"):
            _service.set_switch("name_clash", False)  # once: the reply was lost
            raise exception.ConnectionError("connection reset while creating the sandbox (fake)")
        return Sandbox(sb_id)

    create = sdkmethod(_create)

    def _from_name(app_name: str, name: str, *, environment_name: str | None = None,
                   include_terminated: bool = False, client: Any = None) -> Sandbox:
        app = App._lookup(app_name)
        sb_id = sandboxes.by_name(str(app.app_id), name)
        if not sb_id or (not include_terminated and _service.returncode(sb_id) is not None):
            raise exception.NotFoundError(f"Sandbox with name '{name}' not found")
        return Sandbox(sb_id)

    from_name = sdkmethod(_from_name)

    def _from_id(sandbox_id: str, client: Any = None) -> Sandbox:
        if _service.sandbox_meta(sandbox_id) is None:
            raise exception.NotFoundError(f"Sandbox {sandbox_id} not found")
        return Sandbox(sandbox_id)

    from_id = sdkmethod(_from_id)

    def _list(*, app_id: str | None = None, tags: dict[str, str] | None = None,
              client: Any = None) -> list[Sandbox]:
        if app_id is None:
            warnings.warn("Sandbox.list without app_id lists the whole environment",
                          DeprecationError, stacklevel=3)
        out = []
        for sb_id in _service.all_sandboxes():
            meta = _service.sandbox_meta(sb_id)
            if meta is None or (app_id is not None and meta["app_id"] != app_id):
                continue
            if any(meta["tags"].get(k) != v for k, v in (tags or {}).items()):
                continue
            if _service.returncode(sb_id) is None:
                out.append(Sandbox(sb_id))
        return out

    list = sdkmethod(_list, agen=True)

    def _poll(self) -> int | None:
        end = _service.result(self.object_id)
        if end is not None:
            self._impl.result = _GenericResult(_STATUS_NUMBERS[end["status"]], end["exitcode"],
                                               end["exception"])
        self._returncode = None if end is None else end["exitcode"]
        return self._returncode

    poll = sdkmethod(_poll)

    def _wait(self, raise_on_termination: bool = True) -> None:
        while (code := self._poll()) is None:
            time.sleep(0.05)
        if raise_on_termination and code == 124:
            raise exception.SandboxTimeoutError()
        if raise_on_termination and code == 137:
            raise exception.SandboxTerminatedError()

    wait = sdkmethod(_wait)

    def _terminate(self, *, wait: bool = False) -> int | None:
        if _service.switch_on("terminate_fails"):
            # A refusal that is not a lost connection (the ``Error`` base: E503).
            raise exception.Error(f"Sandbox {self.object_id} could not be terminated (fake)")
        sandboxes.terminate(self.object_id)
        if wait:
            self._wait(raise_on_termination=False)
            return self._returncode
        return None

    terminate = sdkmethod(_terminate)

    def _get_tags(self) -> dict[str, str]:
        meta = _service.sandbox_meta(self.object_id)
        if meta is None:
            raise exception.NotFoundError(f"Sandbox {self.object_id} not found")
        return dict(meta["tags"])

    get_tags = sdkmethod(_get_tags)

    def _set_tags(self, tags: dict[str, str], *, client: Any = None) -> None:
        path = _service.sandbox_dir(self.object_id) / "meta.json"
        meta = _service.read_json(path)
        meta["tags"] = dict(tags)
        _service.write_json(path, meta)

    set_tags = sdkmethod(_set_tags)

    def _reload_volumes(self, *, timeout: int = 55) -> None:
        sandboxes.reload_volumes(self.object_id)

    reload_volumes = sdkmethod(_reload_volumes)

    def _snapshot_filesystem(self, timeout: int = 55, *,
                             ttl: int | None = 30 * 24 * 3600) -> Image:
        """The sandbox's files as an image (its volume mounts left out, as on Modal): a
        sandbox created from it starts with them; past ``ttl`` it is NotFoundError."""
        if _service.returncode(self.object_id) is not None:
            raise exception.SnapshotCreationError(f"Sandbox {self.object_id} has finished")
        meta = _service.sandbox_meta(self.object_id) or {}
        image_id = _service.new_id("im")
        dest = _service.root() / "snapshots" / image_id
        root = _service.sandbox_dir(self.object_id) / "root"
        mounted = {Path(_service.map_path(self.object_id, p)).resolve()
                   for p in meta.get("volumes") or {}}

        def ignore(directory: str, names: list[str]) -> list[str]:
            return [n for n in names if (Path(directory) / n).resolve() in mounted]

        shutil.copytree(root, dest, symlinks=True, ignore=ignore)
        _service.write_json(dest.with_suffix(".json"), {
            "sandbox": self.object_id, "created_at": time.time(),
            "expires_at": None if ttl is None else time.time() + ttl,
            "env": meta.get("image_env") or {}})
        return Image((("from_id", image_id),), image_id=image_id,
                     env=meta.get("image_env") or {})

    snapshot_filesystem = sdkmethod(_snapshot_filesystem)

    def _exec_ready(self) -> bool:
        """An exec runs once the container has started (Modal queues it until then)."""
        if _service.returncode(self.object_id) is not None:
            # modal 1.6.4: the task id lookup of an ended sandbox (``raise_if_task_complete``)
            raise exception.ConflictError(_service.result(self.object_id)["exception"]  # type: ignore[index]
                                          or "Sandbox already finished")
        return sandboxes.scheduled(self.object_id)

    def _exec_check(self) -> None:
        deadline = time.monotonic() + 60
        while not self._exec_ready() and time.monotonic() < deadline:
            time.sleep(0.02)

    def exec(self, *args: str, stdout: Any = None, stderr: Any = None, timeout: int | None = None,
             workdir: str | None = None, env: dict[str, str | None] | None = None,
             secrets: Collection[Secret] | None = None, text: bool = True,
             bufsize: int = -1, pty: bool = False) -> ContainerProcess:
        gate_sync("Sandbox.exec")
        self._exec_check()
        argv = _service.map_argv(self.object_id, list(args))
        proc = subprocess.Popen(argv, env=_sandbox_env(self.object_id, env, secrets),
                                cwd=_service.map_path(self.object_id, workdir or "/root"),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        self._record_exec(proc.pid)
        return ContainerProcess(proc, None, text=text, bufsize=bufsize)

    async def _exec_aio(self, *args: str, stdout: Any = None, stderr: Any = None,
                        timeout: int | None = None, workdir: str | None = None,
                        env: dict[str, str | None] | None = None,
                        secrets: Collection[Secret] | None = None, text: bool = True,
                        bufsize: int = -1, pty: bool = False) -> ContainerProcess:
        await gate_async("Sandbox.exec")
        deadline = time.monotonic() + 60
        while not self._exec_ready() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        argv = _service.map_argv(self.object_id, list(args))
        if pty:
            return await self._exec_pty(argv, env, secrets, workdir, text, bufsize)
        proc = await asyncio.create_subprocess_exec(
            *argv, env=_sandbox_env(self.object_id, env, secrets),
            cwd=_service.map_path(self.object_id, workdir or "/root"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=1 << 22)
        self._record_exec(proc.pid)
        return ContainerProcess(None, proc, text=text, bufsize=bufsize)


    async def _exec_pty(self, argv: list[str], env: dict[str, str | None] | None,
                        secrets: Collection[Secret] | None, workdir: str | None, text: bool,
                        bufsize: int) -> ContainerProcess:
        """``pty=True``: the process gets a new session whose controlling terminal is a
        PTY; stdout and stderr are one stream (as on Modal). Its size is what Modal 1.6.4's
        ``default_pty_info()`` gives a client without a terminal: 0 x 0."""
        import fcntl
        import termios

        master, slave = os.openpty()

        def controlling_tty() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=_sandbox_env(self.object_id, env, secrets),
                cwd=_service.map_path(self.object_id, workdir or "/root"),
                stdin=slave, stdout=slave, stderr=slave,
                preexec_fn=controlling_tty)  # noqa: PLW1509 (a fake, single-threaded child)
        finally:
            os.close(slave)
        self._record_exec(proc.pid)
        return ContainerProcess(None, proc, text=text, bufsize=bufsize, pty_master=master)

    async def _tunnels_aio(self, timeout: int = 50) -> dict[int, Tunnel]:
        """The declared ``unencrypted_ports``: port 22 reaches the sandbox's sshd (its
        local port, once it listens); a port nothing listens on refuses connections."""
        await gate_async("Sandbox.tunnels")
        meta = _service.sandbox_meta(self.object_id) or {}
        out: dict[int, Tunnel] = {}
        for port in meta.get("unencrypted_ports") or []:
            deadline = time.monotonic() + min(timeout, 10)
            while (local := sandboxes.tunnel_port(self.object_id, port)) is None \
                    and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            local = local or 9  # nothing listens there: the tunnel refuses connections
            out[port] = Tunnel("127.0.0.1", 443, "127.0.0.1", local)
        return out

    def _tunnels(self, timeout: int = 50) -> dict[int, Tunnel]:
        return asyncio.run(self._tunnels_aio(timeout))

    def _record_exec(self, pid: int) -> None:
        sandboxes.record_exec(self.object_id, pid)


Sandbox.exec = _SyncAio(Sandbox.exec, Sandbox._exec_aio)  # type: ignore[method-assign]
Sandbox.tunnels = _SyncAio(Sandbox._tunnels, Sandbox._tunnels_aio)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Tunnel:
    """modal 1.6.4's ``modal._tunnel.Tunnel`` fields."""

    host: str
    port: int
    unencrypted_host: str
    unencrypted_port: int


class _Reader:
    """``ContainerProcess.stdout``: ``async for`` yields lines with ``text=True, bufsize=1``,
    chunks otherwise; ``read()`` returns everything."""

    def __init__(self, sync: IO[bytes] | None, aio: asyncio.StreamReader | None,
                 text: bool, bufsize: int) -> None:
        self._sync, self._aio, self._text, self._lines = sync, aio, text, bufsize == 1

    def _out(self, data: bytes) -> Any:
        return data.decode(errors="replace") if self._text else data

    def __aiter__(self) -> Any:
        return self._agen()

    async def _agen(self) -> Any:
        assert self._aio is not None
        while True:
            data = await (self._aio.readline() if self._lines else self._aio.read(65536))
            if not data:
                return
            yield self._out(data)

    def __iter__(self) -> Any:
        assert self._sync is not None
        while data := (self._sync.readline() if self._lines else self._sync.read(65536)):
            yield self._out(data)

    def read(self) -> Any:
        assert self._sync is not None
        return self._out(self._sync.read())


class _Abandonable:
    """The reader of a local stand-in process: a reader that gives up (its task is
    cancelled) ends the local process too, inside its event loop. On Modal the exec'd
    process would run on until the sandbox ends; locally it must not outlive the loop."""

    def __init__(self, reader: _Reader, proc: asyncio.subprocess.Process) -> None:
        self._reader, self._proc = reader, proc

    def __aiter__(self) -> Any:
        return self._agen()

    async def _agen(self) -> Any:
        try:
            async for item in self._reader:
                yield item
        except (asyncio.CancelledError, GeneratorExit):
            if self._proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._proc.wait())
            raise


class _Writer:
    def __init__(self, sync: IO[bytes] | None, aio: asyncio.StreamWriter | None) -> None:
        self._sync, self._aio = sync, aio

    def write(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        if self._aio is not None:
            self._aio.write(raw)
        elif self._sync is not None:
            self._sync.write(raw)

    def write_eof(self) -> None:
        if self._aio is not None:
            self._aio.close()
        elif self._sync is not None:
            self._sync.close()

    def drain(self) -> None:
        if self._sync is not None:
            self._sync.flush()


class _PtyReader:
    """The PTY's output: chunks until the terminal closes (EIO once no process holds it)."""

    def __init__(self, master: int, text: bool) -> None:
        self._master, self._text = master, text

    def __aiter__(self) -> Any:
        return self._agen()

    async def _agen(self) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.run_in_executor(None, os.read, self._master, 65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    os.close(self._master)
                return
            yield data.decode(errors="replace") if self._text else data


class _PtyWriter:
    def __init__(self, master: int) -> None:
        self._master = master

    def write(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        while raw:
            raw = raw[os.write(self._master, raw):]

    def write_eof(self) -> None:
        self.write(b"\x04")

    def _drain(self) -> None:
        return None

    async def _drain_aio(self) -> None:
        return None

    drain = _SyncAio(_drain, _drain_aio)


class ContainerProcess:
    def __init__(self, sync: subprocess.Popen[bytes] | None,
                 aio: asyncio.subprocess.Process | None, *, text: bool, bufsize: int,
                 pty_master: int | None = None) -> None:
        self._sync, self._aio = sync, aio
        src = sync or aio
        assert src is not None
        if pty_master is not None and aio is not None:
            self.stdout: Any = _PtyReader(pty_master, text)
            self.stderr: Any = _Reader(None, None, text, bufsize)
            self.stdin: Any = _PtyWriter(pty_master)
            return
        self.stdout = _Reader(sync.stdout if sync else None, aio.stdout if aio else None,
                              text, bufsize)
        if aio is not None:
            self.stdout = _Abandonable(self.stdout, aio)
        self.stderr = _Reader(sync.stderr if sync else None, aio.stderr if aio else None,
                              text, bufsize)
        self.stdin = _Writer(sync.stdin if sync else None, aio.stdin if aio else None)

    @property
    def returncode(self) -> int | None:
        proc = self._sync or self._aio
        return proc.returncode if proc is not None else None

    def poll(self) -> int | None:
        if self._sync is not None:
            return self._sync.poll()
        return self.returncode

    def wait(self) -> int:
        assert self._sync is not None
        return self._sync.wait()

    async def _wait_aio(self) -> int:
        if self._aio is not None:
            return await self._aio.wait()
        return await run_blocking(self.wait)


ContainerProcess.wait = _SyncAio(ContainerProcess.wait, ContainerProcess._wait_aio)  # type: ignore[method-assign]

__all__ += ["ContainerProcess", "FileEntry", "FileEntryType", "built_images"]
