"""The typed client (parhelia_cli.api) wraps every RPC of the contract, imports no
generated code until a call runs, and is the only way the CLI and the MCP bridge reach
the daemon."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys

from parhelia_cli import api, client
from tests.helpers.paths import REPO

ROOT = REPO


def test_every_rpc_has_a_typed_method() -> None:
    services = {cls.name: cls for cls in vars(api).values()
                if inspect.isclass(cls) and issubclass(cls, api._Service)
                and cls is not api._Service}
    assert set(services) == set(client._STUBS)
    for key, (module, service) in client._STUBS.items():
        pb2 = importlib.import_module(f"parhelia.v1.{module}_pb2")
        source = inspect.getsource(services[key])
        for method in pb2.DESCRIPTOR.services_by_name[service].methods:
            assert f'"{method.name}"' in source, f"{service}.{method.name} has no method"


def test_importing_the_client_loads_no_generated_code() -> None:
    code = ("import sys\nimport parhelia_cli.api, parhelia_cli.client\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('grpc', 'google')"
            " or m.startswith('parhelia.v1.')]\nassert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr


def test_call_sites_use_the_typed_client() -> None:
    """No `client.call("tasks", "ListTasks", ...)` (an untyped call) outside the client."""
    allowed = {"api.py", "client.py", "bridge.py"}  # the client, and the bridge's transport
    untyped = re.compile(r"\.(call|stream)\(\s*[\"']")
    for path in (ROOT / "parhelia_cli").rglob("*.py"):
        if path.name in allowed:
            continue
        text = path.read_text()
        assert not untyped.search(text), path
        assert "pb2(" not in text, path
    bridge = (ROOT / "parhelia_cli" / "mcp_server" / "bridge.py").read_text()
    assert not untyped.search(bridge)
