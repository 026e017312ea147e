"""Regenerate the committed gRPC/protobuf code from proto/parhelia/v1/*.proto.

Usage: uv run python scripts/gen_proto.py [--out DIR]

Generated with ``-I proto`` so imports read ``from parhelia.v1 import ...``;
``pyproject.toml`` maps the package ``parhelia`` from ``proto/parhelia``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTO_DIR = PROTO_ROOT / "parhelia" / "v1"


def generate(out: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_DIR.glob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    ns = parser.parse_args()
    ns.out.mkdir(parents=True, exist_ok=True)
    generate(ns.out)


if __name__ == "__main__":
    sys.exit(main())
