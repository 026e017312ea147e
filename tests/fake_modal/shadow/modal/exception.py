"""Fake ``modal.exception``: the INSTALLED SDK's own module, loaded from its file, so the
fake raises exactly modal 1.6.4's classes (all of them, their hierarchy and their names:
``ConnectionError`` and ``TimeoutError`` are not the builtins; everything derives
``Error``). The shadow package stands first on the path as ``modal``: the real package is
found on the rest of it."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

_SHADOW = Path(__file__).resolve().parent.parent
_NAME = "_installed_modal_exception"


def _load() -> object:
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    rest = [p for p in sys.path if Path(p or ".").resolve() != _SHADOW]
    found = importlib.machinery.PathFinder.find_spec("modal", rest)
    if found is None or not found.submodule_search_locations:
        raise ImportError("the fake modal needs the real modal package installed")
    path = Path(list(found.submodule_search_locations)[0]) / "exception.py"
    spec = importlib.util.spec_from_file_location(_NAME, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


globals().update({k: v for k, v in vars(_load()).items() if not k.startswith("__")})
