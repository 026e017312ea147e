"""Modal is a normal dependency, but nobody pays for importing it until a Modal backend is
used; the image installs the same Claude Code as CI."""

from __future__ import annotations

import subprocess
import sys

from parheliad.backends.modal.image import CLAUDE_CODE_VERSION, WORKER_SOURCES, worker_image
from tests.helpers.paths import REPO


def _imports_modal(code: str) -> bool:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                          "print('modal' in sys.modules)"],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return out.stdout.strip().splitlines()[-1] == "True"


def test_cli_and_daemon_start_do_not_import_modal():
    assert not _imports_modal("import parhelia_cli.main")
    assert not _imports_modal("import parheliad.daemon, parheliad.core.runtime")
    # Building the backend from configuration does not import it either.
    assert not _imports_modal(
        "from parheliad.config import Config\n"
        "from parheliad.backends.modal import from_config\n"
        "b = from_config(Config(), None, {})\n"
        "b.available(); b.worker_paths('s', 'c')")
    assert _imports_modal("from parheliad.backends.modal import load_sdk\nload_sdk()")


def test_the_image_pins_the_ci_claude_code_and_adds_the_worker_last(fake_modal):
    assert (REPO / ".ci" / "claude-version").read_text().strip() == CLAUDE_CODE_VERSION
    image = worker_image(fake_modal.sdk)
    steps = [" ".join(step) for step in image._steps]
    assert any(f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}" in s for s in steps)
    assert any("setup_22.x" in s for s in steps)
    assert image._local == WORKER_SOURCES == ("modal_worker", "parhelia")
    assert image._env["IS_SANDBOX"] == "1"
    # The sources are the last step: anything after them would be refused by Modal.
    import pytest

    with pytest.raises(fake_modal.sdk.exception.InvalidError):
        image.run_commands("echo late")
