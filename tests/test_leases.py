"""Leases: a sandbox in use by a running `exec` or `agent-run` is never cleaned up from under it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandboxctl.registry.leases import Holder, LeaseTable
from sandboxctl.registry.models import SandboxRecord, SandboxStatus
from sandboxctl.registry.store import Registry, new_sandbox_id
from sandboxctl.services.leases import drop_dead_leases, leased
from sandboxctl.services.orphans import process_alive

from .conftest import SANDBOXCTL, Cli
from .pgcluster import Cluster, postgres_bindir, remove_cluster, start_cluster

HOST = socket.gethostname()
NOW = datetime.now(UTC)


# -- the table and the claim, on a real SQLite file (and PostgreSQL) ---------------------------------
@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(f"sqlite:///{tmp_path / 'registry.db'}")


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[Cluster]:
    if postgres_bindir() is None:
        pytest.skip("PostgreSQL is not installed")
    cluster = start_cluster()
    yield cluster
    remove_cluster(cluster)


def add(registry: Registry, status: SandboxStatus = SandboxStatus.RUNNING) -> SandboxRecord:
    sandbox_id = new_sandbox_id()
    created = NOW - timedelta(hours=2)
    return registry.insert(
        SandboxRecord(
            id=sandbox_id,
            name=f"sandbox-{sandbox_id}",
            backend="local",
            backend_id=sandbox_id,
            status=status,
            created_at=created,
            last_accessed=created,
            expires_at=created + timedelta(hours=1),
            host=HOST,
            pid=1,
            status_changed_at=created,
        )
    )


@pytest.mark.parametrize("store", ["sqlite3", "sqlalchemy", "postgresql"])
def test_a_live_lease_blocks_the_claim_and_a_claimed_sandbox_takes_no_lease(
    request: pytest.FixtureRequest, store: str
) -> None:
    if store == "postgresql":
        cluster: Cluster = request.getfixturevalue("pg_cluster")
        registry = Registry(cluster.create_database(f"leases_{new_sandbox_id()}"))
    else:
        registry = request.getfixturevalue("registry")
    if store == "sqlite3":
        table = LeaseTable(sqlite_path=Path(registry.url.removeprefix("sqlite:///")))
    else:
        table = LeaseTable(engine=registry.engine)
    held, free = add(registry), add(registry)
    assert table.acquire(held.id, Holder("exec a", HOST, os.getpid()), expires_at=NOW + timedelta(minutes=2))
    claim = dict(seen_status=SandboxStatus.RUNNING, now=NOW, unless_leased=True)
    assert not registry.claim(held.id, seen_changed_at=held.status_changed_at, **claim)
    assert registry.claim(free.id, seen_changed_at=free.status_changed_at, **claim)
    # Claimed (`deleting`): an exec starting now is refused instead of racing the deletion.
    assert not table.acquire(free.id, Holder("exec b", HOST, os.getpid()), expires_at=NOW + timedelta(minutes=2))
    # Named with --force, the claim ignores the lease.
    assert registry.claim(held.id, seen_status=SandboxStatus.RUNNING, seen_changed_at=held.status_changed_at, now=NOW)


def test_lapsed_and_dead_holders_do_not_count_and_another_hosts_lease_does(registry: Registry) -> None:
    table = LeaseTable(engine=registry.engine)
    lapsed, dead, remote, mine = (add(registry) for _ in range(4))
    dead_pid = _dead_pid()
    soon = NOW + timedelta(minutes=2)
    table.acquire(lapsed.id, Holder("exec 1", HOST, os.getpid()), expires_at=NOW - timedelta(seconds=1))
    table.acquire(dead.id, Holder("exec 2", HOST, dead_pid), expires_at=soon)
    table.acquire(remote.id, Holder("exec 3", "another-host.example", 1), expires_at=soon)
    table.acquire(mine.id, Holder("agent-run 4", HOST, os.getpid()), expires_at=soon)
    ids = [lapsed.id, dead.id, remote.id, mine.id]
    assert leased(registry, ids, now=NOW, is_alive=process_alive) == {remote.id, mine.id}
    assert len(table.live(ids, now=NOW)) == 3  # judging reads only (a dry run changes nothing)
    drop_dead_leases(registry, ids, now=NOW, is_alive=process_alive)
    assert {lease.sandbox_id for lease in table.live(ids, now=NOW)} == {remote.id, mine.id}
    # The dead holder's lease is gone, so the claim is no longer refused.
    assert registry.claim(
        dead.id, seen_status=SandboxStatus.RUNNING, seen_changed_at=dead.status_changed_at, now=NOW, unless_leased=True
    )


def _waiting_on_a_lock(registry: Registry) -> bool:
    from sqlalchemy import text

    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    with registry.engine.connect() as watcher:
        return bool(watcher.execute(text(query)).scalar())


def test_on_postgresql_a_lease_waits_for_a_claim_in_progress_then_sees_it(pg_cluster: Cluster) -> None:
    """The race: an exec checked `running` while a cleanup's claim of the same row was not yet committed, and
    both went ahead. Now the lease waits for the claim's row lock, then sees `deleting` and is refused."""
    from sqlalchemy import text

    registry = Registry(pg_cluster.create_database(f"leases_{new_sandbox_id()}"))
    record, table, outcome = add(registry), LeaseTable(engine=registry.engine), {}
    with registry.engine.connect() as claimer:
        claiming = claimer.begin()
        claimer.execute(text("SELECT id FROM sandbox WHERE id = :id FOR UPDATE"), {"id": record.id})
        holder = Holder("exec race", HOST, os.getpid())
        worker = threading.Thread(
            target=lambda: outcome.update(
                leased=table.acquire(record.id, holder, expires_at=NOW + timedelta(minutes=2))
            )
        )
        worker.start()
        wait_until(lambda: outcome or _waiting_on_a_lock(registry), timeout=120)
        assert outcome == {}, "the lease went ahead while a claim held the sandbox's row"
        claimer.execute(text("UPDATE sandbox SET status = 'deleting' WHERE id = :id"), {"id": record.id})
        claiming.commit()
    worker.join(120)
    assert outcome == {"leased": False}
    assert table.live([record.id], now=NOW) == []


def test_on_postgresql_a_claim_passes_over_a_sandbox_whose_lease_is_being_taken(pg_cluster: Cluster) -> None:
    """The other order: a lease taken but not yet committed holds the row, so a cleanup's claim skips it."""
    from sqlalchemy import text

    from sandboxctl.registry import leases

    registry = Registry(pg_cluster.create_database(f"leases_{new_sandbox_id()}"))
    record = add(registry)
    params = {"sandbox_id": record.id, "sandbox": record.id, "holder": "exec early", "host": HOST, "pid": os.getpid()}
    with registry.engine.connect() as leasing:
        taking = leasing.begin()
        statement = leases._ACQUIRE.format(lock=" FOR SHARE")  # what LeaseTable.acquire runs on PostgreSQL
        assert leasing.execute(text(statement), {**params, "expires_at": leases.stamp(NOW + timedelta(minutes=2))})
        seen = [(record.id, SandboxStatus.RUNNING, record.status_changed_at)]
        assert registry.claim_many(seen, now=NOW, unless_leased={record.id}) == set()
        taking.commit()
    # Committed, the lease is seen by the next claim, which refuses the sandbox for it.
    assert registry.claim_many(seen, now=NOW, unless_leased={record.id}) == set()
    assert registry.get(record.id).status == SandboxStatus.RUNNING


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# -- through the installed CLI ------------------------------------------------------------------------
def create(cli: Cli, *args: str, backend: str = "local") -> str:
    return cli.ok("create", "--backend", backend, *args).stdout.strip()


def start_exec(cli: Cli, sandbox: str, *command: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SANDBOXCTL, "exec", sandbox, "--", *command],
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def results(summary: dict[str, Any], sandbox: str) -> list[tuple[str, str]]:
    return [(s["reason"], s["result"]) for s in summary["sandboxes"] if s["sandbox_id"] == sandbox]


@contextmanager
def cleanup_every_2s(cli: Cli, *args: str) -> Iterator[list[tuple[float, dict[str, Any]]]]:
    """Run `cleanup --json` every 2 s in the background (as cron would, only faster).

    Yields the (monotonic time it finished, summary) of each run so far.
    """
    summaries: list[tuple[float, dict[str, Any]]] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            result = cli("cleanup", "--json", *args)
            if result.returncode == 0:
                summaries.append((time.monotonic(), result.json()))
            stop.wait(2)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield summaries
    finally:
        stop.set()
        thread.join(timeout=120)


def assert_spared_then_taken(cli: Cli, sandbox: str, runs: list[tuple[float, dict[str, Any]]], ended: float) -> None:
    """Every cleanup that finished while the user ran kept the sandbox (and at least one saw it `in_use`);
    once the user is done, cleanup takes it (a run already under way may have)."""
    during = [summary for finished, summary in runs if finished < ended]
    assert any(results(s, sandbox) == [("in_use", "in_use")] and s["sandboxes_in_use"] >= 1 for s in during), during
    assert not any(result == "cleaned" for s in during for _, result in results(s, sandbox)), during
    cli.ok("cleanup")
    gone = cli.ok("status", sandbox, "--json").json()
    assert (gone["status"], gone["reason"]) == ("deleted", "expired"), gone


def exec_outlives_its_expiry(cli: Cli, sandbox: str, seconds: int) -> None:
    """The required scenario: a long exec on a sandbox that expires under it, while cleanup runs every 2 s."""
    script = f"echo alive > marker; sleep {seconds}; cat marker"  # fails if the sandbox went away under it
    with cleanup_every_2s(cli) as runs:
        proc = start_exec(cli, sandbox, "sh", "-c", script)
        out, err = proc.communicate(timeout=seconds + 120)
        ended = time.monotonic()
    assert proc.returncode == 0, err
    assert out == "alive\n"
    assert_spared_then_taken(cli, sandbox, runs, ended)


def test_exec_holds_its_sandbox_until_it_ends(cli: Cli) -> None:
    sandbox = create(cli, "--ttl", "5s")
    exec_outlives_its_expiry(cli, sandbox, 20)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_exec_holds_its_docker_sandbox_until_it_ends(cli: Cli, docker_image: str) -> None:
    sandbox = create(cli, "--image", docker_image, "--ttl", "5s", backend="docker")
    exec_outlives_its_expiry(cli, sandbox, 30)


def test_in_use_in_the_plan_for_expiry_idleness_age_and_name_and_force_takes_it(cli: Cli) -> None:
    expired = create(cli, "--ttl", "1s")
    idle = create(cli, "--idle-timeout", "1s")
    old = create(cli)
    procs = [start_exec(cli, sandbox, "sleep", "60") for sandbox in (expired, idle, old)]
    try:
        wait_until(lambda: cli.ok("cleanup", "--dry-run", "--json").json()["sandboxes_in_use"] == 2)

        # All three execs hold their leases (each started in its own process: on a loaded machine, in its own time).
        def all_held() -> dict[str, Any] | None:
            plan = cli.ok("cleanup", "--dry-run", "--older-than", "1s", "--json").json()
            return plan if plan["sandboxes_in_use"] == 3 else None

        plan = wait_until(all_held)
        assert {s["sandbox_id"]: (s["reason"], s["result"]) for s in plan["sandboxes"]} == {
            expired: ("in_use", "in_use"),
            idle: ("in_use", "in_use"),
            old: ("in_use", "in_use"),
        }
        assert (plan["sandboxes_in_use"], plan["sandboxes_processed"]) == (3, 0), plan
        table = cli.ok("cleanup", "--dry-run", "--older-than", "1s").stdout
        assert table.count("in_use") == 3, table
        run = cli.ok("cleanup", "--older-than", "1s", "--force", "--json").json()
        assert (run["sandboxes_in_use"], run["sandboxes_cleaned"]) == (3, 0), run
        assert cli.ok("cleanup", "--older-than", "1s").stdout == ""  # off a terminal (cron): nothing happened
        named = cli.ok("cleanup", old, "--json").json()
        assert results(named, old) == [("in_use", "in_use")], named
        forced = cli.ok("cleanup", old, "--force", "--json").json()
        assert results(forced, old) == [("requested", "cleaned")], forced
        assert cli.ok("status", old, "--json").json()["status"] == "deleted"
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()


def test_a_killed_exec_releases_its_lease(cli: Cli) -> None:
    sandbox = create(cli, "--ttl", "1s")
    proc = start_exec(cli, sandbox, "sleep", "30")
    wait_until(lambda: results(cli.ok("cleanup", "--dry-run", "--json").json(), sandbox) == [("in_use", "in_use")])
    os.kill(proc.pid, signal.SIGKILL)  # no finally runs: only the dead pid (or the lease's expiry) frees it
    proc.communicate()
    summary = cli.ok("cleanup", "--json").json()
    assert results(summary, sandbox) == [("expired", "cleaned")], summary


@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_agent_run_keeps_its_sandbox_while_it_runs_then_cleanup_takes_the_kept_one(
    request: pytest.FixtureRequest, cli: Cli, tmp_path: Path, backend: str
) -> None:
    """issue 12.8: `agent-run --keep always --ttl 10s --idle-timeout 5s` of a 60 s agent, while cleanup runs every 2 s:
    the sandbox expires and goes idle under the agent, which still finishes with its patch."""
    image: list[str] = []
    if backend == "docker":
        image = ["--image", request.getfixturevalue("docker_image")]
        request.getfixturevalue("docker_cleanup")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "notes.txt").write_text("one\n")
    env = {**cli.env, "SANDBOXCTL_HEARTBEAT_SECONDS": "1"}
    agent = "sleep 60; echo two >> notes.txt"
    argv = [SANDBOXCTL, "agent-run", "--backend", backend, *image, "--keep", "always", "--repo", str(repo), "--json"]
    argv += ["--ttl", "10s", "--idle-timeout", "5s"]
    with cleanup_every_2s(cli) as runs:
        proc = subprocess.Popen(
            [*argv, "--", "sh", "-c", agent], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
        sandbox = wait_until(
            lambda: next((r["id"] for r in cli.ok("status", "--json").json() if r["status"] == "running"), None)
        )
        out, _ = proc.communicate(timeout=300)
        ended = time.monotonic()
    assert proc.returncode == 0, out
    summary = json.loads(out)
    assert summary["status"] == "succeeded" and summary["sandbox_id"] == sandbox, summary
    assert "+two" in Path(summary["patch_path"]).read_text()
    assert_spared_then_taken(cli, sandbox, runs, ended)


def test_exec_takes_its_lease_without_sqlalchemy(cli: Cli, home: Path) -> None:
    """The exec hot path takes its lease on stdlib sqlite3 (SQLModel alone costs more than an exec)."""
    sandbox = create(cli)
    # A local sandbox runs on the host: the command itself reads the lease it runs under.
    probe = (
        f"import json, sqlite3; db = sqlite3.connect({str(home / 'registry.db')!r}); print(json.dumps("
        f"db.execute('SELECT holder, pid FROM sandbox_lease WHERE sandbox_id = ?', ({sandbox!r},)).fetchall()))"
    )
    code = (
        "import atexit, os, sys\n"
        "atexit.register(lambda: sys.stderr.write('pid=%d heavy=%r' % (os.getpid(), "
        "[m for m in ('sqlalchemy', 'sqlmodel') if m in sys.modules])))\n"
        f"sys.argv = ['sandboxctl', 'exec', {sandbox!r}, '--', {sys.executable!r}, '-c', {probe!r}]\n"
        "from sandboxctl.cli import run\n"
        "run()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli.env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stderr.split("pid=")[1].split()[0])
    [(holder, lease_pid)] = json.loads(proc.stdout)
    assert holder.startswith("exec ") and lease_pid == pid, proc.stdout
    assert proc.stderr.endswith("heavy=[]"), proc.stderr
