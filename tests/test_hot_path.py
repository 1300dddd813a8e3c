"""What the everyday paths may not pay for: imports they do not use, and a connection per lease write."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sandboxctl.registry.leases import Holder, LeaseTable
from sandboxctl.registry.store import Registry
from sandboxctl.services.leases import leased
from sandboxctl.services.orphans import process_alive

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
