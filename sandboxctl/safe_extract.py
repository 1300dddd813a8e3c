"""Extract a tar that came out of a sandbox: every byte of it is hostile.

The archive is read as a stream (`r|`) so it is never held in memory, and each
member is written relative to directory file descriptors opened with
O_NOFOLLOW, so no member is ever written through a symlink or outside the tree,
whatever the names or the order of the members:

- absolute names, `..` components, devices, fifos and sockets are dropped;
- symlinks are created as links (never followed on the host);
- a hardlink becomes a copy of a regular file this extraction already wrote;
- a later member with the same name replaces the earlier entry (unlinked first,
  then created with O_EXCL), never writes through it;
- files over `max_file`, or past `max_total` bytes in all, are read and
  discarded, and reported;
- past `max_entries` entries (every member read, written or not, and every
  directory made for a member's path) the rest of the archive is not read:
  millions of empty or refused members cost neither inodes nor memory.

Memory does not grow with the archive: the report lists at most `MAX_LISTED`
skipped members (the rest are counted), names longer than `MAX_NAME` are
refused, and what the extraction remembers per entry is an inode number (for
hardlinks) and, with `keep_modes`, at most `_MAX_DEFERRED_DIRS` read-only
directories.

Shared by agent-run's collection, `sandboxctl cp` out, and the local backend's uploads (cp in, the workspace).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sandboxctl.errors import OperationFailed

_CHUNK = 1024 * 1024
_MAX_CAPTURE = 64 * 1024  # a captured member (a note from the sandbox) is read into memory: keep it small
_MAX_EXTENDED_HEADER = 1024 * 1024  # a pax/GNU long-name header larger than this is an attack, not a name
# tarfile reads chained extended headers recursively and keeps global ones for the whole stream: a real
# member has at most a few (long name, long link, pax), and a real archive next to no global ones.
_MAX_EXTENDED_CHAIN = 8
_MAX_GLOBAL_HEADERS = 1024 * 1024
# Directories whose mode is set last (read-only ones: set now they would refuse their own content).
_MAX_DEFERRED_DIRS = 10_000
MAX_NAME = 4096  # bytes of a member's name (PATH_MAX): longer is refused, and shown cut
MAX_LISTED = 1000  # skipped members listed in a report; the rest are counted in one final entry
_EXTENDED = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)
_HOST_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE)  # the host's problem: fail, don't skip
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

TOO_LARGE = "file too large"
OVER_TOTAL = "collection limit reached"
NAME_TOO_LONG = "name too long"
NOT_EXTRACTED = "…"  # the path of the entry that stands for the rest of an archive, or for unlisted members


def entry_limit_reason(max_entries: int) -> str:
    return f"entry limit reached ({max_entries}): the rest of the archive was not extracted"


def not_listed(count: int) -> SkippedFile:
    """One entry standing for `count` skipped members that are counted, not listed."""
    return SkippedFile(NOT_EXTRACTED, None, f"and {count} more not listed")


class UnsafeArchive(OperationFailed):
    """The archive itself is malformed or built to exhaust the host (e.g. a huge extended header)."""


@dataclass(frozen=True)
class SkippedFile:
    path: str
    size: int | None
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "size": self.size, "reason": self.reason}


@dataclass
class ExtractReport:
    skipped: list[SkippedFile] = field(default_factory=list)  # at most MAX_LISTED, then `not_listed`, limit
    bytes_written: int = 0
    entries: int = 0  # members read and directories made for their paths: what `max_entries` bounds
    entry_limit_reached: bool = False
    captured: dict[str, bytes] = field(default_factory=dict)  # `capture`d members' content, not written
    unlisted: int = 0  # skipped members past MAX_LISTED: counted only

    def skip(self, item: SkippedFile) -> None:
        if len(self.skipped) < MAX_LISTED:
            self.skipped.append(item)
        else:
            self.unlisted += 1


class _EntryLimitReached(Exception):
    """The extraction has made `max_entries` entries: the rest of the archive is not read."""


@dataclass
class _Entries:
    """A budget of entries (members read, directories made): an archive of millions of empty or refused
    members would otherwise cost the host as many inodes, and the extraction as much time."""

    limit: int | None
    count: int = 0

    def take(self) -> None:
        if self.limit is not None and self.count >= self.limit:
            raise _EntryLimitReached
        self.count += 1


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads pax and GNU long-name headers whole into memory: refuse oversized ones."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type not in _EXTENDED:
            return super()._proc_member(tarfile_)  # type: ignore[misc]
        if self.size > _MAX_EXTENDED_HEADER:
            raise tarfile.HeaderError(f"extended header of {self.size} bytes")
        # The header after an extended one is read recursively, each level holding its header's bytes, and
        # global headers accumulate for the rest of the stream: bound both.
        state = tarfile_.__dict__
        depth = state.get("_sandboxctl_chain", 0) + 1
        if depth > _MAX_EXTENDED_CHAIN:
            raise tarfile.HeaderError(f"more than {_MAX_EXTENDED_CHAIN} extended headers in a row")
        if self.type == tarfile.XGLTYPE:
            state["_sandboxctl_global"] = state.get("_sandboxctl_global", 0) + self.size
            if state["_sandboxctl_global"] > _MAX_GLOBAL_HEADERS:
                raise tarfile.HeaderError(f"global headers over {_MAX_GLOBAL_HEADERS} bytes")
        state["_sandboxctl_chain"] = depth
        try:
            return super()._proc_member(tarfile_)  # type: ignore[misc]
        finally:
            state["_sandboxctl_chain"] = depth - 1


def split_name(name: str) -> list[str] | None:
    """A member name as path components; None when absolute or climbing (`..`)."""
    if name.startswith("/"):
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        return None
    return parts


def extract(
    stream: BinaryIO,
    dest: Path,
    *,
    strip_components: int = 0,
    drop: Callable[[Sequence[str]], bool] = lambda _parts: False,
    capture: Callable[[Sequence[str]], bool] = lambda _parts: False,
    max_file: int | None = None,
    max_total: int | None = None,
    max_entries: int | None = None,
    keep_modes: bool = False,
) -> ExtractReport:
    """Extract the tar read from `stream` into the existing directory `dest`.

    `keep_modes` (cp) keeps each file's and directory's permission bits, never setuid, setgid or
    sticky; without it files are 0644 or 0755. A read-only directory's mode is set last, so it does
    not stop its own content from being written.

    `drop(parts)` silently leaves a member out (e.g. `.git`); what is unsafe or over a limit
    is left out and listed in the report; `capture(parts)` keeps a small regular member's content in the
    report instead of writing it. Names in the report are relative to `dest`. Past `max_entries`
    entries the rest of the archive is not read: what was written stays, and one entry says so."""
    root = os.open(dest, _DIR_FLAGS)
    try:
        extraction = _Extraction(
            root,
            _Entries(max_entries),
            strip_components=strip_components,
            drop=drop,
            capture=capture,
            keep_modes=keep_modes,
            max_file=max_file,
            max_total=max_total,
        )
        report = extraction.report
        try:
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedTarInfo) as archive:
                for member in _members(archive):
                    extraction.entries.take()  # every member counts, written or not: refused ones cost time too
                    extraction.member(archive, member)
        except _EntryLimitReached:
            report.entry_limit_reached = True
        except tarfile.TarError as exc:
            raise UnsafeArchive(f"the archive from the sandbox is malformed: {exc}") from None
        _set_dir_modes(root, extraction.dir_modes)
    finally:
        os.close(root)
    if report.unlisted:
        report.skipped.append(not_listed(report.unlisted))
    if report.entry_limit_reached and max_entries is not None:
        report.skipped.append(SkippedFile(NOT_EXTRACTED, None, entry_limit_reason(max_entries)))
    report.entries = extraction.entries.count
    return report


def _members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Members one at a time, forgetting each: tarfile would keep every TarInfo of a stream."""
    while (member := archive.next()) is not None:
        archive.members.clear()
        yield member


@dataclass
class _Extraction:
    """One extraction's state. Nothing in it grows with the archive beyond a bound: per written file an
    inode number, and at most `_MAX_DEFERRED_DIRS` directory modes."""

    root: int
    entries: _Entries
    strip_components: int
    drop: Callable[[Sequence[str]], bool]
    capture: Callable[[Sequence[str]], bool]
    keep_modes: bool
    max_file: int | None
    max_total: int | None
    report: ExtractReport = field(default_factory=ExtractReport)
    # Inodes of the files this extraction wrote: the only valid hardlink sources. One unlinked later stays
    # here; only a file created in the tree since (by this extraction) could reuse its number.
    regular: set[int] = field(default_factory=set)
    dir_modes: dict[str, int] = field(default_factory=dict)  # read-only directories: their modes set last

    def member(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """Write, capture, drop or skip (listed in the report) one member."""
        parts = split_name(member.name)
        if parts is not None:
            parts = parts[self.strip_components :]
        if parts is not None and parts and self.capture(parts):
            data = archive.extractfile(member) if member.isfile() else None
            if data is not None and member.size <= _MAX_CAPTURE:
                self.report.captured["/".join(parts)] = data.read()
            return
        if parts == [] or (parts is not None and self.drop(parts)):
            return
        shown = "/".join(parts) if parts is not None else member.name
        if len(shown.encode(errors="surrogateescape")) > MAX_NAME:
            self.report.skip(SkippedFile(shown[:MAX_NAME] + "…", None, NAME_TOO_LONG))
            return
        if parts is None:
            self.report.skip(SkippedFile(shown, None, "absolute or parent path"))
            return
        target = None
        if member.islnk():
            target = split_name(member.linkname)
            target = target[self.strip_components :] if target is not None else None
        try:
            reason = self._write(archive, member, parts, target)
            if self.keep_modes and reason is None and member.isdir():
                self._keep_dir_mode(parts, member.mode & 0o777)
        except OSError as exc:  # e.g. a name or link target too long for this file system
            if exc.errno in _HOST_FULL:
                raise
            reason = f"cannot be written: {exc.strerror}"
        if reason is not None:
            size = member.size if member.isfile() else None
            self.report.skip(SkippedFile(shown, size, reason))

    def _write(
        self, archive: tarfile.TarFile, member: tarfile.TarInfo, parts: list[str], target: list[str] | None
    ) -> str | None:
        """Write one member; return why it was left out, or None."""
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            return "special file"
        size = member.size if member.isfile() else 0
        source: int | None = None
        if member.islnk():
            source = _open_regular(self.root, target) if target else None
            if source is None or not self._wrote(source):
                if source is not None:
                    os.close(source)
                return "hardlink to a file outside the extracted tree"
            size = os.fstat(source).st_size
        try:
            if self.max_file is not None and size > self.max_file:
                return TOO_LARGE
            if self.max_total is not None and self.report.bytes_written + size > self.max_total:
                return OVER_TOTAL
            try:
                parent = _open_parent(self.root, parts[:-1], made=self.entries)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                return "path through a link or a file"
            try:
                return self._create(archive, member, parent, parts[-1], source, size)
            finally:
                os.close(parent)
        finally:
            if source is not None:
                os.close(source)

    def _create(
        self,
        archive: tarfile.TarFile,
        member: tarfile.TarInfo,
        parent: int,
        name: str,
        source: int | None,
        size: int,
    ) -> str | None:
        if member.isdir():
            _make_dir(parent, name)
            return None
        if not _remove(parent, name):
            return "a directory is in the way"
        if member.issym():
            os.symlink(member.linkname, name, dir_fd=parent)
            return None
        mode = 0o755 if member.mode & 0o100 else 0o644
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent)
        if self.keep_modes:
            os.fchmod(fd, member.mode & 0o777)
        with os.fdopen(fd, "wb") as out:
            self.regular.add(os.fstat(fd).st_ino)
            if source is not None:
                with os.fdopen(os.dup(source), "rb") as data:
                    _copy(data, out)
            else:
                data = archive.extractfile(member)
                if data is not None:
                    _copy(data, out)
        self.report.bytes_written += size
        return None

    def _wrote(self, fd: int) -> bool:
        """Whether the file open as `fd` is one this extraction wrote (same file system, a known inode)."""
        info = os.fstat(fd)
        return info.st_ino in self.regular and info.st_dev == os.fstat(self.root).st_dev

    def _keep_dir_mode(self, parts: list[str], mode: int) -> None:
        """Set a directory's mode now when its owner may still write into it; defer a read-only one (up to
        `_MAX_DEFERRED_DIRS`: past that it is set now, and what it then refuses is reported as not written)."""
        key = "/".join(parts)
        self.dir_modes.pop(key, None)
        if mode & 0o700 != 0o700 and len(self.dir_modes) < _MAX_DEFERRED_DIRS:
            self.dir_modes[key] = mode
            return
        fd = _open_parent(self.root, parts)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def _set_dir_modes(root: int, modes: dict[str, int]) -> None:
    """Deepest first, each through an fd opened without following links."""
    for key, mode in sorted(modes.items(), key=lambda item: -item[0].count("/")):
        try:
            fd = _open_parent(root, key.split("/"))
        except OSError:
            continue  # replaced by a later member
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def _copy(source: BinaryIO, out: BinaryIO) -> None:
    while chunk := source.read(_CHUNK):
        out.write(chunk)


def _open_parent(root: int, parts: Sequence[str], *, made: _Entries | None = None) -> int:
    """The directory `parts` below `root`, never through a symlink (ELOOP/ENOTDIR). With `made`, missing
    directories are created, each taken from that budget: one member's deep path is many entries."""
    fd = os.dup(root)
    try:
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if made is None:
                    raise
                made.take()
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_regular(root: int, parts: list[str]) -> int | None:
    """An fd on the regular file `parts` below `root`, or None (missing, a link, not regular)."""
    try:
        parent = _open_parent(root, parts[:-1])
    except OSError:
        return None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    except OSError:
        return None
    finally:
        os.close(parent)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _make_dir(parent: int, name: str) -> None:
    try:
        os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            os.unlink(name, dir_fd=parent)  # a later directory replaces an earlier file or link
            os.mkdir(name, 0o755, dir_fd=parent)


def _remove(parent: int, name: str) -> bool:
    """Make room for a non-directory `name`: unlink what is there; False if a directory is."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return True
    if stat.S_ISDIR(info.st_mode):
        return False
    try:
        os.unlink(name, dir_fd=parent)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    return True
