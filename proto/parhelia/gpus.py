"""GPU types a task may ask for (Modal's names, SDK 1.6.4), defined once.

``TYPE`` or ``TYPE:N`` (N GPUs of that type, 1 to :data:`MAX_GPUS`). Only the Modal
backend has GPUs: ``--gpu`` selects it unless ``--backend`` says otherwise, and
``--gpu`` with ``--backend local`` is refused (E101). Used by the CLI (client-side
checks, help), the daemon (validation, rates) and the MCP bridge.
"""

from __future__ import annotations

from typing import Final

from parhelia.backends import MODAL, Backend

GPU_TYPES: tuple[str, ...] = ("T4", "L4", "A10G", "L40S", "A100-40GB", "A100-80GB", "H100",
                              "H200", "B200")
GPU_ALIASES: dict[str, str] = {"A100": "A100-40GB"}
"""Names accepted for a type (Modal's ``A100`` is the 40 GB one)."""
MAX_GPUS = 8
ACCEPTED: tuple[str, ...] = (*GPU_TYPES[:4], "A100", *GPU_TYPES[4:])
"""Every name accepted on input, in the order help lists them."""
GPU_BACKEND: Final[Backend] = MODAL
"""The backend that has GPUs."""


def parse_gpu(text: str, known: tuple[str, ...] = GPU_TYPES) -> tuple[str, int] | None:
    """``""`` -> None; ``"h100:2"`` -> ``("H100", 2)``; ValueError with a message naming
    the accepted forms otherwise. ``known`` narrows the types (a rate table's keys)."""
    text = text.strip()
    if not text:
        return None
    name, sep, count_text = text.partition(":")
    by_upper = {k.upper(): k for k in known}
    canonical = by_upper.get(GPU_ALIASES.get(name.upper(), name).upper())
    if canonical is None:
        raise ValueError(f"unknown GPU type {name!r}; known: {', '.join(known)} "
                         f"(optionally TYPE:N, N from 1 to {MAX_GPUS})")
    if not sep:
        return canonical, 1
    # ASCII digits only ("²" and "٣" are str.isdigit()), and short: the text is echoed.
    if not (count_text.isascii() and count_text.isdigit() and len(count_text) <= 2) \
            or not 1 <= int(count_text) <= MAX_GPUS:
        raise ValueError(f"the GPU count must be 1 to {MAX_GPUS} in TYPE:N, "
                         f"got {text[:40]!r}")
    return canonical, int(count_text)


def format_gpu(gpu: tuple[str, int] | None) -> str:
    """The canonical text: ``""``, ``"H100"``, ``"H100:2"``."""
    if gpu is None:
        return ""
    kind, count = gpu
    return kind if count == 1 else f"{kind}:{count}"
