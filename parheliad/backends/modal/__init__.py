"""The Modal backend: one Modal Sandbox per container incarnation.

This is the only package that imports ``modal``, and only when a Modal backend is built
(``load_sdk``): the CLI and the daemon's start never pay for it. The SDK is an object
passed in: tests give the real SDK pointed at a local stand-in of Modal's service, or a
fake at the SDK boundary. From the daemon only the ``.aio``
calls are used, each under ``asyncio.wait_for`` (a Modal call without network retries for
about a minute; a GPU ``create`` can wait ~21 minutes for capacity).

- Identity: the backend id is the sandbox's ``object_id``; its name is the container id,
  so a retried ``create`` that finds the name taken adopts that sandbox instead of starting
  a second one. Tags: owner (this daemon's instance id), task, session, container.
- Resources: cpu, memory, gpu (``TYPE[:N]``, validated by ``parheliad.core.tasks``), and
  a timeout = the task's + a margin (the worker stops itself at the task's timeout and
  checkpoints first; Modal's own limit only catches a worker that cannot).
- Volume: the ``modal.Volume`` (v2) at ``/vol``; ``push``/``pull`` copy keys between it and
  the daemon's local volume, content-addressed blobs only when the other side lacks them.
- Channel: the spool file on the volume is the truth. Live records come from a long-lived
  ``tail`` exec'd in the sandbox from the daemon's cursor; after the sandbox ended (or the
  daemon was away) the spool is read from the volume (``read_file``). Control: an exec of
  ``python -m modal_worker control``.
- Status and listing: ONE ``Sandbox.list`` per sweep (app + owner tag), whatever the number
  of containers; ``poll`` only for those not listed (ended: their returncode).
- Credentials: the named Modal secret (``modal.secret_name``) if it holds an Anthropic
  credential, else an ephemeral secret from the daemon's environment; never in the spec,
  argv, ``env=`` or a log. Config sync's pass-through values ride in an ephemeral secret.
- Errors: ``errors.map_error`` by kind (catalogue code + recovery line); service trouble
  raises ``BackendUnreachable``, a full GPU pool ``NoCapacity``, an exec on a finished
  sandbox ``SandboxEnded`` (docs/adr/0037-modal-trouble-by-kind.md).
- Ends: Modal's own end status and message (an OOM kill, an eviction, an init failure)
  ride on ``ContainerStatus.end``/``detail``; the volume has one hydrated handle per
  daemon and a vanished one is E506; a GPU launch says what it waits for
  (``launch_wait``).
"""

from parheliad.backends.base import BackendUnreachable, Credentials, NoCapacity, WorkerPaths
from parheliad.backends.modal.backend import ModalBackend, from_config, settings_from_config
from parheliad.backends.modal.client import (
    CONTAINER_TAG,
    OWNER_TAG,
    SESSION_TAG,
    TASK_TAG,
    TASK_TIMEOUT_MAX_S,
    TIMEOUT_MARGIN_S,
    VOLUME_MOUNT,
    ModalSettings,
    load_sdk,
    sandbox_name,
    sandbox_timeout,
    token_configured,
)
from parheliad.backends.modal.terminal import ModalTerminal

__all__ = ["CONTAINER_TAG", "OWNER_TAG", "SESSION_TAG", "TASK_TAG", "TASK_TIMEOUT_MAX_S",
           "TIMEOUT_MARGIN_S", "VOLUME_MOUNT", "BackendUnreachable", "Credentials",
           "ModalBackend", "ModalSettings", "ModalTerminal", "NoCapacity", "WorkerPaths",
           "from_config", "load_sdk", "sandbox_name", "sandbox_timeout", "settings_from_config",
           "token_configured"]
