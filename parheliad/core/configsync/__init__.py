"""Config sync: the user's Claude Code configuration travels with every task, their
credentials never do (issue 5; ADR 0010). ``builder`` plans a bundle from the
filesystem, ``syncer`` stores it in the CAS and keeps it current for dispatch; the
worker side is :mod:`modal_worker.claude_config`."""

from parheliad.core.configsync.builder import Exclusion, Plan, Rewrite, Source, build
from parheliad.core.configsync.syncer import (
    ConfigBundle,
    ConfigSync,
    SentFile,
    SyncResult,
    local_command_exists,
)

__all__ = ["ConfigBundle", "ConfigSync", "Exclusion", "Plan", "Rewrite", "SentFile", "Source",
           "SyncResult", "build", "local_command_exists"]
