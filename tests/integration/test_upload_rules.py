"""What a workspace upload sends: credential-looking files are left out with a notice
(tracked ones are sent, with a notice; --include-secret-file sends one), a directory
outside git is uploaded, `/` and the home directory are refused, bad refs are refused."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.gitrepo import git, init_repo
from tests.helpers.harness import Harness, fake_prompt

API_KEY = "sk-ant-api03-PLANTEDSECRETVALUE0123456789"


def bytes_under(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
            and needle in p.read_bytes()]


def test_credential_files_are_left_out_unless_tracked_or_named(harness: Harness,
                                                               tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init_repo(repo, {"app.py": "print(1)\n", "deploy/dev.pem": "-----BEGIN CERT-----\n"})
    (repo / ".env").write_text(f"ANTHROPIC_API_KEY={API_KEY}\n")
    (repo / ".npmrc").write_text("//registry.npmjs.org/:_authToken=npm_PLANTED\n")
    (repo / ".env.example").write_text("ANTHROPIC_API_KEY=\n")
    (repo / "notes.md").write_text("my notes\n")
    prompt = fake_prompt({"write": "out.txt", "content": "ok\n"}, {"turn": True})
    proc = harness.run("task", "create", prompt, "--sync", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout + proc.stderr
    assert "Left out 2 file(s) that look like credentials: .env, .npmrc" in said
    assert "--include-secret-file .env" in said
    assert "Sent 1 file(s) that look like credentials" in said and "deploy/dev.pem" in said
    task_id = harness.json("task", "list")["tasks"][0]["id"]
    ws = harness.workspace(task_id)
    assert not (ws / ".env").exists() and not (ws / ".npmrc").exists()
    assert (ws / "notes.md").exists() and (ws / ".env.example").exists()
    assert (ws / "deploy" / "dev.pem").exists()
    assert bytes_under(harness.home, API_KEY.encode()) == []

    proc = harness.run("task", "create", prompt, "--sync", "--include-secret-file", ".env",
                       cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "Left out 1 file(s) that look like credentials: .npmrc" in proc.stdout + proc.stderr
    second = harness.json("task", "list")["tasks"][0]["id"]
    assert (harness.workspace(second) / ".env").read_text().startswith("ANTHROPIC_API_KEY=")
    assert git(repo, "status", "--porcelain", "--", ".env") == "?? .env"  # repo untouched


def test_a_directory_outside_git_is_uploaded_with_the_same_rules(harness: Harness,
                                                                 tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "src").mkdir(parents=True)
    (plain / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (plain / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    prompt = fake_prompt({"write": "out.txt", "content": "ok\n"}, {"turn": True})
    proc = harness.run("task", "create", prompt, "--sync", cwd=plain)
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout + proc.stderr
    assert f"uploading {plain}" in said and "Left out 1 file(s)" in said and "id_rsa" in said
    task_id = harness.json("task", "list")["tasks"][0]["id"]
    ws = harness.workspace(task_id)
    assert (ws / "src" / "main.c").exists() and not (ws / "id_rsa").exists()


def test_root_and_home_are_refused(harness_factory, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "file.txt").write_text("x")
    harness = harness_factory(HOME=str(home))
    for where in ("/", str(home)):
        proc = harness.run("task", "create", "hi", "--workspace", where, "--no-dispatch")
        assert proc.returncode == 2, (where, proc.stdout, proc.stderr)
        assert "E101" in proc.stderr and "refusing to upload all of it" in proc.stderr
    proc = harness.run("task", "create", "hi", "--no-dispatch", cwd=home)
    assert proc.returncode == 2 and "your home directory" in proc.stderr
    assert harness.json("task", "list")["tasks"] == []


def test_an_option_as_ref_is_refused_at_create(harness: Harness, tmp_path: Path) -> None:
    for ref in ("--orphan=x", "main..evil", "a b"):
        proc = harness.run("task", "create", "hi", "--repo", "file:///nonexistent/repo.git",
                           "--ref", ref, "--no-dispatch")
        assert proc.returncode == 2, (ref, proc.stdout, proc.stderr)
        assert "E101" in proc.stderr and "repo_ref" in proc.stderr
    assert harness.json("task", "list")["tasks"] == []
