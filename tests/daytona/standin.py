"""A loopback stand-in for Daytona: the control plane (`/api`) and the toolbox (`/toolbox`) on one port.

It is the test boundary, not a mock of our code: the real SDK talks real HTTP to it.

- Commands run for real (`sh -c COMMAND`, as the daemon does) in a per-sandbox
  directory that is also the sandbox user's home and work dir. Paths the adapter
  is told (home, workspace) are therefore real host paths; exit codes, output and
  files are real.
- Every JSON body it serves is recorded with the SDK model it must satisfy
  (`served`), so tests validate it against `daytona_api_client` and
  `daytona_toolbox_api_client` models; request bodies are validated against the
  SDK's request models (400 when they do not fit).
- `Authorization: Bearer <api key>` is required; anything else is 401.

Knobs (attributes, or `POST /_standin/config` when run as a script):
- `faults`, per endpoint (method + path regex), `times` times (-1: for ever), each
  matching request hit with probability `chance` (seeded: `StandIn.random`) or only
  every `every`-th one:
  answer an HTTP `status` (429 with `retry_after` sends `Retry-After`), `delay` the
  answer by seconds (slow), `drop` the connection before handling (a reset),
  `lose` the answer after handling (the request took effect, the client never hears),
  or accept and never answer (`silence`).
- Sessions (`/process/session...`) run each command for real (`sh -c`, its own process
  group, stdin a pipe): `?follow=true` logs stream live over a WebSocket in the daemon's
  framing (`\x01\x01\x01` stdout, `\x02\x02\x02` stderr, close 1000 at the end), input is
  written to the command's stdin (echoed into stdout unless `suppressInputEcho`), and
  deleting the session kills its commands.
- `start_states`: the states a new sandbox reports on successive GETs, e.g.
  `["starting", "starting", "started"]` (slow start) or `["starting", "error"]`.

Run alone: `python tests/daytona/standin.py --root DIR --api-key KEY [--port N]`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ORGANIZATION_ID = "org-standin"
SILENCE_SECONDS = 300.0

# The SDK model each JSON response must satisfy, by the name recorded in `served`.
MODELS = {
    "Sandbox": "daytona_api_client.models.sandbox",
    "ListSandboxesResponse": "daytona_api_client.models.list_sandboxes_response",
    "ToolboxProxyUrl": "daytona_api_client.models.toolbox_proxy_url",
    "ExecuteResponse": "daytona_toolbox_api_client.models.execute_response",
    "UserHomeDirResponse": "daytona_toolbox_api_client.models.user_home_dir_response",
    "WorkDirResponse": "daytona_toolbox_api_client.models.work_dir_response",
    "UploadFilesResponse": "daytona_toolbox_api_client.models.upload_files_response",
    "SessionExecuteResponse": "daytona_toolbox_api_client.models.session_execute_response",
    "Command": "daytona_toolbox_api_client.models.command",
    "Session": "daytona_toolbox_api_client.models.session",
    "SessionCommandLogsResponse": "daytona_toolbox_api_client.models.session_command_logs_response",
    "PtySessionInfo": "daytona_toolbox_api_client.models.pty_session_info",
    "PtyListResponse": "daytona_toolbox_api_client.models.pty_list_response",
}
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC11B85"
STDOUT_PREFIX, STDERR_PREFIX = b"\x01\x01\x01", b"\x02\x02\x02"


_LIFETIME_SETTERS = {"ttl": "ttl_minutes", "autostop": "auto_stop_interval", "autodelete": "auto_delete_interval"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Fault:
    """Answer requests matching `method` and the `path` regex with `status`, or never (`silence`)."""

    method: str | None = None
    path: str = ""
    status: int | None = None
    silence: bool = False
    times: int = 1
    retry_after: float | None = None
    delay: float = 0.0
    drop: bool = False
    lose: bool = False
    chance: float = 1.0
    every: int = 0  # fire only on every Nth request this fault sees (deterministic share; 0: each one)
    seen: int = 0
    # The error message; `{authorization}` is replaced by the request's Authorization header, as a
    # careless proxy might echo it (the adapter must scrub the key from every message).
    message: str = "injected fault"

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and re.search(self.path, path) is not None


@dataclass
class StandInSandbox:
    id: str
    name: str
    home: Path
    labels: dict[str, str]
    env: dict[str, str]
    state: str
    pending_states: list[str]
    created_at: str
    cpu: int = 1
    memory: int = 1
    disk: int = 3
    target: str = "us"
    snapshot: str | None = None
    auto_stop_interval: int = 15
    auto_archive_interval: int = 10080
    auto_delete_interval: int = -1
    ttl_minutes: int | None = None
    ttl_from: str | None = None  # set_ttl counts from the call, create's ttl from creation
    error_reason: str | None = None
    deleting: bool = False

    def to_json(self, toolbox_url: str) -> dict[str, Any]:
        """A full `Sandbox` as GET/POST/DELETE return it."""
        data: dict[str, Any] = {
            "id": self.id,
            "organizationId": ORGANIZATION_ID,
            "name": self.name,
            "user": "daytona",
            "env": dict(self.env),
            "labels": dict(self.labels),
            "public": False,
            "networkBlockAll": False,
            "kvm": False,
            "target": self.target,
            "cpu": self.cpu,
            "gpu": 0,
            "memory": self.memory,
            "disk": self.disk,
            "state": self.state,
            "desiredState": "destroyed" if self.deleting else "started",
            "autoStopInterval": self.auto_stop_interval,
            "autoArchiveInterval": self.auto_archive_interval,
            "autoDeleteInterval": self.auto_delete_interval,
            "volumes": [],
            "createdAt": self.created_at,
            "updatedAt": _now(),
            "lastActivityAt": _now(),
            "toolboxProxyUrl": toolbox_url,
        }
        if self.snapshot:
            data["snapshot"] = self.snapshot
        if self.error_reason:
            data["errorReason"] = self.error_reason
        if self.ttl_minutes:
            created = datetime.fromisoformat(self.ttl_from or self.created_at)
            data["autoDestroyAt"] = (created + timedelta(minutes=self.ttl_minutes)).isoformat().replace("+00:00", "Z")
        return data

    def to_list_item(self, toolbox_url: str) -> dict[str, Any]:
        """A `SandboxListItem`: the full shape minus what list responses never carry."""
        data = self.to_json(toolbox_url)
        for key in ("env", "kvm", "volumes", "buildInfo", "outboundProxyUrl", "otelEndpointOverride"):
            data.pop(key, None)
        return data


class StandInCommand:
    """One session command, running for real; its output kept in order, each chunk tagged with its stream."""

    def __init__(self, command: str, process: subprocess.Popen[bytes], suppress_echo: bool) -> None:
        self.id = str(uuid.uuid4())
        self.command = command
        self.process = process
        self.suppress_echo = suppress_echo
        self.chunks: list[tuple[bytes, bytes]] = []  # (prefix, data)
        self.exit_code: int | None = None
        self.changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(pipe, prefix), daemon=True)
            for pipe, prefix in ((process.stdout, STDOUT_PREFIX), (process.stderr, STDERR_PREFIX))
        ]
        for reader in self._readers:
            reader.start()
        threading.Thread(target=self._wait, daemon=True).start()

    def _read(self, pipe: Any, prefix: bytes) -> None:
        while chunk := os.read(pipe.fileno(), 65536):
            self.append(prefix, chunk)
        pipe.close()

    def _wait(self) -> None:
        code = self.process.wait()
        for reader in self._readers:  # a background child may hold the pipes open: do not wait for ever
            reader.join(timeout=1.0)
        with self.changed:
            self.exit_code = code if code >= 0 else 128 - code  # the daemon's shell reports 128+N for a signal
            self.changed.notify_all()

    def append(self, prefix: bytes, chunk: bytes) -> None:
        with self.changed:
            self.chunks.append((prefix, chunk))
            self.changed.notify_all()

    def output(self, prefix: bytes | None = None) -> str:
        with self.changed:
            data = b"".join(c for p, c in self.chunks if prefix is None or p == prefix)
        return data.decode(errors="replace")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "command": self.command}
        if self.exit_code is not None:
            data["exitCode"] = self.exit_code
        return data

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class StandInSession:
    id: str
    commands: dict[str, StandInCommand]


def model_problems(name: str, body: Any) -> list[str]:
    """Why `body` is not exactly what the SDK's model `name` parses: errors, and fields it does not know."""
    model = getattr(importlib.import_module(MODELS[name]), name)
    try:
        parsed = model.from_dict(body)
    except Exception as exc:  # noqa: BLE001 - any rejection is the finding
        return [f"{name}: {type(exc).__name__}: {exc}"]
    if parsed is None:
        return [f"{name}: nothing parsed from {body!r}"]
    objects = [parsed, *(parsed.items if name == "ListSandboxesResponse" else [])]
    return [
        f"{name}: fields unknown to {type(obj).__name__}: {sorted(obj.additional_properties)}"
        for obj in objects
        if obj.additional_properties
    ]


def _error(status: int, message: str, code: str | None = None, source: str = "DAYTONA_API") -> dict[str, Any]:
    body: dict[str, Any] = {"statusCode": status, "message": message, "source": source}
    if code:
        body["code"] = code
    return body


class StandIn:
    """The server and its state. `start()` serves from a daemon thread; `stop()` ends it and any silence."""

    def __init__(self, root: Path, api_key: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = root
        self.api_key = api_key
        self.lock = threading.RLock()
        self.sandboxes: dict[str, StandInSandbox] = {}
        self.faults: list[Fault] = []
        self.start_states: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.served: list[tuple[str, Any]] = []
        self.unhandled: list[str] = []
        self.released = threading.Event()
        self.sessions: dict[tuple[str, str], StandInSession] = {}
        self.ptys: dict[tuple[str, str], StandInPty] = {}
        self.random = random.Random(0)
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.standin = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # -- addresses -----------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def toolbox_url(self) -> str:
        return f"{self.url}/toolbox"

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> StandIn:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        with self.lock:
            sessions = list(self.sessions.values())
            self.sessions.clear()
        for session in sessions:
            for command in session.commands.values():
                command.kill()
        with self.lock:
            ptys = list(self.ptys.values())
            self.ptys.clear()
        for terminal in ptys:
            terminal.kill()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- knobs -----------------------------------------------------------------
    def add_fault(self, **fields: Any) -> Fault:
        fault = Fault(**fields)
        with self.lock:
            self.faults.append(fault)
        return fault

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.start_states.clear()
            self.requests.clear()
            self.served.clear()
            self.unhandled.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times != 0 and fault.matches(method, path):
                    if fault.chance < 1.0 and self.random.random() >= fault.chance:
                        continue
                    fault.seen += 1
                    if fault.every and fault.seen % fault.every:
                        continue
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    def find(self, id_or_name: str) -> StandInSandbox | None:
        with self.lock:
            if id_or_name in self.sandboxes:
                return self.sandboxes[id_or_name]
            return next((s for s in self.sandboxes.values() if s.name == id_or_name), None)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pools expect

    @property
    def standin(self) -> StandIn:
        return self.server.standin  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the client's
        # delayed ACK hold every answer back 40 ms, which would swamp what the benchmark measures.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- plumbing --------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reset(self) -> None:
        """Close the connection abruptly (RST), as a crashed proxy or a dropped network does."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        self.close_connection = True

    def _send(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        if getattr(self, "_lose_answer", False):  # a `lose` fault: handled, but the answer never arrives
            self._reset()
            return
        try:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout, interrupt)
            self.close_connection = True

    def _json(self, status: int, data: Any, model: str | None = None) -> None:
        if model is not None:
            with self.standin.lock:
                self.standin.served.append((model, data))
        self._send(status, json.dumps(data).encode())

    def _fail(
        self,
        status: int,
        message: str,
        code: str | None = None,
        source: str = "DAYTONA_API",
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send(status, json.dumps(_error(status, message, code, source)).encode(), headers=headers)

    def _handle(self, method: str) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        body = self._read_body()
        standin = self.standin
        if path.startswith("/_standin/"):
            self._control(method, path, body)
            return
        authorized = self.headers.get("Authorization") == f"Bearer {standin.api_key}"
        record: dict[str, Any] = {"method": method, "path": path, "query": query, "authorized": authorized}
        if "json" in self.headers.get("Content-Type", "") and body:
            with contextlib.suppress(ValueError):
                record["json"] = json.loads(body)
        with standin.lock:
            standin.requests.append(record)
        self._lose_answer = False
        fault = standin.take_fault(method, path)
        if fault is not None:
            record["fault"] = fault.status or ("silence" if fault.silence else "drop" if fault.drop else "lose/delay")
        if fault is not None and fault.delay:
            standin.released.wait(fault.delay)
        if fault is not None and fault.silence:
            standin.released.wait(SILENCE_SECONDS)
            self.close_connection = True
            return
        if fault is not None and fault.drop:
            self._reset()
            return
        if fault is not None and fault.status is not None:
            message = fault.message.replace("{authorization}", self.headers.get("Authorization", ""))
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
            self._fail(fault.status, message, headers=headers)
            return
        self._lose_answer = fault is not None and fault.lose
        if not authorized:
            self._fail(401, "Invalid credentials", "UNAUTHORIZED")
            return
        try:
            self._route(method, path, query, body)
        except _BadRequest as exc:
            self._fail(400, str(exc), "BAD_REQUEST")

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "sandbox"]:
            rest = parts[2:]
            if not rest and method == "POST":
                return self._create(body)
            if not rest and method == "GET":
                return self._list(query)
            if len(rest) == 1 and method == "GET":
                return self._get(rest[0])
            if len(rest) == 1 and method == "DELETE":
                return self._delete(rest[0])
            if len(rest) == 2 and rest[1] == "start" and method == "POST":
                return self._start(rest[0])
            if len(rest) == 3 and rest[1] in _LIFETIME_SETTERS and method == "POST":
                return self._set_lifetime(rest[0], rest[1], rest[2])
            if len(rest) == 2 and rest[1] == "toolbox-proxy-url" and method == "GET":
                if self.standin.find(rest[0]) is None:
                    return self._fail(404, f"Sandbox with ID or name {rest[0]} not found", "NOT_FOUND")
                return self._json(200, {"url": self.standin.toolbox_url}, "ToolboxProxyUrl")
        if len(parts) >= 3 and parts[0] == "toolbox":
            return self._toolbox(method, parts[1], "/" + "/".join(parts[2:]), body, query)
        with self.standin.lock:
            self.standin.unhandled.append(f"{method} {path}")
        self._fail(404, f"Cannot {method} {path}", "NOT_FOUND")

    # -- control plane -----------------------------------------------------------
    def _create(self, body: bytes) -> None:
        from daytona_api_client.models.create_sandbox import CreateSandbox

        request = _validated(CreateSandbox, body)
        standin = self.standin
        sandbox_id = str(uuid.uuid4())
        name = request.name or sandbox_id
        with standin.lock:
            if standin.find(name) is not None:
                return self._fail(409, f"Sandbox with name {name} already exists", "CONFLICT")
            home = standin.root / sandbox_id
            home.mkdir(parents=True)
            pending = list(standin.start_states)
            sandbox = StandInSandbox(
                id=sandbox_id,
                name=name,
                home=home,
                labels=dict(request.labels or {}),
                env=dict(request.env or {}),
                state="creating" if pending else "started",
                pending_states=pending,
                created_at=_now(),
                cpu=request.cpu or 1,
                memory=request.memory or 1,
                disk=request.disk or 3,
                target=request.target or "us",
                snapshot=request.snapshot,
                auto_stop_interval=request.auto_stop_interval if request.auto_stop_interval is not None else 15,
                auto_archive_interval=request.auto_archive_interval or 10080,
                auto_delete_interval=request.auto_delete_interval if request.auto_delete_interval is not None else -1,
                ttl_minutes=request.ttl_minutes,
            )
            standin.sandboxes[sandbox_id] = sandbox
        self._json(200, sandbox.to_json(standin.toolbox_url), "Sandbox")

    def _get(self, id_or_name: str) -> None:
        standin = self.standin
        with standin.lock:
            sandbox = standin.find(id_or_name)
            if sandbox is None:
                return self._fail(404, f"Sandbox with ID or name {id_or_name} not found", "NOT_FOUND")
            if sandbox.pending_states:
                sandbox.state = sandbox.pending_states.pop(0)
                if sandbox.state in ("error", "build_failed"):
                    sandbox.error_reason = "stand-in: start failed as configured"
            data = sandbox.to_json(standin.toolbox_url)
        self._json(200, data, "Sandbox")

    def _list(self, query: dict[str, list[str]]) -> None:
        try:
            labels = json.loads(query["labels"][0]) if "labels" in query else {}
            limit = int(query.get("limit", ["100"])[0])
            offset = int(query.get("cursor", ["0"])[0])
        except (ValueError, KeyError) as exc:
            raise _BadRequest(f"bad list query: {exc}") from None
        if not isinstance(labels, dict) or not 1 <= limit <= 200:
            raise _BadRequest("labels must be a JSON object and limit 1..200")
        states = set(query.get("states", []))
        standin = self.standin
        with standin.lock:
            matching = [
                s
                for s in standin.sandboxes.values()
                if all(s.labels.get(k) == v for k, v in labels.items()) and (not states or s.state in states)
            ]
            page = matching[offset : offset + limit]
            items = [s.to_list_item(standin.toolbox_url) for s in page]
        next_cursor = str(offset + limit) if offset + limit < len(matching) else None
        self._json(200, {"items": items, "nextCursor": next_cursor}, "ListSandboxesResponse")

    def _delete(self, id_or_name: str) -> None:
        """Answer `destroying` and forget the sandbox: the next GET is a 404, as after Daytona's destroy."""
        standin = self.standin
        with standin.lock:
            sandbox = standin.find(id_or_name)
            if sandbox is None:
                return self._fail(404, f"Sandbox with ID or name {id_or_name} not found", "NOT_FOUND")
            sandbox.state, sandbox.deleting = "destroying", True
            data = sandbox.to_json(standin.toolbox_url)
            del standin.sandboxes[sandbox.id]
            sessions = [standin.sessions.pop(key) for key in list(standin.sessions) if key[0] == sandbox.id]
            ptys = [standin.ptys.pop(key) for key in list(standin.ptys) if key[0] == sandbox.id]
        for session in sessions:
            for command in session.commands.values():
                command.kill()
        for terminal in ptys:
            terminal.kill()
        shutil.rmtree(sandbox.home, ignore_errors=True)
        self._json(200, data, "Sandbox")

    def _start(self, id_or_name: str) -> None:
        standin = self.standin
        with standin.lock:
            sandbox = standin.find(id_or_name)
            if sandbox is None:
                return self._fail(404, f"Sandbox with ID or name {id_or_name} not found", "NOT_FOUND")
            sandbox.state = "started"
            data = sandbox.to_json(standin.toolbox_url)
        self._json(200, data, "Sandbox")

    def _set_lifetime(self, id_or_name: str, setter: str, value: str) -> None:
        """`POST /sandbox/{id}/ttl|autostop|autodelete/{minutes}` (Sandbox.set_ttl and friends)."""
        try:
            minutes = int(value)
        except ValueError:
            raise _BadRequest(f"bad interval {value!r}") from None
        standin = self.standin
        with standin.lock:
            sandbox = standin.find(id_or_name)
            if sandbox is None:
                return self._fail(404, f"Sandbox with ID or name {id_or_name} not found", "NOT_FOUND")
            if setter == "ttl":
                sandbox.ttl_minutes, sandbox.ttl_from = minutes, _now()
            else:
                setattr(sandbox, _LIFETIME_SETTERS[setter], minutes)
            data = sandbox.to_json(standin.toolbox_url)
        self._json(200, data, "Sandbox")

    # -- toolbox -----------------------------------------------------------------
    def _toolbox(self, method: str, sandbox_id: str, path: str, body: bytes, query: dict[str, list[str]]) -> None:
        sandbox = self.standin.find(sandbox_id)
        if sandbox is None:
            return self._fail(404, f"sandbox {sandbox_id} not found", "NOT_FOUND", "DAYTONA_PROXY")
        if sandbox.state != "started":
            return self._fail(409, f"sandbox {sandbox_id} is {sandbox.state}", "SANDBOX_NOT_STARTED", "DAYTONA_PROXY")
        if (method, path) == ("POST", "/process/execute"):
            return self._execute(sandbox, body)
        if (method, path) == ("POST", "/files/bulk-upload"):
            return self._upload(sandbox, body)
        if (method, path) == ("POST", "/files/bulk-download"):
            return self._download(sandbox, body)
        if (method, path) == ("GET", "/user-home-dir"):
            return self._json(200, {"dir": str(sandbox.home)}, "UserHomeDirResponse")
        if (method, path) == ("GET", "/work-dir"):
            return self._json(200, {"dir": str(sandbox.home)}, "WorkDirResponse")
        if path == "/process/session" or path.startswith("/process/session/"):
            return self._session(method, sandbox, path.split("/")[3:], body, query)
        if path == "/process/pty" or path.startswith("/process/pty/"):
            return _serve_pty(self, method, sandbox, path.split("/")[3:], body, query)
        with self.standin.lock:
            self.standin.unhandled.append(f"{method} /toolbox/{sandbox_id}{path}")
        self._fail(404, f"Cannot {method} {path}", "NOT_FOUND", "DAYTONA_DAEMON")

    def _execute(self, sandbox: StandInSandbox, body: bytes) -> None:
        from daytona_toolbox_api_client.models.execute_request import ExecuteRequest

        request = _validated(ExecuteRequest, body)
        cwd = sandbox.home / request.cwd if request.cwd else sandbox.home  # an absolute cwd replaces home
        if not cwd.is_dir():
            result = f"chdir {request.cwd}: no such file or directory"
            return self._json(200, {"exitCode": -1, "result": result}, "ExecuteResponse")
        env = {**_daemon_env(sandbox), **(request.envs or {})}
        process = subprocess.Popen(
            ["sh", "-c", request.command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group, killed whole on timeout as the daemon does
        )
        try:
            output, _ = process.communicate(timeout=request.timeout or None)
        except subprocess.TimeoutExpired:
            _terminate(process)
            message = f"command execution timeout after {request.timeout} seconds"
            return self._fail(408, message, "PROCESS_EXECUTION_TIMEOUT", "DAYTONA_DAEMON")
        code = process.returncode if process.returncode >= 0 else -1  # Go reports -1 for a signal
        self._json(200, {"exitCode": code, "result": output.decode(errors="replace")}, "ExecuteResponse")

    # -- sessions ----------------------------------------------------------------
    def _session(
        self, method: str, sandbox: StandInSandbox, rest: list[str], body: bytes, query: dict[str, list[str]]
    ) -> None:
        """`/process/session[/{sid}[/exec | /command/{cid}[/logs | /input]]]`, as the daemon serves them."""
        standin = self.standin
        if not rest and method == "POST":
            from daytona_toolbox_api_client.models.create_session_request import CreateSessionRequest

            session_id = _validated(CreateSessionRequest, body).session_id
            with standin.lock:
                if (sandbox.id, session_id) in standin.sessions:
                    return self._fail(409, f"session {session_id} already exists", "CONFLICT", "DAYTONA_DAEMON")
                standin.sessions[(sandbox.id, session_id)] = StandInSession(session_id, {})
            return self._send(201, b"")
        with standin.lock:
            session = standin.sessions.get((sandbox.id, rest[0])) if rest else None
        if session is None:
            return self._fail(404, "session not found", "SESSION_NOT_FOUND", "DAYTONA_DAEMON")
        if len(rest) == 1 and method == "GET":
            commands = [command.to_json() for command in list(session.commands.values())]
            return self._json(200, {"sessionId": session.id, "commands": commands}, "Session")
        if len(rest) == 1 and method == "DELETE":
            with standin.lock:
                standin.sessions.pop((sandbox.id, session.id), None)
            for command in session.commands.values():
                command.kill()
            return self._send(204, b"")
        if rest[1:] == ["exec"] and method == "POST":
            return self._session_exec(sandbox, session, body)
        command = session.commands.get(rest[2]) if len(rest) >= 3 and rest[1] == "command" else None
        if command is None:
            return self._fail(404, "command not found", "COMMAND_NOT_FOUND", "DAYTONA_DAEMON")
        if len(rest) == 3 and method == "GET":
            return self._json(200, command.to_json(), "Command")
        if rest[3:] == ["logs"] and method == "GET":
            if query.get("follow") == ["true"]:
                return self._follow(command)
            logs = {"output": command.output(), "stdout": command.output(STDOUT_PREFIX)}
            return self._json(200, {**logs, "stderr": command.output(STDERR_PREFIX)}, "SessionCommandLogsResponse")
        if rest[3:] == ["input"] and method == "POST":
            return self._input(command, body)
        self._fail(404, f"Cannot {method} session path", "NOT_FOUND", "DAYTONA_DAEMON")

    def _session_exec(self, sandbox: StandInSandbox, session: StandInSession, body: bytes) -> None:
        from daytona_toolbox_api_client.models.session_execute_request import SessionExecuteRequest

        request = _validated(SessionExecuteRequest, body)
        env = _daemon_env(sandbox)
        process = subprocess.Popen(
            ["sh", "-c", request.command],
            cwd=sandbox.home,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # killed as a group when the session is deleted
        )
        command = StandInCommand(request.command, process, bool(request.suppress_input_echo))
        session.commands[command.id] = command
        if request.run_async or request.var_async:
            return self._json(202, {"cmdId": command.id}, "SessionExecuteResponse")
        with command.changed:
            command.changed.wait_for(lambda: command.exit_code is not None)
        answer = {"cmdId": command.id, "exitCode": command.exit_code, "output": command.output()}
        answer |= {"stdout": command.output(STDOUT_PREFIX), "stderr": command.output(STDERR_PREFIX)}
        self._json(200, answer, "SessionExecuteResponse")

    def _input(self, command: StandInCommand, body: bytes) -> None:
        from daytona_toolbox_api_client.models.session_send_input_request import SessionSendInputRequest

        data = _validated(SessionSendInputRequest, body).data
        data = data if data.endswith("\n") else data + "\n"  # the daemon appends the newline
        stdin = command.process.stdin
        if command.exit_code is not None or stdin is None:
            return self._fail(410, "command already completed", "COMMAND_ALREADY_COMPLETED", "DAYTONA_DAEMON")
        if not command.suppress_echo:  # echoed as received, before the command can answer it
            command.append(STDOUT_PREFIX, data.encode())
        try:
            stdin.write(data.encode())
            stdin.flush()
        except (BrokenPipeError, ValueError):
            return self._fail(410, "command already completed", "COMMAND_ALREADY_COMPLETED", "DAYTONA_DAEMON")
        self._send(200, b"")

    def _follow(self, command: StandInCommand) -> None:
        """The `?follow=true` WebSocket: every chunk from the start, live, then close 1000 once the command ended."""
        key = self.headers.get("Sec-WebSocket-Key")
        if not key or self.headers.get("Upgrade", "").lower() != "websocket":
            return self._fail(400, "expected a WebSocket upgrade", "BAD_REQUEST", "DAYTONA_DAEMON")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.close_connection = True
        try:
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            sent = 0
            while True:
                with command.changed:
                    if len(command.chunks) == sent and command.exit_code is None:
                        command.changed.wait(0.5)
                    fresh, finished = command.chunks[sent:], command.exit_code is not None
                sent += len(fresh)
                for prefix, chunk in fresh:
                    self.wfile.write(_ws_frame(0x2, prefix + chunk))
                self.wfile.flush()
                if finished and not fresh:
                    break
            self.wfile.write(_ws_frame(0x8, struct.pack(">H", 1000)))
            self.wfile.flush()
            with contextlib.suppress(OSError, TimeoutError):  # the client's close frame, then the socket goes
                self.connection.settimeout(2)
                self.connection.recv(64)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (Ctrl-C)
            pass

    def _upload(self, sandbox: StandInSandbox, body: bytes) -> None:
        from python_multipart import parse_form

        paths: dict[str, str] = {}
        contents: dict[str, bytes] = {}

        def on_field(item: Any) -> None:
            paths[item.field_name.decode()] = (item.value or b"").decode()

        def on_file(item: Any) -> None:
            item.file_object.seek(0)
            contents[item.field_name.decode()] = item.file_object.read()

        headers = {"Content-Type": self.headers.get("Content-Type", "").encode()}
        parse_form(headers, io.BytesIO(body), on_field, on_file)
        written = []
        for key, target in paths.items():
            data = contents.get(key.removesuffix(".path") + ".file")
            if data is None:
                raise _BadRequest(f"no file part for {key}")
            destination = sandbox.home / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(data)
            written.append({"path": target, "bytes": len(data)})
        self._json(200, {"files": written}, "UploadFilesResponse")

    def _download(self, sandbox: StandInSandbox, body: bytes) -> None:
        from daytona_toolbox_api_client.models.files_download_request import FilesDownloadRequest

        request = _validated(FilesDownloadRequest, body)
        boundary = uuid.uuid4().hex
        parts = []
        for requested in request.paths:
            source = sandbox.home / requested
            if source.is_file():
                head = f'Content-Disposition: form-data; name="file"; filename="{requested}"\r\n'
                head += "Content-Type: application/octet-stream\r\n\r\n"
                payload = source.read_bytes()
            else:
                head = f'Content-Disposition: form-data; name="error"; filename="{requested}"\r\n'
                head += "Content-Type: application/json\r\n\r\n"
                error = _error(404, f"file not found: {requested}", "FILE_NOT_FOUND", "DAYTONA_DAEMON")
                payload = json.dumps(error).encode()
            parts.append(f"--{boundary}\r\n{head}".encode() + payload + b"\r\n")
        document = b"".join(parts) + f"--{boundary}--\r\n".encode()
        self._send(200, document, f"multipart/form-data; boundary={boundary}")

    # -- control endpoint (script mode) -------------------------------------------
    def _control(self, method: str, path: str, body: bytes) -> None:
        standin = self.standin
        if (method, path) == ("POST", "/_standin/config"):
            config = json.loads(body or b"{}")
            with standin.lock:
                standin.faults.extend(Fault(**fault) for fault in config.get("faults", []))
                if "start_states" in config:
                    standin.start_states[:] = config["start_states"]
            return self._send(204, b"")
        if (method, path) == ("POST", "/_standin/reset"):
            standin.reset()
            return self._send(204, b"")
        if (method, path) == ("GET", "/_standin/state"):
            with standin.lock:
                state = {
                    "sandboxes": {k: {**asdict(v), "home": str(v.home)} for k, v in standin.sandboxes.items()},
                    "faults": [asdict(f) for f in standin.faults],
                    "requests": standin.requests,
                    "unhandled": standin.unhandled,
                }
            return self._send(200, json.dumps(state).encode())
        self._send(404, b"{}")


class _BadRequest(Exception):
    pass


def _validated(model: Any, body: bytes) -> Any:
    """Parse a request body with the SDK's own request model; anything it rejects is a 400."""
    try:
        parsed = model.from_dict(json.loads(body or b"null"))
    except Exception as exc:  # noqa: BLE001 - every rejection becomes the 400 the API would send
        raise _BadRequest(f"{model.__name__}: {exc}") from None
    if parsed is None:
        raise _BadRequest(f"{model.__name__}: empty body")
    return parsed


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final WebSocket frame (server to client)."""
    size = len(payload)
    if size < 126:
        head = struct.pack(">BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack(">BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 127, size)
    return head + payload


def _daemon_env(sandbox: StandInSandbox) -> dict[str, str]:
    """What the daemon gives every process it starts: its own few variables, then the sandbox's."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(sandbox.home),
        "USER": "daytona",
        "LANG": "C.UTF-8",
        **sandbox.env,
    }


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """TERM the whole group, then KILL after a grace period, as the daemon does on a timeout."""
    for sig, grace in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.communicate(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


# -- PTY sessions (`/process/pty...`) ------------------------------------------------
# As the daemon serves them: `create-connect` upgrades to a WebSocket and starts the daemon's shell on a
# real pty (its own session, the pty its controlling terminal); binary frames from the client are typed
# into it, its output goes out as binary frames; the client's exit-control subprotocol earns a
# `{"type":"control","status":"exited","exitCode":N}` text frame, and the close frame (1000) carries
# `{"exitCode":N}` as its reason. `resize` sets the window size (TIOCSWINSZ: the kernel sends SIGWINCH);
# DELETE kills the session's process group and forgets it.
PTY_SHELL = ["sh"]
PTY_EXIT_CONTROL = "X-Daytona-Pty-Exit-Control"
PTY_ENVS_PREFIX = "X-Daytona-Pty-Envs~"


class StandInPty:
    """One PTY session: `PTY_SHELL` running for real with the pty slave as its controlling terminal."""

    def __init__(self, request: Any, sandbox: StandInSandbox, cwd: Path) -> None:
        self.id: str = request.id
        self.cols: int = request.cols
        self.rows: int = request.rows
        self.cwd = cwd
        self.envs: dict[str, str] = dict(request.envs or {})
        self.created_at = _now()
        self.exit_code: int | None = None
        self.master, slave = os.openpty()
        try:
            self._set_size()
            env = {**_daemon_env(sandbox), **self.envs}
            # `setsid --ctty`: a new session whose controlling terminal is the pty (no preexec_fn: we run threads).
            self.process = subprocess.Popen(
                ["setsid", "--ctty", *PTY_SHELL], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave
            )
        except BaseException:
            os.close(self.master)
            raise
        finally:
            os.close(slave)

    def _set_size(self) -> None:
        import fcntl
        import termios

        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.cols, 0, 0))

    def resize(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        with contextlib.suppress(OSError):
            self._set_size()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "active": self.exit_code is None,
            "cols": self.cols,
            "rows": self.rows,
            "cwd": str(self.cwd),
            "envs": dict(self.envs),
            "createdAt": self.created_at,
            "lazyStart": False,
        }

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def _serve_pty(
    handler: _Handler, method: str, sandbox: StandInSandbox, rest: list[str], body: bytes, query: dict[str, list[str]]
) -> None:
    """`/process/pty[/create-connect | /{id}[/resize]]`."""
    standin = handler.standin
    if not rest and method == "GET":
        with standin.lock:
            infos = [t.to_json() for (sid, _), t in standin.ptys.items() if sid == sandbox.id]
        return handler._json(200, {"sessions": infos}, "PtyListResponse")
    if rest == ["create-connect"] and method == "GET":
        return _pty_create_connect(handler, sandbox, query)
    with standin.lock:
        terminal = standin.ptys.get((sandbox.id, rest[0])) if rest else None
    if terminal is None:
        return handler._fail(404, "PTY session not found", "NOT_FOUND", "DAYTONA_DAEMON")
    if len(rest) == 1 and method == "GET":
        return handler._json(200, terminal.to_json(), "PtySessionInfo")
    if len(rest) == 1 and method == "DELETE":
        with standin.lock:
            standin.ptys.pop((sandbox.id, terminal.id), None)
        terminal.kill()
        return handler._json(200, {})
    if rest[1:] == ["resize"] and method == "POST":
        from daytona_toolbox_api_client.models.pty_resize_request import PtyResizeRequest

        size = _validated(PtyResizeRequest, body)
        terminal.resize(size.rows, size.cols)
        return handler._json(200, terminal.to_json(), "PtySessionInfo")
    handler._fail(404, f"Cannot {method} PTY path", "NOT_FOUND", "DAYTONA_DAEMON")


def _pty_create_connect(handler: _Handler, sandbox: StandInSandbox, query: dict[str, list[str]]) -> None:
    from daytona_toolbox_api_client.models.pty_create_request import PtyCreateRequest

    key = handler.headers.get("Sec-WebSocket-Key")
    if not key or handler.headers.get("Upgrade", "").lower() != "websocket":
        return handler._fail(400, "expected a WebSocket upgrade", "BAD_REQUEST", "DAYTONA_DAEMON")
    offered = [p.strip() for p in handler.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    envs: dict[str, str] = {}
    for token in offered:
        if token.startswith(PTY_ENVS_PREFIX):
            encoded = token[len(PTY_ENVS_PREFIX) :]
            envs = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    fields: dict[str, Any] = {name: values[0] for name, values in query.items()}
    for name in ("cols", "rows"):
        with contextlib.suppress(KeyError, ValueError):
            fields[name] = int(fields[name])
    request = _validated(PtyCreateRequest, json.dumps({**fields, "envs": envs}).encode())
    if not request.id or not (1 <= (request.cols or 0) <= 1000) or not (1 <= (request.rows or 0) <= 1000):
        raise _BadRequest("id, cols and rows (1..1000) are required")
    cwd = sandbox.home / request.cwd if request.cwd else sandbox.home  # an absolute cwd replaces home
    standin = handler.standin
    with standin.lock:
        if (sandbox.id, request.id) in standin.ptys:
            return handler._fail(409, f"PTY session {request.id} already exists", "CONFLICT", "DAYTONA_DAEMON")
        terminal = StandInPty(request, sandbox, cwd)
        standin.ptys[(sandbox.id, terminal.id)] = terminal
    if handler._lose_answer:  # a `lose` fault: the session exists, the client never hears of it
        return handler._reset()
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    handler.close_connection = True
    wfile, lock = handler.wfile, threading.Lock()

    def send(opcode: int, payload: bytes) -> None:
        with lock:
            wfile.write(_ws_frame(opcode, payload))
            wfile.flush()

    handler.send_response(101)
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", accept)
    exit_control = PTY_EXIT_CONTROL in offered
    if exit_control:
        handler.send_header("Sec-WebSocket-Protocol", PTY_EXIT_CONTROL)
    handler.end_headers()
    send(0x1, json.dumps({"type": "control", "status": "connected"}).encode())
    output = threading.Thread(target=_pty_output, args=(terminal, send, exit_control), daemon=True)
    output.start()
    with contextlib.suppress(OSError, ValueError):
        while (frame := _read_client_frame(handler.rfile)) is not None:
            opcode, payload = frame
            if opcode in (0x0, 0x1, 0x2) and payload:
                with contextlib.suppress(OSError):  # the shell is gone: input goes nowhere
                    os.write(terminal.master, payload)
            elif opcode == 0x9:
                send(0xA, payload)
            elif opcode == 0x8:
                break
    # The client went away; as on the daemon, the session lives on until it exits or is deleted.
    output.join(timeout=SILENCE_SECONDS)


def _pty_output(terminal: StandInPty, send: Callable[[int, bytes], None], exit_control: bool) -> None:
    """Relay the pty's output until the shell has exited and nothing more is waiting; then report the exit."""
    import select

    connected = True
    while True:
        ready, _, _ = select.select([terminal.master], [], [], 0.1)
        data = b""
        if ready:
            try:
                data = os.read(terminal.master, 65536)
            except OSError:  # EIO: every holder of the slave is gone
                data = b""
        if data and connected:
            try:
                send(0x2, data)
            except OSError:
                connected = False  # keep draining, so the shell never blocks on a full terminal
        if (not ready or not data) and terminal.process.poll() is not None:
            break
        if ready and not data:
            terminal.process.wait()
            break
    code = terminal.process.wait()
    terminal.exit_code = code if code >= 0 else 128 - code
    os.close(terminal.master)
    if not connected:
        return
    with contextlib.suppress(OSError):
        if exit_control:
            send(0x1, json.dumps({"type": "control", "status": "exited", "exitCode": terminal.exit_code}).encode())
        reason = json.dumps({"exitCode": terminal.exit_code}).encode()
        send(0x8, struct.pack(">H", 1000) + reason)


def _read_client_frame(rfile: Any) -> tuple[int, bytes] | None:
    """One (masked) client frame: (opcode, payload), or None at the end of the connection."""
    head = rfile.read(2)
    if len(head) < 2:
        return None
    opcode, size = head[0] & 0x0F, head[1] & 0x7F
    if size == 126:
        (size,) = struct.unpack(">H", rfile.read(2))
    elif size == 127:
        (size,) = struct.unpack(">Q", rfile.read(8))
    mask = rfile.read(4) if head[1] & 0x80 else b""
    payload = rfile.read(size)
    if mask:
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return opcode, payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, required=True, help="directory holding the sandboxes' homes")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    standin = StandIn(args.root, args.api_key, port=args.port).start()
    print(standin.api_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
