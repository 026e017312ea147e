"""The clone sandbox's job (``modal_worker.clone``) and what the daemon does with its pack
(``parheliad.core.mirrors``): a pack is checked, never trusted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from modal_worker.clone import main as clone_main
from parhelia import clonejob, gitremote
from parhelia.clonejob import CloneRequest
from parhelia.errors import ParheliaError
from parheliad.core import mirrors
from tests.helpers.git_server import GitServer


def job(tmp_path: Path, url: str, ref: str | None = None) -> Path:
    out = tmp_path / "job"
    out.mkdir()
    request = out / clonejob.REQUEST
    request.write_bytes(clonejob.dump(CloneRequest(url=url, ref=ref)))
    return request


def test_the_job_fetches_one_commit_and_writes_its_pack_without_the_token(
        git_server: GitServer, tmp_path: Path) -> None:
    head = git_server.create("o", "r", {"a.txt": "a\n", "sub/b.bin": b"\0\1"})
    git_server.commit_on("o", "r", "main", {"a.txt": "a2\n"})
    newer = git_server.ref("o", "r", "refs/heads/main")
    request = job(tmp_path, git_server.url("o", "r"))
    assert clone_main(request, {"GITHUB_TOKEN": git_server.token}) == 0
    result = clonejob.load_result((request.parent / clonejob.RESULT).read_bytes())
    assert result.ok and result.commit == newer and result.branch == "main"
    for name in (clonejob.RESULT, clonejob.PACK):
        assert git_server.token.encode() not in (request.parent / name).read_bytes()

    ours = mirrors.Mirrors(tmp_path / "mirrors")
    remote = gitremote.parse(git_server.url("o", "r"))
    with ours.locked(remote) as mirror:
        mirrors.add_pack(mirror, request.parent / clonejob.PACK, result.commit)
        assert mirrors.has_commit(mirror, newer) and not mirrors.has_commit(mirror, head)
        work = tmp_path / "work"
        mirrors.checkout(mirror, newer, "main", work)
    assert (work / "a.txt").read_text() == "a2\n" and (work / "sub/b.bin").read_bytes() == b"\0\1"
    branch = subprocess.run(["git", "-C", str(work), "symbolic-ref", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert branch == "refs/heads/main"


@pytest.mark.parametrize("env,ref,kind", [
    ({}, None, "auth"),
    ({"GITHUB_TOKEN": "ghp_wrong"}, None, "auth"),
    ("token", "no-such-branch", "ref"),
])
def test_a_failed_job_says_why(git_server: GitServer, tmp_path: Path, env: object,
                               ref: str | None, kind: str) -> None:
    git_server.create("o", "r", {"a.txt": "a\n"})
    environ = {"GITHUB_TOKEN": git_server.token} if env == "token" else dict(env)  # type: ignore[call-overload]
    request = job(tmp_path, git_server.url("o", "r"), ref)
    assert clone_main(request, environ) == 1
    raw = (request.parent / clonejob.RESULT).read_bytes()
    result = clonejob.load_result(raw)
    assert not result.ok and result.error_kind == kind
    assert not (request.parent / clonejob.PACK).exists()
    assert git_server.token.encode() not in raw and b"ghp_wrong" not in raw


def test_a_bad_request_is_a_result_not_a_crash(tmp_path: Path) -> None:
    request = tmp_path / clonejob.REQUEST
    request.write_text(json.dumps({"url": 3}))
    assert clone_main(request, {}) == 1
    result = clonejob.load_result((tmp_path / clonejob.RESULT).read_bytes())
    assert result.error_kind == "other" and "unreadable request" in result.error


def test_a_pack_is_refused_when_git_refuses_it_or_it_lacks_the_commit(
        git_server: GitServer, tmp_path: Path) -> None:
    head = git_server.create("o", "r", {"a.txt": "a\n"})
    ours = mirrors.Mirrors(tmp_path / "mirrors")
    remote = gitremote.parse(git_server.url("o", "r"))
    garbage = tmp_path / "garbage.pack"
    garbage.write_bytes(b"PACK\0\0\0\2\0\0\0\1not a pack at all")
    other = tmp_path / "other.pack"
    listed = subprocess.run(["git", "-C", str(git_server.repo("o", "r")), "rev-list",
                             "--objects", "--no-walk", head], capture_output=True, check=True)
    blobs = b"".join(line + b"\n" for line in listed.stdout.splitlines()
                     if not line.startswith(head.encode()))
    with open(other, "wb") as fh:  # the tree and blob, not the commit
        subprocess.run(["git", "-C", str(git_server.repo("o", "r")), "pack-objects",
                        "--stdout", "-q"], input=blobs, stdout=fh, check=True)
    with ours.locked(remote) as mirror:
        for pack in (garbage, other):
            with pytest.raises(ParheliaError) as err:
                mirrors.add_pack(mirror, pack, head)
            assert err.value.code == "E600"
        assert not mirrors.has_commit(mirror, head)
        assert not (mirror / "shallow").exists()
