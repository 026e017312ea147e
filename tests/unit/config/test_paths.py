"""Where things are (:mod:`parhelia.paths`): the resolution order, and the socket the
CLI's quick reads resolve without ``pathlib`` (the same file as :func:`resolve`'s)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from parhelia.paths import Paths, resolve, socket_path

ENVS = [
    ({"PARHELIA_HOME": "/h", "HOME": "/u"}, None, "/h/run/parheliad.sock"),
    ({"PARHELIA_HOME": "rel/h", "HOME": "/u"}, None, "{cwd}/rel/h/run/parheliad.sock"),
    ({"PARHELIA_HOME": "~/h", "HOME": "/u"}, None, "{home}/h/run/parheliad.sock"),
    ({"PARHELIA_HOME": "/h", "PARHELIA_SOCKET": "/s/d.sock"}, None, "/s/d.sock"),
    ({"PARHELIA_HOME": "/h", "PARHELIA_SOCKET": "/s/d.sock"}, "x.sock", "{cwd}/x.sock"),
    ({"PARHELIA_SOCKET": "~/d.sock", "HOME": "/u"}, None, "{home}/d.sock"),
    ({"PARHELIA_SOCKET": "", "HOME": "/u", "XDG_RUNTIME_DIR": "/run/user/7"}, None,
     "/run/user/7/parhelia/parheliad.sock"),
    ({"HOME": "/u"}, None, "/u/.local/state/parhelia/run/parheliad.sock"),
    ({"HOME": "/u", "XDG_STATE_HOME": "/st"}, None, "/st/parhelia/run/parheliad.sock"),
    ({"HOME": "/u"}, "~/a/../b.sock", "{home}/a/../b.sock"),
    ({"HOME": "/u"}, "/a//b/./c.sock", "/a/b/c.sock"),
]


@pytest.mark.parametrize(("env", "explicit", "expected"), ENVS)
def test_the_socket_is_found_in_order_and_alike_with_or_without_pathlib(
        env: dict[str, str], explicit: str | None, expected: str) -> None:
    # `~` is this process's home, as Path.expanduser has it, whatever `env` says
    want = Path(expected.format(cwd=os.getcwd(), home=os.path.expanduser("~")))
    assert resolve(explicit, env=env).socket == want
    quick = socket_path(explicit, env=env)
    assert Path(quick) == want  # the same file: pathlib only tidies `//` and `/./`
    assert os.path.isabs(quick)


def test_paths_compare_by_value() -> None:
    env = {"PARHELIA_HOME": "/h"}
    assert resolve(env=env) == resolve(env=env)
    assert resolve(env=env) != resolve(env={"PARHELIA_HOME": "/g"})
    p = resolve(env=env)
    assert isinstance(p, Paths) and p.database == Path("/h/state/parheliad.db")
    assert (p.home, p.config_file, p.data_dir) == (Path("/h"), Path("/h/config.toml"),
                                                   Path("/h/data"))
    assert len({p, resolve(env=env)}) == 1


@pytest.mark.parametrize(("env", "explicit"), [
    ({"PARHELIA_HOME": "~no-such-user-here/h"}, None),
    ({"PARHELIA_SOCKET": "~no-such-user-here/d.sock"}, None),
    ({}, "~no-such-user-here/d.sock"),
])
def test_a_home_that_cannot_be_found_is_an_error_not_a_directory_here(
        env: dict[str, str], explicit: str | None) -> None:
    for resolver in (resolve, socket_path):
        with pytest.raises(RuntimeError, match="home directory"):
            resolver(explicit, env={"HOME": "/u", **env})
