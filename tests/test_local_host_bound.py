"""Issues 9.6 and 9.7 on the `local` backend: delete stops what the sandbox started, and a shared registry
never reports a deletion it did not do (the record names its directory and host)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from sandboxctl.backends.base import CreateSpec, NotFound
from sandboxctl.backends.local import LocalBackend
from sandboxctl.hostid import this_host
from sandboxctl.registry.store import new_sandbox_id

from .conftest import Cli

# Escapes the exec's process group three ways: setsid + nohup, a double fork, and a plain background job.
ESCAPE = (
    "setsid nohup sh -c 'echo $$ > p1; exec sleep 3001' >/dev/null 2>&1 & "
    "( sh -c 'echo $$ > p2; exec sleep 3002' >/dev/null 2>&1 & ) ; "
    "nohup sh -c 'echo $$ > p3; exec sleep 3003' >/dev/null 2>&1 & "
    "while [ ! -s p1 ] || [ ! -s p2 ] || [ ! -s p3 ]; do sleep 0.05; done"
)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _wait_dead(pid: int, limit: float = 30) -> bool:
    """Bounded wait (not a timing assertion): SIGKILL is asynchronous."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _start_escapees(cli: Cli, sandbox: str) -> list[int]:
    cli.ok("exec", "--timeout", "60s", sandbox, "--", "sh", "-c", ESCAPE, timeout=90)
    workspace = Path(cli.ok("status", sandbox, "--json").json()["backend_id"].partition(":")[2]) / "workspace"
    pids = [int((workspace / name).read_text()) for name in ("p1", "p2", "p3")]
    assert all(_alive(pid) for pid in pids), "the escapees should run after exec returned"
    return pids


def test_delete_kills_processes_that_escaped_with_setsid_and_double_fork(cli: Cli) -> None:
    sandbox = cli.ok("create", "--backend", "local").stdout.strip()
    pids = _start_escapees(cli, sandbox)
    try:
        cli.ok("delete", sandbox)
        assert all(_wait_dead(pid) for pid in pids), [pid for pid in pids if _alive(pid)]
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, 9)


def test_cleanup_kills_the_processes_of_an_expired_sandbox(cli: Cli) -> None:
    label = f"test.cleanup={uuid.uuid4().hex}"
    sandbox = cli.ok("create", "--backend", "local", "--ttl", "1s", "--label", label).stdout.strip()
    pids = _start_escapees(cli, sandbox)
    try:
        time.sleep(1.1)  # let the 1s TTL pass
        result = cli("cleanup", "--backend", "local", "--label", label, "--json")
        assert result.returncode == 0, str(result)
        assert all(_wait_dead(pid) for pid in pids)
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, 9)


def test_exec_timeout_kills_a_setsid_escapee(cli: Cli, home: Path) -> None:
    sandbox = cli.ok("create", "--backend", "local").stdout.strip()
    script = "setsid sh -c 'echo $$ > esc; exec sleep 3004' >/dev/null 2>&1 & sleep 600"
    result = cli("exec", "--timeout", "2s", sandbox, "--", "sh", "-c", script, timeout=60)
    assert result.returncode == 124, str(result)
    workspace = Path(cli.ok("status", sandbox, "--json").json()["backend_id"].partition(":")[2]) / "workspace"
    pid = int((workspace / "esc").read_text())
    try:
        assert _wait_dead(pid)
    finally:
        if _alive(pid):
            os.kill(pid, 9)


def test_delete_through_another_homes_registry_removes_the_right_directory(cli: Cli, tmp_path: Path) -> None:
    other_home = tmp_path / "other-home"
    other = Cli({**cli.env, "SANDBOXCTL_HOME": str(other_home)})
    sandbox = other.ok("create", "--backend", "local").stdout.strip()
    record = other.ok("status", sandbox, "--json").json()
    directory = Path(record["backend_id"].partition(":")[2])
    assert directory.is_dir() and directory.is_relative_to(other_home.resolve())
    db = f"sqlite:///{other_home / 'registry.db'}"
    cli.ok("--db", db, "delete", sandbox)
    assert not directory.exists(), "the sandbox's own directory must be gone"
    assert other.ok("status", "--all", "--json").json()[0]["status"] == "deleted"


def test_another_host_neither_deletes_nor_reports_a_deletion(cli: Cli, home: Path) -> None:
    label = f"test.host={uuid.uuid4().hex}"
    sandbox = cli.ok("create", "--backend", "local", "--ttl", "1s", "--label", label).stdout.strip()
    directory = Path(cli.ok("status", sandbox, "--json").json()["backend_id"].partition(":")[2])
    elsewhere = {"SANDBOXCTL_HOSTNAME": f"elsewhere-{uuid.uuid4().hex[:8]}"}

    exec_elsewhere = cli("exec", sandbox, "--", "true", env=elsewhere)
    assert exec_elsewhere.returncode == 1 and "lives on host" in exec_elsewhere.stderr, str(exec_elsewhere)

    deleted = cli("delete", sandbox, env=elsewhere)
    assert deleted.returncode == 1, str(deleted)
    assert "lives on host" in deleted.stderr and deleted.stderr.count("\n") == 1, str(deleted)
    assert directory.is_dir()
    assert cli.ok("status", sandbox, "--json").json()["status"] != "deleted"

    time.sleep(1.1)  # expired: cleanup selects it
    cleaned = cli("cleanup", "--backend", "local", "--label", label, "--json", env=elsewhere)
    # Another host's cleanup skips it with a note (issue 13): never claimed, archived or an exit 1.
    assert cleaned.returncode == 0, str(cleaned)
    [item] = cleaned.json()["sandboxes"]
    assert (item["sandbox_id"], item["result"], item["reason"]) == (sandbox, "skipped", "other_host"), item
    assert "only cleanup there deletes it" in item["note"]
    assert directory.is_dir()
    assert [r["id"] for r in cli.ok("status", "--json").json()] == [sandbox]

    cli.ok("delete", sandbox)  # from its own host it goes
    assert not directory.exists()


def test_another_hosts_old_sandbox_is_noted_by_older_than_too(cli: Cli) -> None:
    """`--older-than` looks for other hosts' local sandboxes only after a probe finds one: this is the one."""
    label = f"test.host={uuid.uuid4().hex}"
    sandbox = cli.ok("create", "--backend", "local", "--label", label).stdout.strip()
    elsewhere = {"SANDBOXCTL_HOSTNAME": f"elsewhere-{uuid.uuid4().hex[:8]}"}
    cleaned = cli("cleanup", "--older-than", "0s", "--label", label, "--json", env=elsewhere)
    assert cleaned.returncode == 0, str(cleaned)
    [item] = cleaned.json()["sandboxes"]
    assert (item["sandbox_id"], item["result"], item["reason"]) == (sandbox, "skipped", "other_host"), item
    assert item["note"].startswith("older_than, but a local sandbox of host"), item
    mine = cli.ok("cleanup", "--older-than", "0s", "--label", label, "--json").json()["sandboxes"]
    assert [(s["sandbox_id"], s["reason"], s["result"]) for s in mine] == [(sandbox, "older_than", "cleaned")]


def test_a_registry_naming_a_directory_that_is_no_sandbox_deletes_nothing(tmp_path: Path) -> None:
    """A shared registry is not trusted: its backend id may only ever name a sandbox's own directory."""
    backend = LocalBackend(tmp_path / "local")
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    hex_named = tmp_path / "0123456789ab"  # looks like a sandbox directory, has no sandbox.json
    hex_named.mkdir()
    for crafted in (f"{this_host()}:{victim}", f"{this_host()}:{hex_named}", f"{this_host()}:relative/0123456789ab"):
        with pytest.raises(NotFound):
            backend.delete(crafted)
    assert (victim / "keep.txt").read_text() == "mine" and hex_named.is_dir()


def test_records_made_before_host_bound_ids_still_resolve(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "local")
    sandbox_id = new_sandbox_id()
    created = backend.create(
        CreateSpec(sandbox_id=sandbox_id, name="old", image=None, labels={"sandboxctl.id": sandbox_id})
    )
    assert created.backend_id.endswith(f":{(tmp_path / 'local').resolve() / sandbox_id}")
    assert backend.inspect(sandbox_id).backend_id == created.backend_id  # a bare id, as older records hold
    backend.delete(sandbox_id)
    assert not (tmp_path / "local" / sandbox_id).exists()
