"""``parheliad [--socket PATH] [--log-level LEVEL]``: run the daemon in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from typing import NoReturn

from parhelia import __version__, envfile, paths
from parhelia.errors import ParheliaError
from parheliad import logging as daemon_logging
from parheliad.config import load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parheliad",
        description="The Parhelia daemon: owns tasks, state and backends; serves the "
                    "parhelia.v1 gRPC API on a Unix socket. Runs in the foreground.")
    parser.add_argument("--socket", metavar="PATH",
                        help="Unix socket path (default: PARHELIA_SOCKET, "
                             "$XDG_RUNTIME_DIR/parhelia/parheliad.sock or under the state dir)")
    parser.add_argument("--log-level", choices=daemon_logging.LEVELS,
                        help="log level (default: daemon.log_level from config, else info)")
    parser.add_argument("--version", action="version", version=f"parheliad {__version__}")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    p = paths.resolve(args.socket)
    try:
        config = load_config(p)
    except ParheliaError as exc:
        daemon_logging.configure(args.log_level or "info")
        print(f"parheliad: {exc}", file=sys.stderr)
        sys.exit(1)
    daemon_logging.configure(args.log_level or config.daemon.log_level, p.log_file)
    try:
        added = envfile.load(envfile.env_file(p))
    except ParheliaError as exc:
        print(f"parheliad: {exc}", file=sys.stderr)
        sys.exit(1)
    import structlog

    log = structlog.get_logger("parheliad")
    if added:
        log.info("daemon.env_file_loaded", names=added)
    for warning in config.warnings:
        log.warning("config.retired_key", warning=warning)

    from parheliad.daemon import Daemon  # after logging is configured

    end(asyncio.run(Daemon(p, config, socket=p.socket).run()))


def end(code: int) -> NoReturn:
    """Exit without the interpreter's teardown: by now the daemon has closed its store,
    released its lock and said STOPPING; what is left to write is the logs. Tearing down
    some 600 modules and the threads of grpc, aiosqlite and Modal's SDK cost ~60 ms of
    CPU at each stop and could wait on a thread that never ends."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
