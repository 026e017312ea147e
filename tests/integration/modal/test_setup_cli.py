"""`parhelia modal setup` as the real CLI process against the fake Modal (the in-process
steps are unit tests: tests/unit/modal/test_setup.py)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_parhelia_modal_setup_cli_runs_twice_with_the_same_outcome(fake_modal, tmp_path):
    """The real CLI as a subprocess; its child imports the fake as `modal` (PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "ANTHROPIC_"))}
    env.update(fake_modal.env(), PARHELIA_HOME=str(tmp_path / "home"), NO_COLOR="1",
               ANTHROPIC_API_KEY="sk-ant-test-cli-setup-0000000000")
    fake_modal.create_secret("anthropic-api-key", {"CLAUDE_CODE_OAUTH_TOKEN": "x"})
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "parhelia_cli", "modal", "setup"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs.append(proc.stdout)
    assert "app     'parhelia' created" in runs[0]
    assert "app     'parhelia' found" in runs[1]
    assert "'anthropic-api-key' holds CLAUDE_CODE_OAUTH_TOKEN" in runs[1]
    assert "worker image ready" in runs[1] and "sk-ant" not in runs[0] + runs[1]
    assert len(fake_modal.sdk.built_images()) == 1
