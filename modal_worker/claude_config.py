"""Materialising a config bundle (:mod:`parhelia.bundle`) in a worker.

The manifest is hostile input here: paths follow the checkpoint restore rules
(relative, normalised, no ``..``), a few names are reserved (credentials, the
transcript directory, ``.claude.json``), nothing is written through a symlink, and
every blob's size and hash are verified before any file is replaced.

``settings.json`` is *merged* into what is already there, and hooks added with
:func:`add_hooks` (Parhelia's own, e.g. a PreToolUse checkpoint hook) survive any
later materialisation, whichever comes first.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parhelia.bundle import (
    CONFIG_DIR_TOKEN,
    GLOBAL_JSON,
    HOOKS_FILE,
    SETTINGS,
    STATE_FILE,
    BundleFile,
    load_bundle,
    refuse,
)
from parhelia.checkpoint.cas import BlobError, BlobStore
from parhelia.checkpoint.checks import check_path
from parhelia.errors import ParheliaError
from parhelia.volume import Volume, atomic_write_bytes

FILE_MODE_MASK = 0o755


# -- JSON helpers ------------------------------------------------------------------------


def substitute(value: Any, config_dir: str) -> Any:
    """Replace :data:`CONFIG_DIR_TOKEN` in every string of a JSON value."""
    if isinstance(value, str):
        return value.replace(CONFIG_DIR_TOKEN, config_dir)
    if isinstance(value, list):
        return [substitute(v, config_dir) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, config_dir) for k, v in value.items()}
    return value


def merge_hooks(settings: dict[str, Any], hooks: Mapping[str, Any]) -> dict[str, Any]:
    """Add ``hooks`` (``{event: [matcher groups]}``) to ``settings["hooks"]``, skipping
    groups already present (idempotent)."""
    current = settings.get("hooks")
    merged: dict[str, Any] = dict(current) if isinstance(current, dict) else {}
    for event, groups in hooks.items():
        have = merged.get(event)
        out = list(have) if isinstance(have, list) else []
        for group in groups if isinstance(groups, list) else []:
            if group not in out:
                out.append(group)
        merged[event] = out
    return {**settings, "hooks": merged}


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise refuse(f"cannot read {path.name}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        try:
            value = json.loads(fh.read() or b"{}")
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: Any, mode: int = 0o600) -> None:
    if path.is_symlink():
        path.unlink()
    atomic_write_bytes(path, json.dumps(value, indent=2, ensure_ascii=False).encode() + b"\n",
                       mode=mode)


def add_hooks(config_dir: Path, hooks: Mapping[str, Any]) -> None:
    """Install Parhelia's own hooks into ``$CLAUDE_CONFIG_DIR/settings.json``, merged with
    the user's, and remember them so a later materialisation keeps them.

    ``hooks`` has settings.json's shape: ``{"PreToolUse": [{"matcher": "Bash", "hooks":
    [{"type": "command", "command": "..."}]}]}``.
    """
    config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ours = merge_hooks(_read_json_object(config_dir / HOOKS_FILE), hooks)
    _write_json(config_dir / HOOKS_FILE, ours)
    settings = _read_json_object(config_dir / SETTINGS)
    _write_json(config_dir / SETTINGS, merge_hooks(settings, ours.get("hooks") or {}),
                mode=0o644)


# -- the interactive TUI's first-run state -----------------------------------------------

APPROVED_KEY_CHARS = 20
"""Claude Code remembers an approved API key by its last 20 characters."""


def seed_tui(config_dir: Path, workspace: Path, *, version: str, api_key: str | None,
             bypass_permissions: bool = False) -> None:
    """Make the interactive TUI start at its prompt: no onboarding (theme, connectivity
    check), no folder-trust dialog for ``workspace``, no API-key approval question.

    Claude Code (verified with 2.1.332) reads these from ``$CLAUDE_CONFIG_DIR/.claude.json``:
    ``hasCompletedOnboarding``, ``lastOnboardingVersion``, ``theme``,
    ``customApiKeyResponses.approved`` (the key's last 20 characters) and
    ``projects[<workspace>].hasTrustDialogAccepted`` / ``hasCompletedProjectOnboarding``.
    Merged into what is there (MCP servers, the agent's own state); the file stays 0600
    inside the 0700 config dir and is never part of a checkpoint or a bundle.
    ``bypass_permissions`` (the task's own permission mode): the user settings'
    ``skipDangerousModePermissionPrompt``, else the TUI stops on its "Bypass Permissions
    mode" warning.
    """
    path = config_dir / GLOBAL_JSON
    state = _read_json_object(path)
    state["hasCompletedOnboarding"] = True
    state["lastOnboardingVersion"] = version
    state.setdefault("theme", "dark")
    responses = state.get("customApiKeyResponses")
    responses = dict(responses) if isinstance(responses, dict) else {}
    approved = [k for k in responses.get("approved") or [] if isinstance(k, str)]
    rejected = [k for k in responses.get("rejected") or [] if isinstance(k, str)]
    if api_key:
        tail = api_key[-APPROVED_KEY_CHARS:]
        approved = [*[k for k in approved if k != tail], tail]
        rejected = [k for k in rejected if k != tail]
    state["customApiKeyResponses"] = {"approved": approved, "rejected": rejected}
    projects = state.get("projects")
    projects = dict(projects) if isinstance(projects, dict) else {}
    entry = projects.get(str(workspace))
    entry = dict(entry) if isinstance(entry, dict) else {}
    entry.update({"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True})
    projects[str(workspace)] = entry
    state["projects"] = projects
    _write_json(path, state)
    if bypass_permissions:
        settings = _read_json_object(config_dir / SETTINGS)
        settings["skipDangerousModePermissionPrompt"] = True
        _write_json(config_dir / SETTINGS, settings, mode=0o644)


# -- materialisation ---------------------------------------------------------------------


@dataclass
class Materialised:
    bundle_id: str
    files: int
    bytes: int
    mcp_servers: list[str]
    removed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"bundle_id": self.bundle_id, "files": self.files, "bytes": self.bytes,
                "mcp_servers": self.mcp_servers, "removed": self.removed}


def _safe_parent(root: Path, rel: str) -> Path:
    """Create the directories of ``rel`` under ``root``; refuse to go through a symlink
    or a non-directory (a hostile or stale tree must not redirect a write)."""
    current = root
    for part in rel.split("/")[:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o700)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise refuse(f"{rel!r}: {current.relative_to(root)} is not a directory")
    return current


def _staged(store: BlobStore, f: BundleFile, target: Path, config_dir: str) -> Path:
    """Write one file beside its target (verified); the caller renames it into place."""
    tmp = target.parent / f".{target.name}.parhelia-{secrets.token_hex(6)}"
    mode = (f.mode & FILE_MODE_MASK) | 0o600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        try:
            if f.template:
                try:
                    value = json.loads(store.read(f.blob, f.size))
                except ValueError:
                    raise refuse(f"{f.path!r} is not JSON") from None
                data = json.dumps(substitute(value, config_dir), indent=2,
                                  ensure_ascii=False).encode() + b"\n"
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            else:
                store.copy_to_fd(f.blob, f.size, fd)
        except BlobError as exc:
            raise refuse(str(exc)) from None
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def materialise(volume: Volume, bundle_id: str, config_dir: Path) -> Materialised:
    """Make ``config_dir`` hold bundle ``bundle_id`` (see the module docstring).

    Raises ``ParheliaError('E600')`` and replaces nothing when the manifest breaks a
    rule or a blob is missing or corrupt.
    """
    bundle = load_bundle(volume, bundle_id)
    store = BlobStore(volume)
    for f in bundle.files.values():
        try:
            size = store.size(f.blob)
        except FileNotFoundError:
            raise refuse(f"blob of {f.path!r} is missing") from None
        if size != f.size:
            raise refuse(f"{f.path!r}: recorded size {f.size} differs from its blob ({size})")
    config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    root = Path(os.path.realpath(config_dir))
    where = str(root)
    staged: list[tuple[Path, Path]] = []
    settings_file = bundle.files.get(SETTINGS)
    try:
        for f in bundle.files.values():
            if f is settings_file:
                continue
            parent = _safe_parent(root, f.path)
            target = parent / f.path.rsplit("/", 1)[-1]
            if target.is_dir() and not target.is_symlink():
                raise refuse(f"{f.path!r} would replace a directory")
            staged.append((_staged(store, f, target, where), target))
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    # Everything is verified: from here on only renames and small JSON writes.
    for tmp, target in staged:
        os.replace(tmp, target)
    state = _read_json_object(root / STATE_FILE)
    new_settings: dict[str, Any] = {}
    if settings_file is not None:
        try:
            loaded = json.loads(store.read(settings_file.blob, settings_file.size))
        except (ValueError, BlobError):
            raise refuse("settings.json is not valid JSON or its blob is corrupt") from None
        new_settings = substitute(loaded, where) if isinstance(loaded, dict) else {}
    _merge_settings(root, new_settings, state)
    _write_mcp_servers(root, substitute(bundle.mcp_servers, where))
    removed = _remove_dropped(root, state, set(bundle.files))
    _write_json(root / STATE_FILE, {"bundle_id": bundle_id, "files": sorted(bundle.files),
                                    "settings_keys": sorted(new_settings)})
    return Materialised(bundle_id, files=len(bundle.files),
                        bytes=sum(f.size for f in bundle.files.values()),
                        mcp_servers=sorted(bundle.mcp_servers), removed=removed)


def _merge_settings(root: Path, bundled: dict[str, Any], state: Mapping[str, Any]) -> None:
    """settings.json = what is there, minus keys the previous bundle set, plus the
    bundle's keys, plus Parhelia's own hooks (merged, never overwritten)."""
    current = _read_json_object(root / SETTINGS)
    previous = state.get("settings_keys")
    for key in previous if isinstance(previous, list) else []:
        current.pop(key, None)
    merged = {**current, **bundled}
    ours = _read_json_object(root / HOOKS_FILE).get("hooks")
    if isinstance(ours, dict) and ours:
        merged = merge_hooks(merged, ours)
    if merged or (root / SETTINGS).exists():
        _write_json(root / SETTINGS, merged, mode=0o644)


def _write_mcp_servers(root: Path, servers: dict[str, Any]) -> None:
    """User-scope MCP servers live in ``$CLAUDE_CONFIG_DIR/.claude.json`` beside the
    agent's own state, which is kept."""
    state = _read_json_object(root / GLOBAL_JSON)
    if not servers and "mcpServers" not in state:
        return
    state["mcpServers"] = servers
    _write_json(root / GLOBAL_JSON, state)


def _remove_dropped(root: Path, state: Mapping[str, Any], keep: set[str]) -> int:
    """Remove regular files the previous bundle wrote and this one no longer has."""
    previous = state.get("files")
    removed = 0
    for rel in previous if isinstance(previous, list) else []:
        if not isinstance(rel, str) or rel in keep or rel == SETTINGS:
            continue
        try:
            check_path(rel, "config state")
        except ParheliaError:
            continue
        path = root / rel
        with contextlib.suppress(OSError):
            real_parent = os.path.realpath(path.parent)
            if real_parent != str(root) and not real_parent.startswith(str(root) + os.sep):
                continue
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
                removed += 1
    return removed

