"""``daemon start|stop|restart|reload|status|logs|install``: the lifecycle of parheliad.

None of these autostart the daemon (``reload`` needs one running).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from parhelia_cli import params, render
from parhelia_cli.context import json_option, settings
from parhelia_cli.errors import CliError, TaskOutcome

STOP_WAIT = 30.0


@click.group()
def daemon() -> None:
    """Start, stop, inspect and install the parheliad daemon."""


def _paths() -> Any:
    from parhelia_cli.client import Client

    return Client.resolve(settings().socket)


@daemon.command()
@click.option("--foreground", is_flag=True,
              help="Run parheliad in this process (logs to the terminal) instead of detaching.")
@click.option("--wait", "wait_seconds", type=params.WAIT, default=10.0,
              show_default=True, help="Seconds to wait for the daemon to answer.")
def start(foreground: bool, wait_seconds: float) -> None:
    """Start parheliad in the background and wait until it answers."""
    from parhelia_cli import client

    p = _paths()
    version = client.probe(p.socket)
    if version is not None:
        render.line(f"parheliad {version.version or ''} is already running on "
                    f"{client.address(p.socket)}.")
        return
    if foreground:
        sys.stdout.flush()
        sys.stderr.flush()
        argv = [sys.executable, "-m", "parheliad", "--socket", str(p.socket)]
        os.execv(sys.executable, argv)  # noqa: S606 - argv list, no shell
    _spawn(p, wait_seconds)


def _spawn(p: Any, wait_seconds: float) -> None:
    from parhelia_cli import client

    proc = client.spawn_daemon(p)
    version = client.wait_for_daemon(p.socket, proc, timeout=wait_seconds)
    if version is None:
        code = proc.poll()
        detail = (f"it exited with code {code}" if code is not None
                  else f"it did not answer within {wait_seconds:g} s")
        raise CliError("E504", f"parheliad did not start on {client.address(p.socket)}: "
                               f"{detail}.", hint=f"See `parhelia daemon logs` ({p.log_file}).")
    render.line(f"parheliad {version.version} started (pid {proc.pid}) on "
                f"{client.address(p.socket)}.")
    client.check_version(version, p.socket)


@daemon.command()
@click.option("--wait", "wait_seconds", type=params.WAIT, default=STOP_WAIT,
              show_default=True, help="Seconds to wait for the socket to disappear.")
def stop(wait_seconds: float) -> None:
    """Shut parheliad down cleanly (local workers keep running and are re-adopted)."""
    from parhelia_cli import client

    p = _paths()
    if client.probe(p.socket) is None:
        render.line(f"parheliad is not running on {client.address(p.socket)}.")
        return
    _shutdown(p, wait_seconds)


def _shutdown(p: Any, wait_seconds: float) -> None:
    from parhelia_cli import client

    c = client.Client(p, None)
    lost = ""
    try:
        c.api.system.shutdown()
    except CliError as exc:
        # A daemon stopping at once may close the connection while it answers (E504) or
        # cancel the call (E900): whether it stopped is what the wait below sees.
        if exc.code not in ("E504", "E900"):
            raise
        lost = f" (the shutdown call ended with {exc.code}: {exc.message})"
    finally:
        c.close()
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if not p.socket.exists() or client.probe(p.socket) is None:
            render.line("parheliad stopped.")
            return
        time.sleep(0.1)
    raise CliError("E501", f"parheliad is still answering on {client.address(p.socket)} after "
                           f"{wait_seconds:g} s{lost}.", hint="See `parhelia daemon logs`.")


@daemon.command()
@click.option("--wait", "wait_seconds", type=params.WAIT, default=STOP_WAIT,
              show_default=True, help="Seconds to wait for the old daemon to stop and the "
              "new one to answer.")
def restart(wait_seconds: float) -> None:
    """Stop parheliad cleanly and start it again (local workers keep running and are
    re-adopted). Needed for the keys `daemon reload` names as read only at start.

    The new daemon runs outside any service manager: when parheliad is installed as a
    service (`daemon install`), restart it through the manager instead
    (`systemctl --user restart parheliad`, `launchctl kickstart -k gui/UID/LABEL`); this
    command says so when it finds the service file."""
    from parhelia_cli import client

    p = _paths()
    managed = _managed_restart()
    if managed is not None:
        render.warn(f"parheliad is installed as a service ({managed[0]}): this restart "
                    f"starts it outside the service manager; `{managed[1]}` restarts it "
                    "under the manager.")
    if client.probe(p.socket) is not None:
        _shutdown(p, wait_seconds)
    _spawn(p, wait_seconds)


def _managed_restart() -> tuple[Path, str] | None:
    """(the installed service file, the manager's restart command), or None."""
    from parhelia_cli import service_files

    if sys.platform == "darwin":
        plist = service_files.launchd_plist_path()
        return (plist, f"launchctl kickstart -k gui/{os.getuid()}/"
                       f"{service_files.LAUNCHD_LABEL}") if plist.exists() else None
    unit = service_files.systemd_unit_path()
    return (unit, "systemctl --user restart parheliad") if unit.exists() else None


@daemon.command()
@json_option
def reload() -> None:
    """Re-read the configuration file and use it now, without a restart (as SIGHUP does).

    Prints each key that changed; keys the daemon reads only at start (the database
    path, the log level, the Modal app, volume, secret and timeouts) keep their value
    until `parhelia daemon restart`. A bad file changes nothing (E101).
    """
    import json

    from parhelia_cli import client
    from parhelia_cli.convert import to_dict

    p = _paths()
    if client.probe(p.socket) is None:
        render.line(f"parheliad is not running on {client.address(p.socket)}; it reads its "
                    "configuration when it starts.")
        raise TaskOutcome(5)
    obj = settings()
    data = to_dict(obj.api().config.reload())
    if obj.json:
        render.emit_json(data)
        return

    def change(c: dict[str, Any]) -> str:
        before, after = (json.dumps(c[k], ensure_ascii=False) for k in ("before", "after"))
        return render.safe(f"{c['key']}: {before} -> {after}")

    for c in data["applied"]:
        render.line(change(c))
    for c in data["needs_restart"]:
        render.line(change(c) + " (needs `parhelia daemon restart`)")
    if not data["applied"] and not data["needs_restart"]:
        render.line("Configuration re-read: nothing changed.")
    elif data["needs_restart"]:
        render.line(f"Applied {len(data['applied'])} change(s); "
                    f"{len(data['needs_restart'])} take effect after `parhelia daemon restart`.")
    else:
        render.line(f"Applied {len(data['applied'])} change(s); no restart needed.")


@daemon.command("status")
@json_option
def daemon_status() -> None:
    """Whether parheliad runs, with its version, pid and uptime (exit 5 when not)."""
    from parhelia_cli import client
    from parhelia_cli.convert import to_dict

    p = _paths()
    version = client.probe(p.socket)
    data: dict[str, Any] = {"running": version is not None, "socket": str(p.socket),
                            "log_file": str(p.log_file)}
    if version is not None:
        c = client.Client(p, version)
        try:
            resp = c.api.system.status()
        finally:
            c.close()
        st = to_dict(resp)
        data.update(version=version.version or None, api=version.api or None,
                    instance_id=version.instance_id or None, pid=st["pid"] or None,
                    started_at=st["started_at"], uptime_seconds=st["uptime_seconds"])
    if settings().json:
        render.emit_json(data)
    elif version is None:
        render.line(f"parheliad is not running ({client.address(p.socket)}).")
    else:
        from parhelia_cli.durations import human_seconds

        render.line(f"parheliad {data['version']} is running (pid {data['pid']}, up "
                    f"{human_seconds(data['uptime_seconds'] or 0)}) on "
                    f"{client.address(p.socket)}.")
        client.check_version(version, p.socket)
    if version is None:
        raise TaskOutcome(5)


@daemon.command()
@click.option("-n", "--lines", type=params.LINES, default=50, show_default=True,
              help="Lines to show from the end.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they come.")
def logs(lines: int, follow: bool) -> None:
    """Print the daemon's log file (the last N lines)."""
    p = _paths()
    path: Path = p.log_file
    if not path.exists() and not follow:
        raise CliError("E500", f"no daemon log at {path} (has parheliad run with this "
                               "PARHELIA_HOME?)", hint="")
    offset = 0
    if path.exists():
        offset = _print_tail(path, lines)
    if follow:
        _follow(path, offset)


def _print_tail(path: Path, count: int) -> int:
    """Print the last ``count`` lines of ``path``; return the end offset."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        block, data = 64 * 1024, b""
        pos = end
        while pos > 0 and data.count(b"\n") <= count:
            pos = max(0, pos - block)
            f.seek(pos)
            data = f.read(end - pos)
    tail = data.splitlines()[-count:] if count else []
    for raw in tail:
        render.line(raw.decode("utf-8", "replace"))
    return end


def _follow(path: Path, offset: int) -> None:
    """``tail -F``: follow ``path`` across truncation and rotation until Ctrl-C."""
    inode = path.stat().st_ino if path.exists() else None
    try:
        while True:
            if path.exists():
                st = path.stat()
                if st.st_ino != inode or st.st_size < offset:
                    inode, offset = st.st_ino, 0
                if st.st_size > offset:
                    with path.open("rb") as f:
                        f.seek(offset)
                        chunk = f.read()
                    offset += len(chunk)
                    sys.stdout.write(chunk.decode("utf-8", "replace"))
                    sys.stdout.flush()
            time.sleep(0.25)
    except KeyboardInterrupt:
        return


@daemon.command()
@click.option("--manager", type=click.Choice(["systemd", "launchd"]), default=None,
              help="Service manager (default: launchd on macOS, else systemd).")
@click.option("--print", "print_only", is_flag=True,
              help="Print the service file instead of writing it.")
def install(manager: str | None, print_only: bool) -> None:
    """Write a systemd user unit or a launchd agent that runs parheliad."""
    from parhelia_cli import service_files

    manager = manager or ("launchd" if sys.platform == "darwin" else "systemd")
    p = _paths()
    explicit_socket = settings().socket
    if manager == "systemd":
        text = service_files.systemd_unit(p, explicit_socket=explicit_socket)
        target = service_files.systemd_unit_path()
        nxt = "systemctl --user daemon-reload && systemctl --user enable --now parheliad"
    else:
        text = service_files.launchd_plist(p, explicit_socket=explicit_socket)
        target = service_files.launchd_plist_path()
        nxt = f"launchctl bootstrap gui/{os.getuid()} {target}"
    if print_only:
        sys.stdout.write(text)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(target)
    render.line(f"Wrote {target}.")
    render.line(f"Next: {nxt}")
    env_file = service_files.env_file(p)
    render.line(f"Credentials for the agent (ANTHROPIC_API_KEY=...) go in {env_file} "
                "(mode 0600), never in the service file.")
