"""Redaction of secrets and short summaries of tool calls for events.

Events reach the daemon's database and the user's terminal: they carry a tool's
name and a short summary (a command's first characters, a file path), never file
contents, and anything that looks like a credential is replaced by ``***``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

_NAME = r"[A-Za-z0-9_.-]*(?:key|token|secret|passw(?:or)?d|pwd|credential)[A-Za-z0-9_]*"
SECRET_NAME_RE = re.compile(
    r"(?i)(?:key|token|secret|passw(?:or)?d|pwd|credential|auth(?!or)|signature|^sig$)")
"""A name (a flag, a variable, a URL query parameter) whose value is a credential."""

TOKENS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    # (what it is, pattern, replacement): credentials recognisable on their own
    ("a PEM private key", re.compile(
        r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?(?:-----END \1PRIVATE KEY-----|\Z)"),
     "-----BEGIN PRIVATE KEY-----***"),
    ("an Anthropic key", re.compile(r"sk-ant-[A-Za-z0-9_\-]+"), "sk-ant-***"),
    ("an API key (sk-)", re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), "sk-***"),
    ("a Stripe key", re.compile(r"\b([sr]k_(?:live|test)_)[A-Za-z0-9]{10,}"), r"\1***"),
    ("a GitHub token", re.compile(r"\b(gh[pousr]_|github_pat_)[A-Za-z0-9_]{16,}"), r"\1***"),
    ("a GitLab token", re.compile(r"\b(glpat-)[A-Za-z0-9_\-]{16,}"), r"\1***"),
    ("a Hugging Face token", re.compile(r"\b(hf_)[A-Za-z0-9]{20,}"), r"\1***"),
    ("a Google API key", re.compile(r"\b(AIza)[A-Za-z0-9_\-]{30,}"), r"\1***"),
    ("an npm token", re.compile(r"\b(npm_)[A-Za-z0-9]{30,}"), r"\1***"),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"), "xox-***"),
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), r"\1***"),
    ("a JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
     "eyJ***"),
    ("a Modal token", re.compile(r"\b(ak|as)-[A-Za-z0-9]{16,}"), r"\1-***"),
    ("a bearer token", re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{16,}"), r"\1 ***"),
    ("a password in a URL", re.compile(r"(://[^/\s:@]+):(?!\$\{)[^@\s/]+@"), r"\1:***@"),
)
"""The one catalogue of credential patterns: ``redact`` replaces them in text that is
logged or shown, ``find_secrets`` names them in files that would leave the machine."""

_CONTEXT: tuple[tuple[re.Pattern[str], str], ...] = (
    # values recognisable only by the name before them (redacted, not searched for)
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),  # any length
    (re.compile(r"(?i)\b(basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),  # "basic usage" stays
    (re.compile(rf"(?i)(--{_NAME})(=|\s+)(\"[^\"]*\"|'[^']*'|\S+)"), r"\1\2***"),
    (re.compile(rf"(?i)\b({_NAME})(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&|]+)"),
     r"\1\2***"),
)
SUMMARY_CHARS = 80
TEXT_CHARS = 4000


def redact(text: str) -> str:
    for _, pattern, repl in TOKENS:
        text = pattern.sub(repl, text)
    for pattern, repl in _CONTEXT:
        text = pattern.sub(repl, text)
    return text


def find_secrets(text: str) -> list[tuple[int, str]]:
    """``(line number, what)`` of every credential of the catalogue in ``text``."""
    found: list[tuple[int, str]] = []
    for what, pattern, _ in TOKENS:
        for m in pattern.finditer(text):
            found.append((text.count("\n", 0, m.start()) + 1, what))
    return sorted(set(found))


def looks_secret(value: str) -> bool:
    """A whole value (an argument, a query value) that is a credential of the catalogue."""
    return any(pattern.search(value) for _, pattern, _ in TOKENS)


def secret_setting(name: str, value: str) -> bool:
    """Whether a named setting (an ``env`` entry, a header) holds a credential by its name
    or its value's shape: config sync's rule, and the environment file's."""
    return bool(SECRET_NAME_RE.search(name)) or looks_secret(value) or redact(value) != value


def shorten(text: str, limit: int = SUMMARY_CHARS) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def _rel(path: str, cwd: str | None) -> str:
    if cwd and path.startswith(cwd.rstrip("/") + "/"):
        return os.path.relpath(path, cwd)
    return path


def tool_summary(name: str, tool_input: Mapping[str, Any] | Any, cwd: str | None = None) -> str:
    """A short, redacted description of one tool call (never file contents)."""
    inp = tool_input if isinstance(tool_input, Mapping) else {}

    def field(*keys: str) -> str:
        for key in keys:
            value = inp.get(key)
            if isinstance(value, str) and value:
                return value
        return ""

    if name == "Bash":
        # redact first: a cut token may be too short for its pattern to recognise
        summary = shorten(redact(field("command")))
    elif name in ("Write", "Edit", "MultiEdit", "Read", "NotebookEdit", "NotebookRead"):
        summary = _rel(field("file_path", "notebook_path", "path"), cwd)
    elif name in ("Glob", "Grep"):
        where = field("path")
        summary = field("pattern") + (f" in {_rel(where, cwd)}" if where else "")
    elif name == "WebFetch":
        summary = field("url").split("?", 1)[0]
    elif name == "WebSearch":
        summary = field("query")
    elif name in ("Task", "Agent"):
        summary = field("description", "subagent_type")
    elif name == "TodoWrite":
        todos = inp.get("todos")
        summary = f"{len(todos)} todos" if isinstance(todos, list) else ""
    else:
        summary = ", ".join(sorted(str(k) for k in inp)[:6])
    return shorten(redact(summary), SUMMARY_CHARS + 40)


def redact_text(text: str, limit: int = TEXT_CHARS) -> str:
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- files that look like credentials (by name; left out of workspace uploads) ----------

# fnmatch patterns on a file's name (its last path component)...
SECRET_FILE_NAMES: tuple[str, ...] = (
    ".env", ".env.*", "*.env", ".envrc",
    "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.ppk", "*.kdbx",
    "id_rsa", "id_rsa.*", "id_dsa", "id_dsa.*", "id_ecdsa", "id_ecdsa.*",
    "id_ed25519", "id_ed25519.*",
    ".netrc", "_netrc", ".git-credentials", ".pgpass", ".htpasswd",
    "credentials.json", "application_default_credentials.json", "*service-account*.json",
    "client_secret*.json", "terraform.tfstate", "terraform.tfstate.*", "*.tfvars",
    "secrets.yml", "secrets.yaml", "secrets.json",
)
# ...and on a trailing part of its path (directory-qualified credential files).
SECRET_FILE_PATHS: tuple[str, ...] = (
    ".aws/credentials", ".aws/config", ".docker/config.json", ".kube/config",
    ".config/gcloud/*", ".azure/*", ".ssh/*", ".gnupg/*",
)
# Names that match a pattern above but are templates or public halves, never secrets.
NOT_SECRET_FILE_NAMES: tuple[str, ...] = (
    ".env.example", ".env.sample", ".env.template", ".env.dist", ".env.defaults",
    "*.pub", "known_hosts", "*.example", "*.sample", "*.template",
)
# Package-manager config files that are credentials only when they hold a token.
TOKEN_CONFIG_NAMES: tuple[str, ...] = (".npmrc", ".yarnrc.yml", ".pypirc", "pip.conf")
_TOKEN_CONFIG_RE = re.compile(rb"(?im)^\s*[^#;\s]*(_authtoken|_auth|_password|password|"
                              rb"npmauthtoken|token)\s*[=:]\s*\S")


def looks_like_secret_file(rel_path: str, read: Callable[[], bytes] | None = None) -> bool:
    """Whether the file at ``rel_path`` (POSIX, relative) looks like a credential.

    ``read`` returns the file's first bytes; it is called only for package-manager
    config files (``.npmrc``...), which count when they hold a token."""
    name = rel_path.rsplit("/", 1)[-1]
    if any(fnmatch.fnmatchcase(name, p) for p in NOT_SECRET_FILE_NAMES):
        return False
    if any(fnmatch.fnmatchcase(name, p) for p in SECRET_FILE_NAMES):
        return True
    padded = "/" + rel_path
    if any(fnmatch.fnmatchcase(padded, "*/" + p) for p in SECRET_FILE_PATHS):
        return True
    if name in TOKEN_CONFIG_NAMES and read is not None:
        try:
            return bool(_TOKEN_CONFIG_RE.search(read()))
        except OSError:
            return True
    return False
