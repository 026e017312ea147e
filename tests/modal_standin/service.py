"""The stand-in's own state beside the shared disk state (``tests.modal_host.state``): its
credentials, the JWTs it signs, ephemeral secrets, the sandboxes waiting for GPU capacity,
and lookups of the named objects it keeps on disk (apps, volumes, secrets, images,
mounts)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets as pysecrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpclib import GRPCError, Status

from tests.modal_host import state
from tests.modal_standin.faults import Faults

JWT_LIFETIME_S = 3600
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ENV_LINE = re.compile(r"^ENV\s+(\S+?)=(.*)$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Service:
    root: Path
    token_id: str
    token_secret: str
    faults: Faults
    store: Path
    """Images and mounts: global on Modal (a client caches their ids for its process's
    life), so they outlive one stand-in and are shared by all of a test session."""
    blob_url: str = ""
    router_url: str = ""
    _key: bytes = field(default_factory=lambda: pysecrets.token_bytes(32))
    ephemeral_secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    waiting_env: dict[str, dict[str, str]] = field(default_factory=dict)
    """Secret environment of sandboxes waiting for capacity (memory only)."""

    @property
    def images(self) -> Path:
        return self.store / "images"

    @property
    def mounts(self) -> Path:
        return self.store / "mounts"

    # -- credentials -------------------------------------------------------------------

    def check_token(self, call: Any) -> None:
        md = call.metadata
        if md.get("x-modal-token-id") != self.token_id or \
                md.get("x-modal-token-secret") != self.token_secret:
            raise GRPCError(Status.UNAUTHENTICATED,
                            f"Token ID {md.get('x-modal-token-id')!r} is invalid or missing")

    def jwt(self, claims: dict[str, Any]) -> str:
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps({**claims, "exp": int(time.time()) + JWT_LIFETIME_S}).encode())
        sig = _b64(hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"{head}.{body}.{sig}"

    def verify_jwt(self, token: str) -> dict[str, Any]:
        try:
            head, body, sig = token.split(".")
            good = _b64(hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest())
            claims: dict[str, Any] = json.loads(_unb64(body))
        except ValueError:
            raise GRPCError(Status.UNAUTHENTICATED, "malformed token") from None
        if not hmac.compare_digest(sig, good) or float(claims.get("exp", 0)) < time.time():
            raise GRPCError(Status.UNAUTHENTICATED, "token invalid or expired")
        return claims

    # -- named objects -----------------------------------------------------------------

    @staticmethod
    def check_name(name: str, kind: str) -> None:
        if not _NAME_RE.match(name):
            raise GRPCError(Status.INVALID_ARGUMENT, f"Invalid {kind} name: {name!r}")

    def app_id(self, name: str, create: bool) -> str:
        path = self.root / "apps" / f"{name}.json"
        if not path.exists():
            if not create:
                raise GRPCError(Status.NOT_FOUND, f"App '{name}' not found")
            state.write_json(path, {"app_id": state.new_id("ap")})
        return str(state.read_json(path)["app_id"])

    def app_name(self, app_id: str) -> str | None:
        for path in sorted((self.root / "apps").glob("*.json")):
            if state.read_json(path)["app_id"] == app_id:
                return path.stem
        return None

    def volume_by_id(self, volume_id: str) -> str:
        """The name of the volume with this id (NOT_FOUND once deleted)."""
        for path in sorted((self.root / "volumes").glob("*.json")):
            if state.read_json(path).get("id") == volume_id:
                return path.stem
        raise GRPCError(Status.NOT_FOUND, f"Volume {volume_id} not found")

    @staticmethod
    def secret_id(name: str) -> str:
        return "st-" + hashlib.sha256(name.encode()).hexdigest()[:22]

    def secret_values(self, secret_id: str) -> dict[str, str]:
        if secret_id in self.ephemeral_secrets:
            return dict(self.ephemeral_secrets[secret_id])
        for path in sorted((self.root / "secrets").glob("*.json")):
            if self.secret_id(path.stem) == secret_id:
                return {str(k): str(v) for k, v in state.read_json(path).items()}
        raise GRPCError(Status.NOT_FOUND, f"Secret {secret_id} not found")

    def secret_name(self, secret_id: str) -> str | None:
        for path in sorted((self.root / "secrets").glob("*.json")):
            if self.secret_id(path.stem) == secret_id:
                return path.stem
        return None

    def image_env(self, image_id: str) -> dict[str, str]:
        """The ``ENV`` of an image and of the images it is built on."""
        env: dict[str, str] = {}
        seen: set[str] = set()
        while image_id and image_id not in seen:
            seen.add(image_id)
            try:
                record = state.read_json(self.images / f"{image_id}.json")
            except FileNotFoundError:
                break
            for line in record.get("dockerfile_commands") or []:
                if (m := _ENV_LINE.match(line.strip())) is not None:
                    env.setdefault(m.group(1), m.group(2).strip().strip('"'))
            image_id = (record.get("base_image_ids") or [""])[0]
        return env

    def mount_files(self, mount_ids: list[str]) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for mount_id in mount_ids:
            try:
                files = state.read_json(self.mounts / f"{mount_id}.json")["files"]
            except FileNotFoundError:
                raise GRPCError(Status.NOT_FOUND, f"Mount {mount_id} not found") from None
            out += [{**f, "blob": str(self.mounts / "blobs" / f["sha256_hex"])} for f in files]
        return out


def task_id(sb_id: str) -> str:
    """A sandbox's task (container) id; modal 1.6.4 tells V2 tasks by a final ``V``."""
    suffix = sb_id.split("-", 1)[1]
    return f"ta-{suffix}V" if sb_id.endswith("v2") else f"ta-{suffix}"


def sandbox_of_task(task: str) -> str:
    suffix = task.removeprefix("ta-")
    return f"sb-{suffix.removesuffix('V')}" if suffix.endswith("V") else f"sb-{suffix}"
