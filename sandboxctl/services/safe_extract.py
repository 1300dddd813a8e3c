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
  discarded, and reported.

Shared by agent-run's collection and (later) `sandboxctl cp`.
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
    skipped: list[SkippedFile] = field(default_factory=list)
    bytes_written: int = 0
    captured: dict[str, bytes] = field(default_factory=dict)  # `capture`d members' content, not written


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads pax and GNU long-name headers whole into memory: refuse oversized ones."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type in _EXTENDED and self.size > _MAX_EXTENDED_HEADER:
            raise tarfile.HeaderError(f"extended header of {self.size} bytes")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


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
    keep_modes: bool = False,
) -> ExtractReport:
    """Extract the tar read from `stream` into the existing directory `dest`.

    `keep_modes` (cp) keeps each file's and directory's permission bits, never setuid, setgid or
    sticky; without it files are 0644 or 0755. Directory modes are set last, so a read-only
    directory in the archive does not stop its own content from being written.

    `drop(parts)` silently leaves a member out (e.g. `.git`); what is unsafe or over a limit
    is left out and listed in the report; `capture(parts)` keeps a small regular member's content in the
    report instead of writing it. Names in the report are relative to `dest`."""
    report = ExtractReport()
    root = os.open(dest, _DIR_FLAGS)
    regular: set[tuple[str, ...]] = set()  # files this extraction wrote: the only valid hardlink targets
    dir_modes: dict[tuple[str, ...], int] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedTarInfo) as archive:
            for member in _members(archive):
                parts = split_name(member.name)
                if parts is not None:
                    parts = parts[strip_components:]
                if parts is not None and parts and capture(parts):
                    data = archive.extractfile(member) if member.isfile() else None
                    if data is not None and member.size <= _MAX_CAPTURE:
                        report.captured["/".join(parts)] = data.read()
                    continue
                if parts == [] or (parts is not None and drop(parts)):
                    continue
                shown = "/".join(parts) if parts is not None else member.name
                if parts is None:
                    report.skipped.append(SkippedFile(shown, None, "absolute or parent path"))
                    continue
                target = None
                if member.islnk():
                    target = split_name(member.linkname)
                    target = target[strip_components:] if target is not None else None
                try:
                    reason = _extract_one(
                        archive, member, root, parts, target, regular, report, max_file, max_total, keep_modes
                    )
                    if keep_modes and reason is None and member.isdir():
                        dir_modes[tuple(parts)] = member.mode & 0o777
                except OSError as exc:  # e.g. a name or link target too long for this file system
                    if exc.errno in _HOST_FULL:
                        raise
                    reason = f"cannot be written: {exc.strerror}"
                if reason is not None:
                    size = member.size if member.isfile() else None
                    report.skipped.append(SkippedFile(shown, size, reason))
    except tarfile.TarError as exc:
        raise UnsafeArchive(f"the archive from the sandbox is malformed: {exc}") from None
    else:
        _set_dir_modes(root, dir_modes)
    finally:
        os.close(root)
    return report


def _set_dir_modes(root: int, modes: dict[tuple[str, ...], int]) -> None:
    """Deepest first, each through an fd opened without following links."""
    for parts, mode in sorted(modes.items(), key=lambda item: -len(item[0])):
        try:
            fd = _open_parent(root, parts, create=False)
        except OSError:
            continue  # replaced by a later member
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def _members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Members one at a time, forgetting each: tarfile would keep every TarInfo of a stream."""
    while (member := archive.next()) is not None:
        archive.members.clear()
        yield member


def _extract_one(
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    root: int,
    parts: list[str],
    target: list[str] | None,
    regular: set[tuple[str, ...]],
    report: ExtractReport,
    max_file: int | None,
    max_total: int | None,
    keep_modes: bool = False,
) -> str | None:
    """Write one member; return why it was left out, or None."""
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "special file"
    size = member.size if member.isfile() else 0
    source: int | None = None
    if member.islnk():
        if not target or tuple(target) not in regular:
            return "hardlink to a file outside the extracted tree"
        source = _open_regular(root, target)
        if source is None:
            return "hardlink to a file outside the extracted tree"
        size = os.fstat(source).st_size
    try:
        if max_file is not None and size > max_file:
            return TOO_LARGE
        if max_total is not None and report.bytes_written + size > max_total:
            return OVER_TOTAL
        try:
            parent = _open_parent(root, parts[:-1])
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            return "path through a link or a file"
        try:
            name = parts[-1]
            key = tuple(parts)
            if member.isdir():
                _make_dir(parent, name)
                return None
            if not _remove(parent, name):
                return "a directory is in the way"
            regular.discard(key)
            if member.issym():
                os.symlink(member.linkname, name, dir_fd=parent)
                return None
            mode = 0o755 if member.mode & 0o100 else 0o644
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent)
            if keep_modes:
                os.fchmod(fd, member.mode & 0o777)
            with os.fdopen(fd, "wb") as out:
                if source is not None:
                    with os.fdopen(os.dup(source), "rb") as data:
                        _copy(data, out)
                else:
                    data = archive.extractfile(member)
                    if data is not None:
                        _copy(data, out)
            regular.add(key)
            report.bytes_written += size
            return None
        finally:
            os.close(parent)
    finally:
        if source is not None:
            os.close(source)


def _copy(source: BinaryIO, out: BinaryIO) -> None:
    while chunk := source.read(_CHUNK):
        out.write(chunk)


def _open_parent(root: int, parts: Sequence[str], *, create: bool = True) -> int:
    """The directory `parts` below `root` (created as needed with `create`), never through a symlink
    (ELOOP/ENOTDIR)."""
    fd = os.dup(root)
    try:
        for part in parts:
            if create:
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
        parent = _open_parent(root, parts[:-1], create=False)
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
