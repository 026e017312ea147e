"""`parhelia modal setup` and `parhelia doctor --check-modal` as the real CLI, the REAL modal
SDK underneath, against the stand-in of Modal's service: a token given to setup lands in
Modal's own config file as the SDK reads it; an unreachable or hanging Modal fails in
seconds with a progress line while it waits; doctor says what it checked just now."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers.harness import Harness
from tests.modal_host.host import FAKE_TOKEN
from tests.modal_standin.fixture import StandIn

CLI_LIMIT_S = 45
"""What the CLI gets in these tests: far less than the SDK's minute of retries, or the
hang without end that Modal's SDK has no deadline for."""


def _env(standin: StandIn, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODAL_", "ANTHROPIC_", "PARHELIA_"))}
    env.update(standin.env(), PARHELIA_HOME=str(home), NO_COLOR="1",
               ANTHROPIC_API_KEY="sk-ant-test-setup-0000000000", **extra)
    return env


def _setup(env: dict[str, str], *args: str, stdin: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parhelia_cli", "modal", "setup", *args],
                          env=env, capture_output=True, text=True, timeout=CLI_LIMIT_S,
                          input=stdin)


def test_a_token_given_to_setup_is_verified_and_stored_as_the_sdk_reads_it(
        modal_standin: StandIn, tmp_path: Path) -> None:
    env = _env(modal_standin, tmp_path / "home")
    for key in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        env.pop(key)
    config = Path(env["MODAL_CONFIG_PATH"])
    config.write_text('[other]\ntoken_id = "ak-other"\ntoken_secret = "as-other"\n')
    wrong = _setup(env, "--token-id", "ak-wrong", "--token-secret", "as-wrong")
    assert wrong.returncode == 1 and "Modal refused this token" in wrong.stdout
    assert "ak-wrong" not in config.read_text()

    done = _setup(env, "--token-id", FAKE_TOKEN["MODAL_TOKEN_ID"],
                  stdin=FAKE_TOKEN["MODAL_TOKEN_SECRET"] + "\n")  # asked without echo
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"stored in {config}" in done.stdout and "image" in done.stdout
    assert FAKE_TOKEN["MODAL_TOKEN_SECRET"] not in done.stdout + done.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    read = subprocess.run(
        [sys.executable, "-c", "from modal.config import config; "
         "print(config.get('token_id'), config.get('token_secret'))"],
        env={k: v for k, v in env.items()}, capture_output=True, text=True, timeout=60)
    assert read.stdout.split() == [FAKE_TOKEN["MODAL_TOKEN_ID"], FAKE_TOKEN["MODAL_TOKEN_SECRET"]]
    assert "ak-other" in config.read_text()  # the user's other profile is kept


def test_setup_fails_an_unreachable_modal_in_seconds_with_a_progress_line(
        modal_standin: StandIn, tmp_path: Path) -> None:
    env = _env(modal_standin, tmp_path / "home")
    modal_standin.hang("*")
    hung = _setup(env)
    assert hung.returncode == 1
    assert "asking Modal at" in hung.stderr and "up to 10 s" in hung.stderr
    assert "FAIL reach" in hung.stdout and "did not answer within 10 s" in hung.stdout
    modal_standin.clear()
    modal_standin.refuse()
    refused = _setup(env)  # a fresh client retries a refused port for about a minute
    assert refused.returncode == 1 and "did not answer within 10 s" in refused.stdout


def test_doctor_says_what_it_checked_and_asks_modal_only_when_told(
        harness_factory: Callable[..., Harness], modal_standin: StandIn) -> None:
    h = harness_factory("", 'default_backend = "modal"\n', **modal_standin.env())

    def doctor(*args: str) -> list[dict[str, Any]]:
        # exits 1 anyway: the scripted fake agent has no `--version`
        out = h.run("doctor", "--json", *args, timeout=CLI_LIMIT_S)
        return list(json.loads(out.stdout)["checks"])

    modal_standin.reset_calls()  # what the daemon itself asked at start
    plain = doctor()
    modal_line = next(c for c in plain if c["name"] == "modal")
    assert "not checked against Modal now" in modal_line["detail"]
    assert not [c for c in plain if c["name"].startswith("modal ") and
                c["name"] not in ("modal secret",)]
    asked = set(modal_standin.calls())
    assert not asked & {"VolumeGetOrCreate", "SecretGetOrCreate"}  # doctor asked nothing

    missing = h.run("doctor", "--check-modal")
    assert missing.returncode == 1
    assert "Asking Modal now" in missing.stderr
    assert "modal volume" in missing.stdout and "does not exist yet" in missing.stdout
    assert "parhelia modal setup" in missing.stdout

    setup = h.run("modal", "setup", timeout=CLI_LIMIT_S)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    ok = doctor("--check-modal")
    names = {c["name"]: c for c in ok}
    assert names["modal volume"]["status"] == "ok" and "found" in names["modal volume"]["detail"]
    assert names["modal now"]["status"] == "ok"

    modal_standin.hang("*")
    hung = h.run("doctor", "--check-modal", timeout=CLI_LIMIT_S)
    assert hung.returncode == 1
    assert "did not answer within 10 s" in hung.stdout, hung.stdout
