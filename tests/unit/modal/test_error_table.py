"""The mapping of Modal's errors, as a table over the INSTALLED SDK's exception classes:
every class of ``modal.exception`` a call can raise has a kind, and each maps to its
catalogue code and class with Modal's message (redacted) and a recovery line that names a
command the user has. A class the table does not name fails the first test, by name (an
SDK upgrade shows what is new)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import modal
import modal.exception
import pytest

from parhelia.errors import ParheliaError
from parheliad.backends.base import BackendUnreachable, NoCapacity
from parheliad.backends.modal.errors import (
    KINDS,
    NOT_RAISED,
    SandboxEnded,
    kind_of,
    map_error,
)

EXPECTED = {
    "unreachable": ("E502", BackendUnreachable), "no_capacity": ("E500", NoCapacity),
    "auth": ("E400", ParheliaError), "permission": ("E401", ParheliaError),
    "not_found": ("E203", ParheliaError), "ended": ("E203", SandboxEnded),
    "invalid": ("E503", ParheliaError), "failed": ("E503", ParheliaError),
}
SECRET = "sk-ant-api03-" + "x" * 40


def installed_classes() -> list[type[BaseException]]:
    return sorted((cls for cls in vars(modal.exception).values()
                   if isinstance(cls, type) and issubclass(cls, BaseException)
                   and cls.__module__ == modal.exception.__name__), key=lambda c: c.__name__)


def instance(cls: type[BaseException], message: str) -> BaseException:
    try:
        return cls(message)
    except TypeError:  # ImageBuildError(message, image_id)
        return cls(message, "im-1")  # type: ignore[call-arg]


def test_every_class_of_the_installed_sdk_has_a_kind() -> None:
    unnamed = [cls.__name__ for cls in installed_classes()
               if cls.__name__ not in KINDS and cls.__name__ not in NOT_RAISED
               and not issubclass(cls, Warning)]
    assert unnamed == [], "modal.exception classes the error table does not name"
    assert set(KINDS) <= {cls.__name__ for cls in installed_classes()}, \
        "the table names classes the installed SDK does not have"


@pytest.mark.parametrize("cls", [c for c in installed_classes() if c.__name__ in KINDS],
                         ids=lambda c: c.__name__)
def test_each_class_maps_to_its_code_with_modals_message_and_a_recovery_line(
        cls: type[BaseException]) -> None:
    kind = KINDS[cls.__name__]
    # An image that did not build is the environment's failure (E606), with its build log.
    code, expected = ("E606", ParheliaError) if cls.__name__ == "ImageBuildError" \
        else EXPECTED[kind]
    err = map_error(instance(cls, f"modal says no ({SECRET})"), "doing X")
    assert isinstance(err, expected) and err.code == code, (cls.__name__, err)
    assert "modal says no" in err.message and "doing X" in err.message
    assert SECRET not in err.message
    if kind != "ended":  # the end of a sandbox is not an error to recover from
        assert "Recovery:" in err.message
    assert "modal token" not in err.message and "modal secret" not in err.message


@pytest.mark.parametrize(("raised", "kind"), [
    (ConnectionError("reset by peer"), "unreachable"), (TimeoutError(), "unreachable"),
    (TimeoutError(), "unreachable"), (ValueError("bug"), "failed"),
])
def test_builtins_the_sdks_streams_raise(raised: BaseException, kind: str) -> None:
    assert kind_of(raised) == kind


def test_service_trouble_is_never_read_as_the_end_of_a_sandbox() -> None:
    """What modal 1.6.4 raises for UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN and
    INTERNAL is unreachable; what it raises on an exec of an ended sandbox is ended."""
    errors: Any = modal.exception
    for cls in (errors.ServiceError, errors.InternalError, errors.ConnectionError):
        assert kind_of(instance(cls, "x")) == "unreachable"
    for cls in (errors.ConflictError, errors.SandboxTerminatedError):
        assert kind_of(instance(cls, "Sandbox already finished")) == "ended"


async def test_a_connection_cut_during_the_last_attempt_is_modal_unreachable() -> None:
    """modal 1.6.4 lets grpclib's ``StreamTerminatedError`` out unchanged when the
    connection is cut during a call's last attempt: `parhelia modal setup` printed its
    traceback (seen on the stand-in, which cuts open connections when it starts refusing).
    It is the network's failure, E502 with a recovery line, like a refused connection."""
    from grpclib.exceptions import StreamTerminatedError

    from parheliad.backends.modal.client import ModalClient, ModalSettings

    assert kind_of(StreamTerminatedError("Connection lost")) == "unreachable"

    async def cut() -> None:
        raise StreamTerminatedError("Connection lost")

    async def bug() -> None:
        raise ValueError("a bug of ours")

    client = ModalClient(ModalSettings(), {}, sdk=modal)
    with pytest.raises(BackendUnreachable) as raised:
        await client.call("looking up the app 'parhelia'", cut)
    assert raised.value.code == "E502" and "Recovery:" in raised.value.message
    with pytest.raises(ValueError, match="a bug of ours"):  # not Modal's: not hidden as E502
        await client.call("looking up the app 'parhelia'", bug)


async def test_a_token_check_cut_by_the_network_stores_nothing_and_says_so(
        tmp_path: Path) -> None:
    """`parhelia modal setup --token-id ...` checks the token with Modal first: a
    connection cut during that check is "could not be checked" (run it again), not a
    traceback, and the token is not written."""
    from types import SimpleNamespace

    from grpclib.exceptions import StreamTerminatedError

    from parheliad.backends.modal.setup import verify_and_store

    async def cut(url: str, credentials: tuple[str, str]) -> None:
        raise StreamTerminatedError("Connection lost")

    sdk = SimpleNamespace(Client=SimpleNamespace(verify=SimpleNamespace(aio=cut)),
                          exception=modal.exception)
    config = tmp_path / "modal.toml"
    step = await verify_and_store(sdk, {"MODAL_CONFIG_PATH": str(config)}, "ak-1", "as-1")
    assert not step.ok and "could not be checked" in step.detail, step
    assert "run the command again" in step.recovery
    assert not config.exists()
