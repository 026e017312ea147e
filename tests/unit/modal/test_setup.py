"""`parhelia modal setup` against the fake Modal, and doctor's offline Modal checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parheliad.backends.modal import from_config
from parheliad.backends.modal import setup as modal_setup
from parheliad.config import Config
from tests.helpers.modal_backend import make_backend


def _run(fake, monkeypatch, tmp_path: Path, capsys, *args: str) -> tuple[int, list[dict]]:
    monkeypatch.setenv("PARHELIA_HOME", str(tmp_path / "home"))
    for key, value in fake.env().items():
        if key.startswith("MODAL_TOKEN"):
            monkeypatch.setenv(key, value)
    code = modal_setup.main(["--json", *args], sdk=fake.sdk)
    return code, json.loads(capsys.readouterr().out)


def test_setup_creates_then_finds_everything_and_is_idempotent(fake_modal, monkeypatch,
                                                               tmp_path, capsys):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key-for-setup-000000")
    code, steps = _run(fake_modal, monkeypatch, tmp_path, capsys)
    assert code == 0, steps
    by = {s["name"]: s for s in steps}
    assert [s["name"] for s in steps] == ["sdk", "token", "reach", "app", "volume", "secret",
                                          "image"]
    assert "created" in by["app"]["detail"] and "created" in by["volume"]["detail"]
    assert "v2" in by["volume"]["detail"]
    assert by["secret"]["ok"] and "parhelia auth set" in by["secret"]["recovery"]
    assert "https://modal.com/secrets" in by["secret"]["recovery"]
    assert "ephemeral" in by["secret"]["detail"]
    images = fake_modal.sdk.built_images()
    assert len(images) == 1

    fake_modal.create_secret("anthropic-api-key", {"ANTHROPIC_API_KEY": "sk-ant-x"})
    code, steps = _run(fake_modal, monkeypatch, tmp_path, capsys)
    by = {s["name"]: s for s in steps}
    assert code == 0
    assert "found" in by["app"]["detail"] and "found" in by["volume"]["detail"]
    assert by["secret"]["detail"] == "'anthropic-api-key' holds ANTHROPIC_API_KEY"
    assert fake_modal.sdk.built_images() == images  # the same recipe: nothing rebuilt
    assert "sk-ant" not in json.dumps(steps)


def test_setup_without_a_token_says_how_to_set_one(fake_modal, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PARHELIA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    code = modal_setup.main([], sdk=fake_modal.sdk)
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL token" in out and "parhelia modal setup --token-id" in out
    assert "modal token" not in out  # a command the user may not have
    assert fake_modal.calls() == []  # nothing asked of Modal


async def test_setup_refuses_a_v1_volume_and_reports_auth_errors(fake_modal, tmp_path):
    sdk = fake_modal.sdk
    sdk.Volume.from_name("parhelia-data", create_if_missing=True).hydrate()  # a v1 volume
    steps = await modal_setup.run_setup(make_backend(fake_modal))
    assert (steps[-1].name, steps[-1].ok) == ("volume", False)
    assert "not a v2 volume" in steps[-1].detail

    fake_modal.switch("auth")
    steps = await modal_setup.run_setup(make_backend(fake_modal))
    assert (steps[-1].name, steps[-1].ok) == ("reach", False)
    assert steps[-1].detail.startswith("E400")
    assert "parhelia modal setup --token-id" in steps[-1].detail


@pytest.mark.parametrize("backend", ["local", "modal"])
def test_doctor_checks_modal_offline(backend: str, tmp_path):
    """The Modal backend's own doctor checks (``SelfCheck``), asked as the daemon's
    doctor asks them: Modal is the default backend or not."""
    default = backend == "modal"

    def checks(environ: dict[str, str]) -> list:
        return from_config(Config(), None, environ).doctor(default=default)

    bare = {"HOME": str(tmp_path)}
    [check] = checks(bare)
    if backend == "local":
        assert check.status == "ok" and "no token (optional" in check.detail
        assert "parhelia modal setup --token-id" in check.detail
    else:
        assert check.status == "fail" and "parhelia modal setup --token-id" in check.fix
    token = {**bare, "MODAL_TOKEN_ID": "ak", "MODAL_TOKEN_SECRET": "as"}
    first, secret = checks(token)
    assert first.status == "ok" and "modal 1.6." in first.detail
    # what it looked at: the token's presence, not Modal (never "verified by setup")
    assert "not checked against Modal now" in first.detail and "verified" not in first.detail
    assert secret.status == "warn" and "parhelia auth set" in secret.fix
    _, secret = checks({**token, "ANTHROPIC_API_KEY": "sk-ant-x"})
    assert secret.status == "ok" and "sk-ant-x" not in secret.detail
    assert "outbound policy" in secret.detail
    # an API host reached over http: no outbound policy can carry the key, whatever the
    # named secret holds -- doctor says the key will be in the sandbox, and why
    _, secret = checks({**token, "ANTHROPIC_API_KEY": "sk-ant-x",
                        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    assert secret.status == "warn" and "sk-ant-x" not in secret.detail
    assert "will be in the sandbox's environment" in secret.detail
    assert "not an https URL" in secret.detail and "https" in secret.fix
