"""The daemon's credentials file: loaded at start, private or refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from parhelia import envfile
from parhelia.errors import ParheliaError


def test_loads_missing_names_only(tmp_path: Path) -> None:
    f = tmp_path / "parheliad.env"
    f.write_text("# credentials\nexport ANTHROPIC_API_KEY='sk-ant-test'\nKEEP=new\n\n"
                 'QUOTED="a b"\n')
    f.chmod(0o600)
    env = {"KEEP": "old"}
    assert envfile.load(f, env) == ["ANTHROPIC_API_KEY", "QUOTED"]
    assert env == {"KEEP": "old", "ANTHROPIC_API_KEY": "sk-ant-test", "QUOTED": "a b",
                   envfile.LOADED_MARK: "ANTHROPIC_API_KEY,QUOTED"}
    # what the daemon had itself, told apart from what the file gave
    assert envfile.own_environ(env) == {"KEEP": "old"}


def test_effective_rereads_the_file_and_the_own_environment_wins(tmp_path: Path) -> None:
    f = tmp_path / "parheliad.env"
    env = {"CLAUDE_CODE_OAUTH_TOKEN": "own", "ANTHROPIC_API_KEY": ""}
    assert envfile.credential(f, env) == envfile.Source("CLAUDE_CODE_OAUTH_TOKEN",
                                                        envfile.ENVIRONMENT)
    envfile.set_credential(f, "ANTHROPIC_API_KEY", "from-file")
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert envfile.effective(f, env)["ANTHROPIC_API_KEY"] == "from-file"  # empty = unset
    assert envfile.credential(f, env) == envfile.Source("ANTHROPIC_API_KEY", envfile.ENV_FILE)
    envfile.set_credential(f, "CLAUDE_CODE_OAUTH_TOKEN", "second")  # replaces the first
    assert "ANTHROPIC_API_KEY" not in envfile.read(f)
    assert envfile.clear_credentials(f) and envfile.read(f) == {}
    assert not envfile.clear_credentials(f)
    with pytest.raises(ParheliaError) as ei:
        envfile.set_credential(f, "ANTHROPIC_API_KEY", "two\nlines")
    assert ei.value.code == "E101"


def test_world_readable_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "parheliad.env"
    f.write_text("ANTHROPIC_API_KEY=x\n")
    f.chmod(0o644)
    with pytest.raises(ParheliaError) as ei:
        envfile.load(f, {})
    assert ei.value.code == "E401" and "chmod 600" in ei.value.message


def test_malformed_line_names_it(tmp_path: Path) -> None:
    f = tmp_path / "parheliad.env"
    f.write_text("GOOD=1\nthis is not an assignment\n")
    f.chmod(0o600)
    with pytest.raises(ParheliaError) as ei:
        envfile.load(f, {})
    assert ei.value.code == "E101" and ":2:" in ei.value.message


def test_missing_file_is_fine(tmp_path: Path) -> None:
    assert envfile.load(tmp_path / "nope.env", {}) == []
