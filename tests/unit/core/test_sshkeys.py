"""Per-session SSH material (`session attach --ssh`) and the sandbox's sshd config, on
bad input: nothing but an ed25519 public key is pinned or authorised, nothing weakens
host key checking."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from modal_worker import sshd
from parhelia.errors import ParheliaError
from parhelia.spec import WorkerSpec
from parheliad.core import sshkeys

ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def test_the_session_key_is_private_and_made_once(tmp_path: Path) -> None:
    key = sshkeys.session_key(tmp_path, "s-1")
    assert stat.S_IMODE(key.private.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.private.parent.stat().st_mode) == 0o700
    assert key.public.startswith("ssh-ed25519 ") and "PRIVATE" not in key.public
    assert sshkeys.session_key(tmp_path, "s-1") == key


@pytest.mark.parametrize("host_key", [
    "", "ssh-rsa AAAAB3NzaC1yc2E", ED + "\n[evil]:22 ssh-ed25519 AAAA", "-----BEGIN OPENSSH"])
def test_only_an_ed25519_key_is_pinned(tmp_path: Path, host_key: str) -> None:
    with pytest.raises(ParheliaError) as err:
        sshkeys.pin_host_key(tmp_path, "s-1", "r1.modal.host", 4000, host_key)
    assert err.value.code == "E601"


@pytest.mark.parametrize(("host", "port"), [("", 22), ("a b", 22), ("h,[x]", 22),
                                             ("h", 0), ("h", 70000)])
def test_a_strange_tunnel_address_is_refused(tmp_path: Path, host: str, port: int) -> None:
    with pytest.raises(ParheliaError):
        sshkeys.pin_host_key(tmp_path, "s-1", host, port, ED)


def test_known_hosts_holds_one_line_and_the_argv_checks_strictly(tmp_path: Path) -> None:
    known = sshkeys.pin_host_key(tmp_path, "s-1", "r1.modal.host", 4000, ED + " comment")
    assert known.read_text() == f"[r1.modal.host]:4000 {ED}\n"
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    argv = sshkeys.ssh_argv(sshkeys.session_key(tmp_path, "s-1"), known, "r1.modal.host",
                            4000, ["tmux", "attach"])
    assert "StrictHostKeyChecking=yes" in argv and "GlobalKnownHostsFile=/dev/null" in argv
    assert "IdentitiesOnly=yes" in argv and "ServerAliveInterval=15" in argv
    assert argv[-3:] == ["--", "tmux", "attach"]


def test_the_sandboxs_sshd_takes_keys_only_and_forwards_nothing(tmp_path: Path) -> None:
    config = sshd.prepare(tmp_path / "ssh", ED)
    text = config.read_text()
    for line in ("PasswordAuthentication no", "KbdInteractiveAuthentication no",
                 "PermitRootLogin prohibit-password", "AllowTcpForwarding no",
                 "AllowAgentForwarding no", "X11Forwarding no", "PermitTunnel no"):
        assert line in text
    assert (tmp_path / "ssh" / "authorized_keys").read_text() == ED + "\n"
    assert stat.S_IMODE(os.stat(tmp_path / "ssh").st_mode) == 0o700
    line, fingerprint = sshd.host_key_of(config)
    assert line.startswith("ssh-ed25519 ") and fingerprint.startswith("SHA256:")


@pytest.mark.parametrize("value", ["-----BEGIN OPENSSH PRIVATE KEY-----", "ssh-rsa AAAA",
                                   ED + "\ncommand=\"sh\" " + ED])
def test_a_spec_authorises_nothing_but_one_ed25519_public_key(value: str) -> None:
    raw = {"version": 1, "container_id": "c-1", "task_id": "t-1", "session_id": "s-1",
           "volume_dir": "/vol", "workspace_dir": "/workspace",
           "claude_config_dir": "/root/.claude", "prompt": "x",
           "agent": {"session_uuid": "0b5c6d2e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"},
           "ssh_authorized_key": value}
    with pytest.raises(ParheliaError) as err:
        WorkerSpec.from_dict(raw)
    assert "ssh_authorized_key" in err.value.message
