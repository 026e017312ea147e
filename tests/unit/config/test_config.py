"""Config loading: layering, sources, and E101 for every kind of bad file."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from parhelia.errors import ParheliaError
from parhelia.paths import resolve
from parheliad.config import config_items, db_path, load_config

README_EXAMPLE = """
[modal]
volume_name = "parhelia-data"
cpu_count = 4
memory_mb = 16384
default_timeout_hours = 4

[budget]
default_ceiling_usd = 50.0
warning_threshold_percent = 80

[orchestrator]
db_path = ".parhelia/orchestrator.db"
max_concurrent_workers = 10

[reconciler]
poll_interval_seconds = 60
stale_threshold_seconds = 300
auto_terminate_orphans = false
"""


@pytest.fixture
def paths(tmp_path: Path):
    return resolve(env={"PARHELIA_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)})


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_files(paths) -> None:
    cfg = load_config(paths)
    assert cfg.orchestrator.max_concurrent_workers == 10
    assert cfg.budget.default_ceiling_usd == Decimal("50")
    assert all(src == "default" for _, _, src in config_items(cfg))


def test_original_readme_example_is_accepted_in_user_file(paths) -> None:
    write(paths.config_file, README_EXAMPLE.replace("max_concurrent_workers = 10",
                                                    "max_concurrent_workers = 7"))
    cfg = load_config(paths)
    assert cfg.orchestrator.max_concurrent_workers == 7
    assert cfg.modal.cpu_count == 4.0
    assert cfg.budget.default_ceiling_usd == Decimal("50.0")
    assert cfg.reconciler.auto_terminate_orphans is False
    assert db_path(cfg, paths) == paths.state_dir / ".parhelia" / "orchestrator.db"
    assert cfg.source("orchestrator.max_concurrent_workers") == f"user:{paths.config_file}"


def test_project_file_overrides_per_task_keys(paths, tmp_path: Path) -> None:
    write(paths.config_file, "[modal]\ncpu_count = 2\nmemory_mb = 4096\n")
    project = tmp_path / "proj"
    pfile = write(project / ".parhelia" / "config.toml", "[modal]\ncpu_count = 8\n")
    (project / "src" / "deep").mkdir(parents=True)
    cfg = load_config(paths, project / "src" / "deep")
    assert cfg.modal.cpu_count == 8.0
    assert cfg.modal.memory_mb == 4096
    assert cfg.source("modal.cpu_count") == f"project:{pfile}"
    assert cfg.source("modal.memory_mb") == f"user:{paths.config_file}"


def test_project_file_may_not_set_daemon_wide_keys(paths, tmp_path: Path) -> None:
    pfile = write(tmp_path / "p" / ".parhelia" / "config.toml",
                  "[orchestrator]\nmax_concurrent_workers = 3\n")
    with pytest.raises(ParheliaError) as ei:
        load_config(paths, tmp_path / "p")
    assert ei.value.code == "E101"
    assert "orchestrator.max_concurrent_workers" in ei.value.message
    assert str(pfile) in ei.value.message


@pytest.mark.parametrize("text", ["[notify]\ncommand = ['/tmp/evil']\n",
                                  "[notify]\ndesktop = true\n"])
def test_project_file_may_not_choose_notifications(paths, tmp_path: Path, text: str) -> None:
    """A cloned repository must not pick a program the daemon runs at each task end."""
    write(tmp_path / "p" / ".parhelia" / "config.toml", text)
    with pytest.raises(ParheliaError) as ei:
        load_config(paths, tmp_path / "p")
    assert ei.value.code == "E101" and "notify." in ei.value.message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[budget]\nwarning_threshold_percent = 'lots'\n", "budget.warning_threshold_percent"),
        ("[budget]\nwarning_threshold_percent = 150\n", "budget.warning_threshold_percent"),
        ("[budget]\ndefault_ceiling_usd = -1\n", "budget.default_ceiling_usd"),
        ("[budget]\ndefault_ceiling_usd = nan\n", "budget.default_ceiling_usd"),
        ("[budget]\nperiod = 'week'\n", "budget.period"),
        ("[orchestrator]\nmax_concurrent_workers = 2.5\n", "orchestrator.max_concurrent_workers"),
        ("[orchestrator]\nmax_concurent_workers = 2\n", "orchestrator.max_concurent_workers"),
        ("[reconciler]\nauto_terminate_orphans = 'yes'\n", "reconciler.auto_terminate_orphans"),
        ("[modal]\ncpu_count = true\n", "modal.cpu_count"),
        ("[agent]\ncommand = []\n", "agent.command"),
        ("[agent]\npermission_mode = 'yolo'\n", "agent.permission_mode"),
        ("[rates.gpu]\nV100 = 0.1\n", "rates.gpu.V100"),
        ("[rates.gpu]\nH100 = -0.1\n", "rates.gpu.H100"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ("budget = 3\n", "budget"),
    ],
)
def test_bad_values_name_key_and_file(paths, text: str, key: str) -> None:
    write(paths.config_file, text)
    with pytest.raises(ParheliaError) as ei:
        load_config(paths)
    assert ei.value.code == "E101"
    assert key in ei.value.message
    assert str(paths.config_file) in ei.value.message


def test_malformed_toml_names_file(paths) -> None:
    write(paths.config_file, "[budget\nx=")
    with pytest.raises(ParheliaError) as ei:
        load_config(paths)
    assert ei.value.code == "E101" and str(paths.config_file) in ei.value.message


def test_gpu_rate_override_keeps_other_defaults(paths) -> None:
    write(paths.config_file, "[rates.gpu]\nH100 = '0.002'\n")
    cfg = load_config(paths)
    assert cfg.rates.gpu["H100"] == Decimal("0.002")
    assert cfg.rates.gpu["T4"] == Decimal("0.000164")


def test_agent_command_string_is_one_program(paths) -> None:
    write(paths.config_file, "[agent]\ncommand = '/opt/my claude/bin/claude'\n")
    assert load_config(paths).agent.command == ["/opt/my claude/bin/claude"]


def test_binary_config_is_e101_naming_the_file(paths) -> None:
    paths.config_file.parent.mkdir(parents=True)
    paths.config_file.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00garbage")
    with pytest.raises(ParheliaError) as ei:
        load_config(paths)
    assert ei.value.code == "E101" and str(paths.config_file) in ei.value.message
    assert "UTF-8" in ei.value.message


def test_project_widenings_are_named_narrowings_are_not(paths, tmp_path: Path) -> None:
    from parheliad.config import project_widenings

    write(paths.config_file, "[agent]\npermission_mode = 'acceptEdits'\nmax_turns = 20\n")
    narrow = tmp_path / "narrow"
    write(narrow / ".parhelia" / "config.toml",
          "[agent]\npermission_mode = 'plan'\nmax_turns = 5\n[modal]\ndefault_timeout_hours = 1\n")
    assert project_widenings(load_config(paths), load_config(paths, narrow)) == []
    wide = tmp_path / "wide"
    pfile = write(wide / ".parhelia" / "config.toml",
                  "[agent]\npermission_mode = 'bypassPermissions'\nmax_turns = 1000\n"
                  "[modal]\ncpu_count = 64\n[orchestrator]\ndefault_backend = 'modal'\n")
    found = project_widenings(load_config(paths), load_config(paths, wide))
    assert [(k, mine, theirs) for k, mine, theirs, _ in found] == [
        ("agent.permission_mode", "acceptEdits", "bypassPermissions"),
        ("agent.max_turns", 20, 1000), ("modal.cpu_count", 4.0, 64.0),
        ("orchestrator.default_backend", "local", "modal")]
    assert {f for *_, f in found} == {str(pfile)}


@pytest.mark.requires("root", reason="needs root to give a file to another uid")
def test_config_owned_by_another_user_or_writable_by_others_is_refused(
        paths, tmp_path: Path) -> None:
    write(paths.config_file, "[agent]\ncommand = ['/tmp/planted']\n")
    os.chown(paths.config_file, 12345, 12345)
    with pytest.raises(ParheliaError) as ei:
        load_config(paths)
    assert ei.value.code == "E401" and "uid 12345" in ei.value.message
    os.chown(paths.config_file, 0, 0)
    paths.config_file.parent.chmod(0o777)
    with pytest.raises(ParheliaError) as ei:
        load_config(paths)
    assert ei.value.code == "E401" and "writable by other users" in ei.value.message
    paths.config_file.parent.chmod(0o700)
    pfile = write(tmp_path / "p" / ".parhelia" / "config.toml", "[agent]\nmax_turns = 3\n")
    pfile.chmod(0o666)
    with pytest.raises(ParheliaError) as ei:
        load_config(paths, tmp_path / "p")
    assert ei.value.code == "E401" and str(pfile) in ei.value.message


def test_a_huge_project_config_is_refused_unread(paths, tmp_path: Path) -> None:
    """A repository's .parhelia/config.toml may be a link to any large file the daemon can
    read (a log, a disk image): it was read whole into the daemon's memory."""
    big = tmp_path / "big.log"
    with open(big, "wb") as fh:
        fh.truncate(64 << 20)  # sparse: costs no disk, would cost 64 MiB of memory
    project = tmp_path / "proj"
    (project / ".parhelia").mkdir(parents=True)
    (project / ".parhelia" / "config.toml").symlink_to(big)
    with pytest.raises(ParheliaError) as ei:
        load_config(paths, project)
    assert ei.value.code == "E101" and "too large" in ei.value.message


@pytest.mark.parametrize(("mine", "theirs", "wider"), [
    ("claude-haiku-4-5", "claude-opus-4-5", True),
    ("claude-sonnet-4-5", "claude-opus-4-5", True),
    ("claude-opus-4-5", "claude-sonnet-4-5", False),
    ("claude-sonnet-4-5", "claude-sonnet-4-6", False),
    ("", "claude-opus-4-5", False),  # the agent's default is priced as "default" (opus)
    ("claude-haiku-4-5", "some-unknown-model", True),  # unknown: the default price
])
def test_a_project_file_may_not_raise_the_model_to_a_pricier_one(
        paths, tmp_path: Path, mine: str, theirs: str, wider: bool) -> None:
    from parheliad.config import project_widenings

    write(paths.config_file, f"[agent]\nmodel = '{mine}'\n")
    project = tmp_path / "p"
    write(project / ".parhelia" / "config.toml", f"[agent]\nmodel = '{theirs}'\n")
    found = [(k, a, b) for k, a, b, _ in project_widenings(load_config(paths),
                                                           load_config(paths, project))]
    assert found == ([("agent.model", mine, theirs)] if wider else [])


def test_a_retired_key_is_accepted_with_a_warning(paths, tmp_path: Path) -> None:
    """``checkpoint.min_turn_interval_seconds`` (no longer used) still loads, with a warning
    naming the file and what to do; it is nowhere in the schema; a key never known is
    still refused."""
    write(paths.config_file, "[checkpoint]\nmin_turn_interval_seconds = 30\n"
                             "interval_seconds = 60\n")
    cfg = load_config(paths)
    assert cfg.checkpoint.interval_seconds == 60
    assert cfg.warnings == (f"{paths.config_file}: checkpoint.min_turn_interval_seconds: no "
                            "longer used (every completed turn is checkpointed): remove it",)
    assert "checkpoint.min_turn_interval_seconds" not in {k for k, _, _ in config_items(cfg)}
    assert load_config(resolve(env={"PARHELIA_HOME": str(tmp_path / "other"),
                                    "HOME": str(tmp_path)})).warnings == ()
    write(paths.config_file, "[checkpoint]\nmin_turn_spacing_seconds = 30\n")
    with pytest.raises(ParheliaError, match="unknown key"):
        load_config(paths)
