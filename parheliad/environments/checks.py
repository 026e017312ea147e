"""Checks every source of an environment shares: one E101 per bad value, naming the
file, the line and the key; the values each part may take."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from parhelia.environment import (
    MAX_STEP_CHARS,
    MAX_STEPS,
    NETWORK_LEVELS,
    Step,
    host_problem,
    variable_problem,
)
from parhelia.errors import ParheliaError
from parhelia.redact import secret_setting

WORKER_PYTHONS: Final = ("3.11", "3.12", "3.13", "3.14", "3.15")
"""Python series an image may have: what Modal's image builder offers (modal 1.6.4, builder
2026.10) and the worker runs on (3.11 or newer)."""
_APT_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+:~-]+)?$")
_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$")
_CACHE_RE = re.compile(r"^(~/|/)[A-Za-z0-9._@+/-]{1,255}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_LIST: Final = 200


def secret_variable(name: str) -> str:
    """The variable of the daemon's environment a setup secret names on the local
    backend: the name itself when it is a variable name, else its upper-snake form
    (``pypi-token`` -> ``PYPI_TOKEN``). On Modal the name is a Modal secret's."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return name
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper() or "_"


def line_of(text: str, key: str, after: int = 0) -> int:
    """The 1-based line where ``key`` is written (TOML ``key =`` or JSON ``"key":``),
    searching from line ``after``; 0 when it cannot be found."""
    last = key.rsplit(".", 1)[-1]
    last = re.sub(r"\[\d+\]$", "", last)
    word = re.escape(last)
    patterns = (re.compile(r"""^\s*["']?""" + word + r"""["']?\s*[=:]"""),  # key = / "key":
                re.compile(r"""["']""" + word + r"""["']\s*:"""),         # {"key": ...}
                re.compile(r"""(?:^|[{,\s])""" + word + r"""\s*="""))      # { key = ... }
    lines = text.splitlines()[after:]
    for pattern in patterns:
        for number, line in enumerate(lines, start=after + 1):
            if pattern.search(line):
                return number
    return 0


@dataclass
class Reader:
    """Reads one source file's values, each checked, errors naming file, line and key."""

    file: str
    text: str
    warnings: list[str] = field(default_factory=list)

    def bad(self, key: str, why: str) -> ParheliaError:
        line = line_of(self.text, key)
        where = f"{self.file}:{line}" if line else self.file
        return ParheliaError("E101", f"{where}: {key}: {why}", file=self.file, line=line,
                             key=key)

    def string(self, key: str, value: Any, *, pattern: re.Pattern[str] | None = None,
               what: str = "a string") -> str:
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            raise self.bad(key, f"must be {what}, not {_show(value)}")
        if len(value) > MAX_STEP_CHARS:
            raise self.bad(key, f"is longer than {MAX_STEP_CHARS:,} characters")
        if pattern is not None and not pattern.match(value):
            raise self.bad(key, f"must be {what}, not {value[:80]!r}")
        return value

    def strings(self, key: str, value: Any, *, pattern: re.Pattern[str] | None = None,
                what: str = "a string") -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.bad(key, f"must be a list of {what}s, not {_show(value)}")
        if len(value) > MAX_LIST:
            raise self.bad(key, f"has more than {MAX_LIST} entries")
        return tuple(self.string(f"{key}[{i}]", v, pattern=pattern, what=what)
                     for i, v in enumerate(value))

    def python(self, key: str, value: Any) -> str:
        text = self.string(key, value, what="a Python version such as \"3.12\"")
        series = ".".join(text.split(".")[:2])
        if series not in WORKER_PYTHONS:
            raise self.bad(key, f"Python {text} cannot run Parhelia's worker (it needs 3.11 "
                           f"or newer); choose one of {', '.join(WORKER_PYTHONS)}")
        return series

    def image(self, key: str, value: Any) -> str:
        return self.string(key, value, pattern=_IMAGE_RE,
                           what="a registry image such as \"python:3.12-slim\"")

    def apt(self, key: str, value: Any) -> tuple[str, ...]:
        return self.strings(key, value, pattern=_APT_RE, what="a Debian package name")

    def env(self, key: str, value: Any) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise self.bad(key, f"must be a table of strings, not {_show(value)}")
        out: dict[str, str] = {}
        for name, raw in value.items():
            why = variable_problem(name)
            if why is not None:
                raise self.bad(f"{key}.{name}", why)
            if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
                raise self.bad(f"{key}.{name}", f"must be a string, not {_show(raw)}")
            text = str(raw)
            if "\0" in text or len(text) > MAX_STEP_CHARS:
                raise self.bad(f"{key}.{name}", "must be a short string")
            if secret_setting(name, text):
                raise self.bad(f"{key}.{name}", "looks like a secret, and env is written in "
                               "the worker spec and shown by `env show`. Keep it out of the "
                               "file: name it in setup_secrets (a Modal secret or a variable "
                               "of the daemon's environment), which only setup commands get")
            out[name] = text
        return out

    def steps(self, key: str, value: Any) -> tuple[Step, ...]:
        """A command line, or a list of them (TOML)."""
        lines = self.strings(key, value, what="a command line")
        if len(lines) > MAX_STEPS:
            raise self.bad(key, f"has more than {MAX_STEPS} commands")
        return tuple(Step(name=f"{key}[{i}]", run=line) for i, line in enumerate(lines, 1))

    def secrets(self, key: str, value: Any) -> tuple[str, ...]:
        names = self.strings(key, value, pattern=_SECRET_RE,
                             what="a secret name (letters, digits, _ . -)")
        out = []
        for i, name in enumerate(names):
            why = variable_problem(secret_variable(name))
            if why is not None:
                raise self.bad(f"{key}[{i}]", f"{name!r}: {secret_variable(name)} {why}")
            out.append(name)
        return tuple(dict.fromkeys(out))

    def network(self, key: str, value: Any) -> str:
        text = self.string(key, value, what=" | ".join(NETWORK_LEVELS))
        if text not in NETWORK_LEVELS:
            raise self.bad(key, f"must be one of {', '.join(NETWORK_LEVELS)}, not {text!r}")
        return text

    def hosts(self, key: str, value: Any) -> tuple[str, ...]:
        hosts = self.strings(key, value, what="a host name")
        for i, host in enumerate(hosts):
            why = host_problem(host)
            if why is not None:
                raise self.bad(f"{key}[{i}]", f"{host!r} {why}")
        return tuple(dict.fromkeys(h.lower() for h in hosts))

    def cache(self, key: str, value: Any) -> tuple[str, ...]:
        dirs = self.strings(key, value, pattern=_CACHE_RE,
                            what="a directory under ~/ or an absolute path")
        for i, d in enumerate(dirs):
            if ".." in d.split("/") or d.rstrip("/") in ("~", ""):
                raise self.bad(f"{key}[{i}]", f"{d!r} must name a directory below ~/ or /")
        return tuple(dict.fromkeys(d.rstrip("/") for d in dirs))

    def commands(self, key: str, value: Any) -> tuple[str, ...]:
        out = []
        for i, cmd in enumerate(self.strings(key, value, what="a command prefix")):
            why = command_problem(cmd)
            if why is not None:
                raise self.bad(f"{key}[{i}]", f"{cmd!r} {why}")
            out.append(" ".join(cmd.split()))
        return tuple(dict.fromkeys(out))

    def minutes(self, key: str, value: Any, *, maximum: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 < value <= maximum:
            raise self.bad(key, f"must be a number of minutes above 0 and at most "
                           f"{maximum:g}, not {_show(value)}")
        return float(value)


_SHELL_META = re.compile(r"[;&|`$<>(){}\n\\*?\[\]!'\"]")


def command_problem(cmd: str) -> str | None:
    """Why ``cmd`` cannot be a pre-approved command prefix (None when it can): words only,
    no shell syntax, so that ``pytest`` approves ``pytest -x`` and nothing else."""
    if _SHELL_META.search(cmd):
        return "holds shell syntax; list a command and its first words only (e.g. \"pytest\")"
    if len(cmd) > 200:
        return "is too long"
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
