"""``parhelia modal setup`` (runs ``python -m parheliad.backends.modal.setup``).

Checks the SDK and the Modal token, creates or finds the app and the v2 volume, checks
the Anthropic secret and its key, builds the worker image, and prints what it did.
Idempotent: a second run finds everything and changes nothing. Only ``ModalBackend``
talks to Modal; this module orders the steps and renders them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

from parhelia.errors import ParheliaError
from parheliad.backends.modal.backend import ModalBackend, from_config
from parheliad.backends.modal.client import token_configured


@dataclass(frozen=True)
class SetupStep:
    name: str
    ok: bool
    detail: str
    recovery: str = ""


async def _app(backend: ModalBackend) -> SetupStep:
    app_id, created = await backend.find_app()
    did = "created" if created else "found"
    return SetupStep("app", True, f"{backend.settings.app_name!r} {did} ({app_id})")


async def _volume(backend: ModalBackend) -> SetupStep:
    name = backend.settings.volume_name
    created = await backend.find_volume()
    if created is None:
        return SetupStep("volume", False, f"{name!r} exists but is not a v2 volume",
                         "set modal.volume_name to a new name in config.toml and run "
                         "`parhelia modal setup` again")
    return SetupStep("volume", True, f"{name!r} {'created' if created else 'found'} (v2)")


async def _secret(backend: ModalBackend) -> SetupStep:
    name = backend.settings.secret_name
    key = await backend.named_secret_key()
    if key is not None:
        return SetupStep("secret", True, f"{name!r} holds {key}")
    creds = await backend.credentials()
    recovery = f"modal secret create {name} ANTHROPIC_API_KEY=sk-ant-..."
    if creds.ok:
        return SetupStep("secret", True, f"{name!r} not found (or without an Anthropic "
                         f"credential); workers get {creds.detail}", recovery)
    return SetupStep("secret", False, f"{name!r} not found and no Anthropic credential in "
                     "the daemon's environment", recovery)


async def _image(backend: ModalBackend) -> SetupStep:
    image = await backend.image()
    return SetupStep("image", True, f"worker image ready ({getattr(image, 'object_id', '?')}; "
                     f"Claude Code {backend.settings.claude_version})")


async def run_setup(backend: ModalBackend) -> list[SetupStep]:
    """Run every step in order; stop at the first one that fails."""
    steps: list[SetupStep] = []
    try:
        version = backend.sdk_version()
    except Exception as exc:  # import modal reads ~/.modal.toml and refuses a bad one
        return [SetupStep("sdk", False, f"the modal package cannot be loaded: "
                          f"{type(exc).__name__}", "check ~/.modal.toml, or reinstall parhelia")]
    steps.append(SetupStep("sdk", True, f"modal {version}"))
    if not token_configured(backend.environ):
        steps.append(SetupStep("token", False, "no Modal token (MODAL_TOKEN_ID/"
                               "MODAL_TOKEN_SECRET or ~/.modal.toml)",
                               "modal token set --token-id ID --token-secret SECRET "
                               "(or `modal token new`)"))
        return steps
    steps.append(SetupStep("token", True, "configured"))
    for name, step in (("app", _app), ("volume", _volume), ("secret", _secret),
                       ("image", _image)):
        try:
            done = await step(backend)
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


def main(argv: list[str] | None = None, sdk: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="parhelia modal setup")
    parser.add_argument("--json", action="store_true", help="print the steps as JSON")
    args = parser.parse_args(argv)
    from parhelia import envfile
    from parhelia import paths as parhelia_paths
    from parheliad.config import load_config

    p = parhelia_paths.resolve()
    try:
        config = load_config(p)
        envfile.load(envfile.env_file(p))
    except ParheliaError as exc:
        print(f"parhelia modal setup: {exc}", file=sys.stderr)
        return 1
    backend = from_config(config, p, dict(os.environ), sdk=sdk)
    steps = asyncio.run(run_setup(backend))
    if args.json:
        print(json.dumps([asdict(s) for s in steps], indent=1))
    else:
        print(render(steps))
    return 0 if all(s.ok for s in steps) and len(steps) == 6 else 1


if __name__ == "__main__":
    sys.exit(main())
