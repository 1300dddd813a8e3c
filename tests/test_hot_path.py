"""What the everyday paths may not pay for: imports they do not use, and a connection per lease write."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from sandboxctl.registry.leases import Holder, LeaseTable
from sandboxctl.registry.store import Registry
from sandboxctl.services.leases import leased
from sandboxctl.services.orphans import process_alive

from .conftest import Cli, sandbox_containers
from .test_leases import HOST, NOW, add

# Not needed to run `exec`: http.client (with email and ssl) was replaced by docker_engine.roundtrip;
# secrets pulls in hmac/hashlib; tomllib only when a config file exists; the status/create/delete parser.
EXEC_MUST_NOT_IMPORT = ("http.client", "email.parser", "secrets", "hashlib", "tomllib", "sandboxctl.cli.fast")


def test_exec_path_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import sandboxctl.cli, sandboxctl.cli.exec_fast, sandboxctl.services.execution\n"
        "import sandboxctl.backends.docker\n"
        "from sandboxctl.config import Settings\n"
        "Settings.load(None)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "SANDBOXCTL_HOME": str(tmp_path)}
    # -S: site's .pth files (e.g. one importing certifi) may import anything; this is about our own imports.
    # The package is then found from the repository root (no site, no editable-install .pth).
    repo = Path(__file__).resolve().parent.parent
    argv = [sys.executable, "-S", "-c", code]
    out = subprocess.run(argv, env=env, cwd=repo, capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert "sandboxctl.backends.docker_engine" in loaded
    assert sorted(loaded.intersection(EXEC_MUST_NOT_IMPORT)) == []


def test_a_lease_on_a_shared_connection_is_committed_and_leaves_it_open(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    path = Path(registry.url.removeprefix("sqlite:///"))
    sandbox = add(registry)
    conn = sqlite3.connect(path, isolation_level=None)
    table = LeaseTable(sqlite_path=path, connection=conn)
    holder = Holder("exec shared", HOST, os.getpid())
    assert table.acquire(sandbox.id, holder, expires_at=NOW + timedelta(minutes=2))
    # Committed: another connection (cleanup's) sees the lease.
    assert leased(registry, [sandbox.id], now=NOW, is_alive=process_alive) == {sandbox.id}
    assert not conn.in_transaction
    assert [lease.holder for lease in table.detached().live([sandbox.id], now=NOW)] == ["exec shared"]
    table.release(sandbox.id, holder, now=NOW)
    assert leased(registry, [sandbox.id], now=NOW, is_alive=process_alive) == set()
    assert conn.execute("SELECT count(*) FROM sandbox_lease").fetchone() == (0,)  # still open


# -- the Engine calls each everyday command makes, seen by a recording proxy in front of the real daemon ----
class RecordingProxy:
    """A unix socket that forwards every connection to the real daemon and records each request line."""

    def __init__(self, path: Path, upstream: str) -> None:
        self.path, self.upstream = path, upstream
        self.requests: list[str] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, first: bytes = b"") -> None:
        with contextlib.suppress(OSError):
            if first:
                sink.sendall(first)
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                client.close()
                return
            head += chunk
        self.requests.append(head.split(b"\r\n", 1)[0].decode())
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.upstream)
        back = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
        back.start()
        self._pipe(client, upstream, head)
        back.join(timeout=60)
        client.close()
        upstream.close()

    def calls(self) -> list[str]:
        """`METHOD /path` of each request, API version prefix and query dropped, ids as `ID`."""
        shapes = []
        for line in self.requests:
            method, target = line.split(" ")[:2]
            target = re.sub(r"^/v[0-9.]+", "", target.split("?")[0])
            shapes.append(f"{method} {re.sub(r'[0-9a-f]{64}|sandboxctl-[0-9a-f]{12}', 'ID', target)}")
        return shapes


@pytest.mark.docker
def test_create_exec_and_delete_make_only_the_calls_they_need(
    cli: Cli, docker_image: str, docker_cleanup: None, tmp_path: Path
) -> None:
    daemon = "/var/run/docker.sock"
    if not Path(daemon).exists() or os.environ.get("DOCKER_HOST", "unix://" + daemon) != "unix://" + daemon:
        pytest.skip("needs the daemon on the default unix socket")
    proxy = RecordingProxy(tmp_path / "docker.sock", daemon)
    env = {"DOCKER_HOST": f"unix://{proxy.path}"}
    sandbox = cli.ok("create", "--image", docker_image, "--label", f"hot-path={tmp_path.name}", env=env).stdout.strip()
    # Create and start, as `docker run -d` does: no inspect afterwards.
    assert proxy.calls() == ["POST /containers/create", "POST /containers/ID/start"]
    proxy.requests.clear()
    assert cli("exec", sandbox, "--", "true", env=env).returncode == 0
    assert proxy.calls() == ["POST /containers/ID/exec", "POST /exec/ID/start", "GET /exec/ID/json"]
    proxy.requests.clear()
    cli.ok("delete", sandbox, env=env)
    # The writable layer's size (for freed_bytes; ~1 ms), then `rm -f`.
    assert proxy.calls() == ["GET /containers/json", "DELETE /containers/ID"]
    assert sandbox_containers(sandbox) == []
