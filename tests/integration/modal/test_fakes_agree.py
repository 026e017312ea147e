"""The SDK-level fake (``tests/fake_modal``, used by the backend's fast tests) and the REAL
SDK against the stand-in of Modal's service agree on every behaviour those fast tests
rely on: a behaviour the fake got wrong fails here, on the fake's side only.

Each test runs twice: ``fake`` (the fake SDK in this process) and ``standin`` (the real
``modal`` package, its client pointed at the stand-in).
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from tests.modal_host.host import ModalHost

APP = "agree"


@pytest.fixture(params=["fake", "standin"])
def service(request: pytest.FixtureRequest) -> ModalHost:
    return request.getfixturevalue("fake_modal" if request.param == "fake"
                                   else "modal_standin")


def end_of(sdk: Any, sb: Any) -> Any:
    """Modal's end state of a sandbox as the SDK keeps it (behind its wrapper on the real
    SDK): ``status`` (GenericResult's enum number), ``exitcode``, ``exception``."""
    impl = getattr(sb, "_impl", None)
    if impl is None:
        from modal._utils.async_utils import synchronizer

        impl = synchronizer._translate_in(sb)._impl
    return impl.result


def test_poll_timeout_and_terminate(service: ModalHost) -> None:
    sdk = service.sdk  # type: ignore[attr-defined]
    app = sdk.App.lookup(APP, create_if_missing=True)
    sb = sdk.Sandbox.create("sleep", "60", app=app, timeout=120)
    assert sb.poll() is None
    sb.terminate()
    sb.wait(raise_on_termination=False)
    assert sb.returncode == 137 and sb.poll() == 137
    timed = sdk.Sandbox.create("sleep", "60", app=app, timeout=1)
    with pytest.raises(sdk.exception.SandboxTimeoutError):
        timed.wait()
    assert timed.returncode == 124


def test_names_list_and_tags(service: ModalHost) -> None:
    sdk = service.sdk  # type: ignore[attr-defined]
    app = sdk.App.lookup(APP, create_if_missing=True)
    first = sdk.Sandbox.create("sleep", "60", app=app, timeout=120, name="c-agree",
                               tags={"owner": "me", "k": "v"})
    with pytest.raises(sdk.exception.AlreadyExistsError):
        sdk.Sandbox.create("sleep", "60", app=app, timeout=120, name="c-agree")
    assert sdk.Sandbox.from_name(APP, "c-agree").object_id == first.object_id
    ended = sdk.Sandbox.create("sleep", "60", app=app, timeout=120, tags={"owner": "me"})
    ended.terminate()
    ended.wait(raise_on_termination=False)
    listed = list(sdk.Sandbox.list(app_id=app.app_id, tags={"owner": "me"}))
    assert [sb.object_id for sb in listed] == [first.object_id]  # running ones only
    assert listed[0].get_tags() == {"owner": "me", "k": "v"}
    first.terminate()
    first.wait(raise_on_termination=False)
    with pytest.raises(sdk.exception.NotFoundError):
        sdk.Sandbox.from_name(APP, "c-agree")


def test_an_exec_on_an_ended_sandbox_is_a_conflict(service: ModalHost) -> None:
    sdk = service.sdk  # type: ignore[attr-defined]
    sb = sdk.Sandbox.create("sleep", "60", app=sdk.App.lookup(APP, create_if_missing=True),
                            timeout=120)
    assert sb.exec("echo", "hi").stdout.read() == "hi\n"
    sb.terminate()
    sb.wait(raise_on_termination=False)
    with pytest.raises(sdk.exception.ConflictError):
        sdk.Sandbox.from_id(sb.object_id).exec("true")


def test_end_states_carry_modals_status_and_message(service: ModalHost) -> None:
    sdk = service.sdk  # type: ignore[attr-defined]
    app = sdk.App.lookup(APP, create_if_missing=True)
    sb = sdk.Sandbox.create("sleep", "60", app=app, timeout=120)
    sb.exec("true").wait()
    service.evict(sb.object_id, "reclaimed for maintenance")
    sb.wait(raise_on_termination=False)
    assert sb.poll() == 0  # the server's exit code, passed on as it is
    end = end_of(sdk, sb)
    assert (end.status, end.exception) == (8, "reclaimed for maintenance")  # EVICTION


def test_volume_visibility_uploads_and_missing_paths(service: ModalHost) -> None:
    sdk = service.sdk  # type: ignore[attr-defined]
    vol = sdk.Volume.from_name("agree-vol", create_if_missing=True, version=2)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"one"), "/dir/one")
    with pytest.raises(FileExistsError), vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"again"), "/dir/one")
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"two"), "/dir/one")
    assert b"".join(vol.read_file("dir/one")) == b"two"
    with pytest.raises(FileNotFoundError):
        b"".join(vol.read_file("dir/absent"))
    with pytest.raises(sdk.exception.NotFoundError):
        vol.listdir("absent-dir")
    sb = sdk.Sandbox.create("sleep", "60", app=sdk.App.lookup(APP, create_if_missing=True),
                            timeout=120, volumes={"/vol": vol})
    sb.exec("python", "-c", "open('made', 'w').write('x')", workdir="/vol").wait()
    with pytest.raises(FileNotFoundError):
        b"".join(vol.read_file("made"))  # not before sync or the end
    sb.exec("sync", "/vol").wait()
    assert b"".join(vol.read_file("made")) == b"x"


def test_a_hydrated_volume_handle_never_recreates_a_deleted_volume(service: ModalHost) -> None:
    sdk = service.sdk  # type: ignore[attr-defined]
    vol = sdk.Volume.from_name("agree-gone", create_if_missing=True, version=2)
    vol.hydrate()
    service.delete_volume("agree-gone")
    with pytest.raises(sdk.exception.NotFoundError):
        vol.listdir("/")
