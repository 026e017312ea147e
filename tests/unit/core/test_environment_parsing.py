"""Resolving a repository's environment: the environment file, real-world devcontainer.json
shapes (comments, trailing commas, string/array/object commands), detection over fixture
repositories of each ecosystem, bad input (file, line and key), the user's limits, and the
hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parhelia.errors import ParheliaError
from parheliad.environments.files import DirTree
from parheliad.environments.model import (
    BASE_DEBIAN_SLIM,
    BASE_DOCKERFILE,
    BASE_REGISTRY,
    Environment,
)
from parheliad.environments.resolve import DEFAULT_PYTHON, Policy, copy_sources, resolve

POLICY = Policy(allow_commands=("pytest", "uv run", "npm test"), claude_version="2.1.332")
TRUSTED = Policy(allow_commands=("pytest", "uv run", "npm test"), claude_version="2.1.332",
                 trusted=True)


def repo(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "repo"
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    root.mkdir(exist_ok=True)
    return root


def env_of(tmp_path: Path, files: dict[str, str], policy: Policy = POLICY,
           gpu: bool = False) -> Environment:
    return resolve(DirTree(repo(tmp_path, files)), policy, gpu=gpu)


def refused(tmp_path: Path, files: dict[str, str], policy: Policy = POLICY) -> ParheliaError:
    with pytest.raises(ParheliaError) as err:
        env_of(tmp_path, files, policy)
    return err.value


# -- .parhelia/environment.toml -------------------------------------------------------------

FULL_TOML = '''
python = "3.12"
apt = ["libpq-dev"]
run = ["pip install poetry"]
env = { PYTHONUNBUFFERED = "1" }
setup = ["uv sync --frozen"]
start = ["uv sync --frozen --offline"]
setup_secrets = ["pypi-token"]
network = "trusted"
allow = ["pypi.example.com"]
cache = ["~/.cache/uv", "~/.npm"]
allow_commands = ["pytest", "uv run pytest"]
setup_timeout_minutes = 45
'''


def test_the_issue_s_file_resolves_part_by_part_with_its_origins(tmp_path: Path) -> None:
    # trusted: the file names a setup secret
    env = env_of(tmp_path, {".parhelia/environment.toml": FULL_TOML, "uv.lock": "lock"},
                 TRUSTED)
    assert env.source == "file" and env.source_file == ".parhelia/environment.toml"
    assert (env.base.kind, env.base.python) == (BASE_DEBIAN_SLIM, "3.12")
    assert env.apt == ("libpq-dev",) and env.run == ("pip install poetry",)
    assert dict(env.env) == {"PYTHONUNBUFFERED": "1"}
    assert [s.run for s in env.setup] == ["uv sync --frozen"]
    assert [s.run for s in env.start] == ["uv sync --frozen --offline"]
    assert env.setup_secrets == ("pypi-token",) and env.network == "trusted"
    assert env.allow == ("pypi.example.com",) and env.cache == ("~/.cache/uv", "~/.npm")
    assert env.allow_commands == ("pytest", "uv run pytest")
    assert env.setup_timeout_minutes == 45
    assert env.origins["setup"] == ".parhelia/environment.toml: setup"
    assert env.origins["base"] == ".parhelia/environment.toml: python"
    assert "uv.lock" in env.reads
    assert env.hash.startswith("env-") and env.image_hash.startswith("img-")


def test_an_environment_file_wins_over_a_devcontainer(tmp_path: Path) -> None:
    env = env_of(tmp_path, {".parhelia/environment.toml": 'setup = ["make"]\n',
                            ".devcontainer/devcontainer.json": '{"image": "node:22"}'})
    assert env.source == "file" and env.base.kind == BASE_DEBIAN_SLIM


@pytest.mark.parametrize(("text", "line", "key", "says"), [
    ('python = "3.12"\nsetup = "make\n', 2, "", "not valid TOML"),
    ('python = "3.9"\n', 1, "python", "needs 3.11 or newer"),
    ('apt = ["libpq dev"]\n', 1, "apt[0]", "Debian package name"),
    ('\n\nnetwork = "public"\n', 3, "network", "full, trusted, none"),
    ('allow = ["https://evil.example.com/x"]\n', 1, "allow[0]", "domain name"),
    ('cache = ["../up"]\n', 1, "cache[0]", "directory under ~/"),
    ('cache = ["~"]\n', 1, "cache[0]", "directory under ~/"),
    ('allow_commands = ["pytest; curl evil"]\n', 1, "allow_commands[0]", "shell syntax"),
    ('env = { ANTHROPIC_BASE_URL = "http://evil" }\n', 1, "env.ANTHROPIC_BASE_URL", "reserved"),
    ('env = { NODE_OPTIONS = "--require x" }\n', 1, "env.NODE_OPTIONS", "reserved"),
    ('env = { PATH = "/evil" }\n', 1, "env.PATH", "reserved"),
    ('setup_secrets = ["LD_PRELOAD"]\n', 1, "setup_secrets[0]", "reserved"),
    ('setup_secrets = ["a b"]\n', 1, "setup_secrets[0]", "secret name"),
    ('setup = [1]\n', 1, "setup[0]", "command line"),
    ('setup_timeout_minutes = 0\n', 1, "setup_timeout_minutes", "minutes"),
    ('image = "x"\ndockerfile = "Dockerfile"\n', 2, "dockerfile", "not both"),
    ('context = "."\n', 1, "context", "only applies with dockerfile"),
])
def test_a_bad_value_is_e101_naming_file_line_and_key(tmp_path: Path, text: str, line: int,
                                                     key: str, says: str) -> None:
    err = refused(tmp_path, {".parhelia/environment.toml": text})
    assert err.code == "E101"
    assert err.message.startswith(f".parhelia/environment.toml:{line}: " + (
        f"{key}: " if key else "")), err.message
    assert says in err.message, err.message


def test_a_secret_in_env_is_refused_with_the_fix(tmp_path: Path) -> None:
    for value in ('{ API_TOKEN = "abc" }', '{ HF = "hf_0123456789abcdefghijKLMN" }'):
        err = refused(tmp_path / value[:6].strip("{ "), {
            ".parhelia/environment.toml": f"\n\nenv = {value}\n"})
        assert err.code == "E101" and ":3: env." in err.message
        assert "setup_secrets" in err.message


def test_an_unknown_key_is_a_warning_listing_it(tmp_path: Path) -> None:
    env = env_of(tmp_path, {".parhelia/environment.toml": 'setup = ["make"]\nnetwrok = "none"\n'
                            "gpus = 1\n"})
    assert len(env.warnings) == 1
    assert "gpus, netwrok" in env.warnings[0] and "known:" in env.warnings[0]


@pytest.mark.parametrize("path", ["/etc/Dockerfile", "../Dockerfile", "a/../../Dockerfile",
                                  "~/Dockerfile"])
def test_a_dockerfile_outside_the_repository_is_refused(tmp_path: Path, path: str) -> None:
    err = refused(tmp_path, {".parhelia/environment.toml": f'dockerfile = "{path}"\n'})
    assert err.code == "E101" and "dockerfile" in err.message
    assert "absolute" in err.message or "leaves the repository" in err.message


def test_a_dockerfile_through_a_symlink_is_not_read(tmp_path: Path) -> None:
    root = repo(tmp_path, {".parhelia/environment.toml": 'dockerfile = "docker/Dockerfile"\n'})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM secret\n")
    (root / "docker").symlink_to(outside)
    with pytest.raises(ParheliaError) as err:
        resolve(DirTree(root), POLICY)
    assert "not a regular file of the repository" in err.value.message


def test_a_project_file_cannot_widen_the_network_or_the_commands(tmp_path: Path) -> None:
    narrow = Policy(network="none", allow_commands=("pytest",), claude_version="x")
    err = refused(tmp_path / "a", {".parhelia/environment.toml": '\nnetwork = "full"\n'},
                  narrow)
    assert err.code == "E401" and ".parhelia/environment.toml:2" in err.message
    assert "environment.network = 'none'" in err.message
    err = refused(tmp_path / "b", {".parhelia/environment.toml":
                                   'allow_commands = ["pytest -x", "curl"]\n'}, narrow)
    assert err.code == "E401" and "'curl'" in err.message
    # narrowing is fine; the user's trust lifts the limit
    assert env_of(tmp_path / "c", {".parhelia/environment.toml": 'network = "none"\n'},
                  Policy(network="trusted")).network == "none"
    trusted = Policy(network="none", allow_commands=(), trusted=True)
    assert env_of(tmp_path / "d", {".parhelia/environment.toml": 'network = "full"\n'},
                  trusted).network == "full"


def test_setup_secrets_need_trust_and_never_name_the_daemons_credentials(
        tmp_path: Path) -> None:
    """A repository's setup gets the values it names (a variable of the daemon's
    environment, a Modal secret of the account): asking is a widening, and the daemon's
    own credentials (the model's, GitHub's, and the Modal secrets holding them) are
    refused even to a trusted project."""
    forbidden = ("ANTHROPIC_API_KEY", "GH_TOKEN", "GITHUB_TOKEN", "anthropic-api-key",
                 "github-token")
    err = refused(tmp_path / "a", {".parhelia/environment.toml":
                                   'setup_secrets = ["PYPI_TOKEN"]\n'},
                  Policy(forbidden_secrets=forbidden))
    assert err.code == "E401" and "setup_secrets" in err.message
    trusted = Policy(trusted=True, forbidden_secrets=forbidden)
    assert env_of(tmp_path / "b", {".parhelia/environment.toml":
                                   'setup_secrets = ["PYPI_TOKEN"]\n'},
                  trusted).setup_secrets == ("PYPI_TOKEN",)
    for i, name in enumerate(("github-token", "GITHUB_TOKEN", "gh-token", "anthropic-api-key")):
        err = refused(tmp_path / f"c{i}", {".parhelia/environment.toml":
                                           f'setup_secrets = ["{name}"]\n'}, trusted)
        # (E101: a reserved variable; E401: one of the daemon's own credentials)
        assert err.code in ("E101", "E401"), name
        assert err.code == "E101" or "daemon's own credentials" in err.message, name


# -- devcontainer.json ----------------------------------------------------------------------

DEVCONTAINERS = {
    "comments and trailing commas": ('''{
  // the image
  "image": "mcr.microsoft.com/devcontainers/python:3.12", /* block */
  "postCreateCommand": "pip install -r requirements.txt",
}''', "registry", ["pip install -r requirements.txt"], []),
    "array command (an argv, no shell)": ('''{
  "image": "node:22-bookworm",
  "postCreateCommand": ["npm", "ci"],
  "postStartCommand": ["npm", "run", "dev-db"],
}''', "registry", ["npm ci"], ["npm run dev-db"]),
    "object command (named steps, in order)": ('''{
  "image": "ubuntu:24.04",
  "postCreateCommand": {
    "deps": "apt-get update",
    "tools": ["pip", "install", "ruff"],
  },
}''', "registry", ["apt-get update", "pip install ruff"], []),
    "lifecycle order": ('''{
  "image": "ubuntu:24.04",
  "postCreateCommand": "three",
  "onCreateCommand": "one",
  "updateContentCommand": "two",
}''', "registry", ["one", "two", "three"], []),
    "build with a Dockerfile beside it": ('''{
  "build": {"dockerfile": "Dockerfile", "context": "..", "args": {"VARIANT": "3.12"}},
}''', "dockerfile", [], []),
    "legacy dockerFile": ('''{"dockerFile": "Dockerfile"}''', "dockerfile", [], []),
}


@pytest.mark.parametrize("name", list(DEVCONTAINERS))
def test_real_world_devcontainer_shapes(tmp_path: Path, name: str) -> None:
    text, base, setup, start = DEVCONTAINERS[name]
    env = env_of(tmp_path, {".devcontainer/devcontainer.json": text,
                            ".devcontainer/Dockerfile": "FROM python:3.12\n"})
    assert env.source == "devcontainer" and env.base.kind == {
        "registry": BASE_REGISTRY, "dockerfile": BASE_DOCKERFILE}[base]
    assert [s.text() for s in env.setup] == setup
    assert [s.text() for s in env.start] == start
    argv = [s for s in env.setup + env.start if s.argv]
    assert all(not s.run for s in argv)  # arrays stay argvs: no shell


def test_devcontainer_build_paths_are_relative_to_its_folder(tmp_path: Path) -> None:
    env = env_of(tmp_path, {
        ".devcontainer/devcontainer.json": '{"build": {"dockerfile": "Dockerfile", '
                                           '"context": "..", "args": {"V": "1"}}}',
        ".devcontainer/Dockerfile": "FROM python:3.12\nCOPY requirements.txt /r\n",
        "requirements.txt": "x\n"})
    assert env.base.dockerfile == ".devcontainer/Dockerfile" and env.base.context == ""
    assert dict(env.base.build_args) == {"V": "1"}
    assert set(env.image_reads) == {".devcontainer/Dockerfile", "requirements.txt",
                                    "--build-arg V"}


def test_devcontainer_env_ignored_keys_and_host_variables(tmp_path: Path) -> None:
    env = env_of(tmp_path, {".devcontainer/devcontainer.json": '''{
  "image": "python:3.12",
  "features": {"ghcr.io/devcontainers/features/node:1": {}},
  "forwardPorts": [3000],
  "initializeCommand": "rm -rf ~",
  "containerEnv": {"A": "1", "B": "x"},
  "remoteEnv": {"B": "2", "HOST_HOME": "${localEnv:HOME}", "C": null},
}'''})
    assert dict(env.env) == {"A": "1", "B": "2"}
    assert {"features", "forwardPorts", "initializeCommand"} <= set(env.ignored)
    text = "\n".join(env.warnings)
    assert "initializeCommand is ignored: runs on the host" in text
    assert "features is ignored" in text and "${localEnv:HOME}" in text
    assert not env.setup  # initializeCommand never runs anywhere


@pytest.mark.parametrize(("text", "line", "says"), [
    ('{\n  "image": "x",\n  "postCreateCommand": "a",,\n}', 3, "not valid JSON"),
    ('{\n  "image": "x",\n  "image": "y"\n}', 0, "Duplicate key"),
    ('{\n  "image": 3\n}', 2, "image: must be a registry image"),
    ('{\n  "build": {"dockerfile": "/etc/passwd"}\n}', 2, "absolute"),
    ('{\n  "build": {"dockerfile": "Dockerfile", "context": "../.."}\n}', 2,
     "leaves the repository"),
    ('{\n  "image": "x",\n  "postCreateCommand": 7\n}', 3, "a string, an array or an object"),
    ('{\n  "image": "x",\n  "containerEnv": {"AWS_SECRET_ACCESS_KEY": "abc"}\n}', 3,
     "setup_secrets"),
])
def test_a_bad_devcontainer_is_e101_naming_file_line_and_key(tmp_path: Path, text: str,
                                                            line: int, says: str) -> None:
    err = refused(tmp_path, {".devcontainer/devcontainer.json": text,
                             ".devcontainer/Dockerfile": "FROM x\n"})
    assert err.code == "E101", err.message
    prefix = ".devcontainer/devcontainer.json" + (f":{line}" if line else "")
    assert err.message.startswith(prefix), err.message
    assert says in err.message, err.message


# -- detection -----------------------------------------------------------------------------

ECOSYSTEMS = {
    "uv": ({"pyproject.toml": '[project]\nname = "x"\nrequires-python = ">=3.12"\n',
            "uv.lock": "version = 1\n"}, ["uv sync --frozen"], ["pip install uv"],
           ["~/.cache/uv"], BASE_DEBIAN_SLIM),
    "poetry": ({"pyproject.toml": "[tool.poetry]\n", "poetry.lock": "x"},
               ["poetry install --no-interaction"], ["pip install poetry"],
               ["~/.cache/pypoetry"], BASE_DEBIAN_SLIM),
    "pip": ({"requirements.txt": "requests\n", "requirements-dev.txt": "pytest\n"},
            ["pip install -r requirements-dev.txt -r requirements.txt"], [],
            ["~/.cache/pip"], BASE_DEBIAN_SLIM),
    "pyproject": ({"pyproject.toml": '[project]\nname = "x"\n'}, ["uv sync"],
                  ["pip install uv"], ["~/.cache/uv"], BASE_DEBIAN_SLIM),
    "npm": ({"package.json": "{}", "package-lock.json": "{}"}, ["npm ci"], [], ["~/.npm"],
            BASE_DEBIAN_SLIM),
    "pnpm": ({"package.json": "{}", "pnpm-lock.yaml": "x"},
             ["corepack enable", "pnpm install --frozen-lockfile"], [],
             ["~/.local/share/pnpm/store"], BASE_DEBIAN_SLIM),
    "yarn berry": ({"package.json": "{}", "yarn.lock": "x", ".yarnrc.yml": "x"},
                   ["corepack enable", "yarn install --immutable"], [],
                   ["~/.cache/yarn", "~/.yarn/berry/cache"], BASE_DEBIAN_SLIM),
    "yarn 1": ({"package.json": "{}", "yarn.lock": "x"},
               ["corepack enable", "yarn install --frozen-lockfile"], [],
               ["~/.cache/yarn", "~/.yarn/berry/cache"], BASE_DEBIAN_SLIM),
    "cargo": ({"Cargo.toml": "[package]\n", "Cargo.lock": "x"}, ["cargo fetch"], [],
              ["/usr/local/cargo/registry"], BASE_REGISTRY),
    "go": ({"go.mod": "module x\n", "go.sum": ""}, ["go mod download"], [], ["/go/pkg/mod"],
           BASE_REGISTRY),
    "bundler": ({"Gemfile": "source x\n", "Gemfile.lock": "x"}, ["bundle install"], [],
                ["/usr/local/bundle/cache"], BASE_REGISTRY),
}


@pytest.mark.parametrize("name", list(ECOSYSTEMS))
def test_detection_over_each_ecosystem(tmp_path: Path, name: str) -> None:
    files, setup, run, cache, base = ECOSYSTEMS[name]
    env = env_of(tmp_path, files)
    assert env.source == "detection"
    assert [s.run for s in env.setup] == setup
    assert list(env.run) == run and list(env.cache) == cache
    assert env.base.kind == base
    assert env.origins["setup"].startswith("detected: ")
    assert set(env.reads) >= {f for f in files if not f.startswith(".yarnrc")}


def test_detection_combines_ecosystems_and_takes_the_toolchain_base(tmp_path: Path) -> None:
    env = env_of(tmp_path, {"uv.lock": "x", "pyproject.toml": "[project]\n",
                            "package-lock.json": "{}", "go.mod": "module x\n"})
    assert [s.run for s in env.setup] == ["uv sync --frozen", "npm ci", "go mod download"]
    assert env.base.image == "golang:1-bookworm" and env.base.python == DEFAULT_PYTHON


def test_python_version_from_the_repository(tmp_path: Path) -> None:
    assert env_of(tmp_path / "a", {".python-version": "3.13.1\n", "uv.lock": "x"}
                  ).base.python == "3.13"
    pinned = '[project]\nrequires-python = ">=3.12,<3.13"\n'
    assert env_of(tmp_path / "b", {"pyproject.toml": pinned}).base.python == "3.12"


def test_nothing_recognised_is_the_default_environment(tmp_path: Path) -> None:
    env = env_of(tmp_path, {"README.md": "hi"})
    assert env.source == "default" and not env.setup and not env.cache
    assert (env.base.kind, env.base.python) == (BASE_DEBIAN_SLIM, DEFAULT_PYTHON)


def test_a_gpu_gets_a_cuda_base_unless_the_environment_chose_one(tmp_path: Path) -> None:
    assert "cuda" in env_of(tmp_path / "a", {"uv.lock": "x"}, gpu=True).base.image
    chosen = env_of(tmp_path / "b", {".parhelia/environment.toml": 'python = "3.12"\n'},
                    gpu=True)
    assert chosen.base.kind == BASE_DEBIAN_SLIM


# -- hashes ----------------------------------------------------------------------------------

def test_a_changed_lockfile_changes_the_environment_hash_not_the_image(tmp_path: Path) -> None:
    one = env_of(tmp_path / "a", {"uv.lock": "version = 1\n"})
    two = env_of(tmp_path / "b", {"uv.lock": "version = 2\n"})
    assert one.image_hash == two.image_hash and one.hash != two.hash


def test_a_dockerfile_s_copied_lockfile_changes_the_image_hash(tmp_path: Path) -> None:
    files = {".parhelia/environment.toml": 'dockerfile = "Dockerfile"\n',
             "Dockerfile": "FROM python:3.12\nCOPY requirements.txt /r\nRUN pip install -r /r\n",
             "requirements.txt": "a==1\n", "README.md": "x"}
    one = env_of(tmp_path / "a", files)
    readme = env_of(tmp_path / "b", {**files, "README.md": "changed"})
    lock = env_of(tmp_path / "c", {**files, "requirements.txt": "a==2\n"})
    assert one.image_hash == readme.image_hash  # COPY does not read README.md
    assert one.image_hash != lock.image_hash


def test_same_inputs_same_hashes_and_a_stored_environment_round_trips(tmp_path: Path) -> None:
    files = {".parhelia/environment.toml": FULL_TOML, "uv.lock": "x"}
    one, two = env_of(tmp_path / "a", files, TRUSTED), env_of(tmp_path / "b", files, TRUSTED)
    assert (one.hash, one.image_hash) == (two.hash, two.image_hash)
    back = Environment.from_dict(json.loads(json.dumps(one.to_dict())))
    assert back == one


@pytest.mark.parametrize(("dockerfile", "sources"), [
    ("FROM x\nCOPY a b /dst/\n", ["a", "b"]),
    ("FROM x\nCOPY --chown=1:1 src/ /app\n", ["src/"]),
    ("FROM x\nCOPY --from=builder /out /app\nADD https://x/y.tgz /y\n", []),
    ('FROM x\nCOPY ["a b", "/dst"]\n', ["a b"]),
    ("FROM x\nCOPY ./pkg \\\n    /app/pkg\n", ["pkg"]),
    ("FROM x\nCOPY . /app\n", ["."]),
])
def test_what_a_dockerfile_copies_from_its_context(dockerfile: str, sources: list[str]) -> None:
    assert copy_sources(dockerfile) == sources
