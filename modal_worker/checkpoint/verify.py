"""Re-check a stored checkpoint: manifest rules plus every blob re-hashed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from modal_worker.checkpoint.cas import BlobStore
from modal_worker.checkpoint.checks import check_manifest
from modal_worker.checkpoint.manifest import Manifest
from modal_worker.checkpoint.snapshot import default_workers
from modal_worker.volume import Volume
from parhelia.errors import ParheliaError


@dataclass
class VerifyReport:
    checkpoint_id: str
    blobs: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    invalid: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.invalid)


def verify(manifest: Manifest, *, volume: Volume, workers: int | None = None) -> VerifyReport:
    """Check the manifest's rules and re-hash every blob it references (never raises E600)."""
    report = VerifyReport(manifest.id)
    try:
        check_manifest(manifest)
    except ParheliaError as exc:
        report.invalid = exc.message
    store = BlobStore(volume)
    blobs: dict[str, int] = {}
    for entry in manifest.tree.values():
        if entry.type == "file" and entry.blob is not None:
            blobs[entry.blob] = entry.size
    for ref in manifest.conversation.values():
        blobs[ref.blob] = ref.size
    report.blobs = len(blobs)
    report.bytes = sum(blobs.values())

    def check(digest: str) -> tuple[str, str | None]:
        if not store.has(digest):
            return digest, "missing"
        if store.size(digest) != blobs[digest] or not store.verify(digest):
            return digest, "corrupt"
        return digest, None

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        for digest, problem in pool.map(check, sorted(blobs)):
            if problem == "missing":
                report.missing.append(digest)
            elif problem == "corrupt":
                report.corrupt.append(digest)
    return report
