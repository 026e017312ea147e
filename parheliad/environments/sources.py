"""The two files an environment can come from: ``.parhelia/environment.toml`` and the
repository's devcontainer.json (JSON with comments, read with the ``json5`` library).

Each returns a :class:`Draft`: the parts it sets, where each came from, the keys it
ignores and its warnings. :mod:`.resolve` fills in what it leaves out and applies the
user's limits. Paths in either file are confined to the repository (E101 otherwise).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import json5

from parhelia.environment import MAX_STEPS, Step
from parhelia.errors import ParheliaError
from parheliad.environments.checks import Reader, secret_variable
from parheliad.environments.files import SourceTree, normal
from parheliad.environments.model import (
    BASE_DEBIAN_SLIM,
    BASE_DOCKERFILE,
    BASE_REGISTRY,
    DEVCONTAINER_FILES,
    ENVIRONMENT_FILE,
    Base,
)

MAX_SETUP_MINUTES = 240.0


@dataclass
class Draft:
    """What one source says; ``None`` / empty = not said (defaults apply)."""

    source: str
    file: str
    base: Base | None = None
    apt: tuple[str, ...] = ()
    run: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    setup: tuple[Step, ...] = ()
    start: tuple[Step, ...] = ()
    setup_secrets: tuple[str, ...] = ()
    network: str | None = None
    allow: tuple[str, ...] = ()
    cache: tuple[str, ...] | None = None
    allow_commands: tuple[str, ...] = ()
    setup_timeout_minutes: float | None = None
    origins: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _text(tree: SourceTree, rel: str) -> str | None:
    data = tree.read(rel)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParheliaError("E101", f"{rel}: not UTF-8 text (byte {exc.start})",
                            file=rel) from None


def _confined(reader: Reader, key: str, value: Any, base_dir: str = "") -> str:
    """A path of the repository, relative to ``base_dir``: never absolute, never out."""
    text = reader.string(key, value, what="a path inside the repository")
    if text.startswith("/") or text.startswith("~"):
        raise reader.bad(key, f"{text!r} is absolute; it must be a path inside the repository")
    joined = f"{base_dir}/{text}" if base_dir else text
    parts: list[str] = []
    for part in joined.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise reader.bad(key, f"{text!r} leaves the repository")
            parts.pop()
        else:
            parts.append(part)
    try:
        return normal("/".join(parts))
    except ParheliaError as exc:
        raise reader.bad(key, exc.message) from None


# -- .parhelia/environment.toml --------------------------------------------------------------

TOML_KEYS = ("python", "image", "dockerfile", "context", "build_args", "apt", "run", "env",
             "setup", "start", "setup_secrets", "network", "allow", "cache", "allow_commands",
             "setup_timeout_minutes")


def from_toml(tree: SourceTree) -> Draft | None:
    text = _text(tree, ENVIRONMENT_FILE)
    if text is None:
        return None
    file = ENVIRONMENT_FILE
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        where = f"{file}:{line.group(1)}" if line else file
        raise ParheliaError("E101", f"{where}: not valid TOML: {exc}", file=file,
                            line=int(line.group(1)) if line else 0) from None
    r = Reader(file, text)
    draft = Draft("file", file)
    unknown = [k for k in doc if k not in TOML_KEYS]
    if unknown:
        draft.warnings.append(f"{file}: unknown key(s) ignored: {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(TOML_KEYS)})")
    at = {k: f"{file}: {k}" for k in doc}
    if "image" in doc and "dockerfile" in doc:
        raise r.bad("dockerfile", "set either image or dockerfile, not both")
    for key in ("context", "build_args"):
        if key in doc and "dockerfile" not in doc:
            raise r.bad(key, "only applies with dockerfile")
    python = r.python("python", doc["python"]) if "python" in doc else ""
    if "dockerfile" in doc:
        dockerfile = _confined(r, "dockerfile", doc["dockerfile"])
        context = _confined(r, "context", doc["context"]) if "context" in doc else ""
        args = r.env("build_args", doc.get("build_args", {})) if "build_args" in doc else {}
        _dockerfile_exists(r, tree, "dockerfile", dockerfile)
        draft.base = Base(BASE_DOCKERFILE, python=python, dockerfile=dockerfile,
                          context=context, build_args=args)
        draft.origins["base"] = at["dockerfile"]
    elif "image" in doc:
        draft.base = Base(BASE_REGISTRY, python=python, image=r.image("image", doc["image"]))
        draft.origins["base"] = at["image"]
    elif python:
        draft.base = Base(BASE_DEBIAN_SLIM, python=python)
        draft.origins["base"] = at["python"]
    if "apt" in doc:
        draft.apt, draft.origins["apt"] = r.apt("apt", doc["apt"]), at["apt"]
    if "run" in doc:
        draft.run = r.strings("run", doc["run"], what="a command line")
        draft.origins["run"] = at["run"]
    if "env" in doc:
        draft.env, draft.origins["env"] = r.env("env", doc["env"]), at["env"]
    for key in ("setup", "start"):
        if key in doc:
            setattr(draft, key, r.steps(key, doc[key]))
            draft.origins[key] = at[key]
    if "setup_secrets" in doc:
        draft.setup_secrets = r.secrets("setup_secrets", doc["setup_secrets"])
        draft.origins["setup_secrets"] = at["setup_secrets"]
    if "network" in doc:
        draft.network, draft.origins["network"] = r.network("network", doc["network"]), \
            at["network"]
    if "allow" in doc:
        draft.allow, draft.origins["allow"] = r.hosts("allow", doc["allow"]), at["allow"]
    if "cache" in doc:
        draft.cache, draft.origins["cache"] = r.cache("cache", doc["cache"]), at["cache"]
    if "allow_commands" in doc:
        draft.allow_commands = r.commands("allow_commands", doc["allow_commands"])
        draft.origins["allow_commands"] = at["allow_commands"]
    if "setup_timeout_minutes" in doc:
        draft.setup_timeout_minutes = r.minutes("setup_timeout_minutes",
                                                doc["setup_timeout_minutes"],
                                                maximum=MAX_SETUP_MINUTES)
    for secret in draft.setup_secrets:
        if secret_variable(secret) in draft.env:
            raise r.bad(f"env.{secret_variable(secret)}",
                        f"{secret} is a setup secret: it cannot also be in env")
    return draft


def _dockerfile_exists(r: Reader, tree: SourceTree, key: str, rel: str) -> None:
    if tree.read(rel) is None:
        raise r.bad(key, f"{rel} is not a regular file of the repository")


# -- devcontainer.json ---------------------------------------------------------------------

DEVCONTAINER_USED = ("image", "build", "dockerFile", "context", "containerEnv", "remoteEnv",
                     "onCreateCommand", "updateContentCommand", "postCreateCommand",
                     "postStartCommand")
SETUP_COMMANDS = ("onCreateCommand", "updateContentCommand", "postCreateCommand")
"""The devcontainer lifecycle commands that run once, when the container is created, in
the order the Dev Container specification runs them: Parhelia's ``setup``."""
DEVCONTAINER_IGNORED = {
    "initializeCommand": "runs on the host: Parhelia never runs a repository's command "
                         "on your machine",
    "postAttachCommand": "runs when an editor attaches; a task has none",
    "features": "Dev Container Features are not installed; put what they add in apt/run "
                "of .parhelia/environment.toml",
    "dockerComposeFile": "Docker Compose is not run",
}
_VARIABLE = re.compile(r"\$\{[^}]*\}")


def from_devcontainer(tree: SourceTree) -> Draft | None:
    for file in DEVCONTAINER_FILES:
        text = _text(tree, file)
        if text is not None:
            return _devcontainer(tree, file, text)
    return None


def _devcontainer(tree: SourceTree, file: str, text: str) -> Draft:
    try:
        doc = json5.loads(text, allow_duplicate_keys=False)
    except ValueError as exc:
        line = re.match(r"<string>:(\d+)", str(exc))
        where = f"{file}:{line.group(1)}" if line else file
        message = re.sub(r"^<string>:\d+\s*", "", str(exc))
        raise ParheliaError("E101", f"{where}: not valid JSON with comments: {message}",
                            file=file, line=int(line.group(1)) if line else 0) from None
    r = Reader(file, text)
    if not isinstance(doc, Mapping):
        raise r.bad("devcontainer", "must be a JSON object")
    draft = Draft("devcontainer", file)
    name = file.rsplit("/", 1)[-1]
    folder = file.rsplit("/", 1)[0] if "/" in file else ""
    at = {k: f"{name}: {k}" for k in doc}
    draft.ignored = sorted(k for k in doc if k not in DEVCONTAINER_USED)
    for key in draft.ignored:
        why = DEVCONTAINER_IGNORED.get(key)
        if why is not None:
            draft.warnings.append(f"{file}: {key} is ignored: {why}")
    build = doc.get("build")
    if build is not None and not isinstance(build, Mapping):
        raise r.bad("build", "must be an object")
    build = dict(build or {})
    dockerfile = build.get("dockerfile", doc.get("dockerFile"))
    context = build.get("context", doc.get("context"))
    if dockerfile is not None:
        key = "build.dockerfile" if "dockerfile" in build else "dockerFile"
        # Relative to the folder of devcontainer.json, like its context (the spec's rule).
        path = _confined(r, key, dockerfile, folder)
        ctx = _confined(r, "build.context" if "context" in build else "context", context,
                        folder) if context is not None else folder
        args = _devcontainer_env(r, draft, "build.args", build.get("args") or {})
        _dockerfile_exists(r, tree, key, path)
        draft.base = Base(BASE_DOCKERFILE, dockerfile=path, context=ctx, build_args=args)
        draft.origins["base"] = f"{name}: {key}"
        unused = sorted(set(build) - {"dockerfile", "context", "args"})
        if unused:
            draft.ignored += [f"build.{k}" for k in unused]
    elif "image" in doc:
        draft.base = Base(BASE_REGISTRY, image=r.image("image", doc["image"]))
        draft.origins["base"] = at["image"]
    env: dict[str, str] = {}
    for key in ("containerEnv", "remoteEnv"):
        if key in doc:
            env.update(_devcontainer_env(r, draft, key, doc[key]))
    if env:
        draft.env = env
        draft.origins["env"] = " + ".join(f"{name}: {k}" for k in ("containerEnv", "remoteEnv")
                                          if k in doc)
    setup: list[Step] = []
    for key in SETUP_COMMANDS:
        if key in doc:
            setup += _commands(r, key, doc[key])
    if setup:
        if len(setup) > MAX_STEPS:
            raise r.bad("postCreateCommand", f"more than {MAX_STEPS} commands in all")
        draft.setup = tuple(setup)
        draft.origins["setup"] = " + ".join(f"{name}: {k}" for k in SETUP_COMMANDS if k in doc)
    if "postStartCommand" in doc:
        draft.start = tuple(_commands(r, "postStartCommand", doc["postStartCommand"]))
        draft.origins["start"] = at["postStartCommand"]
    return draft


def _devcontainer_env(r: Reader, draft: Draft, key: str, raw: Any) -> dict[str, str]:
    """An env object; ``null`` unsets (skipped); values that use ``${...}`` variables are
    left out with a warning (``${localEnv:...}`` would read your machine's environment)."""
    if not isinstance(raw, Mapping):
        raise r.bad(key, "must be an object of strings")
    kept = {}
    for name, value in raw.items():
        if value is None:
            continue
        if isinstance(value, str) and _VARIABLE.search(value):
            draft.warnings.append(f"{r.file}: {key}.{name} is left out: it uses "
                                  f"{_VARIABLE.search(value).group(0)}, which Parhelia does "  # type: ignore[union-attr]
                                  "not expand (your machine's environment is never read)")
            continue
        kept[name] = value
    return r.env(key, kept)


def _commands(r: Reader, key: str, value: Any) -> list[Step]:
    """A lifecycle command: a string (a shell line), an array (an argv, no shell) or an
    object of either (named steps, run in order here)."""
    if isinstance(value, str):
        return [Step(name=key, run=r.string(key, value, what="a command"))]
    if isinstance(value, list):
        argv = r.strings(key, value, what="an argument")
        if not argv:
            raise r.bad(key, "an empty command")
        return [Step(name=key, argv=argv)]
    if isinstance(value, Mapping):
        steps: list[Step] = []
        for label, item in value.items():
            steps += [Step(name=f"{key}.{label}", run=s.run, argv=s.argv)
                      for s in _commands(r, f"{key}.{label}", item)]
        return steps
    raise r.bad(key, "must be a string, an array or an object of commands")

