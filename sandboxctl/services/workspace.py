"""The repository on the host side of an agent run.

A private scratch git repository holds the pristine tree (uploaded into the
sandbox as a tar, so the image needs no git) and, after the run, the workspace
downloaded back, so the patch is plain `git diff --binary` against the starting
commit. The user's own repository is only ever read: the starting commit is
fetched from it (upload-pack only reads), and every git command run in it has
optional locks off (no index refresh). Not alternates: writing an object that
already exists in an alternate "freshens" the alternate's file, a write.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import urlsplit, urlunsplit

from sandboxctl import safe_extract
from sandboxctl.errors import OperationFailed, UsageError
from sandboxctl.safe_extract import SkippedFile

# Files sandboxctl itself puts in the workspace: never part of the result.
CONTROL_DIR = ".sandboxctl"
# Where a sandbox that builds the download tar itself (Daytona) lists the files it left out as too large:
# one `SIZE PATH` line each, PATH relative to the workspace. Sandbox-written: used for the report only.
LEFT_OUT_NOTE = "left-out"
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:")
_INTERNAL_IDENTITY = {
    "GIT_AUTHOR_NAME": "sandboxctl",
    "GIT_AUTHOR_EMAIL": "sandboxctl@localhost",
    "GIT_COMMITTER_NAME": "sandboxctl",
    "GIT_COMMITTER_EMAIL": "sandboxctl@localhost",
}
_CHANGE_NAMES = {"A": "added", "M": "modified", "D": "deleted", "T": "type_changed"}
# Returned content decides nothing on the host: no attribute (filter, diff/merge driver, eol, encoding)
# from any .gitattributes applies. info/attributes outranks every .gitattributes in the tree.
_NEUTRAL_ATTRIBUTES = "* !filter !diff !merge !text !eol !ident !working-tree-encoding\n"
# Environment of every git command run on returned content: no system or user config (their filter and
# diff drivers could be named by a returned .gitattributes), no prompt, no transport.
_HARDENED_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PROTOCOL_FROM_USER": "0",
    "GIT_ALLOW_PROTOCOL": "",
}
_QUOTE_ESCAPES = {7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r", 34: '"', 92: "\\"}


class GitFailed(OperationFailed):
    """A git command failed; the message is git's own first line, credentials stripped."""


def is_url(repo: str) -> bool:
    return "://" in repo or bool(_SCP_LIKE.match(repo))


def safe_url(url: str) -> str:
    """The URL without its user info (`https://TOKEN@host/...` -> `https://***@host/...`): safe to record."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
    return url


def _git(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    hide: str | None = None,
    stdout: BinaryIO | None = None,
) -> bytes:
    """Run git and return its stdout (or send it to `stdout`: a patch can be large); failure raises
    GitFailed with git's message (`hide` masked)."""
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", **(env or {})}
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False,
        )
    except FileNotFoundError:
        raise UsageError("git is not installed on this machine: agent-run needs it on the host") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]
        detail = next((line for line in lines if line.startswith(("fatal:", "error:"))), lines[0] if lines else "")
        if hide:
            detail = detail.replace(hide, safe_url(hide))
        raise GitFailed(f"git {args[0]} failed: {detail.strip() or f'exit {proc.returncode}'}")
    return proc.stdout or b""


def _git_text(args: Sequence[str], **kwargs: Any) -> str:
    return _git(args, **kwargs).decode().strip()


@dataclass(frozen=True)
class RepoSource:
    """Where the workspace comes from. `location` may hold credentials: record `display` only."""

    kind: Literal["git", "directory", "empty"]
    location: str | None = None  # absolute local path, or the URL as given
    display: str | None = None
    root: Path | None = None  # the local directory sandboxctl must never write into
    origin: str | None = None  # where --push-branch pushes (git only)

    @property
    def is_remote(self) -> bool:
        return self.location is not None and is_url(self.location)


def locate_repo(repo: str | None) -> RepoSource:
    """Classify `--repo` without touching it: a git URL, a local git repository, a plain directory or nothing."""
    if not repo:
        return RepoSource("empty")
    if is_url(repo):
        return RepoSource("git", location=repo, display=safe_url(repo), origin=repo)
    path = Path(repo).expanduser().resolve()
    if not path.is_dir():
        raise UsageError(f"--repo {repo}: no such directory (give a local path or a git URL)")
    try:
        inside = _git_text(["rev-parse", "--is-inside-work-tree", "--is-bare-repository"], cwd=path).split()
    except GitFailed:
        return RepoSource("directory", location=str(path), display=str(path), root=path)
    if inside[:1] == ["true"]:
        root = Path(_git_text(["rev-parse", "--show-toplevel"], cwd=path))
    else:
        root = Path(_git_text(["rev-parse", "--path-format=absolute", "--git-dir"], cwd=path))
    return RepoSource("git", location=str(path), display=str(path), root=root, origin=_origin_of(path, root))


def _origin_of(path: Path, root: Path) -> str | None:
    try:
        url = _git_text(["remote", "get-url", "origin"], cwd=path)
    except GitFailed:
        return None
    if not is_url(url) and not Path(url).is_absolute():
        url = str((root / url).resolve())  # relative to the repository, not to wherever we push from
    return url


def resolve_commit(repository: Path, ref: str, *, display: str | None = None) -> str:
    """`ref` (branch, tag, sha, `HEAD~2`...) -> the full commit id; unknown is a usage error (exit 2)."""
    try:
        return _git_text(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], cwd=repository)
    except GitFailed:
        raise UsageError(f"--ref {ref}: no such commit, branch or tag in {display or repository}") from None


def check_branch_name(name: str) -> None:
    try:
        _git(["check-ref-format", "--branch", name])
    except GitFailed:
        raise UsageError(f"invalid --push-branch {name!r}: not a valid git branch name") from None


def quote_path(path: str) -> str:
    """`path` as git prints it with core.quotePath: unchanged when plain, else C-quoted in double quotes
    (`\\n`, `\\t`, `\\"`, `\\\\`, octal `\\303` for other control and non-ASCII bytes): one line per name."""
    raw = path.encode(errors="surrogateescape")
    if not any(byte < 0x20 or byte >= 0x7F or byte in (34, 92) for byte in raw):
        return path
    body = "".join(_quote_byte(byte) for byte in raw)
    return f'"{body}"'


def _quote_byte(byte: int) -> str:
    if byte in _QUOTE_ESCAPES:
        return "\\" + _QUOTE_ESCAPES[byte]
    return f"\\{byte:03o}" if byte < 0x20 or byte >= 0x7F else chr(byte)


@dataclass(frozen=True)
class CollectLimits:
    """Bounds on returned content: one file, and all files together (bytes), and the number of entries
    (members read and directories made, see `safe_extract`); None: unbounded."""

    max_file: int | None = None
    max_total: int | None = None
    max_entries: int | None = None


@dataclass(frozen=True)
class WorkspaceResult:
    patch_bytes: int
    changed_files: list[dict[str, str]]
    skipped: list[SkippedFile] = field(default_factory=list)  # left out of the patch: unsafe or over a limit


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _left_out_note(parts: Sequence[str]) -> bool:
    return list(parts) == [CONTROL_DIR, LEFT_OUT_NOTE]


def _not_content(parts: Sequence[str]) -> bool:
    """sandboxctl's control files, and every `.git` (file or directory, at any depth): a returned `.git`
    could carry config, hooks or a gitlink that the host's git would act on."""
    return parts[0] == CONTROL_DIR or any(part.lower() == ".git" for part in parts)


def _left_out_entries(note: str) -> list[SkippedFile]:
    """The sandbox's note of files it left out, listed as the extraction's skips are (at most MAX_LISTED)."""
    lines = [line.strip() for line in note.splitlines() if line.strip()]
    listed = [_left_out_entry(line) for line in lines[: safe_extract.MAX_LISTED]]
    unlisted = len(lines) - len(listed)
    return [*listed, safe_extract.not_listed(unlisted)] if unlisted else listed


def _left_out_entry(line: str) -> SkippedFile:
    size, _sep, path = line.partition(" ")
    return SkippedFile(path, int(size) if size.isdigit() else None, safe_extract.TOO_LARGE)


class Scratch:
    """A private git repository in a temp directory: first the pristine tree, then the returned one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tree = root / "tree"
        self.base_commit: str | None = None
        self.no_hooks = root / "no-hooks"

    def git(self, *args: str, env: Mapping[str, str] | None = None) -> bytes:
        return _git(args, cwd=self.tree, env=env)

    def hardened_git(self, *args: str, stdout: BinaryIO | None = None) -> bytes:
        """git on returned content: only sandboxctl's own settings, given on the command line so that no
        config file can override them, and the repository named explicitly (no discovery)."""
        overrides = (
            "core.fsmonitor=false",
            f"core.hooksPath={self.no_hooks}",
            f"core.attributesFile={os.devnull}",
            "core.untrackedCache=false",
            "core.splitIndex=false",
            "submodule.recurse=false",
            "protocol.allow=never",
        )
        options = [item for value in overrides for item in ("-c", value)]
        repository = [f"--git-dir={self.tree / '.git'}", f"--work-tree={self.tree}"]
        return _git([*options, *repository, *args], cwd=self.tree, env=_HARDENED_ENV, stdout=stdout)

    # -- before the run ------------------------------------------------------
    def prepare(self, source: RepoSource, ref: str | None, *, history: bool = False) -> str | None:
        """Fill the tree from `source` at `ref` (git only: the run validated that); return the starting
        commit (None unless git).

        `history` fetches the commit's whole history instead of it alone: pushing a result
        needs it when the remote lacks commits the user has not pushed."""
        _git(["init", "-q", "--template=", str(self.tree)])
        self.no_hooks.mkdir(exist_ok=True)
        for key, value in (
            ("core.fsmonitor", "false"),
            ("core.hooksPath", str(self.no_hooks)),
            ("core.attributesFile", os.devnull),
            ("core.autocrlf", "false"),
            ("core.safecrlf", "false"),
            ("core.symlinks", "true"),
            ("core.excludesFile", os.devnull),
            ("gc.auto", "0"),
            ("commit.gpgSign", "false"),
        ):
            self.git("config", key, value)
        (self.tree / ".git" / "info").mkdir(exist_ok=True)
        (self.tree / ".git" / "info" / "exclude").write_text(f"/{CONTROL_DIR}/\n")
        (self.tree / ".git" / "info" / "attributes").write_text(_NEUTRAL_ATTRIBUTES)
        if source.kind == "git":
            self.base_commit = self._checkout(source, ref or "HEAD", history=history)
            return self.base_commit
        if source.kind == "directory" and source.root is not None:
            shutil.copytree(source.root, self.tree, symlinks=True, dirs_exist_ok=True)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "--no-verify", "-m", "pristine", env=_INTERNAL_IDENTITY)
        self.base_commit = self.git("rev-parse", "HEAD").decode().strip()
        return None

    def _checkout(self, source: RepoSource, ref: str, *, history: bool) -> str:
        assert source.location is not None
        if source.is_remote:
            read_from = self.root / "source.git"
            _git(["clone", "--bare", "--quiet", "--", source.location, str(read_from)], hide=source.location)
        else:
            read_from = Path(source.location)
        commit = resolve_commit(read_from, ref, display=source.display)
        self.git("fetch", "--quiet", "--no-tags", *([] if history else ["--depth=1"]), str(read_from), commit)
        self.git("read-tree", commit)
        self.git("checkout-index", "-a", "-f")
        return commit

    def uncommitted_changes(self, source: RepoSource) -> bool:
        """Whether the user's work tree differs from HEAD (those edits are not sent: only commits are)."""
        if source.kind != "git" or source.is_remote or source.location is None:
            return False
        try:
            status = _git(["status", "--porcelain", "--untracked-files=no"], cwd=Path(source.location))
        except GitFailed:
            return False  # a bare repository has no work tree
        return bool(status.strip())

    def archive(self, extra_files: Mapping[str, bytes]) -> Path:
        """The tree (without `.git`) plus sandboxctl's control files, as an uncompressed tar file on disk."""
        path = self.root / "upload.tar"
        now = time.time()
        with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for entry in sorted(os.listdir(self.tree)):
                if entry != ".git":
                    archive.add(self.tree / entry, arcname=entry, filter=_root_owned)
            for directory in sorted({str(Path(name).parent) for name in extra_files} - {"."}):
                info = _root_owned(tarfile.TarInfo(directory))
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                archive.addfile(info)
            for name, data in extra_files.items():
                info = _root_owned(tarfile.TarInfo(name))
                info.size, info.mode, info.mtime = len(data), 0o644, now
                archive.addfile(info, io.BytesIO(data))
        return path

    # -- after the run -------------------------------------------------------
    def collect(self, stream: BinaryIO, limits: CollectLimits, patch_path: Path) -> WorkspaceResult:
        """Replace the tree with the workspace streamed back from the sandbox and write its diff against
        the starting commit to `patch_path` (atomically, never held in memory). Extraction is
        `safe_extract`'s; git runs hardened (see `hardened_git`)."""
        self._clear_tree()
        report = safe_extract.extract(
            stream,
            self.tree,
            strip_components=1,  # download archives are named from the workspace's parent
            drop=_not_content,
            capture=_left_out_note,
            max_file=limits.max_file,
            max_total=limits.max_total,
            max_entries=limits.max_entries,
        )
        note = report.captured.get(f"{CONTROL_DIR}/{LEFT_OUT_NOTE}", b"")
        left_out = _left_out_entries(note.decode(errors="replace"))
        self.hardened_git("add", "-A")
        assert self.base_commit is not None
        diff = ["diff", "--cached", "--no-renames", "--no-color", "--no-ext-diff", "--no-textconv"]
        patch_bytes = self._write_patch(patch_path, *diff, "--binary", "--src-prefix=a/", "--dst-prefix=b/")
        listing = self.hardened_git(*diff, "--name-status", "-z", self.base_commit, "--")
        fields = [f for f in listing.decode(errors="surrogateescape").split("\0") if f]
        changed = [
            {"path": path, "change": _CHANGE_NAMES.get(status[:1], status)}
            for status, path in zip(fields[::2], fields[1::2], strict=True)
        ]
        return WorkspaceResult(patch_bytes=patch_bytes, changed_files=changed, skipped=[*left_out, *report.skipped])

    def _write_patch(self, path: Path, *diff: str) -> int:
        assert self.base_commit is not None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                self.hardened_git(*diff, self.base_commit, "--", stdout=out)
                out.flush()
                os.fsync(out.fileno())
                size = os.fstat(out.fileno()).st_size
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def _clear_tree(self) -> None:
        for entry in self.tree.iterdir():
            if entry.name in (".git", CONTROL_DIR):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def push(self, origin: str, branch: str, message: str) -> str:
        """Commit the collected tree on top of the starting commit and push it to `origin`'s `branch`."""
        assert self.base_commit is not None
        tree = self.git("write-tree").decode().strip()
        env = {} if self._has_identity() else _INTERNAL_IDENTITY
        commit = self.git("commit-tree", tree, "-p", self.base_commit, "-m", message, env=env).decode().strip()
        _git(["push", "--quiet", origin, f"{commit}:refs/heads/{branch}"], cwd=self.tree, hide=origin)
        return commit

    def _has_identity(self) -> bool:
        try:
            return bool(self.git("config", "user.email").strip() and self.git("config", "user.name").strip())
        except GitFailed:
            return False
