"""``parhelia``: the thin command-line client of the Parhelia daemon.

It parses arguments, makes one RPC on ``parheliad``'s Unix socket (or follows a
stream) and renders the answer. No business logic, no database; gRPC and the
generated stubs are imported lazily so ``--help`` and completion stay fast.
"""

from parhelia import __version__

__all__ = ["__version__"]
