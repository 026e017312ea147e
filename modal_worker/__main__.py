"""``python -m modal_worker run SPEC_PATH``: run one worker incarnation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modal_worker.runner import configure_logging, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modal_worker")
    sub = parser.add_subparsers(dest="command", required=True)
    run_cmd = sub.add_parser("run", help="run the worker described by a spec file")
    run_cmd.add_argument("spec", type=Path)
    args = parser.parse_args(argv)
    configure_logging()
    return run(args.spec)


if __name__ == "__main__":
    sys.exit(main())
