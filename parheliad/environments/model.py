"""The resolved environment of a repository: what it is made of and where each part came
from (docs/adr/0050-environments.md).

An :class:`Environment` is built by :mod:`.resolve` from one source (the environment
file, a devcontainer.json, or detection) and the user's configuration. It is the daemon's
model: the image parts (base, apt, run) go to a backend as an :class:`ImageRecipe`, the
rest to the worker as :class:`parhelia.environment.WorkerEnvironment`. Two hashes name it:

- the **image hash**: the image recipe and the files its build reads (a Dockerfile and
  what its COPY/ADD lines take from the context), Claude Code's version and the layout
  of the layers Parhelia adds -- one image per image hash, built once;
- the **environment hash**: the image hash and everything else the worker does (env,
  setup, start, setup secret names, caches) and the files those read (the lockfiles):
  a warm start reuses a prepared filesystem only under the same environment hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from parhelia.environment import Step, WorkerEnvironment

SOURCE_FILE: Final = "file"
SOURCE_DEVCONTAINER: Final = "devcontainer"
SOURCE_DETECTION: Final = "detection"
SOURCE_DEFAULT: Final = "default"
SOURCES: Final = (SOURCE_FILE, SOURCE_DEVCONTAINER, SOURCE_DETECTION, SOURCE_DEFAULT)

ENVIRONMENT_FILE: Final = ".parhelia/environment.toml"
DEVCONTAINER_FILES: Final = (".devcontainer/devcontainer.json", ".devcontainer.json")

BASE_DEBIAN_SLIM: Final = "debian_slim"
BASE_REGISTRY: Final = "registry"
BASE_DOCKERFILE: Final = "dockerfile"

RECIPE_VERSION: Final = 1
"""Bumped when the layers Parhelia adds to every image change: every image hash changes."""


@dataclass(frozen=True)
class Base:
    """What the image starts from: Debian slim with a Python, a registry image (Python
    added when ``python`` is set), or the repository's Dockerfile."""

    kind: str = BASE_DEBIAN_SLIM
    python: str = ""
    image: str = ""
    dockerfile: str = ""
    """Relative to the repository root."""
    context: str = ""
    """The build context, relative to the repository root ("" = the root)."""
    build_args: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == BASE_DEBIAN_SLIM:
            return f"Debian slim, Python {self.python}"
        if self.kind == BASE_REGISTRY:
            return self.image + (f" + Python {self.python}" if self.python else "")
        return (f"{self.dockerfile} (context {self.context or '.'})"
                + (f" + Python {self.python}" if self.python else ""))


@dataclass(frozen=True)
class ImageRecipe:
    """What a backend with images builds (Modal): the base, then ``apt`` and ``run``
    layers, then Claude Code and the worker (always last, pinned). ``context`` files are
    the Dockerfile's build context, written by the caller into a private directory."""

    base: Base
    apt: tuple[str, ...] = ()
    run: tuple[str, ...] = ()
    claude_version: str = ""
    hash: str = ""


@dataclass(frozen=True)
class Environment:
    source: str
    source_file: str
    """The file the environment came from ("" for detection and the default)."""
    base: Base
    apt: tuple[str, ...] = ()
    run: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    setup: tuple[Step, ...] = ()
    start: tuple[Step, ...] = ()
    setup_secrets: tuple[str, ...] = ()
    network: str = ""
    allow: tuple[str, ...] = ()
    cache: tuple[str, ...] = ()
    allow_commands: tuple[str, ...] = ()
    setup_timeout_minutes: float = 30.0
    origins: Mapping[str, str] = field(default_factory=dict)
    """Each part (``base``, ``apt``, ``setup``...) -> where it came from, in words:
    ``.parhelia/environment.toml: setup``, ``devcontainer.json: postCreateCommand``,
    ``detected: uv.lock (uv)``, ``default``."""
    reads: Mapping[str, str] = field(default_factory=dict)
    """Files the setup reads (lockfiles) -> their sha256."""
    image_reads: Mapping[str, str] = field(default_factory=dict)
    """Files the image build reads (a Dockerfile, its COPY/ADD sources) -> their sha256."""
    ignored: tuple[str, ...] = ()
    """Keys of the source that Parhelia does not use (a devcontainer's ``features``...)."""
    warnings: tuple[str, ...] = ()
    image_hash: str = ""
    hash: str = ""

    def recipe(self, claude_version: str) -> ImageRecipe:
        return ImageRecipe(base=self.base, apt=self.apt, run=self.run,
                           claude_version=claude_version, hash=self.image_hash)

    def worker(self, *, cache_root: str | None) -> WorkerEnvironment:
        """The spec's ``environment`` block; ``cache_root`` where the backend keeps the
        cache directories (None: the machine's own)."""
        return WorkerEnvironment(hash=self.hash, env=dict(self.env), setup=self.setup,
                                 start=self.start, setup_secrets=self.setup_secrets,
                                 cache_root=cache_root,
                                 cache_dirs=self.cache if cache_root else (),
                                 setup_timeout_seconds=self.setup_timeout_minutes * 60)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["setup"] = [s.to_dict() for s in self.setup]
        out["start"] = [s.to_dict() for s in self.start]
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Environment:
        """An environment stored by :meth:`to_dict` (the daemon's own database)."""
        base = Base(**{k: v for k, v in dict(raw.get("base") or {}).items()
                       if k in Base.__dataclass_fields__})
        def steps(name: str) -> tuple[Step, ...]:
            return tuple(Step(name=str(s.get("name", "")), run=str(s.get("run", "")),
                              argv=tuple(s.get("argv") or ())) for s in raw.get(name) or ())

        tuples = ("apt", "run", "setup_secrets", "allow", "cache", "allow_commands", "ignored",
                  "warnings")
        values: dict[str, Any] = {k: raw[k] for k in cls.__dataclass_fields__
                                  if k in raw and k not in ("base", "setup", "start")}
        for name in tuples:
            values[name] = tuple(values.get(name) or ())
        return cls(base=base, setup=steps("setup"), start=steps("start"), **values)


def digest(obj: object) -> str:
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(data.encode()).hexdigest()


def with_hashes(env: Environment, claude_version: str) -> Environment:
    """``env`` with its image and environment hashes (see the module docstring)."""
    image = digest({"v": RECIPE_VERSION, "base": asdict(env.base), "apt": env.apt,
                    "run": env.run, "reads": dict(env.image_reads),
                    "claude": claude_version})
    image_hash = f"img-{image[:16]}"
    whole = digest({"image": image_hash, "env": dict(env.env),
                    "setup": [s.to_dict() for s in env.setup],
                    "start": [s.to_dict() for s in env.start],
                    "secrets": env.setup_secrets, "cache": env.cache,
                    "reads": dict(env.reads)})
    return replace(env, image_hash=image_hash, hash=f"env-{whole[:16]}")
