"""A pseudo-terminal in a Docker container: an exec with `Tty: true` over the Engine API's hijacked connection.

On a local unix socket the stdlib `EngineSocket` speaks the API (as for `exec`);
any other endpoint (TCP, TLS, ssh) goes through the docker SDK's low-level client.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
from typing import Any, Protocol

from sandboxctl.backends.base import EXEC_TOKEN_VAR, BackendError, NotFound, kill_by_token_script
from sandboxctl.backends.docker import DockerBackend
from sandboxctl.backends.docker_engine import EngineSocket
from sandboxctl.backends.tty import TtyRequest


class _TtyApi(Protocol):
    def exec_create_tty(
        self, container: str, command: list[str], *, env: dict[str, str], workdir: str | None, size: tuple[int, int]
    ) -> str: ...

    def exec_start(self, exec_id: str, *, tty: bool = False) -> tuple[socket.socket, bytes]: ...

    def exec_resize(self, exec_id: str, rows: int, cols: int) -> None: ...

    def exec_inspect(self, exec_id: str) -> dict[str, Any]: ...


class _SdkTtyApi:
    """The same calls through the docker SDK, for daemons not on a local unix socket."""

    def __init__(self, backend: DockerBackend) -> None:
        self.backend = backend

    def exec_create_tty(
        self, container: str, command: list[str], *, env: dict[str, str], workdir: str | None, size: tuple[int, int]
    ) -> str:
        api = self.backend.api  # the SDK has no console size: the first resize sets it
        created = self.backend.call(
            f"container {container[:12]}", api.exec_create, container, command, stdin=True, tty=True,
            environment=env, workdir=workdir,
        )  # fmt: skip
        return str(created["Id"])

    def exec_start(self, exec_id: str, *, tty: bool = False) -> tuple[socket.socket, bytes]:
        sock = self.backend.call("exec", self.backend.api.exec_start, exec_id, tty=tty, socket=True)
        return getattr(sock, "_sock", sock), b""

    def exec_resize(self, exec_id: str, rows: int, cols: int) -> None:
        self.backend.call("exec", self.backend.api.exec_resize, exec_id, height=rows, width=cols)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return dict(self.backend.call("exec", self.backend.api.exec_inspect, exec_id))


class DockerTtySession:
    """The hijacked connection of one `Tty: true` exec."""

    def __init__(self, api: _TtyApi, backend_id: str, exec_id: str, token: str, sock: socket.socket, pending: bytes):
        self.api = api
        self.backend_id = backend_id
        self.exec_id = exec_id
        self.token = token
        self.sock = sock
        self._pending = pending
        self._closed = False

    @property
    def buffered(self) -> bool:
        return bool(self._pending)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def resize(self, rows: int, cols: int) -> None:
        # Right after start the daemon may not have the process yet: retry briefly, as the docker CLI does.
        # A wrong size is never worth failing the session for; an exec already gone (404) needs none.
        for attempt in range(10):
            try:
                self.api.exec_resize(self.exec_id, rows, cols)
                return
            except NotFound:
                return
            except BackendError:
                if attempt == 9:
                    return
                time.sleep(0.05 * (attempt + 1))

    def poll(self) -> int | None:
        return None  # the stream ends when the command and every holder of its terminal are gone

    def wait(self) -> int:
        # The stream can close a moment before the daemon records the exit code.
        info: dict[str, Any] = {}
        for _ in range(200):
            info = self.api.exec_inspect(self.exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            time.sleep(0.01)
        return int(info.get("ExitCode") or 1)

    def close(self, *, kill: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self.sock.close()
        if kill:
            with contextlib.suppress(BackendError):
                _kill_by_token(self.api, self.backend_id, self.token)


def _kill_by_token(api: _TtyApi, backend_id: str, token: str) -> None:
    """Kill the terminal's command and its children inside the container; they carry our token."""
    script = kill_by_token_script(token)
    exec_id = api.exec_create_tty(backend_id, ["/bin/sh", "-c", script], env={}, workdir=None, size=(24, 80))
    sock, _ = api.exec_start(exec_id, tty=True)
    try:
        sock.settimeout(30)
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass
    finally:
        sock.close()


def open_docker_tty(backend: DockerBackend, backend_id: str, request: TtyRequest) -> DockerTtySession:
    engine = EngineSocket.for_local_daemon()
    api: _TtyApi = engine if engine is not None else _SdkTtyApi(backend)
    token = secrets.token_hex(8)
    exec_id = api.exec_create_tty(
        backend_id,
        list(request.command),
        env={**request.env, EXEC_TOKEN_VAR: token},
        workdir=request.workdir,
        size=(request.rows, request.cols),
    )
    sock, pending = api.exec_start(exec_id, tty=True)
    session = DockerTtySession(api, backend_id, exec_id, token, sock, pending)
    try:
        session.resize(request.rows, request.cols)
    except BaseException:
        session.close(kill=True)
        raise
    return session
