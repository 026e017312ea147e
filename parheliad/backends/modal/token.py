"""Modal's own config file, read and written the way modal 1.6.4 reads it (never importing
``modal``): ``MODAL_CONFIG_PATH`` or ``~/.modal.toml``, one TOML table per profile with
``token_id``/``token_secret``, the profile in use being ``MODAL_PROFILE``, else the one
marked ``active = true``, else ``default``. ``parhelia modal setup --token-id ...``
stores a token here, so that users who installed Parhelia without Modal's CLI on their
PATH need no ``modal token set``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from parhelia.errors import ParheliaError

DEFAULT_PROFILE = "default"


def config_path(environ: Mapping[str, str]) -> Path:
    """Where the SDK reads its config file (``modal.config.user_config_path``)."""
    if environ.get("MODAL_CONFIG_PATH"):
        return Path(environ["MODAL_CONFIG_PATH"])
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".modal.toml"


def read_config(path: Path) -> dict[str, dict[str, Any]]:
    """The profiles of a config file ({} when there is none). A file the SDK would refuse
    (not TOML, a value outside a profile's table) is E101, never overwritten."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ParheliaError("E101", f"{path} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParheliaError("E101", f"{path} is not valid TOML ({exc}); modal refuses it too. "
                            "Fix or move it, then run the command again.") from None
    if not all(isinstance(v, dict) for v in data.values()):
        raise ParheliaError("E101", f"{path} must hold one table per Modal profile")
    return data


def profile_in_use(profiles: Mapping[str, Mapping[str, Any]],
                   environ: Mapping[str, str]) -> str:
    if environ.get("MODAL_PROFILE"):
        return environ["MODAL_PROFILE"]
    for name, values in profiles.items():
        if values.get("active") is True:
            return name
    return DEFAULT_PROFILE


def token_configured(environ: Mapping[str, str]) -> bool:
    """Whether the SDK would find a token: in the environment, or in the profile in use
    of its config file (no network)."""
    if environ.get("MODAL_TOKEN_ID") and environ.get("MODAL_TOKEN_SECRET"):
        return True
    try:
        profiles = read_config(config_path(environ))
    except ParheliaError:
        return False
    values = profiles.get(profile_in_use(profiles, environ), {})
    return bool(values.get("token_id") and values.get("token_secret"))


def store_token(environ: Mapping[str, str], token_id: str, token_secret: str) -> tuple[Path, str]:
    """Write the token into the profile in use (made the active one when no profile is),
    keeping every other profile and key; the file is the user's only (0600). Returns the
    path and the profile."""
    for what, value in (("token id", token_id), ("token secret", token_secret)):
        if not value or any(c.isspace() or ord(c) < 32 for c in value) or len(value) > 256:
            raise ParheliaError("E101", f"the Modal {what} is empty or malformed")
    path = config_path(environ)
    profiles = read_config(path)
    profile = profile_in_use(profiles, environ)
    values = dict(profiles.get(profile, {}))
    values.update(token_id=token_id, token_secret=token_secret)
    if not any(v.get("active") is True for k, v in profiles.items() if k != profile):
        values["active"] = True
    profiles[profile] = values
    text = dump_toml(profiles)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".modal-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path, profile


def dump_toml(profiles: Mapping[str, Mapping[str, Any]]) -> str:
    """Tables of strings, booleans and numbers (what modal's config holds)."""
    lines: list[str] = []
    for name, values in profiles.items():
        lines.append(f"[{json.dumps(name)}]")
        for key, value in values.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, (int, float)):
                text = repr(value)
            elif isinstance(value, str):
                text = json.dumps(value)
            else:
                raise ParheliaError("E101", f"the Modal config holds a value Parhelia does not "
                                    f"rewrite ({name}.{key}); set the token with Modal's CLI")
            lines.append(f"{json.dumps(key)} = {text}")
        lines.append("")
    return "\n".join(lines)

