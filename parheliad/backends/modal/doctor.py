"""``parhelia doctor``'s checks of the Modal backend, without a single network call: the
SDK, the token, where workers' Anthropic credential will come from. ``doctor
--check-modal`` asks Modal itself (``setup.checks_now``)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping

from parhelia.credentials import CREDENTIAL_VARS
from parheliad.backends.base import FAIL, OK, WARN, Check
from parheliad.backends.modal.client import ModalSettings, token_configured
from parheliad.backends.modal.errors import TOKEN_FIX
from parheliad.backends.modal.policy import installed_policy_blocker
from parheliad.backends.modal.token import config_path

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
            return [Check("modal", OK, f"modal {version}; no token (optional: {TOKEN_FIX}, "
                          + SETUP + ")")]
        return [Check("modal", FAIL, "no Modal token (MODAL_TOKEN_ID/MODAL_TOKEN_SECRET or "
                      f"{config_path(environ)})", f"{TOKEN_FIX}, " + SETUP)]
    where = "the environment" if environ.get("MODAL_TOKEN_ID") else str(config_path(environ))
    found = [Check("modal", OK, f"modal {version}; a token is configured ({where}); app "
                   f"{settings.app_name!r}, volume {settings.volume_name!r} not checked "
                   "against Modal now (`parhelia doctor --check-modal` asks it)")]
    local = [k for k in CREDENTIAL_VARS if environ.get(k)]
    outside = (f"with the Modal secret {settings.secret_name!r}, Modal puts the credential "
               "into the sandbox's API requests (outbound policy: the agent sees a "
               "placeholder)")
    blocker = installed_policy_blocker(environ)
    if blocker is not None:
        found.append(Check("modal secret", WARN, "no outbound policy: the credential (the "
                           f"Modal secret {settings.secret_name!r}"
                           + (f", else {local[0]} from this environment" if local else "")
                           + ") will be in the sandbox's environment, where the agent can "
                           f"read it ({blocker})",
                           "an https ANTHROPIC_BASE_URL (or none)" if "https" in blocker
                           else "reinstall parhelia (modal 1.6.4 has the outbound policy)"))
    elif local:
        found.append(Check("modal secret", OK, f"{outside}; without it, {local[0]} from "
                           "this environment goes into the sandbox's environment as an "
                           "ephemeral secret, where the agent can read it",
                           f"create the Modal secret {settings.secret_name!r} holding "
                           f"{local[0]} at https://modal.com/secrets: it keeps the key out of "
                           "the sandbox"))
    else:
        found.append(Check("modal secret", WARN, f"workers need the Modal secret "
                           f"{settings.secret_name!r}: nothing in this environment to fall "
                           "back on", "`parhelia auth set`, or create the secret "
                           f"{settings.secret_name!r} at https://modal.com/secrets"))
    return found

