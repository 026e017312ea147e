"""Take a conversation home, and send one away (ADR 0021).

``session pull``: the workspace of a session's checkpoint becomes a new directory on
this machine and its Claude conversation is installed into the user's own Claude
config dir, where ``cd DIR && claude --resume UUID`` finds it (Claude Code 2.1.332
looks first in ``projects/<encoded cwd>/``). ``task create --from-session``: a local
conversation is captured into checkpoint zero of a new task, whose first worker
resumes it.

Both directions treat what they read as hostile: a manifest came from a worker that
ran an agent (its paths, its ``.git`` metadata), and a user's config dir may hold
anything. Nothing existing is ever overwritten: not the directory, not a
conversation file of the user's.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from parhelia import gitsafe
from parhelia.checkpoint.baserepo import AGENT_IDENTITY, make_repo, wants_repo
from parhelia.checkpoint.cas import BlobError, BlobStore
from parhelia.checkpoint.manifest import BlobRef, Entry, Manifest
from parhelia.checkpoint.projects import Conversation, encode_project_dir, project_dir
from parhelia.checkpoint.restore import restore as restore_tree
from parhelia.errors import ParheliaError, invalid
from parhelia.progress import Report
from parhelia.volume import Volume

CONVERSATION_FILE_MODE = 0o600
CONVERSATION_DIR_MODE = 0o700

HOME_STORES = ("@file-history", "@session-env")
"""Side stores of a conversation installed into the user's config dir. ``@tasks`` (the
output of background commands, under the worker's ``CLAUDE_CODE_TMPDIR``) is left out:
those commands died with the worker, and a local CLI keeps such files in the system
temp directory."""

GIT_KEPT = ("HEAD", "ORIG_HEAD", "packed-refs", "shallow", "index")
GIT_KEPT_TREES = ("refs", "objects", "logs")
GIT_DROPPED_ALWAYS = ("objects/info/alternates", "objects/info/http-alternates")
"""What of a checkpoint's ``.git`` directory reaches the user's disk: the repository's
data (objects, refs, index, reflogs). Its config, hooks, info/ and anything else are
left out and a fresh config is written: a worker's ``.git/config`` could name a
``core.fsmonitor``, pager or filter command that git would run in the user's shell."""

FRESH_GIT_CONFIG = ("[core]\n\trepositoryformatversion = {version}\n\tfilemode = true\n"
                    "\tbare = false\n\tlogallrefupdates = true\n")
_SHA256_FORMAT = re.compile(r"(?im)^\s*objectformat\s*=\s*sha256\s*$")


def check_uuid(value: str, what: str = "session") -> str:
    """A Claude Code session id: a lowercase UUID (E101 otherwise)."""
    try:
        parsed = uuidlib.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise invalid(f"{what}: {value!r} is not a Claude Code session id (a UUID such as "
                      "0b5c6d2e-...)", field=what) from None
    if str(parsed) != value.strip().lower():
        raise invalid(f"{what}: {value!r} is not a Claude Code session id", field=what)
    return str(parsed)


def claude_config_dir(value: str) -> Path:
    path = Path(value)
    if not value or not path.is_absolute():
        raise invalid(f"claude_config_dir: must be an absolute path, got {value!r}",
                      field="claude_config_dir")
    return path


# -- session pull ----------------------------------------------------------------------------


@dataclass
class HomeCopy:
    """What ``session pull`` wrote."""

    directory: Path
    agent_session_id: str
    transcript: Path
    files: int = 0
    bytes: int = 0
    conversation_files: int = 0
    git: str = ""  # how the directory's repository was made ("" = none)
    left_out: list[str] = field(default_factory=list)  # "path: why"


def fresh_directory(value: str) -> Path:
    """The destination of a pull: absolute, and absent or an empty directory (E103 when
    it holds anything: a pull never mixes with existing files)."""
    path = Path(value)
    if not value or not path.is_absolute():
        raise invalid(f"directory: must be an absolute path, got {value!r}", field="directory")
    path = Path(os.path.normpath(path))
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ParheliaError("E103", f"{path} exists and is not a directory; pull into a new "
                                    "directory")
    if path.is_dir() and any(os.scandir(path)):
        raise ParheliaError("E103", f"{path} is not empty; pull into a new directory (a pull "
                                    "never writes among existing files)")
    return path


def conversation_entries(manifest: Manifest, session_uuid: str) -> dict[str, BlobRef]:
    """The manifest's files of conversation ``session_uuid`` that belong in a home config:
    its transcript, its ``<uuid>/`` directory and the side stores of :data:`HOME_STORES`."""
    mine: dict[str, BlobRef] = {}
    for path, ref in manifest.conversation.items():
        head = path.partition("/")[0]
        if path == f"{session_uuid}.jsonl" or head == session_uuid or (
                head in HOME_STORES and "/" in path):
            mine[path] = ref
    return mine


def check_conversation_free(config_dir: Path, directory: Path, session_uuid: str) -> Path:
    """The project dir the conversation goes into; E103 when its transcript (or its
    ``<uuid>/`` directory) is already there."""
    target = project_dir(config_dir, directory)
    for name in (f"{session_uuid}.jsonl", session_uuid):
        if os.path.lexists(target / name):
            raise ParheliaError(
                "E103", f"a conversation {session_uuid} is already in {target} ({name}); it "
                        "is never overwritten. Pull into another directory, or move that "
                        "file away yourself")
    return target


def sanitize_git(manifest: Manifest) -> tuple[Manifest, list[str], list[str]]:
    """(the manifest without the ``.git`` metadata a user's git could execute, what was
    left out as "path: why", the ``.git`` directories kept). See :data:`GIT_KEPT`."""
    tree: dict[str, Entry] = {}
    left_out: list[str] = []
    git_dirs: set[str] = set()
    for path, entry in manifest.tree.items():
        parts = path.split("/")
        at = next((i for i, p in enumerate(parts) if p.lower() == ".git"), None)
        if at is None:
            tree[path] = entry
            continue
        top = "/".join(parts[: at + 1])
        inner = "/".join(parts[at + 1:])
        if not inner:
            if entry.type == "dir":
                tree[path] = entry
                git_dirs.add(top)
            else:
                left_out.append(f"{path}: a .git {entry.type} (it would point git elsewhere)")
            continue
        if ".git" in (p.lower() for p in parts[at + 1:]):
            left_out.append(f"{path}: nested inside another .git directory")
            continue
        if entry.type == "symlink":
            left_out.append(f"{path}: a symlink inside .git")
            continue
        head = inner.split("/")[0]
        if (inner in GIT_KEPT or head in GIT_KEPT_TREES) and inner not in GIT_DROPPED_ALWAYS:
            tree[path] = entry
        elif inner == "config":
            left_out.append(f"{path}: may name commands git runs (a fresh config is written)")
        elif entry.type != "dir":
            left_out.append(f"{path}: git metadata not needed to use the repository")
    return replace(manifest, tree=tree), sorted(left_out), sorted(git_dirs)


def _fresh_git_config(directory: Path, git_dir: str, original: Entry | None,
                      store: BlobStore) -> None:
    text = ""
    if original is not None and original.type == "file" and original.blob and \
            original.size <= 1 << 20:
        with contextlib.suppress(BlobError, OSError):
            text = store.read(original.blob, original.size).decode("utf-8", "replace")
    sha256 = bool(_SHA256_FORMAT.search(text))
    config = FRESH_GIT_CONFIG.format(version=1 if sha256 else 0)
    if sha256:
        config += "[extensions]\n\tobjectformat = sha256\n"
    fd = os.open(directory / git_dir / "config",
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write(config)


def _forget_agent_identity(directory: Path) -> None:
    """The repository made from the base pack carries the worker's commit identity in its
    config; the user's own commits must not be signed with it."""
    for key in AGENT_IDENTITY:
        gitsafe.run(["-C", str(directory), "config", "--unset-all", key])


def pull_home(volume: Volume, manifest: Manifest, *, directory: Path, config_dir: Path,
              session_uuid: str, zero: Manifest | None,
              progress: Report | None = None) -> HomeCopy:
    """Write ``manifest``'s workspace into the new ``directory`` and install its
    conversation ``session_uuid`` into ``config_dir``. ``zero`` (checkpoint zero of the
    session) supplies the base pack when the checkpoint holds no ``.git`` of its own.

    Every check comes before the first write; a failure after it removes what this call
    created (the directory was new or empty). ``progress`` hears the bytes of the
    workspace written."""
    conversation = conversation_entries(manifest, session_uuid)
    if f"{session_uuid}.jsonl" not in conversation:
        raise ParheliaError("E202", f"checkpoint {manifest.id} holds no conversation yet (the "
                                    "agent had not finished a turn); choose a later checkpoint "
                                    "with --checkpoint, or bring the files back with `parhelia "
                                    "task pull`")
    target = check_conversation_free(config_dir, directory, session_uuid)
    store = BlobStore(volume)
    cleaned, left_out, git_dirs = sanitize_git(manifest)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    try:
        stats = restore_tree(replace(cleaned, conversation={}), directory, volume=volume,
                             progress=progress)
        for git_dir in git_dirs:
            _fresh_git_config(directory, git_dir, manifest.tree.get(f"{git_dir}/config"),
                              store)
        git = "the repository of the checkpoint (data only: fresh config, no hooks)" \
            if ".git" in git_dirs else ""
        base = manifest.git if manifest.git else None
        if not git and zero is not None and zero.git and base is not None:
            base = {**base, "base_pack": zero.git.get("base_pack")}
        if not git and base is not None and wants_repo(cleaned.tree, base):
            why = make_repo(directory, base, store)
            if why is None:
                _forget_agent_identity(directory)
                git = "a repository at the base commit, the changes uncommitted"
            else:
                left_out.append(f".git: no repository could be made ({why})")
        written = install_conversation(store, conversation, target, config_dir, session_uuid)
    except BaseException:
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            for child in list(os.scandir(directory)):
                if child.is_dir(follow_symlinks=False):
                    shutil.rmtree(child.path, ignore_errors=True)
                else:
                    os.unlink(child.path)
        raise
    return HomeCopy(directory=directory, agent_session_id=session_uuid,
                    transcript=target / f"{session_uuid}.jsonl", files=stats.files,
                    bytes=stats.bytes, conversation_files=written, git=git,
                    left_out=left_out)


def install_conversation(store: BlobStore, entries: dict[str, BlobRef], target: Path,
                         config_dir: Path, session_uuid: str) -> int:
    """Write the conversation files; never replaces a file. The transcript comes last
    (linked into place, so it appears whole), the ``<uuid>/`` directory is new, and a
    side store's file that already exists is kept as it is (Claude Code names them by
    content and version). Returns the number of files written."""
    target.mkdir(parents=True, exist_ok=True, mode=CONVERSATION_DIR_MODE)
    side = {"@file-history": config_dir / "file-history" / session_uuid,
            "@session-env": config_dir / "session-env" / session_uuid}
    written = 0
    transcript = f"{session_uuid}.jsonl"
    own_dir = target / session_uuid
    for path, ref in sorted(entries.items()):
        if path == transcript:
            continue
        head, _, rest = path.partition("/")
        if head == session_uuid:
            if not own_dir.exists():
                own_dir.mkdir(mode=CONVERSATION_DIR_MODE)
            if _write_new(store, ref, own_dir, rest):
                written += 1
        elif head in side:
            root = side[head]
            root.mkdir(parents=True, exist_ok=True, mode=CONVERSATION_DIR_MODE)
            if not root.is_symlink() and _write_new(store, ref, root, rest):
                written += 1
    tmp = target / f".{transcript}.parhelia-{secrets.token_hex(6)}"
    ref = entries[transcript]
    _write_file(store, ref, tmp)
    try:
        os.link(tmp, target / transcript)
    except FileExistsError:
        raise ParheliaError("E103", f"a conversation {session_uuid} appeared in {target} "
                                    "meanwhile; it was not overwritten") from None
    finally:
        os.unlink(tmp)
    return written + 1


def _write_new(store: BlobStore, ref: BlobRef, root: Path, rel: str) -> bool:
    """Write ``root/rel`` unless it exists; never through a symlink. False when kept."""
    parent = root
    for part in rel.split("/")[:-1]:
        parent = parent / part
        if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
            return False
        if not parent.exists():
            parent.mkdir(mode=CONVERSATION_DIR_MODE)
    try:
        _write_file(store, ref, parent / rel.rsplit("/", 1)[-1])
    except FileExistsError:
        return False
    return True


def _write_file(store: BlobStore, ref: BlobRef, path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                 CONVERSATION_FILE_MODE)
    try:
        for chunk in ref.chunks:  # a transcript may be stored in chunks (ADR 0003)
            store.copy_to_fd(chunk.blob, chunk.size, fd)
    except BlobError as exc:
        os.close(fd)
        os.unlink(path)
        raise ParheliaError("E600", f"conversation file {path.name}: {exc}") from None
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


# -- a local conversation, sent away ---------------------------------------------------------


def find_local_conversation(config_dir: Path, session_uuid: str,
                            near: tuple[Path, ...]) -> Conversation:
    """The local conversation ``session_uuid`` in ``config_dir``: in the project dir of
    one of ``near`` (the user's cwd, the workspace root) first, as Claude Code looks for
    it, else wherever one project dir holds it. E202 when there is none, E104 when
    several project dirs hold it and none of ``near`` decides."""
    projects = config_dir / "projects"
    name = f"{session_uuid}.jsonl"
    for where in near:
        candidate = projects / encode_project_dir(os.path.realpath(where))
        if _regular(candidate / name):
            return Conversation(candidate, session_uuid, config_dir)
    found = [Path(entry.path) for entry in _scandir(projects)
             if entry.is_dir(follow_symlinks=False) and _regular(Path(entry.path) / name)]
    if not found:
        raise ParheliaError("E202", f"no Claude Code conversation {session_uuid} in "
                                    f"{projects} (list yours with `claude --resume`)")
    if len(found) > 1:
        raise ParheliaError("E104", f"conversation {session_uuid} is in several project "
                                    f"directories of {projects}: "
                                    f"{', '.join(p.name for p in found[:5])}; run the command "
                                    "from the directory the conversation belongs to")
    return Conversation(found[0], session_uuid, config_dir)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _scandir(path: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            yield from it
    except OSError:
        return
