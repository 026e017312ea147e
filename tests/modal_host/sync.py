"""The ``sync`` shim inside a local sandbox: ``sync [PATH]`` commits the sandbox's view of
the volume mounted at PATH (all mounts without PATH) to the service, as ``sync /vol``
does for a v2 volume in a Modal sandbox."""

from __future__ import annotations

import sys

from tests.modal_host.supervisor import commit


def main(argv: list[str]) -> int:
    sb_id, paths = argv[0], argv[1:]
    if not paths:
        commit(sb_id)
    for path in paths:
        commit(sb_id, path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
