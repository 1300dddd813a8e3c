"""The Engine API client's own HTTP/1.0 round trip (docker_engine.roundtrip), which replaced http.client.

What comes back over the socket is read defensively: a chunked body is decoded, anything that is not
HTTP is one typed error (a transport failure), never a crash.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxctl.backends.base import NotFound, Transient
from sandboxctl.backends.docker_engine import BadResponse, EngineSocket, engine_call, roundtrip


@pytest.fixture
def fake_daemon(tmp_path: Path) -> Iterator[tuple[str, list[bytes], list[bytes]]]:
    """A unix socket that answers each connection with the next canned reply; records the requests."""
    path = str(tmp_path / "docker.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    replies: list[bytes] = []
    requests: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                requests.append(data)
                conn.sendall(replies.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, replies, requests
    server.close()


def test_plain_and_chunked_bodies_are_read_to_the_end(fake_daemon: tuple[str, list[bytes], list[bytes]]) -> None:
    path, replies, requests = fake_daemon
    replies.append(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"Id": "abc"}')
    replies.append(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"Id"\r\n8\r\n: "xyz"}\r\n0\r\n\r\n')
    assert roundtrip(path, "POST", "/containers/c/exec", b'{"Cmd": ["true"]}', 10) == (200, b'{"Id": "abc"}')
    assert requests[0].startswith(b"POST /containers/c/exec HTTP/1.0\r\n")
    assert b"Content-Length: 17\r\n" in requests[0]
    assert roundtrip(path, "GET", "/x", None, 10) == (200, b'{"Id": "xyz"}')


def test_garbage_or_truncated_answers_are_transport_errors(fake_daemon: tuple[str, list[bytes], list[bytes]]) -> None:
    path, replies, _ = fake_daemon
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    replies += [b"SSH-2.0-not-http\r\n\r\n", b"HTTP/1.0 200 OK\r\nContent-Type: text/plain", b""]
    replies += [chunked + b"zz\r\nab\r\n0\r\n\r\n", chunked + b"5\r\nabc"]
    for _ in range(5):
        with pytest.raises(BadResponse):
            roundtrip(path, "GET", "/version", None, 10)
    replies.append(b"garbage")
    with pytest.raises(Transient):  # engine_call: a failed transport, retried by callers like any other
        engine_call(EngineSocket(f"unix://{path}"), "GET", "/version")


def test_status_codes_map_to_the_backend_errors(fake_daemon: tuple[str, list[bytes], list[bytes]]) -> None:
    path, replies, _ = fake_daemon
    replies.append(b'HTTP/1.0 404 Not Found\r\n\r\n{"message": "No such container: c"}')
    with pytest.raises(NotFound, match="No such container"):
        engine_call(EngineSocket(f"unix://{path}"), "GET", "/containers/c/json")


@pytest.mark.docker
def test_the_real_daemon_answers_http_1_0_unchunked(docker_engine: None) -> None:
    engine = EngineSocket.for_local_daemon()
    if engine is None:
        pytest.skip("the daemon is not on a unix socket")
    status, body = roundtrip(engine.path, "GET", "/version", None, 30)
    assert status == 200 and body.startswith(b"{") and b"ApiVersion" in body
