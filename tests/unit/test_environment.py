"""The suite's environment (tests/helpers/environment.py) covers every variable the
product reads, and really clears the caller's."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import environment, pysource

REPO = Path(__file__).resolve().parents[2]
PRODUCT = [REPO / "parheliad", REPO / "parhelia_cli", REPO / "modal_worker",
           REPO / "proto" / "parhelia"]
NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _environ_like(node: ast.expr) -> bool:
    """``os.environ``, ``environ``, ``env``, ``self._environ``... (the things read)."""
    text = ast.unparse(node)
    return "environ" in text or text.split(".")[-1].lstrip("_") in ("env", "base_env")


def _name(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) \
            and NAME.match(node.value):
        return node.value
    return None


def names_read(tree: ast.AST) -> Iterator[str]:
    """Variable names read in ``tree``: ``X.get("N")``, ``X["N"]``, ``"N" in X``,
    ``X.setdefault/pop("N")`` for an environment-like ``X``, and ``os.getenv("N")``."""
    for node in ast.walk(tree):
        found: str | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            func = node.func
            if func.attr == "getenv" or (func.attr in ("get", "setdefault", "pop")
                                         and _environ_like(func.value)):
                found = _name(node.args[0])
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) \
                and _environ_like(node.value):
            found = _name(node.slice)
        elif isinstance(node, ast.Compare) and len(node.comparators) == 1 \
                and isinstance(node.ops[0], ast.In | ast.NotIn) \
                and _environ_like(node.comparators[0]):
            found = _name(node.left)
        if found:
            yield found


def product_names() -> dict[str, str]:
    """Every variable name the product reads -> where (file:line of one read)."""
    out: dict[str, str] = {}
    for root in PRODUCT:
        for path in sorted(root.rglob("*.py")):
            if "_pb2" in path.name:
                continue
            for name in names_read(pysource.parse(path.read_text(), str(path))):
                out.setdefault(name, str(path.relative_to(REPO)))
    # Names read through lists of names rather than literals.
    from parhelia.credentials import CREDENTIAL_VARS, GITHUB_TOKEN_VARS
    from parhelia.environ import BASE_NAMES
    from parhelia_cli.service_files import PASSED_ENV as SERVICE_ENV
    from parheliad.core.forge.credentials import GH_ENV
    from parheliad.core.notify import PASSED_ENV as NOTIFY_ENV

    for name in (*BASE_NAMES, *CREDENTIAL_VARS, *GITHUB_TOKEN_VARS, *GH_ENV, *SERVICE_ENV,
                 *NOTIFY_ENV):
        out.setdefault(name, "a list of names")
    return out


def test_the_scan_finds_the_reads_it_is_meant_to_find() -> None:
    source = ('import os\nos.environ.get("A_ONE")\nos.getenv("A_TWO")\n'
              'env["A_THREE"]\nenv["WRITTEN"] = "1"\nif "A_FOUR" in self._environ: pass\n'
              'environ.setdefault("A_FIVE", "x")\nother.get("NOT_ENV")\n')
    assert sorted(names_read(pysource.parse(source))) == ["A_FIVE", "A_FOUR", "A_ONE",
                                                      "A_THREE", "A_TWO"]


def test_every_variable_the_product_reads_is_cleared_or_set_by_the_harness() -> None:
    names = product_names()
    assert {"PARHELIA_HOME", "NO_COLOR", "ANTHROPIC_API_KEY", "MODAL_TOKEN_ID"} <= set(names)
    uncovered = {n: where for n, where in names.items() if not environment.covers(n)}
    assert not uncovered, (
        f"the product reads {uncovered} but tests/helpers/environment.py leaves them as the "
        "caller has them: clear or set them there")


def test_apply_clears_the_callers_settings_and_fixes_the_rest() -> None:
    hostile = {"ANTHROPIC_API_KEY": "sk-ant-real", "CLAUDE_CODE_OAUTH_TOKEN": "t",
               "NO_COLOR": "1", "COLUMNS": "37", "PARHELIA_SOCKET": "/x.sock",
               "MODAL_TOKEN_ID": "ak-1", "GIT_DIR": "/nowhere", "XDG_RUNTIME_DIR": "/run/u",
               "TZ": "Asia/Kolkata", "HOME": "/root", "PATH": "/usr/bin",
               "PARHELIA_CLAUDE_BIN": "/opt/claude", "HTTPS_PROXY": "http://proxy:3128",
               "PYTHONDONTWRITEBYTECODE": "1"}
    home = environment.apply(hostile)
    try:
        assert hostile == {"PATH": "/usr/bin", "PARHELIA_CLAUDE_BIN": "/opt/claude",
                           "HOME": str(home), **environment.FIXED}
        assert home.is_dir() and not any(home.iterdir())
    finally:
        home.rmdir()


def test_this_process_runs_in_that_environment() -> None:
    for name in ("ANTHROPIC_API_KEY", "NO_COLOR", "COLUMNS", "PARHELIA_SOCKET",
                 "PYTHONDONTWRITEBYTECODE"):
        assert name not in os.environ
    assert os.environ["TZ"] == "UTC"
    assert not (Path(os.environ["HOME"]) / ".claude").exists()
