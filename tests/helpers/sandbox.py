"""Whether this machine can contain a local agent with bubblewrap (ADR 0030): tests of the
container need it, and ``.ci/run`` installs it, so CI fails where a developer's machine
without it skips (:mod:`tests.helpers.real_tools`)."""

from __future__ import annotations

import functools
import shutil
import subprocess

from tests.helpers.real_tools import unavailable

PROBE = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
         "--die-with-parent", "--", "true"]


@functools.cache
def why_not() -> str | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bwrap is not installed (apt-get install bubblewrap)"
    proc = subprocess.run([bwrap, *PROBE], capture_output=True, text=True, timeout=30,
                          check=False)
    return None if proc.returncode == 0 else f"bwrap fails here: {proc.stderr.strip()[-200:]}"


def require_bwrap() -> None:
    """Skip (a developer's machine) or fail (CI) unless bubblewrap works here."""
    why = why_not()
    if why is not None:
        unavailable("bubblewrap", why)
