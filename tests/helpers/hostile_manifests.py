"""The one table of hostile checkpoint manifests. Each mutation edits a manifest's JSON
(as a sandbox that controls its volume could write it); every place that reads a
manifest must refuse all of them with E600 before its first write: restore
(tests/unit/worker/test_checkpoint_hostile.py), and ``session pull``, ``task pull`` and
``checkpoint rollback`` (tests/unit/core/test_hostile_manifests.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Mutation = Callable[[dict[str, Any]], None]
FALLBACK_UUID = "0b5c6d2e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"


def entry(raw: dict[str, Any], path: str) -> dict[str, Any]:
    return next(e for e in raw["tree"] if e["path"] == path)


def blob_of(raw: dict[str, Any], path: str) -> str:
    return str(entry(raw, path)["blob"])


def add(raw: dict[str, Any], **item: Any) -> None:
    raw["tree"].append(item)


def conversation_uuid(raw: dict[str, Any]) -> str:
    """The conversation a manifest holds (its top-level transcript's name)."""
    return next((str(e["path"])[: -len(".jsonl")] for e in raw["conversation"]
                 if str(e["path"]).endswith(".jsonl") and "/" not in str(e["path"])),
                FALLBACK_UUID)


def talk(raw: dict[str, Any], path: str) -> None:
    """Add a conversation file at ``path`` (``{uuid}`` is the manifest's conversation)."""
    raw["conversation"].append({"path": path.format(uuid=conversation_uuid(raw)),
                                "blob": blob_of(raw, "a.txt"), "size": 5})


def _file(raw: dict[str, Any], path: str) -> None:
    add(raw, path=path, type="file", mode=0o644, size=5, blob=blob_of(raw, "a.txt"))


MUTATIONS: dict[str, Mutation] = {
    "dotdot": lambda m: _file(m, "../evil"),
    "inner dotdot": lambda m: _file(m, "sub/../../evil"),
    "absolute": lambda m: _file(m, "/tmp/evil"),
    "not normalised": lambda m: _file(m, "sub//x"),
    "dot component": lambda m: _file(m, "./x"),
    "nul": lambda m: _file(m, "x\x00y"),
    "empty path": lambda m: add(m, path="", type="dir", mode=0o755),
    "symlink absolute": lambda m: add(m, path="evil", type="symlink", target="/etc/passwd"),
    "symlink out": lambda m: add(m, path="sub/evil", type="symlink", target="../../etc"),
    "symlink chain out": lambda m: (
        add(m, path="sub/up", type="symlink", target=".."),
        add(m, path="chain", type="symlink", target="sub/up/.."),
    ),
    "symlink loop": lambda m: (
        add(m, path="l1", type="symlink", target="l2"),
        add(m, path="l2", type="symlink", target="l1"),
    ),
    "write through symlink": lambda m: (
        add(m, path="dirlink", type="symlink", target="sub"),
        _file(m, "dirlink/x.txt"),
    ),
    "under a file": lambda m: _file(m, "a.txt/x"),
    "duplicate path": lambda m: add(m, **dict(entry(m, "a.txt"))),
    "missing blob": lambda m: entry(m, "a.txt").update(blob="0" * 64),
    "blob not hex": lambda m: entry(m, "a.txt").update(blob="../../etc/passwd"),
    "absurd size": lambda m: entry(m, "a.txt").update(size=1 << 50),
    "negative size": lambda m: entry(m, "a.txt").update(size=-1),
    "size differs from blob": lambda m: entry(m, "a.txt").update(size=4),
    "setuid mode": lambda m: entry(m, "a.txt").update(mode=0o4755),
    "sticky dir": lambda m: entry(m, "sub").update(mode=0o1777),
    "negative mode": lambda m: entry(m, "a.txt").update(mode=-1),
    "mode as text": lambda m: entry(m, "a.txt").update(mode="755"),
    "unknown type": lambda m: entry(m, "a.txt").update(type="device"),
    "tree not a list": lambda m: m.update(tree={"a": 1}),
    "wrong format": lambda m: m.update(format=99),
    # The conversation's files go into the user's Claude config dir on `session pull`
    # (issue 22, finding 1: these created ~/.ssh/authorized_keys).
    "conversation dotdot": lambda m: talk(m, "../../x.jsonl"),
    "conversation side store dotdot": lambda m: talk(
        m, "@file-history/../../../.ssh/authorized_keys"),
    "conversation session env dotdot": lambda m: talk(m, "@session-env/../../../../evil"),
    "conversation own dir dotdot": lambda m: talk(m, "{uuid}/../../../../evil"),
    "conversation absolute": lambda m: talk(m, "/tmp/evil.jsonl"),
    "conversation nul": lambda m: talk(m, "{uuid}/a\x00b"),
    "conversation under a file": lambda m: (
        talk(m, "{uuid}/x.txt"), talk(m, "{uuid}/x.txt/y")),
    "conversation not normalised": lambda m: talk(m, "@file-history//x"),
    "conversation missing blob": lambda m: m["conversation"].append(
        {"path": f"{conversation_uuid(m)}/tool-results/t.txt",
         "blob": "0" * 64, "size": 5}),
}
