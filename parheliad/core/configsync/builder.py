"""Plan a config bundle from the user's Claude Code configuration (no writes).

What is read: the Claude config dir (``CLAUDE_CONFIG_DIR`` of the daemon's
environment, else ``~/.claude``) and the global ``.claude.json`` (inside
``CLAUDE_CONFIG_DIR`` when that is set, as Claude Code does, else ``~/.claude.json``).

The rules (an allow-list: anything not named here stays home):

- sent: ``CLAUDE.md``, ``settings.json`` (sanitised), ``agents/``, ``commands/``,
  ``skills/``, ``output-styles/``, hook and status-line scripts that settings refer to,
  ``plugins/installed_plugins.json`` and ``known_marketplaces.json`` with the plugin
  directories they install, and the user-scope MCP servers of ``.claude.json``;
- never sent (``secret``): ``.credentials.json``, ``.device-keys.json``,
  ``settings.local.json``, the account/OAuth state of ``.claude.json``, every literal
  value of settings ``env`` and of MCP servers' ``env`` and ``headers``, and
  ``apiKeyHelper`` (and the other credential helpers). MCP servers' ``args`` and
  ``url`` lose their credentials too: the value of a flag whose name says key, token,
  secret, password or auth (``--api-key X``, ``--token=Y``, ``API_KEY=Z``), an argument
  that the secret catalogue (``parhelia.redact``) recognises, a URL's user and
  password and its credential query parameters; each becomes ``${MCP_<SERVER>_<NAME>}``,
  which Claude Code expands in the worker. Names listed in ``sync.pass_env`` travel as
  environment variables of the worker (``secret_env``), never in a file. A bundled file
  that still contains one of those values, or a credential of the catalogue (named
  with its line), is dropped too;
- not config (``not_config``): ``projects/``, ``todos/``, ``sessions/``,
  ``telemetry/``, ``history.jsonl``, ``backups/`` and anything else unknown;
  ``cache``: ``.git``, ``node_modules``, ``__pycache__``, plugin caches and
  marketplace clones that no installed plugin uses;
- MCP servers in ``sync.exclude_mcp`` (``excluded``) and stdio servers whose command
  the worker cannot run (``missing_command``) are left out; the ``parhelia mcp-server``
  bridge itself is sent with a warning naming the ``exclude_mcp`` entry that leaves it
  home. A settings value holding a credential of the catalogue is removed where it
  stood; the rest of ``settings.json`` is sent.

Absolute paths into the config dir become ``${CLAUDE_CONFIG_DIR}`` (the worker
substitutes its own); hook scripts elsewhere in the home directory are bundled
under ``external/`` and their commands rewritten; other references that will not
exist in the worker are reported as warnings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from parhelia.bundle import CONFIG_DIR_TOKEN, GLOBAL_JSON, SETTINGS
from parhelia.redact import SECRET_NAME_RE, find_secrets, looks_secret, redact

SYNCED_DIRS = ("agents", "commands", "skills", "output-styles")
SECRET_FILES = {
    ".credentials.json": "OAuth credentials",
    ".device-keys.json": "device keys",
    "settings.local.json": "local settings (may hold secrets by design)",
}
NOT_CONFIG = {
    "projects": "conversation transcripts",
    "todos": "todo state",
    "sessions": "session state",
    "telemetry": "telemetry",
    "history.jsonl": "prompt history",
    "backups": "backups of .claude.json",
}
CACHE_NAMES = frozenset({".git", "node_modules", "__pycache__", ".cache", ".venv"})
CREDENTIAL_HELPERS = ("apiKeyHelper", "awsAuthRefresh", "awsCredentialExport",
                      "otelHeadersHelper")
PLUGIN_REGISTRIES = ("installed_plugins.json", "known_marketplaces.json")
_SECRET_KEY_RE = re.compile(r"oauth|token|secret|key|account|auth|password|credential",
                            re.IGNORECASE)
_PATH_RE = re.compile(r"(?:~|\$HOME|\$\{HOME\}|/)[^\s'\"`;|&<>()]*")
_PATH_START_AFTER = " \t\n=:("
_SEGMENT_SPLIT = re.compile(r"[;&|()`\n]")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PREFIX_COMMANDS = frozenset({"env", "exec", "command", "nohup", "time"})
_INTERPRETERS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish", "python", "python3",
                           "node", "nodejs", "bun", "deno", "ruby", "perl", "php", "lua",
                           "tsx", "ts-node"})
MIN_SCANNED_SECRET = 8
MAX_FILE_BYTES = 256 << 20

CommandExists = Callable[[str], bool]


def header_env_name(server: str, header: str) -> str:
    """The variable a passed MCP header value travels in: ``MCP_<SERVER>_<HEADER>``
    (also for an argument's or a URL's credential: ``MCP_<SERVER>_<FLAG or PARAMETER>``)."""
    return re.sub(r"[^A-Z0-9]", "_", f"MCP_{server}_{header.lstrip('-')}".upper())


_FLAG_VALUE = re.compile(r"^(-{1,2}[A-Za-z0-9][A-Za-z0-9_.-]*)=(.+)$", re.DOTALL)
_NAME_VALUE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.+)$", re.DOTALL)
_SWITCH = re.compile(r"^--?(?:no|skip|disable|enable|use|with|without)-", re.IGNORECASE)


@dataclass(frozen=True)
class Source:
    home: Path
    config_dir: Path
    global_json: Path
    explicit_dir: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Source:
        home = Path(env.get("HOME") or Path.home())
        configured = env.get("CLAUDE_CONFIG_DIR")
        if configured:
            cfg = Path(configured).expanduser()
            return cls(home=home, config_dir=cfg, global_json=cfg / GLOBAL_JSON,
                       explicit_dir=True)
        return cls(home=home, config_dir=home / ".claude", global_json=home / ".claude.json")

    def display(self, path: Path) -> str:
        """A path for people: ``~/...`` under the home directory."""
        text = str(path)
        home = str(self.home).rstrip("/")
        if text == home:
            return "~"
        if text.startswith(home + "/"):
            return "~" + text[len(home):]
        return text


@dataclass
class Item:
    path: str            # relative to the worker's config dir
    data: bytes
    mode: int = 0o644
    template: bool = False

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Exclusion:
    path: str
    reason: str          # secret | env | cache | excluded | missing_command | not_config | invalid
    detail: str = ""


@dataclass(frozen=True)
class Rewrite:
    file: str
    key: str
    before: str
    after: str


@dataclass
class Plan:
    source: Source
    items: dict[str, Item] = field(default_factory=dict)
    mcp_servers: dict[str, Any] = field(default_factory=dict)
    exclusions: list[Exclusion] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    inputs: list[str] = field(default_factory=list)
    """Every file and directory read (for the cheap "did anything change" check)."""

    @property
    def empty(self) -> bool:
        return not self.items and not self.mcp_servers


def is_parhelia_server(server: Mapping[str, Any]) -> bool:
    """Whether an MCP server entry runs ``parhelia mcp-server`` (the bridge to this very
    daemon), by its command or as ``python -m parhelia_cli mcp-server``."""
    command = server.get("command")
    args = [a for a in server.get("args") or [] if isinstance(a, str)]
    if not isinstance(command, str) or "mcp-server" not in args:
        return False
    return os.path.basename(command) == "parhelia" or "parhelia_cli" in args


def build(source: Source, *, pass_env: list[str], exclude_mcp: list[str],
          command_exists: CommandExists) -> Plan:
    return _Builder(source, set(pass_env), set(exclude_mcp), command_exists).run()


class _Builder:
    def __init__(self, source: Source, pass_env: set[str], exclude_mcp: set[str],
                 command_exists: CommandExists) -> None:
        self.src = source
        self.plan = Plan(source)
        self.pass_env = pass_env
        self.exclude_mcp = exclude_mcp
        self.command_exists = command_exists
        self.cfg = Path(os.path.normpath(source.config_dir))
        self.cfg_real = Path(os.path.realpath(source.config_dir))
        self.home = Path(os.path.normpath(source.home))
        self.secret_values: set[str] = set()
        self.excluded: set[str] = set()
        self.never: set[str] = {os.path.realpath(self.cfg / n) for n in
                                (*SECRET_FILES, *NOT_CONFIG, GLOBAL_JSON)}
        self.never.add(os.path.realpath(source.global_json))

    # -- entry -----------------------------------------------------------------------

    def run(self) -> Plan:
        plan = self.plan
        rest: list[str] = []
        if self.cfg.is_dir():
            plan.inputs.append(str(self.cfg))
            rest = self._top_level()
        else:
            plan.warnings.append(f"no Claude config directory at {self.src.display(self.cfg)}")
        self._global_json()
        for name in rest:  # last: scripts that settings or MCP servers use are included now
            self._exclude_unused(self.cfg / name, name, "not_config",
                                 "not part of the synced configuration")
        self._scan_for_secret_values()
        return plan

    # -- the config dir --------------------------------------------------------------

    def _top_level(self) -> list[str]:
        """Add what the config dir holds; returns the entries no rule covers."""
        names = sorted(os.listdir(self.cfg))
        settings_later = SETTINGS in names
        rest: list[str] = []
        for name in names:
            path = self.cfg / name
            if name == "CLAUDE.md" or name in SYNCED_DIRS:
                self._walk(path, name)
            elif name == "plugins" and path.is_dir():
                self._plugins(path)
            elif name in SECRET_FILES:
                self._exclude(name, "secret", SECRET_FILES[name])
            elif name in NOT_CONFIG:
                self._exclude(name + ("/" if path.is_dir() else ""), "not_config",
                              NOT_CONFIG[name])
            elif name == GLOBAL_JSON:
                if path != self.src.global_json:
                    self._exclude(name, "secret", "account and app state")
            elif name != SETTINGS:
                rest.append(name)
        if settings_later:
            self._settings(self.cfg / SETTINGS)
        return rest

    def _exclude_unused(self, path: Path, rel: str, reason: str, detail: str) -> None:
        """Exclude ``rel`` unless some of it was included; then exclude the rest of it."""
        prefix = rel + "/"
        if rel in self.plan.items:
            return
        if path.is_dir() and not path.is_symlink() and any(
                p.startswith(prefix) for p in self.plan.items):
            for name in sorted(os.listdir(path)):
                self._exclude_unused(path / name, f"{rel}/{name}", reason, detail)
            return
        self._exclude(rel + ("/" if path.is_dir() else ""), reason, detail)

    def _walk(self, path: Path, rel: str, seen: frozenset[str] = frozenset()) -> None:
        """Add a file or a directory tree (symlinks followed, loops and secrets refused)."""
        try:
            st = os.stat(path)
        except OSError:
            self.plan.warnings.append(f"{rel}: unreadable or a dangling symlink; skipped")
            return
        real = os.path.realpath(path)
        if real in self.never:
            self._exclude(rel, "secret", "a link to a file that is never synced")
            return
        if stat.S_ISREG(st.st_mode):
            self._add_file(path, rel)
        elif stat.S_ISDIR(st.st_mode):
            if real in seen:
                self.plan.warnings.append(f"{rel}: symlink loop; skipped")
                return
            self.plan.inputs.append(str(path))
            for name in sorted(os.listdir(path)):
                if name in CACHE_NAMES:
                    self._exclude(f"{rel}/{name}/", "cache", "caches and VCS data stay home")
                    continue
                self._walk(path / name, f"{rel}/{name}", seen | {real})

    def _add_file(self, path: Path, rel: str, data: bytes | None = None,
                  template: bool = False) -> bool:
        if rel in self.plan.items:
            return True
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                return False
            if st.st_size > MAX_FILE_BYTES:
                self._exclude(rel, "not_config", f"larger than {MAX_FILE_BYTES >> 20} MiB")
                return False
            if data is None:
                data = path.read_bytes()
        except OSError as exc:
            self.plan.warnings.append(f"{rel}: cannot be read ({exc.strerror}); skipped")
            return False
        self.plan.inputs.append(str(path))
        self.plan.items[rel] = Item(rel, data, stat.S_IMODE(st.st_mode) or 0o644, template)
        return True

    def _exclude(self, path: str, reason: str, detail: str = "") -> None:
        if path not in self.excluded:
            self.excluded.add(path)
            self.plan.exclusions.append(Exclusion(path, reason, detail))

    # -- settings.json ---------------------------------------------------------------

    def _settings(self, path: Path) -> None:
        try:
            raw = path.read_bytes()
            settings = json.loads(raw)
        except OSError as exc:
            self.plan.warnings.append(f"settings.json: cannot be read ({exc.strerror})")
            return
        except ValueError:
            settings = None
        self.plan.inputs.append(str(path))
        if not isinstance(settings, dict):
            self._exclude(SETTINGS, "invalid", "not a JSON object; not sent (its secrets "
                                               "could not be removed)")
            self.plan.warnings.append("settings.json is not valid JSON and was not sent")
            return
        env = settings.pop("env", None)
        if isinstance(env, dict):
            for name, value in env.items():
                self._secret_value(f"settings.json#env.{name}", str(name), value)
        elif env is not None:
            self._exclude("settings.json#env", "secret", "not an object; removed")
        for helper in CREDENTIAL_HELPERS:
            if helper in settings:
                value = settings.pop(helper)
                if isinstance(value, str) and len(value) >= MIN_SCANNED_SECRET:
                    self.secret_values.add(value)
                self._exclude(f"settings.json#{helper}", "secret",
                              "credential helper: runs on your machine only")
        cleaned = self._without_credentials(self._json_paths(settings, SETTINGS, ""), "")
        data = json.dumps(cleaned, indent=2, ensure_ascii=False).encode() + b"\n"
        st = os.stat(path)
        self.plan.items[SETTINGS] = Item(SETTINGS, data, stat.S_IMODE(st.st_mode) or 0o644,
                                         template=True)

    def _without_credentials(self, value: Any, key: str) -> Any:
        """``value`` (settings, past its env) without the strings that hold a credential
        of the catalogue: each is removed where it stood (its key, or its list item) and
        listed, and the rest of the file is sent - not the whole file refused for one."""
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                path = f"{key}.{k}" if key else str(k)
                if self._credential_in(v, path):
                    continue
                out[k] = self._without_credentials(v, path)
            return out
        if isinstance(value, list):
            return [self._without_credentials(v, f"{key}[{i}]") for i, v in enumerate(value)
                    if not self._credential_in(v, f"{key}[{i}]")]
        return value

    def _credential_in(self, value: Any, path: str) -> bool:
        """Whether ``value`` is a string holding a credential (then it is withheld)."""
        if not isinstance(value, str):
            return False
        hits = find_secrets(value)
        if not hits:
            return False
        if _scannable(value):
            self.secret_values.add(value)
        self._exclude(f"{SETTINGS}#{path}", "secret",
                      f"value removed ({hits[0][1]}); the rest of {SETTINGS} is sent")
        return True

    def _secret_value(self, where: str, name: str, value: Any, placeholder: bool = False) -> bool:
        """A removed literal value; passed as ``name`` if the user allows it. True if passed.
        ``placeholder``: the value was replaced by ``${name}`` where it stood."""
        text = value if isinstance(value, str) else json.dumps(value)
        if _scannable(text):
            self.secret_values.add(text)
            if text.lower().startswith("bearer "):
                self.secret_values.add(text[7:].strip())
        # Every literal value is withheld (it may be a credential nothing recognises), but
        # only one whose name or shape says credential is called a secret.
        reason = "secret" if SECRET_NAME_RE.search(name) or looks_secret(text) \
            or redact(text) != text else "env"
        if name in self.pass_env:
            previous = self.plan.secret_env.get(name)
            if previous is not None and previous != text:
                self.plan.warnings.append(f"{where}: {name} is passed already with another "
                                          "value; the first one is kept")
            else:
                self.plan.secret_env[name] = text
            self._exclude(where, reason, f"passed to workers as the environment variable "
                                           f"{name}" + (f" (written as ${{{name}}})"
                                                        if placeholder else ""))
            return True
        replaced = f"value replaced by ${{{name}}}" if placeholder else "value removed"
        self._exclude(where, reason, f"{replaced}; add {name} to sync.pass_env to pass "
                                       "it as an environment variable")
        return False

    def _json_paths(self, value: Any, file: str, key: str) -> Any:
        """Rewrite config-dir paths in every string; commands also get hook scripts."""
        if isinstance(value, dict):
            return {k: self._json_paths(v, file, f"{key}.{k}" if key else str(k))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self._json_paths(v, file, f"{key}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str):
            is_command = file == SETTINGS and key.endswith(".command") and (
                key.startswith("hooks.") or key.startswith("statusLine"))
            return self._rewrite(value, file, key, bundle_home_files=is_command)
        return value

    # -- path rewriting --------------------------------------------------------------

    def _absolute(self, token: str) -> Path | None:
        for prefix in ("${HOME}", "$HOME", "~"):
            if token == prefix or token.startswith(prefix + "/"):
                return Path(os.path.normpath(str(self.home) + token[len(prefix):]))
        if token.startswith("/"):
            return Path(os.path.normpath(token))
        return None

    def _under(self, path: Path, root: Path) -> str | None:
        """``path`` relative to ``root`` ("" for root itself), or None."""
        text, base = str(path), str(root).rstrip("/")
        if text == base:
            return ""
        if text.startswith(base + "/"):
            return text[len(base) + 1:]
        return None

    def _rewrite(self, text: str, file: str, key: str, *, bundle_home_files: bool,
                 report_missing: bool | None = None) -> str:
        if report_missing is None:
            report_missing = bundle_home_files
        out: list[str] = []
        last = 0
        for m in _PATH_RE.finditer(text):
            start = m.start()
            if start > 0 and text[start - 1] not in _PATH_START_AFTER and not (
                    text[start - 1] in "\"'" and (start == 1
                                                  or text[start - 2] in _PATH_START_AFTER)):
                continue
            token = m.group(0).rstrip(".,")
            bundle = bundle_home_files and _script_position(text, start)
            new = self._map_path(token, file, key, bundle, report_missing)
            if new is not None and new != token:
                out.append(text[last:start])
                out.append(new)
                last = start + len(token)
        if not out:
            return text
        out.append(text[last:])
        after = "".join(out)
        self.plan.rewrites.append(Rewrite(file, key, text, after))
        return after

    def _map_path(self, token: str, file: str, key: str, bundle_home_files: bool,
                  report_missing: bool) -> str | None:
        path = self._absolute(token)
        if path is None or token in ("/", "~") or token.startswith("//"):
            return None
        real = Path(os.path.realpath(path))
        rel = self._under(path, self.cfg)
        if rel is None:
            rel = self._under(real, self.cfg_real)
        where = f"{file}#{key}"
        if rel is not None:
            top = rel.split("/")[0]
            if rel and (str(real) in self.never or top in SECRET_FILES or top in NOT_CONFIG
                        or top == GLOBAL_JSON):
                self.plan.warnings.append(f"{where} refers to {self.src.display(path)}, which "
                                          "is never synced (secret or not config)")
            elif rel and rel not in self.plan.items and real.is_file():
                self._add_file(real, rel)
            elif rel and not os.path.exists(path):
                self.plan.warnings.append(f"{where} refers to {self.src.display(path)}, which "
                                          "does not exist")
            return CONFIG_DIR_TOKEN + (f"/{rel}" if rel else "")
        home_rel = self._under(path, self.home)
        if home_rel is not None and home_rel:
            if bundle_home_files and real.is_file() and str(real) not in self.never:
                bundled = f"external/{home_rel}"
                if self._add_file(real, bundled):
                    return f"{CONFIG_DIR_TOKEN}/{bundled}"
            if os.path.exists(path):
                if report_missing:
                    self.plan.warnings.append(
                        f"{where} refers to {self.src.display(path)} outside the synced "
                        "config: it exists for the local backend, not in a Modal sandbox")
            elif report_missing:
                self.plan.warnings.append(f"{where} refers to {self.src.display(path)}, "
                                          "which does not exist")
            return None
        if report_missing and not os.path.exists(path):
            self.plan.warnings.append(f"{where} refers to {token}, which does not exist")
        return None

    # -- plugins ---------------------------------------------------------------------

    def _plugins(self, root: Path) -> None:
        self.plan.inputs.append(str(root))
        installed: list[str] = []
        for name in PLUGIN_REGISTRIES:
            path = root / name
            if not path.is_file():
                continue
            try:
                doc = json.loads(path.read_bytes())
            except (OSError, ValueError):
                self._exclude(f"plugins/{name}", "invalid", "not valid JSON")
                continue
            self.plan.inputs.append(str(path))
            if name == "installed_plugins.json":
                installed += [p for p in _values_of(doc, "installPath") if isinstance(p, str)]
            cleaned = self._json_paths(doc, f"plugins/{name}", "")
            data = json.dumps(cleaned, indent=2, ensure_ascii=False).encode() + b"\n"
            self.plan.items[f"plugins/{name}"] = Item(f"plugins/{name}", data, 0o644, True)
        for install in installed:
            where = self._absolute(install)
            rel = self._under(where, self.cfg) if where is not None else None
            if where is None or rel is None or not rel.startswith("plugins/"):
                self.plan.warnings.append(f"plugin at {install} is outside the config dir; "
                                          "not synced")
            elif not where.is_dir():
                self.plan.warnings.append(f"plugin directory {self.src.display(where)} is "
                                          "missing; not synced")
            else:
                self._walk(where, rel)
        for name in sorted(os.listdir(root)):
            if name in PLUGIN_REGISTRIES:
                continue
            reason = "cache" if name in ("cache", "marketplaces", "repos") else "not_config"
            self._exclude_unused(root / name, f"plugins/{name}", reason,
                                 "not used by an installed plugin" if reason == "cache"
                                 else "not part of the synced configuration")

    # -- .claude.json ----------------------------------------------------------------

    def _global_json(self) -> None:
        path = self.src.global_json
        shown = self.src.display(path)
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            self._exclude(shown, "invalid", "not valid JSON; no MCP server sent")
            return
        self.plan.inputs.append(str(path))
        if not isinstance(doc, dict):
            self._exclude(shown, "invalid", "not a JSON object")
            return
        others = 0
        for key in doc:
            if key == "mcpServers":
                continue
            if _SECRET_KEY_RE.search(key):
                self._exclude(f"{shown}#{key}", "secret", "account and credential state")
            elif key == "projects":
                self._exclude(f"{shown}#projects", "not_config",
                              "per-project state, including local-scope MCP servers")
            else:
                others += 1
        if others:
            self._exclude(f"{shown} ({others} other keys)", "not_config", "app state")
        servers = doc.get("mcpServers")
        if isinstance(servers, dict):
            for name, server in servers.items():
                self._mcp_server(str(name), server)

    def _mcp_server(self, name: str, server: Any) -> None:
        where = f"mcp:{name}"
        if name in self.exclude_mcp:
            self._exclude(where, "excluded", "listed in sync.exclude_mcp")
            return
        if not isinstance(server, dict):
            self._exclude(where, "invalid", "not an object")
            return
        server = dict(server)
        for section in ("env", "headers"):
            values = server.get(section)
            if values is None:
                continue
            if not isinstance(values, dict):
                server.pop(section)
                self._exclude(f"{where}#{section}", "secret", "not an object; removed")
                continue
            kept: dict[str, str] = {}
            for k, v in values.items():
                if isinstance(v, str) and "${" in v:
                    kept[str(k)] = v  # an expansion, not a literal: resolved in the worker
                    continue
                var = str(k) if section == "env" else header_env_name(name, str(k))
                if self._secret_value(f"{where}#{section}.{k}", var, v):
                    kept[str(k)] = "${" + var + "}"
            if kept:
                server[section] = kept
            else:
                server.pop(section)
        if isinstance(server.get("args"), list):
            server["args"] = self._mcp_args(name, where, server["args"])
        if isinstance(server.get("url"), str):
            server["url"] = self._mcp_url(name, where, server["url"])
        cleaned = self._json_paths(
            {k: v for k, v in server.items() if k != "command"}, where, "")
        command = server.get("command")
        kind = server.get("type") or ("stdio" if command is not None else "")
        if isinstance(command, str) and command and redact(command) != command:
            self._exclude(where, "secret", "refused: a credential in command (move it to "
                                           "the server's env and pass it with sync.pass_env)")
            self.secret_values.add(command)
            return
        if isinstance(command, str) and command:
            new = self._rewrite(command, where, "command", bundle_home_files=False)
            if not self._runnable(new):
                self._exclude(where, "missing_command",
                              f"{command!r} cannot be run by the worker")
                return
            cleaned = {"command": new, **cleaned}
        elif kind == "stdio":
            self._exclude(where, "invalid", "a stdio server without a command")
            return
        if is_parhelia_server(server):
            self.plan.warnings.append(
                f"MCP server {name!r} is Parhelia itself (parhelia mcp-server): it is sent to "
                "every worker, where no daemon answers it. Leave it home with "
                f"`[sync] exclude_mcp = [\"{name}\"]` in your Parhelia config")
        self.plan.mcp_servers[name] = cleaned

    def _placeholder(self, where: str, var: str, value: str) -> str:
        self._secret_value(where, var, value, placeholder=True)
        decoded = unquote(value)
        if decoded != value and _scannable(decoded):
            self.secret_values.add(decoded)
        return "${" + var + "}"

    def _mcp_args(self, server: str, where: str, args: list[Any]) -> list[Any]:
        """``args`` with every credential replaced by ``${MCP_<SERVER>_<NAME>}``."""
        out = list(args)
        for i, arg in enumerate(out):
            if not isinstance(arg, str) or "${" in arg:
                continue
            at = f"{where}#args[{i}]"
            flag = _FLAG_VALUE.match(arg) or _NAME_VALUE.match(arg)
            if flag and SECRET_NAME_RE.search(flag[1]) and not _SWITCH.match(flag[1]):
                var = header_env_name(server, flag[1])
                out[i] = f"{flag[1]}={self._placeholder(at, var, flag[2])}"
            elif (i > 0 and isinstance(out[i - 1], str) and out[i - 1].startswith("-")
                  and "=" not in out[i - 1] and SECRET_NAME_RE.search(out[i - 1])
                  and not _SWITCH.match(out[i - 1]) and not arg.startswith("-")):
                out[i] = self._placeholder(at, header_env_name(server, out[i - 1]), arg)
            elif looks_secret(arg) or redact(arg) != arg:
                # A credential named inside the argument ("X-Api-Key: V", "Authorization:
                # Basic V", a script's "--token V"): the whole argument is withheld.
                out[i] = self._placeholder(at, header_env_name(server, f"arg{i}"), arg)
        return out

    def _mcp_url(self, server: str, where: str, url: str) -> str:
        """``url`` without its user, password and credential query values."""
        try:
            parts = urlsplit(url)
        except ValueError:
            self._exclude(f"{where}#url", "invalid", "not a URL")
            return ""
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, sep, password = userinfo.partition(":")
            if sep and password and "${" not in password:
                password = self._placeholder(f"{where}#url.password",
                                             header_env_name(server, "url_password"), password)
            elif not sep and user and "${" not in user:
                user = self._placeholder(f"{where}#url.user",
                                         header_env_name(server, "url_user"), user)
            netloc = f"{user}{sep}{password}@{host}"
        # The fragment too: OAuth's implicit flow puts "#access_token=..." there.
        query, fragment = (self._url_params(server, where, text)
                           for text in (parts.query, parts.fragment))
        return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))

    def _url_params(self, server: str, where: str, text: str) -> str:
        out = []
        for field_ in text.split("&") if text else []:
            key, eq, value = field_.partition("=")
            if value and "${" not in value and (SECRET_NAME_RE.search(unquote(key))
                                                or looks_secret(unquote(value))):
                value = self._placeholder(f"{where}#url.{unquote(key)}",
                                          header_env_name(server, unquote(key)), value)
            out.append(f"{key}{eq}{value}")
        return "&".join(out)

    def _runnable(self, command: str) -> bool:
        if command.startswith(CONFIG_DIR_TOKEN + "/"):
            rel = command[len(CONFIG_DIR_TOKEN) + 1:]
            return rel in self.plan.items and bool(self.plan.items[rel].mode & 0o111)
        return self.command_exists(command)

    # -- the last line of defence ----------------------------------------------------

    def _scan_for_secret_values(self) -> None:
        """Drop any bundled file or MCP server that still contains a removed value or a
        credential of the catalogue (named with its file and line)."""
        self._scan_catalogue()
        values = [v.encode() for v in self.secret_values if _scannable(v)]
        if not values:
            return
        for rel in sorted(self.plan.items):
            if any(v in self.plan.items[rel].data for v in values):
                del self.plan.items[rel]
                self._exclude(rel, "secret", "contains a value removed from settings env, "
                                             "MCP env or headers")
                self.plan.warnings.append(f"{rel} contains a secret value and was not sent")
        for name in sorted(self.plan.mcp_servers):
            blob = json.dumps(self.plan.mcp_servers[name], ensure_ascii=False).encode()
            if any(v in blob for v in values):
                del self.plan.mcp_servers[name]
                self._exclude(f"mcp:{name}", "secret", "a secret value appears outside its "
                                                       "env/headers (e.g. in args or url)")


    def _scan_catalogue(self) -> None:
        for rel in sorted(self.plan.items):
            item = self.plan.items[rel]
            text = item.data.decode("utf-8", errors="replace")
            hits = find_secrets(text)
            if hits:
                del self.plan.items[rel]
                where = ", ".join(f"line {line}: {what}" for line, what in hits[:5])
                self._exclude(rel, "secret", f"refused: {where} (remove it from the file, "
                                             "or pass it with sync.pass_env)")
                self.plan.warnings.append(f"{rel} was not sent: {where}")
        for name in sorted(self.plan.mcp_servers):
            server = self.plan.mcp_servers[name]
            keys = sorted(str(k) for k, v in server.items()
                          if find_secrets(json.dumps(v, ensure_ascii=False)))
            if keys:
                del self.plan.mcp_servers[name]
                self._exclude(f"mcp:{name}", "secret",
                              f"refused: a credential in {', '.join(keys)}")


def _script_position(command: str, start: int) -> bool:
    """Whether the path at ``command[start:]`` is what a shell command runs: the first
    word of its pipeline segment (after ``VAR=value`` assignments), or the script an
    interpreter is given. A file that is sourced, read, redirected or passed as an
    option's value is data (``source ~/.env``, ``--config ~/.tokenrc``) and never
    bundled from the home directory."""
    segment = _SEGMENT_SPLIT.split(command[:start])[-1]
    words = [w.strip("\"'") for w in segment.split()]
    words = [w for w in words if w and not _ASSIGNMENT.match(w)]
    while words and words[0] in _PREFIX_COMMANDS:
        words = [w for w in words[1:] if not _ASSIGNMENT.match(w)]
    if not words:
        return True
    return (os.path.basename(words[0]) in _INTERPRETERS
            and all(w.startswith("-") for w in words[1:]))


def _scannable(text: str) -> bool:
    return (len(text) >= MIN_SCANNED_SECRET and not text.startswith(("/", "~", "${"))
            and text.lower() not in ("true", "false"))


def _values_of(doc: Any, key: str) -> Iterator[Any]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == key:
                yield v
            else:
                yield from _values_of(v, key)
    elif isinstance(doc, list):
        for v in doc:
            yield from _values_of(v, key)
