"""`parhelia_session_attach_info`'s answer for each kind of session (the round trip over
MCP with a real daemon is in test_mcp_server.py)."""

from __future__ import annotations

from typing import Any

from parhelia_cli.flows.session import attach_info


def _session(status: str, interactive: bool, clients: int = 0) -> dict[str, Any]:
    return {"id": "s-abc", "task_id": "t-abc", "status": status, "interactive": interactive,
            "attached_clients": clients}


def test_a_detached_modal_session_offers_both_ways_in() -> None:
    info = attach_info(_session("detached", True), "modal")
    assert info["attachable"] is True and "reason" not in info
    assert info["argv"] == ["parhelia", "session", "attach", "s-abc"]
    assert info["ssh_command"] == "parhelia session attach s-abc --ssh"
    assert "Ctrl-B D" in info["detach"]


def test_a_headless_session_says_attaching_takes_it_over() -> None:
    info = attach_info(_session("headless", False), "local")
    assert info["attachable"] is True and "take it over" in info["reason"]
    assert "ssh_command" not in info


def test_an_attached_session_counts_its_clients() -> None:
    info = attach_info(_session("attached", True, clients=2), "local")
    assert info["attached_clients"] == 2 and info["attachable"] is True


def test_a_stopped_session_cannot_be_attached_and_says_what_can_be_done() -> None:
    info = attach_info(_session("stopped", False), "modal")
    assert info["attachable"] is False
    assert "parhelia resume s-abc" in info["reason"] and "session pull" in info["reason"]
