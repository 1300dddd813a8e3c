"""`cp`: files and directories between the host and a sandbox, streamed as tar, with docker cp's rules.

Nothing is ever held whole in memory: copying in, a thread writes the tar of the host
source into a pipe that the backend's `upload_archive` reads; copying out, the backend's
`download_archive` stream goes straight into `safe_extract` (no write through a link,
nothing outside DEST, modes kept without setuid/setgid/sticky bits).

The rules (as `docker cp`; a relative sandbox path is taken from the sandbox's workspace):

- SRC a file: DEST an existing directory -> DEST/<name of SRC>; DEST ending in `/` that does
  not exist -> error; otherwise DEST is the file written (replaced if it exists).
- SRC a directory: DEST missing -> created with SRC's content; DEST an existing directory ->
  DEST/<name of SRC>, or with SRC ending in `/.` its content merged into DEST; DEST a file -> error.
- `-` as DEST: the raw tar of SRC on stdout; `-` as SRC: a tar on stdin extracted into the
  directory DEST (created if missing).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sandboxctl import safe_extract
from sandboxctl.backends.base import Backend, BackendError, ExecRequest, NotFound
from sandboxctl.errors import OperationFailed, UsageError
from sandboxctl.services.context import Context
from sandboxctl.services.execution import runnable_sandbox, touch

_CHUNK = 1024 * 1024
# Most entries (members read, directories made) one copy out extracts; past it the rest is not read and a
# warning says so. A constant, not a setting: five times agent-run's default (`agent.max_entries`), since
# the user chose what to copy and is there to see it (at most ~90 MB of memory and a million inodes); more
# than this is `cp SANDBOX:PATH - | tar -x`, with the user's own tar.
MAX_ENTRIES_OUT = 1_000_000
# What a path in the sandbox is. A source is not followed (a link is copied as a link); a destination is
# (a link to a directory is a directory to copy into, as for docker cp).
_PROBE_SOURCE = 'if [ -L "$1" ]; then echo link; elif [ -d "$1" ]; then echo dir; elif [ -e "$1" ]; then echo file; fi'
_PROBE_DEST = 'if [ -d "$1" ]; then echo dir; elif [ -L "$1" ] || [ -e "$1" ]; then echo file; fi'


@dataclass(frozen=True)
class Endpoint:
    """One side of `cp`: a host path, `-` (a tar on stdin/stdout), or a path in a sandbox."""

    path: str
    sandbox: str | None = None

    @property
    def is_stream(self) -> bool:
        return self.sandbox is None and self.path == "-"


@dataclass(frozen=True)
class CopyReport:
    """What a copy did; `skipped` lists what copying out refused to write (links escaping, specials)."""

    sandbox_id: str
    direction: str  # "in" or "out"
    bytes_written: int | None
    skipped: list[safe_extract.SkippedFile]

    def to_json(self) -> dict[str, object]:
        return {
            "sandbox_id": self.sandbox_id,
            "direction": self.direction,
            "bytes_written": self.bytes_written,
            "skipped": [s.as_dict() for s in self.skipped],
        }


def parse_endpoint(text: str) -> Endpoint:
    """`SANDBOX:PATH` or a host path. A host path with a colon is written `./a:b` (as for docker cp)."""
    if not text:
        raise UsageError("an empty path: give a host path, `-` or SANDBOX:PATH")
    if text.startswith(("/", ".", "~")) or ":" not in text:
        return Endpoint(os.path.expanduser(text))
    sandbox, _, path = text.partition(":")
    if not sandbox or not path:
        raise UsageError(f"{text!r}: write SANDBOX:PATH with both parts")
    return Endpoint(path, sandbox)


def copy(ctx: Context, source: Endpoint, dest: Endpoint, *, stdin: BinaryIO, stdout: BinaryIO) -> CopyReport:
    """Copy between the host and one sandbox; exactly one side names a sandbox."""
    if (source.sandbox is None) == (dest.sandbox is None):
        raise UsageError("name a sandbox on exactly one side: `cp SANDBOX:PATH DEST` or `cp SRC SANDBOX:PATH`")
    if source.sandbox is not None:
        return _copy_out(ctx, source.sandbox, source.path, dest, stdout)
    if not source.is_stream and not os.path.lexists(source.path):
        raise UsageError(f"{source.path}: no such file or directory")
    assert dest.sandbox is not None
    return _copy_in(ctx, dest.sandbox, source, dest.path, stdin)


# -- in ---------------------------------------------------------------------------------
def _copy_in(ctx: Context, ref: str, source: Endpoint, dest_path: str, stdin: BinaryIO) -> CopyReport:
    record, backend_id = runnable_sandbox(ctx, ref)
    backend = ctx.backend(record.backend)
    touch(ctx, record.id)
    dest = _absolute(backend, backend_id, dest_path)
    if source.is_stream:
        _call(backend.upload_archive, backend_id, dest, stdin)
        return CopyReport(record.id, "in", None, [])
    host = Path(source.path)
    kind = _probe(backend, backend_id, dest, _PROBE_DEST)
    parent, base = posixpath.split(dest.rstrip("/") or "/")
    if host.is_dir() and not host.is_symlink():
        if kind == "file":
            raise OperationFailed(f"cannot copy directory {host} onto file {dest_path} in the sandbox")
        if kind == "dir":
            into, names = dest, _dir_entries(host, source.path)
        else:
            into, names = parent, [(host, base)]
    elif kind == "dir":
        into, names = dest, [(host, host.name)]
    elif dest_path.endswith("/"):
        raise OperationFailed(f"{dest_path}: no such directory in the sandbox")
    else:
        into, names = parent, [(host, base)]
    if any(not name for _, name in names):
        raise UsageError("copy into a directory below / (e.g. SANDBOX:/tmp/)")
    with _tar_stream(names) as (stream, errors):
        _call(backend.upload_archive, backend_id, into, stream)
    if errors:
        raise OperationFailed(f"could not read {source.path}: {errors[0]}")
    return CopyReport(record.id, "in", None, [])


def _dir_entries(host: Path, text: str) -> list[tuple[Path, str]]:
    """`dir/.`: the directory's entries; `dir`: the directory itself."""
    if text.rstrip("/").endswith("/.") or text in (".", "./"):
        return [(child, child.name) for child in sorted(host.iterdir())]
    return [(host, host.resolve().name)]


@contextlib.contextmanager
def _tar_stream(names: list[tuple[Path, str]]) -> Iterator[tuple[BinaryIO, list[str]]]:
    """A tar of `names` (host path, name in the archive) written by a thread into a pipe: streamed."""
    read_fd, write_fd = os.pipe()
    errors: list[str] = []

    def write() -> None:
        try:
            with (
                os.fdopen(write_fd, "wb") as pipe,
                tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as archive,
            ):
                for path, name in names:
                    archive.add(path, arcname=name)  # links are stored as links, never followed
        except BrokenPipeError:
            pass  # the reader stopped; its error is the one reported
        except OSError as exc:
            errors.append(f"{exc.filename or ''}: {exc.strerror}")
        except Exception as exc:  # noqa: BLE001 - reported after the upload, in the caller's thread
            errors.append(str(exc))

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    with os.fdopen(read_fd, "rb") as stream:
        try:
            yield stream, errors
        finally:
            stream.close()
            writer.join(timeout=60)


# -- out --------------------------------------------------------------------------------
def _copy_out(ctx: Context, ref: str, path: str, dest: Endpoint, stdout: BinaryIO) -> CopyReport:
    record, backend_id = runnable_sandbox(ctx, ref)
    backend = ctx.backend(record.backend)
    touch(ctx, record.id)
    source = _absolute(backend, backend_id, path)
    contents = path.rstrip("/").endswith("/.") or path in (".", "./")
    source = posixpath.normpath(source)
    kind = _probe(backend, backend_id, source, _PROBE_SOURCE)
    if kind is None:
        raise OperationFailed(f"{path}: no such file or directory in sandbox {record.id}")
    if dest.is_stream:
        with _download(backend, backend_id, source) as stream:
            while chunk := stream.read(_CHUNK):
                stdout.write(chunk)
        stdout.flush()
        return CopyReport(record.id, "out", None, [])
    target = Path(dest.path)
    name = posixpath.basename(source) or "/"
    only_name = _only(name)
    if kind == "dir":
        if target.is_dir():
            if contents:
                report = _extract(backend, backend_id, source, target, strip=1)
            else:
                report = _extract(backend, backend_id, source, target, drop=only_name)
        elif target.exists() or target.is_symlink():
            raise OperationFailed(f"cannot copy directory {path} onto file {dest.path}")
        else:
            report = _replace(backend, backend_id, source, name, target)
    elif target.is_dir():
        report = _extract(backend, backend_id, source, target, drop=only_name)
    elif dest.path.endswith("/"):
        raise OperationFailed(f"{dest.path}: no such directory")
    else:
        report = _replace(backend, backend_id, source, name, target)
    return CopyReport(record.id, "out", report.bytes_written, report.skipped)


def _only(name: str) -> Callable[[Sequence[str]], bool]:
    """Leave out every member but `name` and what is below it: a hostile tar adds nothing beside it."""
    return lambda parts: parts[0] != name


def _replace(backend: Backend, backend_id: str, source: str, name: str, target: Path) -> safe_extract.ExtractReport:
    """`source` written as `target` (a file, link or new directory): extracted into a fresh directory beside
    it, then renamed over it (a link at `target` is replaced, never written through)."""
    _check_parent(target)
    scratch = Path(tempfile.mkdtemp(prefix=".sandboxctl-cp-", dir=target.parent))
    try:
        report = _extract(backend, backend_id, source, scratch, drop=_only(name))
        written = scratch / name
        if not written.is_symlink() and not written.exists():
            raise OperationFailed(f"{source}: nothing to copy ({'; '.join(s.reason for s in report.skipped)})")
        if target.is_dir() and not target.is_symlink():
            raise OperationFailed(f"{target}: a directory is in the way")
        os.replace(written, target)
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _extract(
    backend: Backend,
    backend_id: str,
    source: str,
    into: Path,
    *,
    strip: int = 0,
    drop: Callable[[Sequence[str]], bool] = lambda _parts: False,
    max_entries: int = MAX_ENTRIES_OUT,
) -> safe_extract.ExtractReport:
    with _download(backend, backend_id, source) as stream:
        return safe_extract.extract(
            stream, into, strip_components=strip, drop=drop, max_entries=max_entries, keep_modes=True
        )


@contextlib.contextmanager
def _download(backend: Backend, backend_id: str, source: str) -> Iterator[BinaryIO]:
    try:
        with backend.download_archive(backend_id, source) as stream:
            yield stream
    except NotFound as exc:
        raise OperationFailed(f"{source}: {exc}") from None


def _check_parent(target: Path) -> None:
    if not target.parent.is_dir():
        raise OperationFailed(f"{target.parent}: no such directory")


# -- both -------------------------------------------------------------------------------
def _absolute(backend: Backend, backend_id: str, path: str) -> str:
    """A sandbox path; a relative one is taken from the sandbox's workspace directory."""
    if posixpath.isabs(path):
        return path
    return posixpath.join(backend.workspace_path(backend_id), path)


def _probe(backend: Backend, backend_id: str, path: str, script: str) -> str | None:
    """`file`, `dir`, `link` (what `script` prints), or None when nothing is at `path` in the sandbox."""
    out: list[bytes] = []
    result = backend.exec(
        backend_id,
        ExecRequest(
            command=("sh", "-c", script, "sh", path.rstrip("/") or "/"),
            on_stdout=out.append,
            on_stderr=lambda _chunk: None,
            timeout_seconds=60,
        ),
    )
    if result.exit_code != 0:
        raise OperationFailed(f"could not inspect {path} in the sandbox (exit {result.exit_code})")
    kind = b"".join(out).decode(errors="replace").strip()
    return kind or None


def _call(upload: Callable[[str, str, BinaryIO], None], backend_id: str, dest: str, stream: BinaryIO) -> None:
    try:
        upload(backend_id, dest, stream)
    except BackendError as exc:
        raise OperationFailed(f"copy into {dest} failed: {exc}") from None
