"""The typed client (parhelia_cli.api) wraps every RPC of the contract, imports no
generated code until a call runs, and is the only way the CLI and the MCP bridge reach
the daemon."""

from __future__ import annotations

import ast
import importlib
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from parhelia_cli import api, calls
from tests.helpers import pysource
from tests.helpers.paths import REPO

ROOT = REPO


SERVICE_CALLS = frozenset({"_call", "_read", "_stream"})


def typed_rpcs(source: str) -> dict[str, set[str]]:
    """Service key (``name = "tasks"``) -> the RPC names its methods really call (the
    literal first argument of ``self._call``/``_read``/``_stream``), read from the code:
    a name in a comment or a docstring is no method."""
    out: dict[str, set[str]] = {}
    for cls in pysource.parse(source).body:
        if not isinstance(cls, ast.ClassDef):
            continue
        key = next((stmt.value.value for stmt in cls.body
                    if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                    and any(isinstance(t, ast.Name) and t.id == "name" for t in stmt.targets)),
                   None)
        if not isinstance(key, str):
            continue
        out[key] = {node.args[0].value for node in ast.walk(cls)
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in SERVICE_CALLS and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)}
    return out


def rpc_gaps(source: str) -> list[str]:
    """Every RPC of the contract without a typed method calling it, and every call of a
    name that is no RPC of its service."""
    typed = typed_rpcs(source)
    gaps = sorted(f"{key}: no service class" for key in set(calls.STUBS) - set(typed))
    for key, (module, service) in calls.STUBS.items():
        pb2 = importlib.import_module(f"parhelia.v1.{module}_pb2")
        rpcs = {m.name for m in pb2.DESCRIPTOR.services_by_name[service].methods}
        called = typed.get(key, set())
        gaps += [f"{service}.{name} has no method" for name in sorted(rpcs - called)]
        gaps += [f"{service}.{name} is called but is no RPC" for name in sorted(called - rpcs)]
    return gaps


API_SOURCE = (REPO / "parhelia_cli" / "api.py").read_text()


def test_every_rpc_has_a_typed_method() -> None:
    services = {cls.name: cls for cls in vars(api).values()
                if inspect.isclass(cls) and issubclass(cls, api._Service)
                and cls is not api._Service}
    assert set(services) == set(calls.STUBS)
    assert sum(len(v) for v in typed_rpcs(API_SOURCE).values()) > 40
    assert rpc_gaps(API_SOURCE) == []


@pytest.mark.parametrize(("plant", "gap"), [
    (lambda src: src.replace('self._read("ListTasks"', 'self._read("ListTask"')
     + '\n# "ListTasks" is served by list() above\n',
     ["TaskService.ListTask is called but is no RPC", "TaskService.ListTasks has no method"]),
    (lambda src: src.replace('return self._read("GetTask", ', 'return self._read(\n'
                             '            "GetTaskX"  # "GetTask"\n            , '),
     ["TaskService.GetTask has no method", "TaskService.GetTaskX is called but is no RPC"]),
], ids=["name-in-a-comment", "name-beside-a-typo"])
def test_the_rpc_guard_sees_a_method_named_only_in_a_comment(plant, gap) -> None:
    planted = plant(API_SOURCE)
    assert planted != API_SOURCE
    assert sorted(rpc_gaps(planted)) == sorted(gap)


def test_importing_the_client_loads_no_generated_code() -> None:
    code = ("import sys\nimport parhelia_cli.api, parhelia_cli.client\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('grpc', 'google')"
            " or m.startswith('parhelia.v1.')]\nassert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr


TRANSPORT = {"api.py", "calls.py", "client.py"}
"""The typed client and its transport: the only modules that name an RPC and build its
request."""
BRIDGE = "bridge.py"
"""The MCP bridge's reconnecting transport: forwards (service, method, request) it is
given, and names none itself."""


def untyped_calls(source: str, *, forwarding: bool = False) -> list[int]:
    """Lines of untyped calls: a transport's ``call``/``stream`` given a service and a
    method (``client.call(SERVICE, "ListTasks", ...)``), or a request message built by
    hand (``tasks_pb2.ListTasksRequest(...)``). ``forwarding``: the call itself is the
    transport's job; only one naming its method with a literal is untyped."""
    lines = []
    for node in ast.walk(pysource.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("call", "stream"):
            method = node.args[1] if len(node.args) >= 2 else next(
                (k.value for k in node.keywords if k.arg == "method"), None)
            if method is not None and (not forwarding or isinstance(method, ast.Constant)):
                lines.append(node.lineno)
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and \
                func.value.id.endswith("_pb2") and func.attr.endswith("Request"):
            lines.append(node.lineno)
    return lines


def untyped_call_sites(package: Path) -> dict[str, list[int]]:
    out = {}
    for path in sorted(package.rglob("*.py")):
        if path.name in TRANSPORT and path.parent == package:
            continue
        found = untyped_calls(path.read_text(), forwarding=path.name == BRIDGE)
        if found:
            out[str(path.relative_to(package))] = found
    return out


def test_call_sites_use_the_typed_client() -> None:
    """No untyped call outside the client (``client.call("tasks", "ListTasks", ...)``,
    ``client.call(SERVICE, "ListTasks", tasks_pb2.ListTasksRequest())``)."""
    assert untyped_call_sites(ROOT / "parhelia_cli") == {}


@pytest.mark.parametrize("source", [
    'def f(client):\n    return client.call("tasks", "ListTasks", None)\n',
    'from parhelia.v1 import tasks_pb2\nSERVICE = "tasks"\n\n\ndef f(client):\n'
    '    return client.call(SERVICE, "ListTasks",\n                       tasks_pb2.X())\n',
    'def f(client, m):\n    return client.stream("events",\n        m, None)\n',
    'from parhelia.v1 import tasks_pb2\n\n\ndef f(api):\n    return api.tasks._read(\n'
    '        "ListTasks", tasks_pb2.ListTasksRequest(limit=1))\n',
], ids=["literal", "constant-service", "stream", "hand-built-request"])
def test_the_call_site_guard_sees_a_planted_untyped_call(tmp_path, source) -> None:
    package = tmp_path / "parhelia_cli"
    shutil.copytree(ROOT / "parhelia_cli", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "commands" / "planted.py").write_text(source)
    assert set(untyped_call_sites(package)) == {"commands/planted.py"}


def test_the_bridge_may_forward_but_not_name_a_method() -> None:
    assert untyped_calls("def f(c, s, m, r):\n    return c.call(s, m, r)\n",
                         forwarding=True) == []
    assert untyped_calls("def f(c, r):\n    return c.call('tasks', 'ListTasks', r)\n",
                         forwarding=True) == [2]
