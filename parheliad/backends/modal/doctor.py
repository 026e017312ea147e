"""``parhelia doctor``'s checks of the Modal backend, without a single network call: the
SDK, the token, where workers' Anthropic credential will come from. ``parhelia modal
setup`` verifies them against Modal."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping

from parhelia.credentials import CREDENTIAL_VARS
from parheliad.backends.base import FAIL, OK, WARN, Check
from parheliad.backends.modal.client import ModalSettings, token_configured

SETUP = "then `parhelia modal setup` (creates the app and volume, builds the image)"


def checks(settings: ModalSettings, environ: Mapping[str, str], *,
           default: bool) -> list[Check]:
    """``default``: Modal is the default backend (a missing SDK or token then fails)."""
    missing = FAIL if default else WARN
    if importlib.util.find_spec("modal") is None:
        return [Check("modal", missing, "the modal package is not installed",
                      "reinstall parhelia (modal is one of its dependencies)")]
    version = importlib.metadata.version("modal")
    if not token_configured(environ):
        if not default:
            return [Check("modal", OK, f"modal {version}; not configured (optional: "
                          "`modal token new`, " + SETUP + ")")]
        return [Check("modal", FAIL, "no Modal token (MODAL_TOKEN_ID/MODAL_TOKEN_SECRET or "
                      "~/.modal.toml)", "`modal token new`, " + SETUP)]
    found = [Check("modal", OK, f"modal {version}; token configured; app "
                   f"{settings.app_name!r}, volume {settings.volume_name!r} (verified by "
                   "`parhelia modal setup`)")]
    local = [k for k in CREDENTIAL_VARS if environ.get(k)]
    if local:
        found.append(Check("modal secret", OK, f"workers use the Modal secret "
                           f"{settings.secret_name!r} if it exists, else {local[0]} from this "
                           "environment (sent as an ephemeral secret)"))
    else:
        found.append(Check("modal secret", WARN, f"workers need the Modal secret "
                           f"{settings.secret_name!r}: nothing in this environment to fall "
                           "back on", f"modal secret create {settings.secret_name} "
                           "ANTHROPIC_API_KEY=sk-ant-..."))
    return found
