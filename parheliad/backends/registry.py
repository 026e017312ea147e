"""The backends of a daemon, built from its configuration in one place.

Each name in :data:`FACTORIES` is tried once at start. A backend that cannot be built
(its module or SDK missing, its configuration refused) is not an error for the daemon:
it is recorded with the reason, which ``parhelia status`` and ``parhelia doctor`` show,
and a task asking for it fails with that reason. A built backend is asked
``available()`` (no network call) whenever its state is shown or a task is launched.

What the core may rely on about a backend it has not built (its limits, what its
compute costs) is its class's :class:`~parheliad.backends.base.Terms`: :func:`terms`.
This is the one module of the daemon that names every backend.
"""

from __future__ import annotations

import builtins
import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from parhelia.backends import LOCAL, MODAL
from parhelia.errors import Code, ParheliaError
from parhelia.paths import Paths
from parheliad.backends.base import FAIL, Backend, Check, OwnCredential, SelfCheck, Terms
from parheliad.config import Config

log = structlog.get_logger(__name__)

BackendFactory = Callable[[Config, Paths, Mapping[str, str], str], Backend]
"""``(config, paths, the daemon's environment, its owner tag) -> backend``."""


def _local(config: Config, paths: Paths, environ: Mapping[str, str], owner_tag: str) -> Backend:
    from parheliad.backends.local import LocalBackend

    return LocalBackend(paths, environ, sandbox_mode=config.sandbox.local,
                        read_only=config.sandbox.read_only)


def _modal(config: Config, paths: Paths, environ: Mapping[str, str], owner_tag: str) -> Backend:
    # The module imports the Modal SDK lazily itself: building the backend costs no
    # `import modal` (the daemon's start and the CLI do not pay for it).
    module = importlib.import_module("parheliad.backends.modal")
    backend: Backend = module.from_config(config, paths, environ, owner_tag=owner_tag)
    return backend


FACTORIES: dict[str, BackendFactory] = {LOCAL: _local, MODAL: _modal}
"""A factory per name of :data:`parhelia.backends.BACKENDS`, in the order status shows them."""

CLASSES: dict[str, str] = {LOCAL: "parheliad.backends.local:LocalBackend",
                           MODAL: "parheliad.backends.modal.backend:ModalBackend"}
"""Each backend's class, imported only when its terms are first read (importing the
Modal backend's modules imports no Modal SDK)."""


CHECKS_NOW: dict[str, str] = {MODAL: "parheliad.backends.modal.setup:checks_now"}
"""Each backend whose setup can be asked of its service now (``parhelia doctor
--check-modal``): ``async (backend, progress) -> [Check]``, network calls within its own
deadline, nothing created."""


@functools.cache
def terms(name: str) -> Terms:
    """The :class:`Terms` of the backend ``name`` (a name no backend has: the defaults,
    compute priced at the configured rates and no limit of its own)."""
    where = CLASSES.get(name)
    if where is None:
        return Terms()
    module, _, cls = where.partition(":")
    found: Terms = getattr(importlib.import_module(module), cls).terms
    return found


@dataclass(frozen=True)
class BackendState:
    name: str
    available: bool
    detail: str


@dataclass
class Backends:
    """The built backends by name, and why the others could not be built."""

    built: dict[str, Backend] = field(default_factory=dict)
    unbuilt: dict[str, str] = field(default_factory=dict)

    def states(self) -> list[BackendState]:
        """Each known backend with ``available()`` and its reason (for status/doctor)."""
        out: list[BackendState] = []
        for name in FACTORIES:
            backend = self.built.get(name)
            if backend is None:
                out.append(BackendState(name, False, self.unbuilt.get(name, "not configured")))
                continue
            try:
                ok, detail = backend.available()
            except Exception as exc:  # a probe must never break status
                ok, detail = False, f"availability check failed ({type(exc).__name__})"
            out.append(BackendState(name, ok, detail))
        return out

    def unavailable_reason(self, name: str) -> str | None:
        """Why a task on ``name`` cannot launch now, or None when it can."""
        backend = self.built.get(name)
        if backend is None:
            why = self.unbuilt.get(name) or "unknown backend"
            return f"backend {name!r} is not available on this daemon: {why}"
        ok, detail = backend.available()
        return None if ok else f"backend {name!r} is not available: {detail}"

    def unavailable_code(self, name: str) -> Code:
        """The catalogue code of why a task on ``name`` cannot start: E400 when the
        backend lacks a credential of its own (``OwnCredential``), else E500."""
        backend = self.built.get(name)
        lacks = isinstance(backend, OwnCredential) and not backend.has_own_credential()
        return "E400" if lacks else "E500"

    def doctor(self, default_backend: str) -> builtins.list[Check]:
        """The checks of every built backend that checks its own setup."""
        return [check for name, backend in self.built.items()
                if isinstance(backend, SelfCheck)
                for check in backend.doctor(default=name == default_backend)]

    async def check_now(self, progress: Callable[[str], None]) -> builtins.list[Check]:
        """Each built backend's setup asked of its service now (:data:`CHECKS_NOW`); a
        failing check when none can be asked."""
        out: builtins.list[Check] = []
        for name, where in CHECKS_NOW.items():
            backend = self.built.get(name)
            if backend is None:
                continue
            module, _, function = where.partition(":")
            out += await getattr(importlib.import_module(module), function)(backend, progress)
        if not out:
            out.append(Check("modal now", FAIL, "no backend of this daemon can be asked of "
                             "its service now (Modal is not configured)",
                             "see the backend lines above"))
        return out


def build_backends(config: Config, paths: Paths, environ: Mapping[str, str], owner_tag: str,
                   factories: Mapping[str, BackendFactory] | None = None) -> Backends:
    result = Backends()
    for name, factory in (factories or FACTORIES).items():
        try:
            result.built[name] = factory(config, paths, environ, owner_tag)
        except ModuleNotFoundError as exc:
            result.unbuilt[name] = (f"not included in this installation (module {exc.name} "
                                    "is missing)")
        except ParheliaError as exc:
            result.unbuilt[name] = exc.message
        except Exception as exc:
            log.exception("backend could not be built", backend=name)
            result.unbuilt[name] = f"could not be set up ({type(exc).__name__}); see the " \
                "daemon log"
    return result
