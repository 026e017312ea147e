"""Whether Modal's outbound header policy can carry the model credential (ADR 0031):
the API host it applies to, and why it cannot. Offline; the backend asks it at launch and
``doctor`` asks it without a launch."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

DEFAULT_API_HOST = "api.anthropic.com"


def api_host(environ: Mapping[str, str]) -> str | None:
    """The host an outbound policy puts the credential into requests to: the daemon's
    ``ANTHROPIC_BASE_URL`` when it names one (https only), else Anthropic's."""
    base = environ.get("ANTHROPIC_BASE_URL", "").strip()
    if not base:
        return DEFAULT_API_HOST
    parsed = urllib.parse.urlsplit(base)
    return parsed.hostname if parsed.scheme == "https" and parsed.hostname else None


def outbound_policy_blocker(experimental: Any, environ: Mapping[str, str]) -> str | None:
    """Why no outbound policy can carry the credential, whatever the named secret holds
    (None: it can): the SDK's ``modal.experimental`` (``experimental``) has no
    ``OutboundPolicy``, or the API host is not reached over https. Offline: ``doctor``
    asks it as the backend does at launch."""
    if getattr(experimental, "OutboundPolicy", None) is None:
        return "this modal SDK has no modal.experimental.OutboundPolicy"
    if api_host(environ) is None:
        return ("ANTHROPIC_BASE_URL is not an https URL: an outbound policy rewrites https "
                "requests only")
    return None


def installed_policy_blocker(environ: Mapping[str, str]) -> str | None:
    """:func:`outbound_policy_blocker` for the installed SDK (imported here: only this
    package imports ``modal``); an SDK that fails to import has no policy either."""
    try:
        import modal.experimental as experimental
    except Exception:  # any failure means: no outbound policy from here
        experimental = None  # type: ignore[assignment]
    return outbound_policy_blocker(experimental, environ)
