"""``python -m modal_worker run SPEC_PATH``: run one worker incarnation.

``python -m modal_worker setup SPEC_PATH`` runs only the restore and the environment's
setup (the Modal backend's setup sandbox, whose filesystem it snapshots), then waits to
be terminated; ``setup-wait SPEC_PATH [SECONDS]`` returns once it is ready (0) or failed.

``python -m modal_worker clone REQUEST_PATH`` is a clone sandbox's job (``modal_worker.clone``).

``python -m modal_worker control SPEC_PATH MESSAGE_JSON`` appends a control message
(stop, checkpoint now) for the worker of that spec; a backend that cannot write the
worker's volume directly (Modal) runs it next to the worker. The worker polls its
control file every second.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modal_worker.runner import configure_logging, run, wait_for_setup


def control(spec_path: Path, message: str) -> int:
    from parhelia.errors import ParheliaError
    from parhelia.spec import load_spec
    from parhelia.spool import append_control
    from parhelia.volume import LocalVolume

    try:
        spec = load_spec(spec_path)
        msg = json.loads(message)
        if not isinstance(msg, dict):
            raise ValueError("the message must be a JSON object")
        key = spec.channel.control_key or None
        append_control(LocalVolume(spec.volume_dir), spec.container_id, msg, key=key)
    except (ParheliaError, ValueError) as exc:
        print(f"control: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["tty"]:  # the PTY of an attach (modal_worker.ttyctl), argv as given
        from modal_worker.ttyctl import main as tty_main

        return tty_main(args_in[1:])
    parser = argparse.ArgumentParser(prog="python -m modal_worker")
    sub = parser.add_subparsers(dest="command", required=True)
    run_cmd = sub.add_parser("run", help="run the worker described by a spec file")
    run_cmd.add_argument("spec", type=Path)
    control_cmd = sub.add_parser("control", help="send a control message to a worker")
    control_cmd.add_argument("spec", type=Path)
    control_cmd.add_argument("message", help="a JSON object: {\"type\": \"stop\", ...}")
    sub.add_parser("tty", help="the PTY of an attach: attach | resize | hangup")
    setup_cmd = sub.add_parser("setup", help="restore and run the environment's setup only")
    setup_cmd.add_argument("spec", type=Path)
    wait_cmd = sub.add_parser("setup-wait", help="wait until the setup of a spec is done")
    wait_cmd.add_argument("spec", type=Path)
    wait_cmd.add_argument("timeout", type=float, nargs="?", default=3600.0)
    clone_cmd = sub.add_parser("clone", help="fetch a repository's commit (a clone sandbox)")
    clone_cmd.add_argument("request", type=Path)
    args = parser.parse_args(args_in)
    if args.command == "control":
        return control(args.spec, args.message)
    if args.command == "clone":
        from modal_worker.clone import main as clone_main

        return clone_main(args.request)
    if args.command == "setup-wait":
        return wait_for_setup(args.spec, args.timeout)
    configure_logging()
    return run(args.spec, setup_only=args.command == "setup")


if __name__ == "__main__":
    sys.exit(main())
