"""The `local` backend: a private working directory and plain subprocesses.

NO ISOLATION: commands run as you, on this machine, with your network and your
files. It exists for machines without Docker and for fast tests, not for
untrusted code.

A sandbox's backend id is `HOST:/absolute/directory`, so a record read through a
shared registry (`--db`) names the right directory, and another host refuses
to act on it instead of finding "nothing" and reporting a deletion. Every
command runs in its own session, tagged with the sandbox id in its environment,
so delete can kill what it left running (see local_processes.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, ClassVar

from sandboxctl.backends.base import (
    EXEC_TOKEN_VAR,
    TIMED_OUT,
    BackendError,
    BackendSandbox,
    BackendState,
    CreateSpec,
    DeleteResult,
    ExecRequest,
    ExecResult,
    NotFound,
)
from sandboxctl.backends.local_processes import SANDBOX_VAR, kill_all_with
from sandboxctl.hostid import this_host
from sandboxctl.labels import LABEL_ID, matches

_META = "sandbox.json"
_ENV = "env.json"
_SANDBOX_DIR = re.compile(r"[0-9a-f]{12}")


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total


class LocalBackend:
    name: ClassVar[str] = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, backend_id: str) -> Path:
        """The sandbox's directory on this host; another host's sandbox is an error, never "not found"."""
        host, sep, where = backend_id.partition(":")
        if not sep:  # records made before ids carried host and directory
            path = self.root.resolve() / backend_id
        elif host != this_host():
            raise BackendError(
                f"local sandbox {backend_id} lives on host {host!r}, not {this_host()!r}: run sandboxctl there"
            )
        else:
            path = Path(where)
        # The id comes from a registry that may be shared: only ever touch a directory that is a sandbox's.
        if not path.is_absolute() or not _SANDBOX_DIR.fullmatch(path.name) or not (path / _META).is_file():
            raise NotFound(f"local sandbox {backend_id}: not found")
        return path

    def _read(self, path: Path) -> BackendSandbox:
        meta = json.loads((path / _META).read_text())
        return BackendSandbox(
            backend_id=f"{this_host()}:{path.resolve()}",
            state=BackendState.RUNNING,
            labels=meta["labels"],
            created_at=datetime.fromisoformat(meta["created_at"]),
            name=meta.get("name"),
        )

    def create(self, spec: CreateSpec) -> BackendSandbox:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.root.resolve() / spec.sandbox_id
        try:
            # Labels first: a create killed midway still leaves a directory `cleanup --orphans` can judge.
            path.mkdir(mode=0o700)
            meta = {"labels": dict(spec.labels), "name": spec.name, "created_at": datetime.now(UTC).isoformat()}
            (path / _META).write_text(json.dumps(meta))
            # The sandbox's own environment lives in the sandbox, like a container's; 0600.
            env_file = os.open(path / _ENV, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(env_file, "w") as handle:
                json.dump(dict(spec.env), handle)
            (path / "workspace").mkdir(mode=0o700)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return self._read(path)

    def inspect(self, backend_id: str) -> BackendSandbox:
        return self._read(self._dir(backend_id))

    def list_owned(self, selector: Mapping[str, str] | None = None) -> list[BackendSandbox]:
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.iterdir()):
            try:
                sandbox = self._read(path)
            except (OSError, ValueError, KeyError):
                continue
            if LABEL_ID in sandbox.labels and matches(dict(sandbox.labels), dict(selector or {})):
                found.append(sandbox)
        return found

    def delete(self, backend_id: str) -> DeleteResult:
        path = self._dir(backend_id)
        # Processes first: nothing the sandbox started outlives it, not even a setsid'd `nohup cmd &`.
        kill_all_with(SANDBOX_VAR, path.name)
        size = _dir_size(path)
        # Rename first so a half-finished removal is never mistaken for a live sandbox.
        doomed = path.with_name(f".deleting-{path.name}")
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return DeleteResult(freed_bytes=size)

    def workspace_path(self, backend_id: str) -> str:
        return str(self._dir(backend_id) / "workspace")

    def upload_archive(self, backend_id: str, dest_dir: str, archive: BinaryIO) -> None:
        from sandboxctl import safe_extract  # uploads only: create, exec and delete need none of it

        self._dir(backend_id)
        # `dest_dir` is followed as `docker cp` follows it inside a container (a link to a directory is that
        # directory); below it the one hardened extractor writes, never through a link. (tarfile's `filter=`
        # does not exist before Python 3.11.4: Debian 12 has 3.11.2.)
        dest = Path(os.path.realpath(dest_dir))
        dest.mkdir(parents=True, exist_ok=True)
        safe_extract.extract(archive, dest, keep_modes=True)

    @contextlib.contextmanager
    def download_archive(self, backend_id: str, path: str, *, max_file: int | None = None) -> Iterator[BinaryIO]:
        """A tar of `path` written by a thread into a pipe: streamed, never whole in memory or on disk."""
        self._dir(backend_id)
        source = Path(path)
        if not source.exists():
            raise NotFound(f"{path}: no such file in sandbox {backend_id}")
        read_fd, write_fd = os.pipe()
        writer = threading.Thread(target=_write_tar, args=(source, write_fd), daemon=True)
        writer.start()
        with os.fdopen(read_fd, "rb") as stream:
            try:
                yield stream
            finally:
                stream.close()  # a reader that stopped early: the writer gets EPIPE and ends
                writer.join(timeout=30)

    def exec(self, backend_id: str, request: ExecRequest) -> ExecResult:
        path = self._dir(backend_id)
        workspace = path / "workspace"
        cwd = workspace / request.workdir if request.workdir else workspace
        env = command_env(path, request.env)
        env[EXEC_TOKEN_VAR] = token = secrets.token_hex(8)  # tags this exec's processes: a timeout kills them
        try:
            process = subprocess.Popen(
                list(request.command),
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE if request.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # one process group: a timeout kills the whole tree
            )
        except FileNotFoundError as exc:
            target = exc.filename if exc.filename != str(cwd) else None
            if target is None and not cwd.is_dir():
                raise BackendError(f"working directory {request.workdir} does not exist") from None
            request.on_stderr(f"sandboxctl: {request.command[0]}: command not found\n".encode())
            return ExecResult(exit_code=127)
        except PermissionError:
            request.on_stderr(f"sandboxctl: {request.command[0]}: permission denied\n".encode())
            return ExecResult(exit_code=126)
        assert process.stdout is not None and process.stderr is not None
        pumps = [
            threading.Thread(target=_pump, args=(process.stdout, request.on_stdout), daemon=True),
            threading.Thread(target=_pump, args=(process.stderr, request.on_stderr), daemon=True),
        ]
        if request.stdin is not None and process.stdin is not None:
            pumps.append(threading.Thread(target=_feed, args=(request.stdin, process.stdin), daemon=True))
        for pump in pumps:
            pump.start()
        try:
            process.wait(timeout=request.timeout_seconds)
        except subprocess.TimeoutExpired:
            _kill_group(process, token)
            return TIMED_OUT
        except BaseException:
            _kill_group(process, token)
            raise
        finally:
            for pump in pumps[:2]:
                pump.join(timeout=5)
        code = process.returncode
        return ExecResult(exit_code=code if code >= 0 else 128 - code)

    def set_lifetime(self, backend_id: str, *, ttl_seconds: int | None, idle_timeout_seconds: int | None) -> None:
        """Nothing to mirror: a local sandbox is a directory; only the registry knows its lifetime."""


def command_env(path: Path, env: Mapping[str, str]) -> dict[str, str]:
    """The environment of every command in the sandbox at `path`, exec's and a terminal's alike: the host's,
    the sandbox's create-time `--env`, the command's own, its workspace, and the tag by which `delete` kills
    every process of the sandbox (even one that escaped with setsid)."""
    env_file = path / _ENV
    created_env = json.loads(env_file.read_text()) if env_file.exists() else {}
    return {**os.environ, **created_env, **env, "SANDBOXCTL_WORKSPACE": str(path / "workspace"), SANDBOX_VAR: path.name}


def _kill_group(process: subprocess.Popen[bytes], token: str) -> None:
    """Kill the command's process group, then whatever of this exec escaped it (setsid)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    kill_all_with(EXEC_TOKEN_VAR, token)
    process.wait()


def _write_tar(source: Path, write_fd: int) -> None:
    """The download side of the pipe; a reader that stops early makes it end on EPIPE, quietly."""
    with (
        contextlib.suppress(OSError),
        os.fdopen(write_fd, "wb") as pipe,
        tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as archive,
    ):
        archive.add(source, arcname=source.name, filter=_forgetting(archive))


def _forgetting(archive: tarfile.TarFile) -> Callable[[tarfile.TarInfo], tarfile.TarInfo]:
    """A filter that forgets every member already written: tarfile keeps each TarInfo it writes (for
    `getmembers`) and every file's inode (to write a second link to it as a hardlink), so a tree of a million
    entries would otherwise sit in memory while it streams. Hardlinked files then travel as copies, which is
    what `safe_extract` makes of a hardlink anyway."""

    def forget(member: tarfile.TarInfo) -> tarfile.TarInfo:
        archive.members.clear()
        archive.inodes.clear()
        return member

    return forget


def _pump(stream: IO[bytes], sink: Any) -> None:
    reader = getattr(stream, "read1", stream.read)
    while chunk := reader(65536):
        sink(chunk)


def _feed(source: Any, target: IO[bytes]) -> None:
    try:
        fileno = source.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fileno = None
    try:
        while chunk := (os.read(fileno, 65536) if fileno is not None else source.read(65536)):
            target.write(chunk)
            target.flush()
    except (BrokenPipeError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            target.close()
