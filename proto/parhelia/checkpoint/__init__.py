"""The one checkpoint format of Parhelia (see docs/adr/0003-checkpoint-format.md).

Volume layout: blobs at ``cas/blobs/<2 hex>/<sha256>``, manifests at
``checkpoints/<session_id>/<checkpoint_id>.json``.
"""

from parhelia.checkpoint import lineage
from parhelia.checkpoint.cas import BlobStore
from parhelia.checkpoint.checks import check_manifest, restored_mode
from parhelia.checkpoint.diff import Change, TreeDiff, diff, unified_diff
from parhelia.checkpoint.gitinfo import git_file_list, git_state
from parhelia.checkpoint.manifest import (
    BlobRef,
    Entry,
    Manifest,
    list_checkpoints,
    load_manifest,
    save_manifest,
)
from parhelia.checkpoint.projects import (
    Conversation,
    encode_project_dir,
    project_dir,
    session_conversation,
)
from parhelia.checkpoint.restore import RestoreStats, restore
from parhelia.checkpoint.snapshot import snapshot
from parhelia.checkpoint.statcache import StatCache
from parhelia.checkpoint.verify import VerifyReport, verify
from parhelia.volume import blob_key, manifest_key

__all__ = [
    "BlobRef",
    "BlobStore",
    "Change",
    "Conversation",
    "Entry",
    "Manifest",
    "RestoreStats",
    "StatCache",
    "TreeDiff",
    "VerifyReport",
    "blob_key",
    "check_manifest",
    "diff",
    "encode_project_dir",
    "git_file_list",
    "git_state",
    "lineage",
    "list_checkpoints",
    "load_manifest",
    "manifest_key",
    "project_dir",
    "restore",
    "restored_mode",
    "save_manifest",
    "session_conversation",
    "snapshot",
    "unified_diff",
    "verify",
]
