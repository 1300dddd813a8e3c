"""Docker backend on the docker SDK, honouring `DOCKER_HOST`, `DOCKER_TLS_*` and Docker contexts.

A sandbox is one container kept alive by `sleep infinity` under Docker's init
(so removal never waits out a grace period), labelled so that
`cleanup --orphans` can judge it without the registry. The SDK is imported on
first use: `exec` over a local socket never needs it (see docker_engine.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Protocol

from sandboxctl.backends import docker_engine
from sandboxctl.backends.base import (
    EXEC_TOKEN_VAR,
    TIMED_OUT,
    BackendError,
    BackendSandbox,
    BackendState,
    ChunkStream,
    CreateSpec,
    DeleteResult,
    ExecRequest,
    ExecResult,
    NotFound,
    Transient,
    Unavailable,
    kill_by_token_script,
)
from sandboxctl.backends.docker_engine import (
    API_CALL_TIMEOUT,
    DeadlineExceeded,
    EngineSocket,
    current_context,
    docker_host,
    unreachable,
)
from sandboxctl.labels import LABEL_ID

if TYPE_CHECKING:
    import docker

WORKSPACE = "/workspace"
KEEP_ALIVE = ["sleep", "infinity"]
# After `exec --timeout` passed: the calls that kill the command get this long, so exec ends within timeout + 5 s.
KILL_BUDGET_SECONDS = 4.0
DEFAULT_IMAGE = "python:3.12-slim"

_STATES = {
    "created": BackendState.CREATING,
    "running": BackendState.RUNNING,
    "restarting": BackendState.RUNNING,
    "paused": BackendState.STOPPED,
    "exited": BackendState.STOPPED,
    "removing": BackendState.DELETING,
    "dead": BackendState.FAILED,
}


def _sdk_errors() -> tuple[type[BaseException], ...]:
    import docker.errors
    import requests.exceptions

    return (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


def _translate(exc: BaseException, what: str) -> BaseException:
    """SDK and transport errors -> the backend contract's errors."""
    import docker.errors
    import requests.exceptions

    if isinstance(exc, docker.errors.NotFound):
        return NotFound(f"{what}: not found")
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionRefusedError | FileNotFoundError):
        return unreachable(docker_host())
    if isinstance(exc, requests.exceptions.Timeout):
        return Transient(f"{what}: Docker did not answer in time")
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 0
        message = exc.explanation or str(exc)
        if status == 409 or status >= 500:
            return Transient(f"{what}: {message}")
        return BackendError(f"{what}: {message}")
    if isinstance(exc, docker.errors.DockerException):
        return Unavailable(f"Docker daemon unreachable at {docker_host()}: {exc}")
    return exc


def container_config(spec: CreateSpec) -> dict[str, Any]:
    """The Engine's create body for a sandbox, as the SDK's `create_container` would send it."""
    host_config: dict[str, Any] = {"NetworkMode": "default", "Init": True}
    if spec.cpus:
        host_config["NanoCpus"] = int(spec.cpus * 1e9)
    if spec.memory_bytes is not None:
        host_config["Memory"] = spec.memory_bytes
    return {
        "Image": spec.image or DEFAULT_IMAGE,
        "Entrypoint": KEEP_ALIVE[:1],
        "Cmd": KEEP_ALIVE[1:],
        "Hostname": f"sandbox-{spec.sandbox_id}",
        "Labels": dict(spec.labels),
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "WorkingDir": WORKSPACE,
        "AttachStdin": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "NetworkDisabled": False,
        "HostConfig": host_config,
    }


def _to_sandbox(attrs: Mapping[str, Any]) -> BackendSandbox:
    """From either a list entry (sparse) or an inspect result."""
    labels = attrs.get("Labels") or (attrs.get("Config") or {}).get("Labels") or {}
    state = attrs.get("State")
    status = state.get("Status") if isinstance(state, dict) else state
    created = attrs.get("Created")
    if isinstance(created, int | float):
        created_at: datetime | None = datetime.fromtimestamp(created, UTC)
    elif isinstance(created, str) and created:
        created_at = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")
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


class _ExecApi(Protocol):
    """The three Engine calls an exec needs; served by the SDK or by `EngineSocket`.

    Each call answers by `deadline` (monotonic), or within API_CALL_TIMEOUT when it is None.
    """

    deadline: float | None

    def exec_create(
        self, container: str, command: list[str], *, env: dict[str, str], workdir: str | None, stdin: bool
    ) -> str: ...

    def exec_start(self, exec_id: str) -> tuple[socket.socket, bytes]: ...

    def exec_inspect(self, exec_id: str) -> dict[str, Any]: ...


class _SdkExecApi:
    def __init__(self, backend: DockerBackend) -> None:
        self.backend = backend
        self.deadline: float | None = None

    def _remaining(self) -> float:
        if self.deadline is None:
            return API_CALL_TIMEOUT
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("Docker daemon did not answer in time")
        return min(API_CALL_TIMEOUT, remaining)

    @property
    def api(self) -> Any:
        """The SDK's low-level client, its per-request timeout cut to what is left before `deadline`."""
        self.backend.sdk_timeout = self._remaining()  # used if the client is made now
        api = self.backend.api
        api.timeout = self._remaining()
        return api

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`DockerBackend.call`, except that a request timing out is the deadline passing (not Transient)."""
        import requests.exceptions

        try:
            return fn(*args, **kwargs)
        except requests.exceptions.Timeout:
            raise DeadlineExceeded(f"Docker daemon at {docker_host()} did not answer {what} in time") from None
        except _sdk_errors() as exc:
            raise _translate(exc, what) from None

    def exec_create(
        self, container: str, command: list[str], *, env: dict[str, str], workdir: str | None, stdin: bool
    ) -> str:
        api = self.api
        created = self._call(
            f"container {container[:12]}",
            api.exec_create,
            container,
            command,
            stdout=True,
            stderr=True,
            stdin=stdin,
            environment=env,
            workdir=workdir,
        )
        return str(created["Id"])

    def exec_start(self, exec_id: str) -> tuple[socket.socket, bytes]:
        sock = self._call("exec start", self.api.exec_start, exec_id, socket=True)
        raw = getattr(sock, "_sock", sock)
        raw.settimeout(None)  # the stream is the command's: the frame reader bounds it with `--timeout`
        return raw, b""

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return dict(self._call("exec inspect", self.api.exec_inspect, exec_id))


class DockerBackend:
    name: ClassVar[str] = "docker"

    def __init__(self, client: docker.DockerClient | None = None, max_pool_size: int = 10) -> None:
        self._client = client
        self._max_pool_size = max_pool_size
        # Per-request timeout of the SDK client, set when it is made (its first call asks the API version).
        self.sdk_timeout = API_CALL_TIMEOUT

    @property
    def client(self) -> docker.DockerClient:
        """The SDK client, made on first use for the resolved endpoint (DOCKER_HOST or context)."""
        if self._client is None:
            import docker

            try:
                if os.environ.get("DOCKER_HOST") or current_context() == "default":
                    self._client = docker.from_env(max_pool_size=self._max_pool_size, timeout=self.sdk_timeout)
                else:
                    # docker-py's from_env ignores contexts; its ContextAPI supplies TLS material when it
                    # finds the context (it ignores DOCKER_CONFIG), else the endpoint alone is used.
                    from docker.context import ContextAPI

                    context = ContextAPI.get_context(current_context())
                    self._client = docker.DockerClient(
                        base_url=docker_host(),
                        tls=context.TLSConfig if context is not None else False,
                        max_pool_size=self._max_pool_size,
                        timeout=self.sdk_timeout,
                    )
            except _sdk_errors() as exc:
                raise _translate(exc, "connect") from None
        return self._client

    @property
    def api(self) -> Any:
        return self.client.api

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the SDK, translating its errors to the backend contract's."""
        try:
            return fn(*args, **kwargs)
        except _sdk_errors() as exc:
            raise _translate(exc, what) from None

    # -- lifecycle ---------------------------------------------------------
    def create(self, spec: CreateSpec) -> BackendSandbox:
        engine = self._engine()
        if engine is not None:
            created = self._create_on_engine(engine, spec)
            if created is not None:
                return created
        import docker.errors

        image = spec.image or DEFAULT_IMAGE
        api = self.api
        kwargs: dict[str, Any] = dict(
            image=image,
            entrypoint=KEEP_ALIVE[:1],
            command=KEEP_ALIVE[1:],
            name=f"sandboxctl-{spec.sandbox_id}",
            hostname=f"sandbox-{spec.sandbox_id}",
            labels=dict(spec.labels),
            environment=dict(spec.env),
            working_dir=WORKSPACE,
            host_config=api.create_host_config(
                init=True,
                nano_cpus=int(spec.cpus * 1e9) if spec.cpus else None,
                mem_limit=spec.memory_bytes,
            ),
        )
        try:
            created = api.create_container(**kwargs)
        except docker.errors.ImageNotFound:
            self._pull(image)
            created = self.call(f"create {image}", api.create_container, **kwargs)
        except _sdk_errors() as exc:
            raise _translate(exc, f"create from {image}") from None
        container_id = created["Id"]
        try:
            self.call("start", api.start, container_id)
            return self.inspect(container_id)
        except BaseException:
            # Never leave a half-created container behind (this covers Ctrl-C too);
            # if even this fails, the labels still let `cleanup --orphans` find it.
            with contextlib.suppress(Exception):
                api.remove_container(container_id, force=True, v=True)
            raise

    def _pull(self, image: str) -> None:
        import requests.exceptions

        try:
            self.client.images.pull(image)
        except _sdk_errors() as exc:
            if isinstance(exc, requests.exceptions.ConnectionError):
                raise _translate(exc, "pull") from None
            raise BackendError(f"image {image!r} is not present and could not be pulled: {exc}") from None

    def inspect(self, backend_id: str) -> BackendSandbox:
        engine = self._engine()
        if engine is not None:
            return _to_sandbox(docker_engine.inspect_container(engine, backend_id))
        return _to_sandbox(self.call(f"container {backend_id[:12]}", self.api.inspect_container, backend_id))

    # -- the same calls over a local socket without the SDK (`import docker` costs 0.1-0.3 s) --------
    def _engine(self) -> EngineSocket | None:
        """The stdlib Engine client when no SDK client was given and the daemon is on a unix socket."""
        return EngineSocket.for_local_daemon() if self._client is None else None

    def _create_on_engine(self, engine: EngineSocket, spec: CreateSpec) -> BackendSandbox | None:
        """Create and start; None when the image is missing (the SDK path pulls it)."""
        name = f"sandboxctl-{spec.sandbox_id}"
        try:
            container_id = docker_engine.create_container(engine, name, container_config(spec))
        except NotFound:
            return None
        try:
            docker_engine.start_container(engine, container_id)
        except BaseException:
            with contextlib.suppress(Exception):  # never leave a half-created container (Ctrl-C too)
                docker_engine.remove_container(engine, container_id)
            raise
        # No inspect afterwards: create records only the id, which the create call returned, and the start
        # succeeded. One Engine round trip less per create (`docker run -d` makes two: create and start).
        return BackendSandbox(
            backend_id=container_id, state=BackendState.RUNNING, labels=dict(spec.labels), created_at=None, name=name
        )

    def list_owned(self, selector: Mapping[str, str] | None = None) -> list[BackendSandbox]:
        filters = [LABEL_ID] + [f"{k}={v}" for k, v in (selector or {}).items()]
        rows = self.call("list containers", self.api.containers, all=True, filters={"label": filters})
        return [_to_sandbox(row) for row in rows]

    def delete(self, backend_id: str) -> DeleteResult:
        """Kill and remove at once (`rm -f`), with its anonymous volumes; report the writable layer's size."""
        what = f"container {backend_id[:12]}"
        engine = self._engine()
        if engine is not None:
            size = docker_engine.container_size_rw(engine, backend_id)
            if size is None:
                raise NotFound(f"{what}: not found")
            docker_engine.remove_container(engine, backend_id)
            return DeleteResult(freed_bytes=size)
        rows = self.call(what, self.api.containers, all=True, size=True, filters={"id": backend_id})
        if not rows:
            raise NotFound(f"{what}: not found")
        self.call(what, self.api.remove_container, backend_id, force=True, v=True)
        # The Engine omits SizeRw when it is 0 (`omitempty`), so absent means nothing was written.
        return DeleteResult(freed_bytes=rows[0].get("SizeRw", 0))

    def workspace_path(self, backend_id: str) -> str:
        return WORKSPACE

    def upload_archive(self, backend_id: str, dest_dir: str, archive: BinaryIO) -> None:
        self._run_quiet(self._exec_api(), backend_id, ["mkdir", "-p", dest_dir])
        if not self.call("upload", self.api.put_archive, backend_id, dest_dir, archive):
            raise BackendError(f"upload into {dest_dir} failed")

    @contextlib.contextmanager
    def download_archive(self, backend_id: str, path: str, *, max_file: int | None = None) -> Iterator[BinaryIO]:
        """The engine's `get_archive` body, read chunk by chunk (the engine builds the tar: no in-sandbox
        filtering, the host skips what is over the limits)."""
        chunks, _stat = self.call(f"download {path}", self.api.get_archive, backend_id, path)
        try:
            yield io.BufferedReader(ChunkStream(chunks), buffer_size=1024 * 1024)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    # -- exec --------------------------------------------------------------
    def _exec_api(self) -> _ExecApi:
        if self._client is None:
            engine = EngineSocket.for_local_daemon()
            if engine is not None:
                return engine
        return _SdkExecApi(self)

    def exec(self, backend_id: str, request: ExecRequest) -> ExecResult:
        """Attached exec: multiplexed stdout/stderr frames demultiplexed live, our stdin forwarded.

        `request.timeout_seconds` bounds everything, API calls included: a daemon that stops answering
        before the command ends makes this return timed out (124) within the timeout plus the kill budget.
        """
        api = self._exec_api()
        token = os.urandom(8).hex()  # secrets.token_hex(8) without importing hmac/hashlib
        deadline = time.monotonic() + request.timeout_seconds if request.timeout_seconds else None
        api.deadline = deadline
        exec_id: str | None = None
        try:
            exec_id = api.exec_create(
                backend_id,
                list(request.command),
                env={**request.env, EXEC_TOKEN_VAR: token},
                workdir=request.workdir,
                stdin=request.stdin is not None,
            )
            sock, pending = api.exec_start(exec_id)
        except DeadlineExceeded:
            if deadline is None:
                raise
            if exec_id is not None:  # the start may have reached the daemon: make sure nothing runs on
                self._kill_exec(api, backend_id, exec_id, token)
            return TIMED_OUT
        if request.stdin is not None:
            threading.Thread(target=_forward_stdin, args=(request.stdin, sock), daemon=True).start()
        try:
            finished = _FrameReader(sock, pending, deadline).pump(request)
        except BaseException:
            self._kill_exec(api, backend_id, exec_id, token)
            raise
        finally:
            sock.close()
        if not finished:
            self._kill_exec(api, backend_id, exec_id, token)
            return TIMED_OUT
        if deadline is not None:  # the command ended in time: reading its exit code may take a moment more
            api.deadline = max(deadline, time.monotonic() + KILL_BUDGET_SECONDS)
        return ExecResult(exit_code=_exit_code(api, exec_id))

    def _run_quiet(self, api: _ExecApi, backend_id: str, command: list[str]) -> int:
        exec_id = api.exec_create(backend_id, command, env={}, workdir=None, stdin=False)
        sock, pending = api.exec_start(exec_id)
        limit = time.monotonic() + 30 if api.deadline is None else min(api.deadline, time.monotonic() + 30)
        try:
            _FrameReader(sock, pending, limit).pump(None)
        finally:
            sock.close()
        return _exit_code(api, exec_id)

    def _kill_exec(self, api: _ExecApi, backend_id: str, exec_id: str, token: str) -> None:
        """Kill the exec'd command and its children: by token inside the container, else by host pid.

        Bounded by KILL_BUDGET_SECONDS: a daemon that stopped answering cannot hold exec past its timeout.
        """
        api.deadline = time.monotonic() + KILL_BUDGET_SECONDS
        script = kill_by_token_script(token)
        with contextlib.suppress(BackendError, Unavailable):
            if self._run_quiet(api, backend_id, ["/bin/sh", "-c", script]) == 0:
                return
        # No shell in the image: works when the daemon is local and we may signal its processes.
        with contextlib.suppress(Exception):
            pid = api.exec_inspect(exec_id).get("Pid")
            if pid:
                os.kill(int(pid), 9)

    def set_lifetime(self, backend_id: str, *, ttl_seconds: int | None, idle_timeout_seconds: int | None) -> None:
        """Nothing to mirror: Docker enforces no lifetime, and labels cannot change (`sandboxctl.expires-at`
        keeps its creation-time value; the live record decides)."""


def _exit_code(api: _ExecApi, exec_id: str) -> int:
    # The stream can close a moment before the daemon records the exit code.
    info: dict[str, Any] = {}
    for _ in range(200):
        info = api.exec_inspect(exec_id)
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        time.sleep(0.01)
    return int(info.get("ExitCode") or 1)


def _forward_stdin(source: Any, sock: socket.socket) -> None:
    """Copy stdin to the exec until EOF, then half-close so the command sees EOF too."""
    try:
        fileno = source.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fileno = None
    try:
        while chunk := (os.read(fileno, 65536) if fileno is not None else source.read(65536)):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class _FrameReader:
    """Reads Docker's multiplexed stream: 8-byte headers (stream id, size) then the payload."""

    def __init__(self, sock: socket.socket, pending: bytes, deadline: float | None) -> None:
        self.sock = sock
        self.buffer = bytearray(pending)
        self.deadline = deadline

    def _fill(self, size: int) -> bool | None:
        """Buffer at least `size` bytes. True: done; False: EOF first; None: the deadline passed."""
        while len(self.buffer) < size:
            if self.deadline is not None:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
                    return None
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buffer.extend(chunk)
        return True

    def pump(self, request: ExecRequest | None) -> bool:
        """Route frames to the request's sinks (or drop them) until EOF. False when the deadline passed."""
        while True:
            state = self._fill(8)
            if state is None:
                return False
            if state is False:
                return True
            stream, size = struct.unpack(">BxxxL", bytes(self.buffer[:8]))
            state = self._fill(8 + size)
            if state is None:
                return False
            payload = bytes(self.buffer[8 : 8 + size])
            del self.buffer[: 8 + size]
            if request is not None:
                (request.on_stderr if stream == 2 else request.on_stdout)(payload)
            if state is False:
                return True
