"""Where the GitHub token comes from (never shown), the env file's two kinds of
credential, the [github] configuration, and the pull request's body."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from parhelia import envfile
from parhelia.errors import ParheliaError
from parhelia.paths import Paths
from parheliad.config import load_config
from parheliad.core.forge import credentials
from parheliad.core.prbody import pull_request_body
from parheliad.store.rows import TaskRow
from tests.helpers.fake_gh import fake_gh


def env_file(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "parheliad.env"
    if text:
        path.write_text(text)
        path.chmod(0o600)
    return path


def test_the_order_environment_then_env_file_then_gh(tmp_path: Path) -> None:
    tools = fake_gh(tmp_path / "bin", "ghp_from_gh")
    path = env_file(tmp_path, "GITHUB_TOKEN=ghp_from_file\n")
    base = {"PATH": f"{tools}:/usr/bin:/bin", "HOME": str(tmp_path)}
    got = credentials.find("github.com", path, {**base, "GH_TOKEN": "ghp_from_env"})
    assert got is not None and (got.value, got.name, got.source) == \
        ("ghp_from_env", "GH_TOKEN", "environment")
    got = credentials.find("github.com", path, {**base, "GH_TOKEN": " "})  # empty: absent
    assert got is not None and (got.value, got.source) == ("ghp_from_file", "env file")
    path.unlink()
    got = credentials.find("github.com", path, base)
    assert got is not None and (got.value, got.source) == ("ghp_from_gh", "gh")
    (tools / "gh.token").unlink()  # gh installed, nobody logged in
    assert credentials.find("github.com", path, base) is None
    assert "ghp_" not in repr(got) and "ghp_" not in got.describe(path)


def test_gh_gets_no_token_variable_and_a_world_readable_file_is_refused(
        tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    spy = tools / "gh"
    spy.write_text(f"#!/bin/sh\nenv > {tmp_path}/gh-env\necho ghp_from_gh\n")
    spy.chmod(0o755)
    got = credentials.from_gh("github.com", {"PATH": str(tools), "HOME": str(tmp_path),
                                             "AWS_SECRET_ACCESS_KEY": "aws",
                                             "ANTHROPIC_API_KEY": "sk-ant-x"})
    assert got is not None and got.value == "ghp_from_gh"
    seen = (tmp_path / "gh-env").read_text()
    assert "AWS_SECRET" not in seen and "ANTHROPIC" not in seen and "GH_TOKEN" not in seen
    path = env_file(tmp_path, "GITHUB_TOKEN=ghp_x\n")
    path.chmod(0o644)
    with pytest.raises(ParheliaError) as err:
        credentials.find("github.com", path, {"PATH": "/nonexistent"})
    assert err.value.code == "E401"


def test_each_kind_of_credential_is_replaced_and_cleared_alone(tmp_path: Path) -> None:
    path = env_file(tmp_path)
    envfile.set_credential(path, "ANTHROPIC_API_KEY", "sk-ant-1")
    envfile.set_credential(path, "GITHUB_TOKEN", "ghp_1")
    envfile.set_credential(path, "GITHUB_TOKEN", "ghp_2")
    envfile.set_credential(path, "CLAUDE_CODE_OAUTH_TOKEN", "oauth")
    assert envfile.read(path) == {"GITHUB_TOKEN": "ghp_2", "CLAUDE_CODE_OAUTH_TOKEN": "oauth"}
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert envfile.clear_credentials(path, ("GH_TOKEN", "GITHUB_TOKEN"))
    assert envfile.read(path) == {"CLAUDE_CODE_OAUTH_TOKEN": "oauth"}
    with pytest.raises(ParheliaError):
        envfile.set_credential(path, "AWS_SECRET_ACCESS_KEY", "x")


def _paths(tmp_path: Path) -> Paths:
    return Paths(home=tmp_path, config_file=tmp_path / "config.toml",
                 state_dir=tmp_path / "state", data_dir=tmp_path / "data",
                 socket=tmp_path / "s.sock")


@pytest.mark.parametrize("text,key", [
    ('[github]\napi_url = "http://evil.example/api"\n', "github.api_url"),
    ('[github]\napi_url = "https://u:p@ghe.example/api"\n', "github.api_url"),
    ('[github]\nhosts = ["github.com/evil"]\n', "github.hosts"),
])
def test_github_configuration_is_checked(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ParheliaError) as err:
        load_config(_paths(tmp_path))
    assert err.value.code == "E101" and key in err.value.message


def test_github_configuration_defaults_and_a_project_cannot_set_it(tmp_path: Path) -> None:
    cfg = load_config(_paths(tmp_path))
    assert cfg.github.hosts == ["github.com"] and not cfg.github.draft
    project = tmp_path / "proj" / ".parhelia"
    project.mkdir(parents=True)
    (project / "config.toml").write_text('[github]\nhosts = ["evil.example"]\n')
    with pytest.raises(ParheliaError) as err:
        load_config(_paths(tmp_path), tmp_path / "proj")
    assert "daemon-wide" in err.value.message


@pytest.mark.parametrize("name", ["GITHUB_TOKEN", "GH_TOKEN"])
def test_the_github_token_cannot_be_passed_to_workers(tmp_path: Path, name: str) -> None:
    """``sync.pass_env`` would hand the variable's value to every worker and its agent."""
    paths = _paths(tmp_path)
    paths.config_file.write_text(f'[sync]\npass_env = ["MY_MCP_KEY", "{name}"]\n')
    with pytest.raises(ParheliaError) as err:
        load_config(paths)
    assert err.value.code == "E101" and "sync.pass_env" in err.value.message
    assert f"{name} is the daemon's GitHub token" in err.value.message
    paths.config_file.write_text('[sync]\npass_env = ["MY_MCP_KEY"]\n')
    assert load_config(paths).sync.pass_env == ["MY_MCP_KEY"]


TASK = TaskRow(
    id="t-1", seq=1, prompt="Fix it", gpu="", cpu=1, memory_mb=1, timeout_seconds=1,
    max_turns=1, max_cost_micros=0, model="", permission_mode="acceptEdits",
    interactive=False, backend="local", source_workspace_id="", source_repo_url="",
    source_repo_ref="", status="completed", status_reason="", created_at=0,
    updated_at=0, started_at=1_000_000, finished_at=186_000_000, session_id="s-1",
    container_id=None, turns=4, input_tokens=0, output_tokens=0,
    cache_creation_input_tokens=0, cache_read_input_tokens=0, api_cost_micros=120_000,
    compute_cost_micros=3_456, result_subtype="success", result_is_error=False,
    result_text="All fixed. ```not a fence``` ", result_exit_code=0, result_error_code="",
    result_error_message="", last_tool="", restarts=0, base_commit="", workspace_path="")


def test_the_body_carries_answer_stat_turns_cost_duration_and_how_to_resume() -> None:
    stat = " a.py | 2 +-\n 1 file changed, 1 insertion(+), 1 deletion(-)\n"
    body = pull_request_body(TASK, "cp-9", stat, "uuid-7")
    assert body.startswith("All fixed.") and "a.py | 2 +-" in body
    assert "| Turns | 4 |" in body and "| Duration | 3m05s |" in body
    assert "$0.12 (API $0.12, compute $0.0035)" in body
    assert "`cp-9`" in body and "parhelia resume s-1" in body and "claude --resume uuid-7" in body
    # A fence in the stat (a file name with backticks) cannot close the block early.
    tricky = pull_request_body(TASK, "cp-9", " ```.md | 1 +\n", "")
    assert "````\n ```.md | 1 +\n````" in tricky
    silent = pull_request_body(dataclasses.replace(TASK, result_text=""), "cp", "", "")
    assert silent.startswith("*The agent gave no final answer.*")
