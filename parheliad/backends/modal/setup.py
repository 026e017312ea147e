"""``parhelia modal setup`` (runs ``python -m parheliad.backends.modal.setup``), and the
same steps checked without changing anything for ``parhelia doctor --check-modal``.

Stores a token given with ``--token-id``/``--token-secret`` (verified with Modal first)
in Modal's own config file (:mod:`.token`); checks the SDK and the token; asks Modal
within ``REACH_DEADLINE_S`` whether it answers at all (a progress line says so while it
waits: an unreachable network fails in seconds, not in the SDK's minute of retries);
creates or finds the app and the v2 volume; checks the Anthropic secret and its key;
builds the worker image; prints what it did. Idempotent: a second run finds everything
and changes nothing. Only ``ModalBackend`` talks to Modal; this module orders the steps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from parhelia.errors import ParheliaError
from parheliad.backends.base import FAIL, OK, Check
from parheliad.backends.modal.backend import ModalBackend, from_config
from parheliad.backends.modal.errors import TOKEN_FIX, unreachable
from parheliad.backends.modal.token import config_path, store_token, token_configured

REACH_DEADLINE_S = 10.0
"""How long the first question to Modal may take before setup (or doctor) says Modal
cannot be reached."""
SECRET_FIX = ("`parhelia auth set` (workers then get the key as an ephemeral Modal secret), "  # noqa: S105
              "or create the secret {name} holding ANTHROPIC_API_KEY at "
              "https://modal.com/secrets")


@dataclass(frozen=True)
class SetupStep:
    name: str
    ok: bool
    detail: str
    recovery: str = ""


Progress = Callable[[str], None]


def _server_url(backend: ModalBackend) -> str:
    return backend.environ.get("MODAL_SERVER_URL") or "https://api.modal.com"


async def _reach(backend: ModalBackend, progress: Progress) -> SetupStep:
    """The first question to Modal, under ``REACH_DEADLINE_S``: does the app exist?"""
    name = backend.settings.app_name
    errors = backend.sdk.exception
    progress(f"asking Modal at {_server_url(backend)} (up to {REACH_DEADLINE_S:g} s)...")
    started = time.monotonic()
    try:
        await backend.call(f"looking up the app {name!r}",
                            lambda: backend.sdk.App.lookup.aio(name),
                            timeout=REACH_DEADLINE_S, keep=(errors.NotFoundError,))
    except errors.NotFoundError:
        pass
    except ParheliaError as exc:
        if exc.code == "E502":
            return SetupStep("reach", False, f"Modal did not answer within "
                             f"{REACH_DEADLINE_S:g} s ({_server_url(backend)})",
                             "check the network (a proxy? a firewall?) and "
                             "https://status.modal.com, then run the command again")
        return SetupStep("reach", False, f"{exc.code}: {exc.message}")
    return SetupStep("reach", True, f"Modal answered in {time.monotonic() - started:.1f} s")


async def _app(backend: ModalBackend, create: bool) -> SetupStep:
    name = backend.settings.app_name
    errors = backend.sdk.exception
    try:
        await backend.call(f"looking up the app {name!r}",
                            lambda: backend.sdk.App.lookup.aio(name),
                            keep=(errors.NotFoundError,))
        did = "found"
    except errors.NotFoundError:
        if not create:
            return SetupStep("app", False, f"{name!r} does not exist yet",
                             "`parhelia modal setup` creates it")
        did = "created"
    app = await backend.app(create=True) if create else None
    return SetupStep("app", True, f"{name!r} {did}" + (f" ({app.app_id})" if app else ""))


async def _volume(backend: ModalBackend, create: bool) -> SetupStep:
    name = backend.settings.volume_name
    errors = backend.sdk.exception
    recorded = backend._recorded_volume_id()
    probe = backend.sdk.Volume.from_name(name, create_if_missing=False, version=2)
    try:
        await backend.call(f"opening the volume {name!r}", lambda: probe.hydrate.aio(),
                            keep=(errors.NotFoundError, errors.InvalidError))
        did = "found"
    except errors.InvalidError:
        return SetupStep("volume", False, f"{name!r} exists but is not a v2 volume",
                         "set modal.volume_name to a new name in config.toml and run "
                         "`parhelia modal setup` again")
    except errors.NotFoundError:
        if not create:
            what = "no longer exists (E506)" if recorded else "does not exist yet"
            return SetupStep("volume", False, f"{name!r} {what}",
                             "`parhelia modal setup` creates it")
        probe = await backend.ensure_volume(create=True)
        did = "created again" if recorded else "created"
    else:
        if recorded and probe.object_id != recorded and not create:
            return SetupStep("volume", False, f"{name!r} is another volume ({probe.object_id}) "
                             f"than the one the daemon used ({recorded}): the old one was "
                             "deleted (E506)", "`parhelia modal setup` adopts the new one")
        if create:
            await backend.ensure_volume(create=True)
    return SetupStep("volume", True, f"{name!r} {did} (v2, {probe.object_id})")


async def _secret(backend: ModalBackend) -> SetupStep:
    name = backend.settings.secret_name
    key = await backend.named_secret_key()
    if key is not None:
        return SetupStep("secret", True, f"{name!r} holds {key}")
    creds = await backend.credentials()
    recovery = SECRET_FIX.format(name=name)
    if creds.ok:
        return SetupStep("secret", True, f"{name!r} not found (or without an Anthropic "
                         f"credential); workers get {creds.detail}", recovery)
    return SetupStep("secret", False, f"{name!r} not found and no Anthropic credential in "
                     "the daemon's environment", recovery)


async def _image(backend: ModalBackend) -> SetupStep:
    image = await backend.image()
    return SetupStep("image", True, f"worker image ready ({getattr(image, 'object_id', '?')}; "
                     f"Claude Code {backend.settings.claude_version})")


CHECK_NOW_DEADLINE_S = 10.0
"""How long ``doctor --check-modal`` waits for Modal, every step together."""


async def checks_now(backend: ModalBackend, progress: Callable[[str], None]) -> list[Check]:
    """The token, app, volume and secret asked of Modal now, all within
    ``CHECK_NOW_DEADLINE_S`` (nothing is created). One check per step, saying what Modal
    answered."""
    started = time.monotonic()
    steps = await run_setup(backend, check_only=True, deadline_s=CHECK_NOW_DEADLINE_S,
                            progress=progress)
    took = time.monotonic() - started
    out = [Check(f"modal {s.name}", OK if s.ok else FAIL, s.detail, s.recovery)
           for s in steps]
    if all(s.ok for s in steps):
        out.append(Check("modal now", OK, f"Modal answered every check in {took:.1f} s"))
    return out


async def run_setup(backend: ModalBackend, *, check_only: bool = False,
                    progress: Progress = lambda line: None,
                    deadline_s: float | None = None) -> list[SetupStep]:
    """Run every step in order; stop at the first one that fails. ``check_only``: ask,
    never create or build (``doctor --check-modal``), all of it within ``deadline_s``."""
    steps: list[SetupStep] = []
    try:
        version = getattr(backend.sdk, "__version__", "?")
    except Exception as exc:  # import modal reads its config file and refuses a bad one
        return [SetupStep("sdk", False, f"the modal package cannot be loaded: "
                          f"{type(exc).__name__}", f"check {config_path(backend.environ)}, "
                          "or reinstall parhelia")]
    steps.append(SetupStep("sdk", True, f"modal {version}"))
    if not token_configured(backend.environ):
        steps.append(SetupStep("token", False, "no Modal token (MODAL_TOKEN_ID/"
                               f"MODAL_TOKEN_SECRET or {config_path(backend.environ)})",
                               TOKEN_FIX))
        return steps
    steps.append(SetupStep("token", True, "configured"))
    plan: list[tuple[str, Callable[[], Awaitable[SetupStep]]]] = [
        ("reach", lambda: _reach(backend, progress)),
        ("app", lambda: _app(backend, not check_only)),
        ("volume", lambda: _volume(backend, not check_only)),
        ("secret", lambda: _secret(backend))]
    if not check_only:
        plan.append(("image", lambda: _image(backend)))
    end = None if deadline_s is None else time.monotonic() + deadline_s
    for name, step in plan:
        try:
            left = None if end is None else max(0.0, end - time.monotonic())
            done = await asyncio.wait_for(step(), left)
        except TimeoutError:
            done = SetupStep(name, False, f"Modal did not answer within {deadline_s:g} s",
                             "check the network and https://status.modal.com")
        except ParheliaError as exc:
            done = SetupStep(name, False, f"{exc.code}: {exc.message}")
        steps.append(done)
        if not done.ok and name != "secret":
            break
    return steps


def render(steps: list[SetupStep]) -> str:
    lines = []
    for s in steps:
        mark = "ok " if s.ok else "FAIL"
        lines.append(f"{mark:4} {s.name:7} {s.detail}")
        if s.recovery:
            lines.append(f"{'':12} -> {s.recovery}")
    return "\n".join(lines)


async def verify_and_store(sdk: Any, environ: dict[str, str], token_id: str,
                           token_secret: str) -> SetupStep:
    """Ask Modal whether the token is good (within ``REACH_DEADLINE_S``), then write it to
    Modal's config file; a token Modal refuses, or that cannot be checked, is not kept."""
    verify = getattr(getattr(sdk, "Client", None), "verify", None)
    if verify is not None:
        url = environ.get("MODAL_SERVER_URL") or "https://api.modal.com"
        try:
            await asyncio.wait_for(verify.aio(url, (token_id, token_secret)), REACH_DEADLINE_S)
        except TimeoutError:
            return SetupStep("token", False, f"Modal did not answer within "
                             f"{REACH_DEADLINE_S:g} s: the token was not checked, nothing "
                             "stored", "check the network, then run the command again")
        except sdk.exception.AuthError:
            return SetupStep("token", False, "Modal refused this token id and secret: nothing "
                             "stored", "copy both from https://modal.com/settings/tokens")
        except Exception as exc:  # Modal's error, or the network's (a cut connection)
            if not (isinstance(exc, sdk.exception.Error) or unreachable(exc)):
                raise
            return SetupStep("token", False, f"the token could not be checked "
                             f"({type(exc).__name__}): nothing stored", "run the command again")
    path, profile = store_token(environ, token_id, token_secret)
    environ.update(MODAL_TOKEN_ID=token_id, MODAL_TOKEN_SECRET=token_secret)
    os.environ.update(MODAL_TOKEN_ID=token_id, MODAL_TOKEN_SECRET=token_secret)
    return SetupStep("token", True, f"stored in {path} (profile {profile!r})",
                     "restart the daemon so it uses it: `parhelia daemon stop`")


def _token_from_stdin() -> tuple[str, str]:
    try:
        data = json.loads(sys.stdin.read(4096))
        return str(data["token_id"]), str(data["token_secret"])
    except (ValueError, KeyError, TypeError):
        raise ParheliaError("E101", "the token on stdin must be JSON with token_id and "
                            "token_secret") from None


def main(argv: list[str] | None = None, sdk: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="parhelia modal setup")
    parser.add_argument("--json", action="store_true", help="print the steps as JSON")
    parser.add_argument("--token-stdin", action="store_true",
                        help="read a token to store as JSON {token_id, token_secret} on stdin")
    args = parser.parse_args(argv)
    from parhelia import envfile
    from parhelia import paths as parhelia_paths
    from parheliad.config import load_config

    p = parhelia_paths.resolve()
    try:
        config = load_config(p)
        envfile.load(envfile.env_file(p))
        token = _token_from_stdin() if args.token_stdin else None
    except ParheliaError as exc:
        print(f"parhelia modal setup: {exc}", file=sys.stderr)
        return 1
    environ = dict(os.environ)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    async def run() -> list[SetupStep]:
        stored: list[SetupStep] = []
        if token is not None:
            from parheliad.backends.modal.client import load_sdk

            try:
                stored.append(await verify_and_store(sdk or load_sdk(), environ, *token))
            except ParheliaError as exc:
                stored.append(SetupStep("token", False, f"{exc.code}: {exc.message}"))
            if not stored[-1].ok:
                return stored
        backend = from_config(config, p, environ, sdk=sdk)
        return stored + await run_setup(backend, progress=progress)

    steps = asyncio.run(run())
    if args.json:
        print(json.dumps([asdict(s) for s in steps], indent=1))
    else:
        print(render(steps))
    return 0 if all(s.ok for s in steps) and steps[-1].name == "image" else 1


if __name__ == "__main__":
    sys.exit(main())
