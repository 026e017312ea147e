"""The volume's blocks over plain HTTP on 127.0.0.1, as Modal serves them to its SDK.

modal 1.6.4 moves v2 volume data in 8 MiB blocks named by their SHA-256: an upload
(``VolumePutFiles2``) lists each file's blocks, the service answers with a ``put_url`` for
each block it lacks and the SDK PUTs it there; a download (``VolumeGetFile2``) answers
with a ``get_url`` per block of the file and the SDK GETs them (several at once).

- ``PUT /blocks/<sha256>``: stored in ``blocks/`` of the service's root once its hash
  checks; the reply's body is the ``put_response`` the SDK echoes back.
- ``GET /files/<volume id>/<index>?path=<path>``: that block of the committed file.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from aiohttp import web

from tests.modal_host import state
from tests.modal_standin.faults import Faults

BLOCK_SIZE = 8 * 1024 * 1024
"""modal 1.6.4's ``modal._utils.blob_utils.BLOCK_SIZE``."""
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def block_path(sha256_hex: str) -> Path:
    return state.root() / "blocks" / sha256_hex


def has_block(sha256_hex: str) -> bool:
    return block_path(sha256_hex).exists()


class BlockServer:
    def __init__(self, faults: Faults, volume_file: object) -> None:
        self.faults = faults
        self._volume_file = volume_file
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=BLOCK_SIZE + 1024)
        app.router.add_put("/blocks/{sha}", self._put)
        app.router.add_get("/files/{volume_id}/{index}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _fault(self, name: str) -> web.Response | None:
        state.log_call(name)
        await self.faults.wait(name)
        if (rule := self.faults.take(name, "status")) is not None:
            return web.Response(status=503, text=str(rule.get("message") or "unavailable"))
        return None

    async def _put(self, request: web.Request) -> web.Response:
        if (refused := await self._fault("BlobPut")) is not None:
            return refused
        sha = request.match_info["sha"]
        if not _SHA_RE.match(sha):
            return web.Response(status=400, text="bad block name")
        data = await request.read()
        if hashlib.sha256(data).hexdigest() != sha:
            return web.Response(status=400, text="block hash mismatch")
        target = block_path(sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{uuid.uuid4().hex}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return web.Response(body=f"stored {sha}".encode())

    async def _get(self, request: web.Request) -> web.Response:
        if (refused := await self._fault("BlobGet")) is not None:
            return refused
        try:
            index = int(request.match_info["index"])
        except ValueError:
            return web.Response(status=400, text="bad block index")
        path = self._volume_file(request.match_info["volume_id"],  # type: ignore[operator]
                                 request.query.get("path", ""))
        if path is None or index < 0:
            return web.Response(status=404, text="no such file")
        try:
            with open(path, "rb") as fh:
                fh.seek(index * BLOCK_SIZE)
                data = fh.read(BLOCK_SIZE)
        except (FileNotFoundError, IsADirectoryError):
            return web.Response(status=404, text="no such file")
        return web.Response(body=data)
