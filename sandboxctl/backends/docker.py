"""Docker backend on the docker SDK. `DOCKER_HOST`, `DOCKER_TLS_*` and contexts are honoured by `from_env`.

A sandbox is one container kept alive by `sleep infinity` under Docker's init
(so stop/kill never waits out a grace period), labelled so that
`cleanup --orphans` can judge it without the registry.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import docker
import docker.errors
import requests.exceptions

from sandboxctl.backends.base import (
    BackendError,
    BackendSandbox,
    BackendState,
    CreateSpec,
    DeleteResult,
    ExecRequest,
    ExecResult,
    NotFound,
    Transient,
    Unavailable,
)
from sandboxctl.labels import LABEL_ID

WORKSPACE = "/workspace"
KEEP_ALIVE = ["sleep", "infinity"]
_EXEC_TOKEN_VAR = "SANDBOXCTL_EXEC_TOKEN"
# Kills every process carrying this exec's token in its environment: the command and all its children.
_KILL_BY_TOKEN = (
    'for d in /proc/[0-9]*; do grep -q "{var}={token}" "$d/environ" 2>/dev/null && kill -9 "${{d#/proc/}}"; done; true'
)

_STATES = {
    "created": BackendState.CREATING,
    "running": BackendState.RUNNING,
    "restarting": BackendState.RUNNING,
    "paused": BackendState.STOPPED,
    "exited": BackendState.STOPPED,
    "removing": BackendState.DELETING,
    "dead": BackendState.FAILED,
}


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "the default Docker socket"


def _translate(exc: Exception, what: str) -> Exception:
    """SDK and transport errors -> the backend contract's errors."""
    if isinstance(exc, docker.errors.NotFound):
        return NotFound(f"{what}: not found")
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionRefusedError | FileNotFoundError):
        return Unavailable(f"Docker daemon unreachable at {_docker_host()}: start Docker or set DOCKER_HOST")
    if isinstance(exc, requests.exceptions.Timeout):
        return Transient(f"{what}: Docker did not answer in time")
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 0
        message = exc.explanation or str(exc)
        if status == 409 or status >= 500:
            return Transient(f"{what}: {message}")
        return BackendError(f"{what}: {message}")
    if isinstance(exc, docker.errors.DockerException):
        return Unavailable(f"Docker daemon unreachable at {_docker_host()}: {exc}")
    return exc


def _to_sandbox(attrs: Mapping[str, Any]) -> BackendSandbox:
    """From either a list entry (sparse) or an inspect result."""
    labels = attrs.get("Labels") or (attrs.get("Config") or {}).get("Labels") or {}
    state = attrs.get("State")
    status = state.get("Status") if isinstance(state, dict) else state
    created = attrs.get("Created")
    if isinstance(created, int | float):
        created_at: datetime | None = datetime.fromtimestamp(created, UTC)
    elif isinstance(created, str):
        created_at = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00") if created else None
    else:
        created_at = None
    names = attrs.get("Names") or [attrs.get("Name") or ""]
    return BackendSandbox(
        backend_id=attrs.get("Id") or attrs.get("ID") or "",
        state=_STATES.get(str(status), BackendState.UNKNOWN),
        labels=dict(labels),
        created_at=created_at,
        name=(names[0] or "").lstrip("/") or None,
    )


class DockerBackend:
    name: ClassVar[str] = "docker"

    def __init__(self, client: docker.DockerClient | None = None, max_pool_size: int = 10) -> None:
        if client is None:
            try:
                client = docker.from_env(max_pool_size=max_pool_size)
            except docker.errors.DockerException as exc:
                raise _translate(exc, "connect") from None
        self.client = client
        self.api = client.api

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise _translate(exc, what) from None

    # -- lifecycle ---------------------------------------------------------
    def create(self, spec: CreateSpec) -> BackendSandbox:
        image = spec.image or "python:3.12-slim"
        kwargs: dict[str, Any] = dict(
            image=image,
            entrypoint=KEEP_ALIVE[:1],
            command=KEEP_ALIVE[1:],
            name=f"sandboxctl-{spec.sandbox_id}",
            hostname=f"sandbox-{spec.sandbox_id}",
            labels=dict(spec.labels),
            environment=dict(spec.env),
            working_dir=WORKSPACE,
            host_config=self.api.create_host_config(
                init=True,
                nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None,
                mem_limit=spec.memory_bytes,
            ),
        )
        try:
            created = self.api.create_container(**kwargs)
        except docker.errors.ImageNotFound:
            self._pull(image)
            created = self._call(f"create {image}", self.api.create_container, **kwargs)
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise _translate(exc, f"create from {image}") from None
        container_id = created["Id"]
        try:
            self._call("start", self.api.start, container_id)
            return self.inspect(container_id)
        except BaseException:
            # Never leave a half-created container behind (this covers Ctrl-C too).
            # If even this fails, the labels still let `cleanup --orphans` find it.
            with contextlib.suppress(Exception):
                self.api.remove_container(container_id, force=True, v=True)
            raise

    def _pull(self, image: str) -> None:
        try:
            self.client.images.pull(image)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            if isinstance(exc, requests.exceptions.ConnectionError):
                raise _translate(exc, "pull") from None
            raise BackendError(f"image {image!r} is not present and could not be pulled: {exc}") from None

    def inspect(self, backend_id: str) -> BackendSandbox:
        return _to_sandbox(self._call(f"container {backend_id[:12]}", self.api.inspect_container, backend_id))

    def list_owned(self, selector: Mapping[str, str] | None = None) -> list[BackendSandbox]:
        filters = [LABEL_ID] + [f"{k}={v}" for k, v in (selector or {}).items()]
        rows = self._call("list containers", self.api.containers, all=True, filters={"label": filters})
        return [_to_sandbox(row) for row in rows]

    def delete(self, backend_id: str) -> DeleteResult:
        """Kill and remove at once (`rm -f`), with its anonymous volumes; report the writable layer's size."""
        what = f"container {backend_id[:12]}"
        rows = self._call(what, self.api.containers, all=True, size=True, filters={"id": backend_id})
        if not rows:
            raise NotFound(f"{what}: not found")
        self._call(what, self.api.remove_container, backend_id, force=True, v=True)
        return DeleteResult(freed_bytes=rows[0].get("SizeRw"))

    def workspace_path(self, backend_id: str) -> str:
        return WORKSPACE

    def upload_archive(self, backend_id: str, dest_dir: str, tar_bytes: bytes) -> None:
        self._run_quiet(backend_id, ["mkdir", "-p", dest_dir])
        if not self._call("upload", self.api.put_archive, backend_id, dest_dir, tar_bytes):
            raise BackendError(f"upload into {dest_dir} failed")

    def download_archive(self, backend_id: str, path: str) -> bytes:
        stream, _stat = self._call(f"download {path}", self.api.get_archive, backend_id, path)
        buffer = io.BytesIO()
        for chunk in stream:
            buffer.write(chunk)
        return buffer.getvalue()

    def _run_quiet(self, backend_id: str, command: list[str]) -> int:
        exec_id = self._call("exec", self.api.exec_create, backend_id, command, stdout=False, stderr=False)["Id"]
        self._call("exec", self.api.exec_start, exec_id)
        return int(self.api.exec_inspect(exec_id).get("ExitCode") or 0)

    # -- exec --------------------------------------------------------------
    def exec(self, backend_id: str, request: ExecRequest) -> ExecResult:
        """Low-level exec: a hijacked socket carrying multiplexed stdout/stderr frames and our stdin."""
        token = secrets.token_hex(8)
        env = {**request.env, _EXEC_TOKEN_VAR: token}
        exec_id = self._call(
            f"container {backend_id[:12]}",
            self.api.exec_create,
            backend_id,
            list(request.command),
            stdout=True,
            stderr=True,
            stdin=request.stdin is not None,
            environment=env,
            workdir=request.workdir,
        )["Id"]
        sock = self._call("exec", self.api.exec_start, exec_id, socket=True)
        raw: socket.socket = getattr(sock, "_sock", sock)
        deadline = time.monotonic() + request.timeout_seconds if request.timeout_seconds else None
        pump: threading.Thread | None = None
        if request.stdin is not None:
            pump = threading.Thread(target=_forward_stdin, args=(request.stdin, raw), daemon=True)
            pump.start()
        try:
            finished = _read_frames(raw, request, deadline)
        except BaseException:
            self._kill_exec(backend_id, exec_id, token)
            raise
        finally:
            raw.close()
        if not finished:
            self._kill_exec(backend_id, exec_id, token)
            return ExecResult(exit_code=124, timed_out=True)
        return ExecResult(exit_code=self._exit_code(exec_id))

    def _exit_code(self, exec_id: str) -> int:
        # The stream can close a moment before the daemon records the exit code.
        for _ in range(100):
            info = self._call("exec", self.api.exec_inspect, exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            time.sleep(0.01)
        return int(info.get("ExitCode") or 1)

    def _kill_exec(self, backend_id: str, exec_id: str, token: str) -> None:
        """Kill the exec'd command and its children: by token inside the container, else by host pid."""
        script = _KILL_BY_TOKEN.format(var=_EXEC_TOKEN_VAR, token=token)
        try:
            if self._run_quiet(backend_id, ["/bin/sh", "-c", script]) == 0:
                return
        except BackendError:
            pass
        try:  # no shell in the image: works when the daemon is local and we may signal its processes
            pid = self.api.exec_inspect(exec_id).get("Pid")
            if pid:
                os.kill(int(pid), 9)
        except (OSError, docker.errors.DockerException, requests.exceptions.RequestException):
            pass


def _forward_stdin(source: Any, sock: socket.socket) -> None:
    """Copy stdin to the exec until EOF, then half-close so the command sees EOF too."""
    try:
        fileno = source.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fileno = None
    try:
        while True:
            chunk = os.read(fileno, 65536) if fileno is not None else source.read(65536)
            if not chunk:
                break
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _read_exact(sock: socket.socket, size: int, deadline: float | None) -> bytes | None:
    """Read `size` bytes; b'' at EOF; None when the deadline passed first."""
    data = bytearray()
    while len(data) < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([sock], [], [], remaining)
            if not ready:
                return None
        chunk = sock.recv(size - len(data))
        if not chunk:
            return bytes(data) if data else b""
        data.extend(chunk)
    return bytes(data)


def _read_frames(sock: socket.socket, request: ExecRequest, deadline: float | None) -> bool:
    """Demultiplex Docker's 8-byte-header frames to the sinks. False when the deadline passed."""
    while True:
        header = _read_exact(sock, 8, deadline)
        if header is None:
            return False
        if len(header) < 8:
            return True
        stream, size = struct.unpack(">BxxxL", header)
        payload = _read_exact(sock, size, deadline)
        if payload is None:
            return False
        (request.on_stderr if stream == 2 else request.on_stdout)(payload)
