"""The committed generated code is exactly what the committed .proto files produce."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO

GENERATED = REPO / "proto" / "parhelia" / "v1"
PATTERNS = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")


def _files(root: Path) -> set[str]:
    return {p.name for pattern in PATTERNS for p in root.glob(pattern)}


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_proto.py"),
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    fresh = tmp_path / "parhelia" / "v1"
    assert _files(fresh), "gen_proto.py produced nothing"
    assert _files(fresh) == _files(GENERATED), "generated files added or removed"
    stale = [name for name in sorted(_files(fresh))
             if not filecmp.cmp(fresh / name, GENERATED / name, shallow=False)]
    assert not stale, (f"generated code differs from the .proto files: {stale}; run "
                       "`uv run python scripts/gen_proto.py` and commit the result")
