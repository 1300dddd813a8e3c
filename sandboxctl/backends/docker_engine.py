"""Where the Docker daemon is, and a stdlib-only Engine API client for the exec hot path.

`import docker` costs ~0.1-0.25 s (mostly `requests`), more than a whole
`docker exec`. `sandboxctl exec` needs three calls (create, start attached,
inspect), so over a local unix socket it speaks the Engine API itself (HTTP/1.0
over the socket, see `roundtrip`); every other call, and every non-unix endpoint (TCP, TLS, ssh),
goes through the docker SDK.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from sandboxctl.backends.base import BackendError, NotFound, Unavailable

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
# Every Engine API call exec makes answers within this, or within what is left of `exec --timeout`.
API_CALL_TIMEOUT = 60.0


class DeadlineExceeded(Unavailable):
    """The daemon did not answer an API call in time (exit 4 unless exec turns it into its own timeout)."""


def call_timeout(deadline: float | None, host: str, what: str) -> float:
    """Seconds one API call may take: the default per call, cut to what is left before `deadline`."""
    if deadline is None:
        return API_CALL_TIMEOUT
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeadlineExceeded(f"Docker daemon at {host} did not answer {what} in time")
    return min(API_CALL_TIMEOUT, remaining)


def _docker_config_dir() -> str:
    return os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _quote(part: str) -> str:
    """A URL path or query part: urllib.parse is imported here, not by exec (which quotes nothing), ~2 ms."""
    from urllib.parse import quote

    return quote(part)


def current_context() -> str:
    """DOCKER_CONTEXT, else config.json's `currentContext`, else `default` (as the docker CLI decides)."""
    name = os.environ.get("DOCKER_CONTEXT")
    if name:
        return name
    try:
        config = _read_json(os.path.join(_docker_config_dir(), "config.json"))
    except (OSError, ValueError):
        return "default"
    return str(config.get("currentContext") or "default")


def docker_host() -> str:
    """The daemon endpoint: DOCKER_HOST, else the current context's, else the default socket."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return host
    name = current_context()
    if name != "default":
        import hashlib

        digest = hashlib.sha256(name.encode()).hexdigest()
        meta = os.path.join(_docker_config_dir(), "contexts", "meta", digest, "meta.json")
        try:
            endpoint = _read_json(meta)["Endpoints"]["docker"]["Host"]
        except (OSError, ValueError, KeyError) as exc:
            raise Unavailable(f"Docker context {name!r} cannot be read ({exc}): check `docker context ls`") from None
        return str(endpoint)
    return DEFAULT_SOCKET


def unreachable(host: str) -> Unavailable:
    return Unavailable(f"Docker daemon unreachable at {host}: start Docker or set DOCKER_HOST")


class BadResponse(ConnectionError):
    """The daemon's answer is not HTTP we can read (an OSError, like every other transport failure)."""


def _decode_chunked(body: bytes) -> bytes:
    out, rest = bytearray(), body
    while True:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            raise BadResponse("truncated chunked body")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadResponse(f"bad chunk size {size_line[:20]!r}") from None
        if size == 0:
            return bytes(out)
        out += rest[:size]
        rest = rest[size + 2 :]


def roundtrip(socket_path: str, method: str, path: str, payload: bytes | None, timeout: float) -> tuple[int, bytes]:
    """One HTTP/1.0 request over the unix socket: (status, body). `http.client` would cost every command
    ~8 ms of imports (email, ssl) for what is one request and one answer read to the end: with HTTP/1.0 the
    daemon sends the body unchunked and closes. Each socket operation waits at most `timeout`."""
    head = f"{method} {path} HTTP/1.0\r\nHost: localhost\r\n"
    if payload is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(head.encode() + b"\r\n" + (payload or b""))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    finally:
        sock.close()
    header, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, _, fields = header.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise BadResponse(f"unreadable answer from the Docker daemon: {status_line[:80]!r}")
    if b"transfer-encoding: chunked" in fields.lower():
        body = _decode_chunked(body)
    return int(parts[1]), body


def _exchange(engine: EngineSocket, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
    """One JSON round trip within the engine's deadline: (status, decoded answer; a body that is not JSON
    becomes `{"message": text}`). A missing or refusing socket is Unavailable; callers map timeouts and other
    OSErrors to what their path needs (a deadline for exec, a retry for container calls)."""
    timeout = call_timeout(engine.deadline, engine.host, f"{method} {path}")
    payload = json.dumps(body).encode() if body is not None else None
    try:
        status, data = roundtrip(engine.path, method, path, payload, timeout)
    except (FileNotFoundError, ConnectionRefusedError, PermissionError):
        raise unreachable(engine.host) from None
    try:
        return status, (json.loads(data) if data else {})
    except ValueError:
        return status, {"message": data.decode(errors="replace").strip()}


class EngineSocket:
    """Just enough of the Engine API, over a unix socket, to run one exec."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.path = host.removeprefix("unix://")
        # Monotonic time by which every call must have answered (None: API_CALL_TIMEOUT per call).
        self.deadline: float | None = None

    @classmethod
    def for_local_daemon(cls) -> EngineSocket | None:
        """An engine client when the daemon is on a unix socket; None where only the SDK will do."""
        host = docker_host()
        return cls(host) if host.startswith("unix://") else None

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The exec path's call: no answer by the deadline is DeadlineExceeded (exec turns it into 124 or 4)."""
        try:
            status, document = _exchange(self, method, path, body)
        except TimeoutError:
            raise DeadlineExceeded(f"Docker daemon at {self.host} did not answer {method} {path} in time") from None
        except OSError as exc:
            raise BackendError(f"Docker request {method} {path} failed: {exc}") from None
        if status == 404:
            raise NotFound(f"{path}: {document.get('message', 'not found')}")
        if status >= 400:
            raise BackendError(document.get("message") or f"Docker answered {status} to {method} {path}")
        return document

    def exec_create(
        self, container: str, command: list[str], *, env: dict[str, str], workdir: str | None, stdin: bool
    ) -> str:
        body: dict[str, Any] = {
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": False,
            "Cmd": command,
            "Env": [f"{k}={v}" for k, v in env.items()],
        }
        if workdir:
            body["WorkingDir"] = workdir
        return str(self._request("POST", f"/containers/{container}/exec", body)["Id"])

    def exec_start(self, exec_id: str, *, tty: bool = False) -> tuple[socket.socket, bytes]:
        """Start attached; returns the hijacked socket and any stream bytes read with the headers.

        Without a terminal the stream is multiplexed frames; with one (`tty`) it carries raw bytes both ways.
        """
        body = b'{"Detach": false, "Tty": true}' if tty else b'{"Detach": false, "Tty": false}'
        request = (
            f"POST /exec/{exec_id}/start HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        what = f"exec start {exec_id[:12]}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # One deadline for the whole call: a daemon dribbling bytes cannot stretch it.
            limit = time.monotonic() + call_timeout(self.deadline, self.host, what)
            sock.settimeout(call_timeout(limit, self.host, what))
            sock.connect(self.path)
            sock.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                sock.settimeout(call_timeout(limit, self.host, what))
                chunk = sock.recv(4096)
                if not chunk:
                    raise BackendError("Docker closed the exec stream before answering")
                head += chunk
            sock.settimeout(None)  # the stream is the command's (a terminal may stay quiet for hours)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError):
            sock.close()
            raise unreachable(self.host) from None
        except TimeoutError:
            sock.close()
            raise DeadlineExceeded(f"Docker daemon at {self.host} did not answer {what} in time") from None
        except BaseException:
            sock.close()
            raise
        header, _, rest = head.partition(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        if status not in (101, 200):
            sock.close()
            raise BackendError(f"Docker refused to start exec {exec_id[:12]}: HTTP {status}")
        return sock, rest

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/exec/{exec_id}/json"))

    # -- interactive terminals (`shell`, `exec -it`): see backends/tty_docker.py --------------------
    def exec_create_tty(
        self, container: str, command: list[str], *, env: dict[str, str], workdir: str | None, size: tuple[int, int]
    ) -> str:
        """`size` (rows, cols) is the terminal's from its start on API 1.42+; older daemons ignore it and
        take the first resize a moment after the start."""
        body: dict[str, Any] = {
            "AttachStdin": True,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": True,
            "ConsoleSize": list(size),
            "Cmd": command,
            "Env": [f"{k}={v}" for k, v in env.items()],
        }
        if workdir:
            body["WorkingDir"] = workdir
        return str(self._request("POST", f"/containers/{container}/exec", body)["Id"])

    def exec_resize(self, exec_id: str, rows: int, cols: int) -> None:
        self._request("POST", f"/exec/{exec_id}/resize?h={rows}&w={cols}")


# -- container calls for create, inspect and delete without the SDK ---------------------------
# New functions beside the exec client above (whose calls carry their own deadlines): each maps
# the Engine's answer to the backend contract's errors as the SDK path does (404 NotFound,
# 409 and 5xx Transient, other 4xx BackendError, no socket Unavailable).
class EngineCallError(BackendError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def engine_call(engine: EngineSocket, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One JSON request; returns the decoded answer or raises NotFound / Transient / BackendError / Unavailable."""
    from sandboxctl.backends.base import Transient

    try:
        status, document = _exchange(engine, method, path, body)
    except TimeoutError:
        raise Transient(f"Docker did not answer {method} {path} in time") from None
    except OSError as exc:
        raise Transient(f"Docker request {method} {path} failed: {exc}") from None
    if status < 400:
        return document
    message = (document.get("message") if isinstance(document, dict) else None) or f"HTTP {status}"
    if status == 404:
        raise NotFound(f"{path}: {message}")
    if status == 409 or status >= 500:
        raise Transient(f"{method} {path}: {message}")
    raise EngineCallError(status, message)


def inspect_container(engine: EngineSocket, container: str) -> dict[str, Any]:
    return dict(engine_call(engine, "GET", f"/containers/{_quote(container)}/json"))


def container_size_rw(engine: EngineSocket, container: str) -> int | None:
    """The writable layer's size (0 when absent: the Engine omits it when 0); None when no such container."""
    filters = _quote(json.dumps({"id": [container]}))
    rows = engine_call(engine, "GET", f"/containers/json?all=1&size=1&filters={filters}")
    return int(rows[0].get("SizeRw", 0)) if rows else None


def remove_container(engine: EngineSocket, container: str) -> None:
    """`docker rm -f -v`."""
    engine_call(engine, "DELETE", f"/containers/{_quote(container)}?force=1&v=1")


def create_container(engine: EngineSocket, name: str, config: dict[str, Any]) -> str:
    """Create (not start) a container; raises NotFound when the image is missing."""
    return str(engine_call(engine, "POST", f"/containers/create?name={_quote(name)}", config)["Id"])


def start_container(engine: EngineSocket, container: str) -> None:
    engine_call(engine, "POST", f"/containers/{_quote(container)}/start")
