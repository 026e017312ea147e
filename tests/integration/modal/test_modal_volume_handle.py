"""The Modal volume through the REAL SDK on the stand-in: one hydrated handle per daemon
(not one lookup per use), and a volume deleted behind the daemon's back is E506 — never
recreated empty, also not by the next daemon — until `parhelia modal setup` makes it
again."""

from __future__ import annotations

from pathlib import Path

import pytest

from parhelia.errors import ParheliaError
from parhelia.volume import LocalVolume
from tests.helpers.modal_backend import make_backend
from tests.modal_host import state
from tests.modal_standin.fixture import StandIn

VOLUME = "parhelia-data"


async def test_one_handle_and_a_vanished_volume_is_an_error_never_recreated(
        modal_standin: StandIn, tmp_path: Path) -> None:
    daemon_state = tmp_path / "state"
    backend = make_backend(modal_standin, state_dir=daemon_state)
    local = LocalVolume(tmp_path / "local")
    local.put("specs/c-1.json", b"{}")
    # the handle, opened once
    assert await backend.push(local, ["specs/c-1.json"], session_id="s-1") == 2
    modal_standin.reset_calls()
    await backend.push(local, ["specs/c-1.json"], session_id="s-1")
    assert await backend.list_keys("specs") == ["specs/c-1.json"]
    await backend.pull(LocalVolume(tmp_path / "other"), ["specs/c-1.json"], session_id="s-1")
    assert "VolumeGetOrCreate" not in modal_standin.calls()  # kept, not looked up again

    modal_standin.delete_volume(VOLUME)
    with pytest.raises(ParheliaError) as gone:
        await backend.push(local, ["specs/c-1.json"], session_id="s-1")
    assert gone.value.code == "E506" and "parhelia modal setup" in gone.value.message
    with pytest.raises(ParheliaError) as listed:
        await backend.list_keys("specs")
    assert listed.value.code == "E506"

    restarted = make_backend(modal_standin, state_dir=daemon_state)  # the next daemon
    with pytest.raises(ParheliaError) as again:
        await restarted.list_keys("specs")
    assert again.value.code == "E506"
    assert not (state.root() / "volumes" / f"{VOLUME}.json").exists()  # not recreated

    await restarted.ensure_volume(create=True)  # what `parhelia modal setup` does
    assert await restarted.push(local, ["specs/c-1.json"], session_id="s-1") == 2
    assert await make_backend(modal_standin, state_dir=daemon_state).list_keys("specs") == \
        ["specs/c-1.json"]
