"""Resolving a repository's environment: the first source found (the environment file,
else a devcontainer.json, else detection), the defaults it leaves, the user's limits,
and the hashes (docs/adr/0050-environments.md).

A project file may only narrow what the user's own configuration allows, as ADR 0006 and
0019 say for every other option: a network level wider than the user's
``environment.network``, or a pre-approved command outside the user's
``agent.allow_commands``, is E401 naming the file and key -- unless the user trusts the
project (``--trust-project-config``, ``agent.trusted_projects``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import sys
from dataclasses import dataclass, field

from parhelia.environment import DEFAULT_NETWORK, network_wider
from parhelia.errors import ParheliaError
from parheliad.environments import detect as detection
from parheliad.environments.checks import WORKER_PYTHONS, line_of, secret_variable
from parheliad.environments.files import SourceTree
from parheliad.environments.model import (
    BASE_DEBIAN_SLIM,
    BASE_DOCKERFILE,
    BASE_REGISTRY,
    SOURCE_DEFAULT,
    SOURCE_DETECTION,
    Base,
    Environment,
    with_hashes,
)
from parheliad.environments.sources import Draft, from_devcontainer, from_toml

DEFAULT_PYTHON = (f"{sys.version_info.major}.{sys.version_info.minor}"
                  if f"{sys.version_info.major}.{sys.version_info.minor}" in WORKER_PYTHONS
                  else WORKER_PYTHONS[0])
"""Debian slim's Python when nothing chooses one: the daemon's own series."""


@dataclass(frozen=True)
class Policy:
    """What the user's configuration allows (``[environment]`` and ``agent``)."""

    network: str = DEFAULT_NETWORK
    allow_commands: tuple[str, ...] = ()
    trusted: bool = False
    """The user trusts this project: its file may widen both."""
    claude_version: str = ""
    setup_timeout_minutes: float = 30.0
    cache: bool = True
    forbidden_secrets: tuple[str, ...] = ()
    """Names a setup secret may never have: the daemon's own credentials (the model's
    and GitHub's, as variables and as the Modal secrets that hold them)."""
    where: dict[str, str] = field(default_factory=dict)
    """Where the user's values come from (``user:<file>``, ``default``), for messages."""


def resolve(tree: SourceTree, policy: Policy, *, gpu: bool = False) -> Environment:
    """The environment of ``tree`` (E101 for a bad file, E401 for a widening)."""
    draft = from_toml(tree) or from_devcontainer(tree)
    python, python_from = detection.python_version(tree, DEFAULT_PYTHON)
    detected = detection.detect(tree, python=python)
    if draft is None:
        draft = detected
    origins = dict(draft.origins)
    base = draft.base
    if gpu and ("base" not in origins or draft.source == SOURCE_DETECTION):
        base = Base(BASE_REGISTRY, image=detection.CUDA_IMAGE, python=python)
        origins["base"] = "the task asks for a GPU: a CUDA base"
    elif base is None:
        base = Base(BASE_DEBIAN_SLIM, python=python)
        origins["base"] = ("default" if python_from == "default"
                           else f"default, Python from {python_from}")
    elif base.kind == BASE_DEBIAN_SLIM and not base.python:
        base = Base(BASE_DEBIAN_SLIM, python=python)
    if draft.network and network_wider(draft.network, policy.network) and not policy.trusted:
        raise _widening(tree, draft, "network", f"network = {draft.network!r}",
                        f"environment.network = {policy.network!r}")
    for name in draft.setup_secrets:
        if name in policy.forbidden_secrets or \
                secret_variable(name) in policy.forbidden_secrets:
            raise ParheliaError(
                "E401", f"{draft.file or 'the environment'}: setup_secrets names {name!r}, "
                "one of the daemon's own credentials (the model's or GitHub's); a "
                "repository's setup never gets them. Give setup a token of its own, under "
                "another name", file=draft.file, key="setup_secrets")
    if draft.setup_secrets and not policy.trusted:
        # The repository's own commands get these values (a variable of the daemon's
        # environment, or a Modal secret of the account): asking for them is a widening.
        raise _widening(tree, draft, "setup_secrets",
                        f"setup_secrets names {draft.setup_secrets[0]!r}",
                        "no secrets for a project's setup unless you trust it: "
                        "agent.trusted_projects")
    refused = [c for c in draft.allow_commands if not _within(c, policy.allow_commands)]
    if refused and not policy.trusted:
        raise _widening(tree, draft, "allow_commands", f"allow_commands lists {refused[0]!r}",
                        "agent.allow_commands = " + repr(list(policy.allow_commands)))
    network = draft.network or policy.network
    origins.setdefault("network", "your configuration: environment.network "
                       f"({policy.where.get('network', 'default')})")
    cache: tuple[str, ...] = draft.cache if draft.cache is not None else ()
    if draft.cache is None and detected.cache:  # the tools the lockfiles name use these
        cache = detected.cache
        origins["cache"] = detected.origins.get("cache", "detected")
    if not policy.cache:
        cache = ()
        origins["cache"] = "off in your configuration (environment.cache)"
    timeout = draft.setup_timeout_minutes or policy.setup_timeout_minutes
    origins.setdefault("setup_timeout_minutes", "your configuration" if
                       draft.setup_timeout_minutes is None else f"{draft.file}: "
                       "setup_timeout_minutes")
    image_reads = dockerfile_reads(tree, base) if base.kind == BASE_DOCKERFILE else {}
    said = draft.file or draft.setup or draft.run or draft.base is not None
    env = Environment(
        source=draft.source if said else SOURCE_DEFAULT, source_file=draft.file, base=base,
        apt=draft.apt, run=draft.run, env=dict(draft.env), setup=draft.setup,
        start=draft.start, setup_secrets=draft.setup_secrets, network=network,
        allow=draft.allow, cache=cache, allow_commands=draft.allow_commands,
        setup_timeout_minutes=timeout, origins=origins,
        reads={n: d for n in detection.reads(tree) if (d := _sha(tree, n))},
        image_reads=image_reads, ignored=tuple(draft.ignored),
        warnings=tuple(draft.warnings))
    return with_hashes(env, policy.claude_version)


def _within(command: str, allowed: tuple[str, ...]) -> bool:
    """``command`` is one of ``allowed`` or starts with one of them and a space."""
    return any(command == a or command.startswith(a + " ") for a in allowed)


def _widening(tree: SourceTree, draft: Draft, key: str, theirs: str, mine: str
              ) -> ParheliaError:
    text = (tree.read(draft.file) or b"").decode("utf-8", "replace") if draft.file else ""
    line = line_of(text, key) if text else 0
    where = f"{draft.file}:{line}" if line else draft.file
    return ParheliaError(
        "E401", f"{where}: {theirs} widens what your own configuration allows ({mine}); a "
        "project file may only narrow it. Allow it in your own config.toml, or pass "
        "--trust-project-config if you trust this repository", file=draft.file, key=key)


def _sha(tree: SourceTree, rel: str) -> str:
    data = tree.read(rel, 64 << 20)
    return hashlib.sha256(data).hexdigest() if data is not None else ""


# -- what a Dockerfile build reads -------------------------------------------------------

_INSTRUCTION = re.compile(r"^\s*(COPY|ADD)\s+(.*)$", re.IGNORECASE)


def copy_sources(dockerfile: str) -> list[str] | None:
    """The context paths (globs) the Dockerfile's COPY/ADD lines take; None when a line
    cannot be read (the whole context then counts)."""
    lines: list[str] = []
    pending = ""
    for raw in dockerfile.splitlines():
        if raw.lstrip().startswith("#") and not pending:
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    if pending:
        lines.append(pending)
    sources: list[str] = []
    for line in lines:
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        rest = m.group(2).strip()
        if rest.startswith("["):
            import json
            try:
                words = json.loads(rest)
            except ValueError:
                return None
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                return None
        else:
            words = rest.split()
        flags = [w for w in words if w.startswith("--")]
        args = [w for w in words if not w.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue  # from another stage or image, not the context
        if len(args) < 2:
            return None
        for src in args[:-1]:
            if re.match(r"^[a-z]+://", src) or src.startswith("<<"):
                continue
            sources.append(src.lstrip("./") or ".")
    return sources


def dockerfile_reads(tree: SourceTree, base: Base) -> dict[str, str]:
    """The Dockerfile and every context file its COPY/ADD lines take -> their sha256."""
    out = {base.dockerfile: _sha(tree, base.dockerfile)}
    text = (tree.read(base.dockerfile) or b"").decode("utf-8", "replace")
    sources = copy_sources(text)
    prefix = f"{base.context}/" if base.context else ""
    for f in tree.files(base.context):
        rel = f.rel[len(prefix):]
        if sources is None or any(_matches(rel, s) for s in sources):
            out[f.rel] = hashlib.sha256(tree.content(f.rel)).hexdigest()
    for arg, value in sorted(base.build_args.items()):
        out[f"--build-arg {arg}"] = hashlib.sha256(value.encode()).hexdigest()
    return out


def _matches(rel: str, source: str) -> bool:
    source = source.rstrip("/")
    if source in (".", "", "*"):
        return True
    return rel == source or rel.startswith(source + "/") or fnmatch.fnmatchcase(rel, source) \
        or any(fnmatch.fnmatchcase("/".join(rel.split("/")[:i]), source)
               for i in range(1, rel.count("/") + 1))
