"""Modal is a normal dependency, but nobody pays for importing it until a Modal backend is
used; the image installs the same Claude Code as CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from parheliad.backends.modal.image import CLAUDE_CODE_VERSION, WORKER_SOURCES, worker_image
from tests.helpers.paths import REPO


def _imports_modal(code: str, root: Path = REPO) -> bool:
    """Whether running ``code`` imports the Modal SDK (against the tree at ``root``)."""
    env = dict(os.environ)
    if root != REPO:
        env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "proto")])
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                          "print('modal' in sys.modules)"],
                         capture_output=True, text=True, check=True, cwd=root, env=env)
    return out.stdout.strip().splitlines()[-1] == "True"


EVERY_COMMAND = ("from parhelia_cli.main import COMMANDS, load_command\n"
                 "loaded = [load_command(name) for name in COMMANDS]\n"
                 "import parhelia_cli.mcp_server, parhelia_cli.flows.submit\n")
"""The CLI with every command module loaded (they load lazily, one per command run)."""
DAEMON_START = (
    "import tempfile\nfrom pathlib import Path\n"
    "import parheliad.daemon, parheliad.wiring, parheliad.core.runtime\n"
    "from parhelia.paths import Paths\n"
    "from parheliad.backends import registry\n"
    "from parheliad.config import Config\n"
    "d = Path(tempfile.mkdtemp())\n"
    "p = Paths(home=d, config_file=d / 'c.toml', state_dir=d, data_dir=d, socket=d / 's')\n"
    "built = registry.build_backends(Config(), p, {'HOME': str(d)}, 'owner')\n"
    "built.states(); built.doctor('local'); registry.terms('modal')\n")
"""The daemon's modules, its backends built from configuration, asked their state, their
doctor checks and their terms (what a start and ``parhelia status``/``doctor`` do)."""


def test_cli_and_daemon_start_do_not_import_modal():
    assert not _imports_modal("import parhelia_cli.main")
    assert not _imports_modal(EVERY_COMMAND)
    assert not _imports_modal(DAEMON_START)
    # Building the backend from configuration does not import it either.
    assert not _imports_modal(
        "from parheliad.config import Config\n"
        "from parheliad.backends.modal import from_config\n"
        "b = from_config(Config(), None, {})\n"
        "b.available(); b.worker_paths('s', 'c')")
    assert _imports_modal("from parheliad.backends.modal import load_sdk\nload_sdk()")


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    for directory in ("parhelia_cli", "parheliad", "modal_worker", "proto/parhelia"):
        shutil.copytree(REPO / directory, tmp_path / directory,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize(("module", "code"), [
    ("parhelia_cli/commands/budget.py", EVERY_COMMAND),
    ("parhelia_cli/flows/follow.py", EVERY_COMMAND),
    ("parheliad/backends/modal/doctor.py", DAEMON_START),
], ids=["lazy-command", "flow", "backend-doctor"])
def test_the_guard_sees_a_planted_modal_import(tree_copy: Path, module: str, code: str) -> None:
    """``import modal`` planted where only a loaded command (or a built backend) reaches
    (the plain ``import parhelia_cli.main`` never sees these modules)."""
    target = tree_copy / module
    target.write_text(target.read_text() + "\nimport modal  # planted\n")
    assert _imports_modal(code, tree_copy)


def test_the_image_pins_the_ci_claude_code_and_adds_the_worker_last(fake_modal):
    assert (REPO / ".ci" / "claude-version").read_text().strip() == CLAUDE_CODE_VERSION
    image = worker_image(fake_modal.sdk)
    steps = [" ".join(step) for step in image._steps]
    assert any(f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}" in s for s in steps)
    assert any("setup_22.x" in s for s in steps)
    assert image._local == WORKER_SOURCES == ("modal_worker", "parhelia")
    assert image._env["IS_SANDBOX"] == "1"
    # The sources are the last step: anything after them would be refused by Modal.
    with pytest.raises(fake_modal.sdk.exception.InvalidError):
        image.run_commands("echo late")
