"""The stand-in process: ``python -m tests.modal_standin.server --root DIR --ready FILE``.

Serves Modal's control plane on 127.0.0.1 (behind ``Gate``, so its port can refuse), the
task command router on a second port and the volume's blocks over HTTP on a third, all
plain ``http://`` (modal 1.6.4 allows it on localhost). Writes ``FILE`` (JSON: the ports)
once it serves; runs until SIGTERM. Its sandboxes are processes of their own: they
outlive it, as Modal's outlive a client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from grpclib.server import Server

from tests.modal_host import sandboxes, state
from tests.modal_standin.blobs import BlockServer
from tests.modal_standin.control import ControlPlane
from tests.modal_standin.faults import POLL_S, Faults
from tests.modal_standin.gate import Gate
from tests.modal_standin.router import Router
from tests.modal_standin.service import Service


async def watch(service: Service, gate: Gate, stop: asyncio.Event) -> None:
    """Apply the faults that are states rather than per-call: a refused port, and GPU
    capacity coming back for the sandboxes that wait for it."""
    while not stop.is_set():
        service.faults.reload()
        if service.faults.refused and gate.open:
            await gate.refuse()
        elif not service.faults.refused and not gate.open:
            await gate.accept()
        if service.faults.gpu_capacity and service.waiting_env:
            for sb_id, env in list(service.waiting_env.items()):
                del service.waiting_env[sb_id]
                if state.sandbox_state(sb_id).get("pending"):
                    sandboxes.start(sb_id, env)
        await asyncio.sleep(POLL_S)


async def serve(root: Path, store: Path, token_id: str, token_secret: str, ready: Path,
                port: int) -> None:
    os.environ["FAKE_MODAL_ROOT"] = str(root)
    root.mkdir(parents=True, exist_ok=True)
    service = Service(root, token_id, token_secret, Faults.at(root), store)
    control = ControlPlane(service)
    router = Router(service)
    blocks = BlockServer(service.faults, control._file_at)
    await blocks.start()
    service.blob_url = blocks.url
    router_server = Server([router])
    await router_server.start("127.0.0.1", 0)
    router_port = router_server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    service.router_url = f"http://127.0.0.1:{router_port}"
    control_server = Server([control])
    await control_server.start("127.0.0.1", 0)
    inner = control_server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    gate = Gate(inner, port)
    if not service.faults.refused:
        await gate.accept()
    elif not gate.port:
        raise SystemExit("a stand-in started refused needs --port")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    tmp = ready.with_name(ready.name + ".tmp")
    tmp.write_text(json.dumps({"port": gate.port, "router_port": router_port,
                               "blob_url": blocks.url, "pid": os.getpid()}))
    os.replace(tmp, ready)
    watcher = asyncio.create_task(watch(service, gate, stop))
    await stop.wait()
    watcher.cancel()
    await gate.refuse()
    for server in (control_server, router_server):
        server.close()
    await blocks.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modal-standin")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--store", type=Path, help="images and mounts (default: ROOT/store)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-id", default=os.environ.get("STANDIN_TOKEN_ID", ""))
    parser.add_argument("--token-secret", default=os.environ.get("STANDIN_TOKEN_SECRET", ""))
    args = parser.parse_args(argv)
    asyncio.run(serve(args.root, args.store or args.root / "store", args.token_id,
                      args.token_secret, args.ready, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
