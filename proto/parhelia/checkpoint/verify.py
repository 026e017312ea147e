"""Re-check a stored checkpoint: manifest rules plus every blob re-hashed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from parhelia.checkpoint.cas import BlobStore
from parhelia.checkpoint.checks import check_manifest
from parhelia.checkpoint.manifest import Manifest
from parhelia.checkpoint.snapshot import default_workers
from parhelia.errors import ParheliaError
from parhelia.volume import Volume, is_digest


@dataclass(frozen=True)
class SizeMismatch:
    """The manifest records another size for a path than its (intact) blob holds: the
    manifest is wrong, not the blob."""

    path: str
    digest: str
    recorded: int
    actual: int


@dataclass
class VerifyReport:
    checkpoint_id: str
    blobs: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    sizes: list[SizeMismatch] = field(default_factory=list)
    invalid: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.sizes or self.invalid)


def verify(manifest: Manifest, *, volume: Volume, workers: int | None = None) -> VerifyReport:
    """Check the manifest's rules and re-hash every blob it references (never raises E600).

    A blob whose content does not hash to its name is corrupt; an intact blob whose size
    differs from what the manifest records for a path is a fault of the manifest, and
    is reported as such (with the path and both sizes)."""
    report = VerifyReport(manifest.id)
    try:
        check_manifest(manifest)
    except ParheliaError as exc:
        report.invalid = exc.message
    store = BlobStore(volume)
    uses: dict[str, list[tuple[str, int]]] = {}
    for path, entry in manifest.tree.items():
        if entry.type == "file" and entry.blob is not None:
            uses.setdefault(entry.blob, []).append((path, entry.size))
    for name, ref in manifest.conversation.items():
        for chunk in ref.chunks:
            uses.setdefault(chunk.blob, []).append((f"conversation:{name}", chunk.size))
    pack = (manifest.git or {}).get("base_pack")
    if isinstance(pack, dict) and is_digest(pack.get("blob")) and isinstance(pack.get("size"),
                                                                              int):
        uses.setdefault(pack["blob"], []).append(("git base pack", pack["size"]))
    report.blobs = len(uses)
    report.bytes = sum(refs[0][1] for refs in uses.values())

    def check(digest: str) -> tuple[str, str | None, int]:
        if not store.has(digest):
            return digest, "missing", 0
        if not store.verify(digest):
            return digest, "corrupt", 0
        return digest, None, store.size(digest)

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        for digest, problem, actual in pool.map(check, sorted(uses)):
            if problem == "missing":
                report.missing.append(digest)
            elif problem == "corrupt":
                report.corrupt.append(digest)
            else:
                report.sizes.extend(SizeMismatch(path, digest, size, actual)
                                    for path, size in uses[digest] if size != actual)
    return report
