"""The repository explains itself: every document that code, tests or docs cite is in
it. A ``docs/...`` or ``tests/...`` path, an ``ADR NNNN`` and a relative Markdown link
must name a file that exists, and nothing may cite the briefing files a newcomer does
not have. Each check is seen failing on a citation planted in a small repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

ROOT = REPO

DOC_PATH = re.compile(r"(?<![\w./-])(?:docs|tests)/[A-Za-z0-9_./-]*[A-Za-z0-9_/-]")
ADR = re.compile(r"\bADRs? ?(\d{4})\b|docs/adr/(\d{4})\b")
MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# Built from parts so that this file does not cite them itself.
FOREIGN = re.compile("|".join((r"DESIGN" + r"\.md", r"reference/(?:daemon|claude-code|modal)"
                               + r"\.md", r"\.\./" + "shared", "/work/" + "shared")))
TEST_DATA = {"docs/new.md", "tests/test_io.py"}
"""Not citations: paths that tests write inside the repositories they make, and the
example prompts of the README and `parhelia examples`."""
TEXT_SUFFIXES = {".py", ".md", ".toml", ".proto", ".sh", ".service", ".plist", ".txt", ""}


def tracked_files(root: Path = ROOT) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    names = [n for n in out.stdout.decode().split("\0") if n]
    files = []
    for name in names:
        path = root / name
        if path.suffix not in TEXT_SUFFIXES or name.startswith("proto/parhelia/v1/") \
                and "_pb2" in name or name == "uv.lock" or not path.is_file():
            continue
        files.append(path)
    return files


def adr_numbers(root: Path = ROOT) -> set[str]:
    return {p.name[:4] for p in (root / "docs" / "adr").glob("[0-9][0-9][0-9][0-9]-*.md")}


def citations(kind: str, root: Path = ROOT) -> list[tuple[str, str]]:
    """``(file:line, cited)`` for every citation of ``kind`` in the tracked text files."""
    found = []
    for path in tracked_files(root):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(root).as_posix()
        for number, line in enumerate(lines, 1):
            where = f"{rel}:{number}"
            if kind == "path":
                found += [(where, m.group(0)) for m in DOC_PATH.finditer(line)]
            elif kind == "adr":
                found += [(where, m.group(1) or m.group(2)) for m in ADR.finditer(line)]
            elif kind == "link" and path.suffix == ".md":
                found += [(where, m.group(1)) for m in MD_LINK.finditer(line)
                          if "://" not in m.group(1) and not m.group(1).startswith("mailto:")]
            elif kind == "foreign":
                found += [(where, m.group(0)) for m in FOREIGN.finditer(line)]
    return found


def test_the_design_and_contracts_pages_exist() -> None:
    for name in ("design.md", "contracts.md"):
        text = (ROOT / "docs" / name).read_text()
        assert len(text.splitlines()) > 50, name
    design = (ROOT / "docs" / "design.md").read_text()
    for heading in ("## Processes", "## Entities and states", "## The backend contract",
                    "## Checkpoints", "## Paths", "errors"):
        assert heading in design, heading


def missing_paths(root: Path = ROOT) -> list[tuple[str, str]]:
    """Cited ``docs/``/``tests/`` paths that do not exist (``docs/adr/0020``, an ADR by
    its number, counts as the ADR of that number)."""
    known = adr_numbers(root)
    return [(where, path) for where, path in citations("path", root)
            if path.rstrip(".") not in TEST_DATA and not (root / path.rstrip(".")).exists()
            and not (re.fullmatch(r"docs/adr/(\d{4})", path) and path[-4:] in known)]


def unknown_adrs(root: Path = ROOT) -> list[tuple[str, str]]:
    known = adr_numbers(root)
    return [(where, n) for where, n in citations("adr", root) if n not in known]


def broken_links(root: Path = ROOT) -> list[tuple[str, str]]:
    return [(where, target) for where, target in citations("link", root)
            if not ((root / where.rsplit(":", 1)[0]).parent / target).exists()]


def test_every_cited_docs_and_tests_path_exists() -> None:
    assert len(citations("path")) > 20  # the scan sees the citations it checks
    assert missing_paths() == []


def test_every_cited_adr_exists() -> None:
    assert len(citations("adr")) > 10
    assert unknown_adrs() == []


def test_every_relative_markdown_link_resolves() -> None:
    assert broken_links() == []


def test_nothing_cites_files_outside_the_repository() -> None:
    assert citations("foreign") == []


# Built from parts, like FOREIGN, so that this file cites none of them itself.
PLANTED = {"path": "docs" + "/gone.md", "adr": "ADR " + "0999",
           "foreign": "/work/" + "shared/notes"}


def test_each_check_sees_a_planted_citation(tmp_path: Path) -> None:
    """A small repository: one ADR, a page citing it three ways, a test citing the page,
    and one bad citation of each kind planted in the page's second line."""
    (tmp_path / "docs" / "adr").mkdir(parents=True)
    (tmp_path / "docs" / "adr" / "0001-first.md").write_text("# 0001 - first\n")
    page = "docs" + "/page.md"  # in parts: the real tree has no such page
    (tmp_path / page).write_text(
        "See ADR 0001, docs/adr/0001 and [the first](adr/0001-first.md).\n"
        f"Planted: {PLANTED['path']}, {PLANTED['adr']}, [gone](adr/gone.md), "
        f"{PLANTED['foreign']}.\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(f"# Reads {page}.\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    line2 = f"{page}:2"
    assert missing_paths(tmp_path) == [(line2, PLANTED["path"])]
    assert unknown_adrs(tmp_path) == [(line2, "0999")]
    assert broken_links(tmp_path) == [(line2, "adr/gone.md")]
    assert citations("foreign", tmp_path) == [(line2, "/work/" + "shared")]


@pytest.mark.parametrize("number", sorted(adr_numbers()))
def test_adr_numbers_are_unique_and_titled(number: str) -> None:
    (adr,) = (ROOT / "docs" / "adr").glob(f"{number}-*.md")
    assert adr.read_text().startswith("# "), adr
