"""The stand-in itself: what it serves parses as the SDK's own models, and its knobs do what they say.

Driven with plain urllib (not the SDK), so these tests check the stand-in, not the adapter.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from http.client import RemoteDisconnected
from pathlib import Path
from typing import Any

import pytest

from .conftest import guarded
from .standin import StandIn, model_problems

pytestmark = pytest.mark.daytona


class Http:
    def __init__(self, standin: StandIn, key: str | None = None) -> None:
        self.base = standin.url
        self.key = standin.api_key if key is None else key

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str | None = None,
        timeout: float = 30,
    ) -> tuple[int, bytes, str]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", content_type or "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")

    def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, data, _ = self(method, path, body)
        assert status == expect, data
        return json.loads(data)


def create_body(**fields: Any) -> dict[str, Any]:
    return {"name": f"s-{uuid.uuid4().hex[:8]}", "labels": {"sandboxctl.id": "abc", "team": "a"}, "env": {}, **fields}


def multipart(fields: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        filename = '; filename="upload"' if name.endswith(".file") else ""
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'.encode())
        parts.append(value + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_every_endpoint_serves_what_the_sdk_models_parse(standin: StandIn) -> None:
    from daytona_api_client.models.sandbox import Sandbox
    from daytona_api_client.models.sandbox_state import SandboxState

    http = Http(standin)
    created = http.json("POST", "/api/sandbox", create_body(ttlMinutes=60, cpu=2, memory=4))
    sandbox_id = created["id"]
    parsed = Sandbox.from_dict(created)
    assert parsed is not None and parsed.state == SandboxState.STARTED and parsed.auto_destroy_at
    assert (parsed.cpu, parsed.memory, parsed.labels["team"]) == (2, 4, "a")
    assert http.json("GET", f"/api/sandbox/{sandbox_id}")["id"] == sandbox_id
    assert http.json("GET", f"/api/sandbox/{created['name']}")["id"] == sandbox_id  # a name works too
    http.json("POST", "/api/sandbox", create_body(labels={"sandboxctl.id": "def", "team": "b"}))
    labels = urllib.request.quote(json.dumps({"team": "a"}))
    assert [item["id"] for item in http.json("GET", f"/api/sandbox?labels={labels}")["items"]] == [sandbox_id]
    first = http.json("GET", "/api/sandbox?limit=1")
    second = http.json("GET", f"/api/sandbox?limit=1&cursor={first['nextCursor']}")
    assert len(first["items"]) == len(second["items"]) == 1 and second["nextCursor"] is None
    assert http.json("GET", f"/api/sandbox/{sandbox_id}/toolbox-proxy-url")["url"] == standin.toolbox_url
    home = http.json("GET", f"/toolbox/{sandbox_id}/user-home-dir")["dir"]
    assert http.json("GET", f"/toolbox/{sandbox_id}/work-dir")["dir"] == home
    executed = http.json("POST", f"/toolbox/{sandbox_id}/process/execute", {"command": "echo hi; exit 3"})
    assert executed == {"exitCode": 3, "result": "hi\n"}
    body, content_type = multipart({"files[0].path": b"dir/up.bin", "files[0].file": b"\x00\x01binary"})
    status, _, _ = http("POST", f"/toolbox/{sandbox_id}/files/bulk-upload", raw=body, content_type=content_type)
    assert status == 200 and (Path(home) / "dir/up.bin").read_bytes() == b"\x00\x01binary"
    status, data, content_type = http("POST", f"/toolbox/{sandbox_id}/files/bulk-download", {"paths": ["dir/up.bin"]})
    assert status == 200 and content_type.startswith("multipart/form-data; boundary=") and b"\x00\x01binary" in data
    assert http.json("POST", f"/api/sandbox/{sandbox_id}/start")["state"] == "started"
    assert http.json("DELETE", f"/api/sandbox/{sandbox_id}")["state"] == "destroying"
    assert http.json("GET", f"/api/sandbox/{sandbox_id}", expect=404)["statusCode"] == 404

    served = {name for name, _ in standin.served}
    assert served == {
        "Sandbox",
        "ListSandboxesResponse",
        "ToolboxProxyUrl",
        "ExecuteResponse",
        "UserHomeDirResponse",
        "WorkDirResponse",
        "UploadFilesResponse",
    }
    assert [problem for name, body in standin.served for problem in model_problems(name, body)] == []


def test_the_model_check_catches_drift(standin: StandIn) -> None:
    sandbox = Http(standin).json("POST", "/api/sandbox", create_body())
    assert model_problems("Sandbox", sandbox) == []
    assert model_problems("Sandbox", {k: v for k, v in sandbox.items() if k != "toolboxProxyUrl"})
    assert model_problems("Sandbox", {**sandbox, "cpu": 1.5})  # the SDK's ints are strict
    unknown = model_problems("Sandbox", {**sandbox, "renamedField": 1})
    assert unknown == ["Sandbox: fields unknown to Sandbox: ['renamedField']"]
    item = {k: v for k, v in sandbox.items() if k not in ("env", "kvm", "volumes")}
    assert model_problems("ListSandboxesResponse", {"items": [{**item, "extra": 1}], "nextCursor": None})


def test_requests_are_checked_against_the_sdk_request_models(standin: StandIn) -> None:
    http = Http(standin)
    assert http.json("POST", "/api/sandbox", create_body(cpu=1.5), expect=400)["statusCode"] == 400
    sandbox_id = http.json("POST", "/api/sandbox", create_body())["id"]
    assert http.json("POST", f"/toolbox/{sandbox_id}/process/execute", {"cwd": "/"}, expect=400)["statusCode"] == 400


def test_a_wrong_key_is_401_everywhere(standin: StandIn) -> None:
    sandbox_id = Http(standin).json("POST", "/api/sandbox", create_body())["id"]
    wrong = Http(standin, key="not-the-key")
    for method, path in (("GET", "/api/sandbox"), ("POST", f"/toolbox/{sandbox_id}/process/execute")):
        status, data, _ = wrong(method, path, {"command": "true"} if method == "POST" else None)
        assert status == 401 and json.loads(data)["statusCode"] == 401
    assert [r["authorized"] for r in standin.requests][-2:] == [False, False]


def test_faults_fire_as_many_times_as_asked(standin: StandIn) -> None:
    http = Http(standin)
    standin.add_fault(method="GET", path="^/api/sandbox$", status=503, times=2)
    assert [http("GET", "/api/sandbox")[0] for _ in range(3)] == [503, 503, 200]


def test_silence_holds_the_request_until_stopped(tmp_path: Path) -> None:
    server = StandIn(tmp_path / "silent", "key").start()
    try:
        server.add_fault(silence=True, times=-1)
        with pytest.raises(TimeoutError):
            Http(server)("GET", "/api/sandbox", timeout=1)
    finally:
        guarded(server.stop)  # a silenced request must not keep the server from stopping


def test_exec_runs_for_real_and_a_timeout_is_408_killing_the_group(standin: StandIn) -> None:
    http = Http(standin)
    sandbox_id = http.json("POST", "/api/sandbox", create_body(env={"FROM_CREATE": "c"}))["id"]
    home = Path(http.json("GET", f"/toolbox/{sandbox_id}/user-home-dir")["dir"])
    done = http.json(
        "POST",
        f"/toolbox/{sandbox_id}/process/execute",
        {"command": 'echo "$FROM_CREATE $PER_CALL $PWD"', "envs": {"PER_CALL": "p"}},
    )
    assert done == {"exitCode": 0, "result": f"c p {home}\n"}
    error = http.json(
        "POST",
        f"/toolbox/{sandbox_id}/process/execute",
        {"command": "(sleep 3; touch late) & sleep 30", "timeout": 1},
        expect=408,
    )
    assert error["code"] == "PROCESS_EXECUTION_TIMEOUT"  # not a 200 after `sleep 30` ended
    time.sleep(3.5)
    assert not (home / "late").exists()  # the background child died with its group


def test_runs_as_a_script_configured_over_http(tmp_path: Path) -> None:
    script = Path(__file__).with_name("standin.py")
    process = subprocess.Popen(
        [sys.executable, str(script), "--root", str(tmp_path / "root"), "--api-key", "script-key"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        api_url = process.stdout.readline().strip()
        base = api_url.removesuffix("/api")
        config = json.dumps({"faults": [{"method": "GET", "path": "^/api/sandbox$", "status": 500}]}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{base}/_standin/config", data=config, method="POST"))
        request = urllib.request.Request(f"{api_url}/sandbox", headers={"Authorization": "Bearer script-key"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request)
        assert info.value.code == 500
        with urllib.request.urlopen(request) as response:
            assert json.loads(response.read()) == {"items": [], "nextCursor": None}
        with urllib.request.urlopen(f"{base}/_standin/state") as response:
            assert [r["path"] for r in json.loads(response.read())["requests"]] == ["/api/sandbox", "/api/sandbox"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def _ws_messages(standin: StandIn, path: str) -> list[bytes]:
    """A bare WebSocket client (no SDK): the raw binary messages of a `?follow=true` stream until close."""
    import base64
    import socket
    import struct

    sock = socket.create_connection(("127.0.0.1", int(standin.url.rsplit(":", 1)[1])), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {standin.api_key}\r\n\r\n"
        ).encode()
    )
    stream = sock.makefile("rb")
    assert stream.readline().startswith(b"HTTP/1.1 101")
    while stream.readline() not in (b"\r\n", b""):
        pass
    messages = []
    while True:
        opcode, size = stream.read(2)
        size &= 0x7F
        if size == 126:
            size = struct.unpack(">H", stream.read(2))[0]
        elif size == 127:
            size = struct.unpack(">Q", stream.read(8))[0]
        payload = stream.read(size)
        if opcode & 0x0F == 0x8:
            assert payload == struct.pack(">H", 1000)  # a clean end
            sock.close()
            return messages
        messages.append(payload)


def test_sessions_run_for_real_stream_framed_logs_take_input_and_die_with_the_session(standin: StandIn) -> None:
    http = Http(standin)
    sandbox_id = http.json("POST", "/api/sandbox", create_body())["id"]
    base = f"/toolbox/{sandbox_id}/process/session"
    assert http("POST", base, {"sessionId": "s1"})[0] == 201
    assert http("POST", base, {"sessionId": "s1"})[0] == 409
    script = 'echo out-one; echo err-one >&2; read -r line; echo "read $line"; exit 5'
    started = http.json("POST", f"{base}/s1/exec", {"command": script, "runAsync": True}, expect=202)
    command = f"{base}/s1/command/{started['cmdId']}"
    assert "exitCode" not in http.json("GET", command)  # still waiting for its input
    assert http("POST", f"{command}/input", {"data": "typed"})[0] == 200  # the daemon adds the newline
    messages = _ws_messages(standin, f"{command}/logs?follow=true")
    assert sorted(messages) == sorted(
        [b"\x01\x01\x01out-one\n", b"\x02\x02\x02err-one\n", b"\x01\x01\x01typed\n", b"\x01\x01\x01read typed\n"]
    )  # input echoed: no suppressInputEcho
    assert http.json("GET", command)["exitCode"] == 5
    logs = http.json("GET", f"{command}/logs")
    assert (logs["stdout"], logs["stderr"]) == ("out-one\ntyped\nread typed\n", "err-one\n")
    assert http("POST", f"{command}/input", {"data": "late"})[0] == 410
    assert [c["id"] for c in http.json("GET", f"{base}/s1")["commands"]] == [started["cmdId"]]
    sleeper = http.json("POST", f"{base}/s1/exec", {"command": "sleep 60", "runAsync": True}, expect=202)
    pid = standin.sessions[(sandbox_id, "s1")].commands[sleeper["cmdId"]].process.pid
    assert http("DELETE", f"{base}/s1")[0] == 204
    time.sleep(0.5)
    assert standin.sessions == {}
    with contextlib.suppress(FileNotFoundError):  # gone, or a zombie not yet reaped: killed either way
        assert Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    assert {"Session", "Command", "SessionExecuteResponse", "SessionCommandLogsResponse"} <= {
        n for n, _ in standin.served
    }


def test_fault_knobs_retry_after_delay_drop_lose_and_every(standin: StandIn) -> None:
    http = Http(standin)
    standin.add_fault(method="GET", path="^/api/sandbox$", status=429, retry_after=7)
    request = urllib.request.Request(
        standin.api_url + "/sandbox", headers={"Authorization": f"Bearer {standin.api_key}"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 429 and info.value.headers["Retry-After"] == "7"
    standin.add_fault(method="GET", path="^/api/sandbox$", drop=True)
    with pytest.raises((ConnectionError, urllib.error.URLError, RemoteDisconnected)):
        urllib.request.urlopen(request, timeout=30)
    standin.add_fault(method="POST", path="^/api/sandbox$", lose=True)
    with pytest.raises((ConnectionError, urllib.error.URLError, RemoteDisconnected)):
        http("POST", "/api/sandbox", create_body())
    assert len(standin.sandboxes) == 1  # handled, though the answer was lost
    standin.add_fault(method="GET", path="^/api/sandbox$", status=500, every=3, times=-1)
    assert [http("GET", "/api/sandbox")[0] for _ in range(6)] == [200, 200, 500, 200, 200, 500]
    standin.faults.clear()
    standin.add_fault(method="GET", path="^/api/sandbox$", delay=0.3)
    assert http("GET", "/api/sandbox")[0] == 200
    assert [r.get("fault") for r in standin.requests][-1] == "lose/delay"
