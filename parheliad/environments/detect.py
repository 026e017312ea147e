"""Detection: a repository with no environment file gets a plan from its lockfiles and
manifests (docs/adr/0051-environment-detection.md).

Each rule names the files that decide it, the setup command a developer of that
ecosystem runs first, the cache directory the tool downloads into, and -- for the
toolchains Debian slim lacks -- a registry image that has it. Rules are read at the
repository's root only; several ecosystems combine (their setups run in the order of
:data:`RULES`). Only file names and a few small files' text are read.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Final

from parhelia.environment import Step
from parheliad.environments.checks import WORKER_PYTHONS
from parheliad.environments.files import SourceTree
from parheliad.environments.model import BASE_REGISTRY, Base
from parheliad.environments.sources import Draft

LOCKFILES: Final = ("uv.lock", "poetry.lock", "pyproject.toml", "package-lock.json",
                    "pnpm-lock.yaml", "yarn.lock", "package.json", "Cargo.lock", "Cargo.toml",
                    "go.mod", "go.sum", "Gemfile.lock", "Gemfile", ".python-version")
"""Files whose contents a setup reads: a change to one makes a new environment hash (a
fresh setup, never a stale warm start). ``requirements*.txt`` too (see :func:`reads`)."""
_REQUIREMENTS = re.compile(r"^requirements[A-Za-z0-9._-]*\.txt$")


@dataclass(frozen=True)
class Rule:
    name: str
    """The ecosystem, as ``env show`` says it (``uv``, ``npm``...)."""
    files: tuple[str, ...]
    """Any of these at the root decides it (the first found is named)."""
    setup: tuple[str, ...]
    run: tuple[str, ...] = ()
    """Image layers the tool needs (installing it)."""
    cache: tuple[str, ...] = ()
    image: str = ""
    """A registry image with the toolchain ("" = Debian slim will do)."""


RULES: Final[tuple[Rule, ...]] = (
    Rule("uv", ("uv.lock",), ("uv sync --frozen",), ("pip install uv",), ("~/.cache/uv",)),
    Rule("poetry", ("poetry.lock",), ("poetry install --no-interaction",),
         ("pip install poetry",), ("~/.cache/pypoetry",)),
    Rule("pip", ("requirements.txt",), (), (), ("~/.cache/pip",)),
    Rule("uv", ("pyproject.toml",), ("uv sync",), ("pip install uv",), ("~/.cache/uv",)),
    Rule("npm", ("package-lock.json",), ("npm ci",), (), ("~/.npm",)),
    Rule("pnpm", ("pnpm-lock.yaml",), ("corepack enable", "pnpm install --frozen-lockfile"),
         (), ("~/.local/share/pnpm/store",)),
    Rule("yarn", ("yarn.lock",), ("corepack enable", "yarn install --immutable"), (),
         ("~/.cache/yarn", "~/.yarn/berry/cache")),
    Rule("cargo", ("Cargo.lock",), ("cargo fetch",), (), ("/usr/local/cargo/registry",),
         "rust:1-slim-bookworm"),
    Rule("go", ("go.mod",), ("go mod download",), (), ("/go/pkg/mod",), "golang:1-bookworm"),
    Rule("bundler", ("Gemfile.lock",), ("bundle install",), (), ("/usr/local/bundle/cache",),
         "ruby:3-slim-bookworm"),
)

CUDA_IMAGE: Final = "nvidia/cuda:12.4.1-runtime-ubuntu22.04"
"""The base a task asking for a GPU gets when its environment chooses none."""


def python_version(tree: SourceTree, default: str) -> tuple[str, str]:
    """(the Python series the repository asks for, where that came from)."""
    raw = tree.read(".python-version")
    if raw is not None:
        first = raw.decode("utf-8", "replace").strip().splitlines()[:1]
        match = re.match(r"^(?:cpython-|python)?(3\.\d{1,2})", first[0] if first else "")
        if match and match.group(1) in WORKER_PYTHONS:
            return match.group(1), ".python-version"
    raw = tree.read("pyproject.toml")
    if raw is not None:
        try:
            spec = tomllib.loads(raw.decode("utf-8", "replace")).get("project", {}).get(
                "requires-python", "")
        except tomllib.TOMLDecodeError:
            spec = ""
        if isinstance(spec, str) and spec:
            allowed = [v for v in WORKER_PYTHONS if _satisfies(v, spec)]
            if allowed:
                chosen = default if default in allowed else allowed[0]
                return chosen, f"pyproject.toml: requires-python {spec!r}"
    return default, "default"


def _satisfies(version: str, spec: str) -> bool:
    """``version`` (3.X) against a PEP 440 specifier set, by its series (enough to pick
    an image's Python)."""
    have = tuple(int(p) for p in version.split("."))
    for clause in spec.split(","):
        m = re.match(r"^\s*(~=|==|!=|>=|<=|>|<)\s*(\d+)(?:\.(\d+))?(?:\.(\*|\d+))?\s*$", clause)
        if not m:
            continue
        op = m.group(1)
        want = (int(m.group(2)), int(m.group(3) or 0))
        ok = {">=": have >= want, ">": have > want, "<=": have <= want, "<": have < want,
              "==": have == want, "!=": have != want, "~=": have >= want}[op]
        if not ok:
            return False
    return True


def requirements(tree: SourceTree) -> list[str]:
    return [n for n in tree.names() if _REQUIREMENTS.match(n) and tree.read(n) is not None]


def reads(tree: SourceTree) -> list[str]:
    """The lockfiles and manifests present at the root (see :data:`LOCKFILES`)."""
    present = set(tree.names())
    return [n for n in LOCKFILES if n in present] + requirements(tree)


def detect(tree: SourceTree, *, python: str) -> Draft:
    """The plan for ``tree``; a draft with nothing set when nothing is recognised."""
    present = set(tree.names())
    draft = Draft("detection", "")
    matched: list[tuple[Rule, str]] = []
    for rule in RULES:
        found = next((f for f in rule.files if f in present and tree.read(f) is not None), None)
        if found is None or any(m.name == rule.name for m, _ in matched):
            continue
        if rule.name == "uv" and any(m.name in ("poetry", "pip") for m, _ in matched):
            continue  # pyproject.toml belongs to the poetry or pip project found first
        if rule.name == "pip":
            found = ", ".join(requirements(tree)) or found
        matched.append((rule, found))
    if not matched:
        extra = requirements(tree)
        if extra:  # requirements-dev.txt without requirements.txt
            matched.append((next(r for r in RULES if r.name == "pip"), ", ".join(extra)))
    setup: list[Step] = []
    run: list[str] = []
    cache: list[str] = []
    for rule, found in matched:
        origin = f"detected: {found} ({rule.name})"
        commands = rule.setup
        if rule.name == "pip":
            files = requirements(tree)
            commands = ("pip install " + " ".join(f"-r {f}" for f in files),)
        if rule.name == "yarn" and ".yarnrc.yml" not in present:
            commands = ("corepack enable", "yarn install --frozen-lockfile")  # yarn 1
        setup += [Step(name=f"{rule.name}: {c}", run=c) for c in commands]
        run += [c for c in rule.run if c not in run]
        cache += [c for c in rule.cache if c not in cache]
        for part in ("setup", "cache") + (("run",) if rule.run else ()):
            draft.origins[part] = ", ".join(filter(None, (draft.origins.get(part), origin)))
        if rule.image and draft.base is None:
            draft.base = Base(BASE_REGISTRY, image=rule.image, python=python)
            draft.origins["base"] = origin
    draft.setup, draft.run, draft.cache = tuple(setup), tuple(run), tuple(cache)
    return draft
