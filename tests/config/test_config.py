"""Config loading: layering, sources, and E101 for every kind of bad file."""

from __future__ import annotations

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
