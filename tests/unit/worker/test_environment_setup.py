"""The worker's side of an environment: steps as argvs or shell lines, output scrubbed,
the failing step's last lines, the timeout, the cache links, the prepared marker, the
spec's environment block and the channel records it sends."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from modal_worker import environment as envsetup
from modal_worker.channel import LocalSpoolChannel, MemoryChannel, last_seq
from parhelia import records
from parhelia.environment import Step, WorkerEnvironment, cache_slug
from parhelia.errors import ParheliaError
from parhelia.spec import WorkerSpec

SECRET = "tok-5ecret-value-9f"


def runner(tmp_path: Path, channel: MemoryChannel, *, secrets: tuple[str, ...] = (),
           seconds: float = 30) -> envsetup.PhaseRunner:
    return envsetup.PhaseRunner(channel, cwd=tmp_path, log_path=tmp_path / "setup.log",
                                scrub=envsetup.Scrubber(list(secrets)),
                                deadline=time.monotonic() + seconds)


def test_steps_run_in_the_workspace_output_scrubbed_and_reported(tmp_path: Path) -> None:
    channel = MemoryChannel()
    env = {"PATH": os.environ["PATH"], "TOKEN": SECRET}
    done = runner(tmp_path, channel, secrets=(SECRET,)).run("setup", [
        Step("setup[1]", run='echo "made with $TOKEN" > out.txt; echo "token=$TOKEN"'),
        Step("setup[2]", argv=("sh", "-c", "echo $0 plain", "argv; no shell here")),
    ], env)
    assert done.steps == 2
    assert (tmp_path / "out.txt").read_text().strip() == f"made with {SECRET}"  # it had it
    log = (tmp_path / "setup.log").read_text()
    assert SECRET not in log and "token=***" in log
    assert "argv; no shell here plain" in log  # an argv's words stay words
    types = [r["type"] for r in channel.records]
    assert types == ["setup_started", "setup_step", "setup_step", "setup_completed"]
    for r in channel.records:
        records.Envelope.from_dict(r).typed()  # the daemon reads each of them


def test_a_failing_step_stops_the_phase_with_its_last_lines(tmp_path: Path) -> None:
    channel = MemoryChannel()
    with pytest.raises(envsetup.SetupFailed) as err:
        runner(tmp_path, channel, secrets=(SECRET,)).run("setup", [
            Step("setup[1]", run=" ; ".join(f"echo line{i}" for i in range(40))
                 + f" ; echo {SECRET} >&2 ; exit 5"),
            Step("setup[2]", run="touch never"),
        ], {"PATH": os.environ["PATH"]})
    assert "exited with 5" in err.value.message and "line39" in err.value.message
    assert "line1\n" not in err.value.message  # only the last lines
    assert SECRET not in err.value.message and "***" in err.value.message
    assert not (tmp_path / "never").exists()
    failed = records.SetupFailed.from_dict(channel.records[-1]["data"])
    assert failed.exit_code == 5 and failed.index == 1 and not failed.timed_out
    assert failed.tail[-1] == "***" and len(failed.tail) <= 20


def test_an_endless_line_and_a_flood_of_output_stay_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step printing a 3 MB line (a secret at both ends) then 20,000 lines: the line is
    cut after scrubbing, the log stops growing at its limit, the failure still has the
    step's real last lines."""
    monkeypatch.setattr(envsetup, "LOG_MAX_BYTES", 60_000)
    with pytest.raises(envsetup.SetupFailed) as err:
        runner(tmp_path, MemoryChannel(), secrets=(SECRET,)).run("setup", [
            Step("setup[1]", run=f"printf {SECRET}; head -c 3000000 /dev/zero | tr '\\0' x; "
                                 f"echo {SECRET}; seq 1 20000; exit 4")],
            {"PATH": os.environ["PATH"]})
    log = (tmp_path / "setup.log").read_text()
    assert SECRET not in log
    first = log.splitlines()[1]
    assert first.startswith("***xxx") and first.endswith(" [line cut]")
    assert len(first) <= envsetup.LINE_KEEP_CHARS + 20
    assert "the setup log is full" in log and len(log) < 60_000 + 500
    assert "\n19999\n20000" in err.value.message  # read to the end, not written


def test_a_step_past_the_setup_timeout_is_killed_with_what_it_started(tmp_path: Path) -> None:
    channel = MemoryChannel()
    started = time.monotonic()
    with pytest.raises(envsetup.SetupFailed) as err:
        runner(tmp_path, channel, seconds=1).run("start", [
            Step("start[1]", run="sleep 60 & echo $! > child.pid; sleep 60")],
            {"PATH": os.environ["PATH"]})
    assert time.monotonic() - started < 30
    assert "ran past the setup timeout" in err.value.message
    child = int((tmp_path / "child.pid").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or \
        Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0] == "Z"


def test_a_missing_program_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(envsetup.SetupFailed) as err:
        runner(tmp_path, MemoryChannel()).run("setup", [
            Step("x", argv=("no-such-program-anywhere",))], {"PATH": "/nonexistent"})
    assert "exited with 127" in err.value.message


def test_commands_never_get_the_agent_s_credential_and_start_no_setup_secret() -> None:
    environment = WorkerEnvironment(hash="env-1", env={"A": "1"}, setup_secrets=("TOKEN",))
    base = {"PATH": "/bin", "ANTHROPIC_API_KEY": "sk-ant-x", "CLAUDE_CODE_OAUTH_TOKEN": "o",
            "ANTHROPIC_BASE_URL": "http://x", "TOKEN": SECRET, "HOME": "/h"}
    setup = envsetup.command_environ(base, environment,
                                     secrets=envsetup.secret_values(base, environment))
    start = envsetup.command_environ(envsetup.without_secrets(base, environment), environment)
    assert setup == {"PATH": "/bin", "HOME": "/h", "A": "1", "TOKEN": SECRET}
    assert start == {"PATH": "/bin", "HOME": "/h", "A": "1"}
    agent_base = envsetup.without_secrets(base, environment)
    assert "TOKEN" not in agent_base and agent_base["ANTHROPIC_API_KEY"] == "sk-ant-x"


def test_a_setup_sandbox_scrubs_every_variable_it_cannot_vouch_for() -> None:
    environment = WorkerEnvironment(hash="env-1", env={"MY_FLAG": "on-purpose-value"})
    values = envsetup.unknown_values({"PATH": "/usr/bin:/bin", "MODAL_TASK_ID": "ta-12345678",
                                      "SOME_SECRET_KEY": "from-a-modal-secret",
                                      "MY_FLAG": "on-purpose-value", "SHORT": "abc"},
                                     environment)
    assert values == ["from-a-modal-secret"]


def test_caches_become_links_into_the_cache_root(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tmp_path / "cache"
    (home / ".npm").mkdir(parents=True)  # an empty directory is replaced
    (home / ".cache" / "keep").mkdir(parents=True)
    (home / ".cache" / "keep" / "f").write_text("from the image")
    environment = WorkerEnvironment(hash="e", cache_root=str(root),
                                    cache_dirs=("~/.cache/uv", "~/.npm", "~/.cache/keep"))
    assert envsetup.link_caches(environment, home) == ["~/.cache/uv", "~/.npm"]
    assert (home / ".cache" / "uv").resolve() == (root / cache_slug("~/.cache/uv")).resolve()
    assert (home / ".cache" / "keep" / "f").read_text() == "from the image"
    assert envsetup.link_caches(environment, home) == ["~/.cache/uv", "~/.npm"]  # idempotent
    assert envsetup.link_caches(WorkerEnvironment(hash="e"), home) == []


def test_the_prepared_marker(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    assert envsetup.read_marker(ws) == {}
    envsetup.write_marker(ws, "env-1", "abc")
    assert envsetup.read_marker(ws) == {"hash": "env-1", "tree": "abc"}
    envsetup.marker_path(ws).write_text("[not an object")
    assert envsetup.read_marker(ws) == {}
    envsetup.clear_marker(ws)
    envsetup.clear_marker(ws)
    link = envsetup.marker_path(ws)
    (tmp_path / "elsewhere.json").write_text(json.dumps({"hash": "env-1", "tree": "abc"}))
    link.symlink_to(tmp_path / "elsewhere.json")
    assert envsetup.read_marker(ws) == {}  # never followed


def test_a_continued_spool_numbers_on(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    first = LocalSpoolChannel(path)
    first.emit("setup_started", {"phase": "setup", "steps": 1})
    first.emit("setup_completed", {"phase": "setup", "steps": 1, "duration_ms": 3})
    first.close()
    with open(path, "ab") as fh:
        fh.write(b'{"seq": 2, "type": "trunc')  # a torn last line
    assert last_seq(path) == 2
    second = LocalSpoolChannel(path)
    assert second.emit("worker_started", {}) == 3


def _spec(environment: dict) -> dict:
    return {"container_id": "c-1", "task_id": "t-1", "session_id": "s-1", "volume_dir": "/v",
            "workspace_dir": "/w", "claude_config_dir": "/c", "prompt": "p",
            "agent": {"session_uuid": "0c8a8a1e-7f7c-4bb1-8b0b-1d1f1e1e1e1e"},
            "environment": environment}


@pytest.mark.parametrize(("environment", "field"), [
    ({"hash": "env-1", "env": {"ANTHROPIC_BASE_URL": "http://evil"}}, "ANTHROPIC_BASE_URL"),
    ({"hash": "env-1", "setup_secrets": ["LD_PRELOAD"]}, "LD_PRELOAD"),
    ({"hash": "env-1", "setup": [{"run": "a", "argv": ["b"]}]}, "environment.setup[0]"),
    ({"hash": "env-1", "setup": [{"run": ""}]}, "environment.setup[0]"),
    ({"hash": "env-1", "cache_dirs": ["relative"]}, "environment.cache_dirs"),
    ({"hash": "env-1", "cache_dirs": ["~/../etc"]}, "environment.cache_dirs"),
    ({"hash": "env 1"}, "environment.hash"),
    ({"hash": "env-1", "setup": [{"run": "x"}] * 65}, "environment.setup"),
])
def test_the_spec_refuses_a_bad_environment_block(environment: dict, field: str) -> None:
    with pytest.raises(ParheliaError) as err:
        WorkerSpec.from_dict(_spec(environment))
    assert err.value.code == "E100" and field in err.value.message


def test_the_spec_s_environment_block_round_trips() -> None:
    spec = WorkerSpec.from_dict(_spec({
        "hash": "env-1", "env": {"A": "1"}, "setup": [{"name": "s", "run": "make"}],
        "start": [{"argv": ["npm", "ci"]}], "setup_secrets": ["TOKEN"],
        "cache_root": "/cache", "cache_dirs": ["~/.npm"]}))
    assert spec.environment is not None
    assert spec.environment.start[0].command() == ["npm", "ci"]
    assert spec.environment.setup[0].command() == ["sh", "-c", "make"]
    assert WorkerSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize("data", [
    {"phase": "build"}, {"phase": "setup", "tail": "not a list"},
    {"phase": "setup", "tail": ["x"] * 51}, {"phase": "setup", "exit_code": "one"},
    {"phase": "setup", "duration_ms": -1},
])
def test_setup_records_from_a_sandbox_are_checked(data: dict) -> None:
    with pytest.raises(records.RecordError):
        records.SetupFailed.from_dict(data)
