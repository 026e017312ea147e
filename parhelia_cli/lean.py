"""Keep protobuf's pure-Python backend out of a CLI call that does not use it.

protobuf 7.x runs on its C backend (upb) here, yet ``google.protobuf.descriptor_pool``
and ``google.protobuf.internal.builder`` import the pure-Python message implementation
``google.protobuf.internal.python_message`` at module level (which imports
``text_format``, ``decoder``, ``encoder``, ``containers``...): about 7 ms of every call's
first ``*_pb2`` import on the machine of ``bench/cli_latency.py``, for code that only
runs on the Python backend (ADR 0040). :func:`defer_python_backend` registers that
module as a lazy one (``importlib.util.LazyLoader``, the standard library's mechanism):
it is loaded for real the first time anything touches it, so nothing changes for code
that does. ``tests/integration/cli/test_import_cost.py`` checks it is not loaded.
"""

from __future__ import annotations

import importlib.util
import sys

PYTHON_BACKEND = "google.protobuf.internal.python_message"


def defer_python_backend() -> None:
    """Before the first generated module is imported: make ``python_message`` lazy when
    protobuf runs on upb (a no-op when it is already loaded, or on another backend)."""
    if PYTHON_BACKEND in sys.modules:
        return
    from google.protobuf.internal import api_implementation

    if api_implementation.Type() != "upb":
        return
    spec = importlib.util.find_spec(PYTHON_BACKEND)
    if spec is None or spec.loader is None:
        return
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[PYTHON_BACKEND] = module
    loader.exec_module(module)
    # ``from google.protobuf.internal import python_message`` finds the attribute and
    # does not touch the module (which would load it).
    setattr(sys.modules["google.protobuf.internal"], "python_message", module)  # noqa: B010
