"""One registry for a fleet (issue 13): PostgreSQL through --db / SANDBOXCTL_DB, on both engines where it applies.

Real parts only: a throwaway PostgreSQL cluster (tests/pgcluster.py), the installed CLI as
subprocesses, real `local` sandbox directories. "Hosts" are SANDBOXCTL_HOSTNAME values.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from sandboxctl.config import Settings
from sandboxctl.durations import utcnow
from sandboxctl.registry.store import MIGRATIONS, SCHEMA_VERSION, Registry
from sandboxctl.services.context import Context
from sandboxctl.services.lifecycle import CreateOptions, create_sandbox

from .conftest import SANDBOXCTL, Cli


def seed_expired(count: int, label: str) -> list[str]:
    """`count` real local sandboxes in this process's SANDBOXCTL_HOME / SANDBOXCTL_DB, expired a day ago."""
    created = utcnow() - timedelta(days=2)
    ctx = Context(settings=Settings.load(), clock=lambda: created)
    options = CreateOptions(backend="local", image=None, ttl=timedelta(days=1), labels={"fleet-test": label})
    ids = [create_sandbox(ctx, options).id for _ in range(count)]
    ctx.registry.engine.dispose()
    return ids


def scalar(url: str, sql: str) -> Any:
    """One value, read without sandboxctl (which may refuse the registry)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SANDBOXCTL, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


# -- schema and migrations, both engines --------------------------------------------------------
def test_the_same_migrations_create_both_registries(registry_url: str) -> None:
    Registry(registry_url).engine.dispose()
    names = [name for name, _ in MIGRATIONS]
    registry = Registry(registry_url)  # a second open migrates nothing
    with registry.engine.connect() as conn:
        recorded = list(conn.execute(text("SELECT name FROM schema_migrations ORDER BY name")).scalars())
        columns = {row[0] for row in conn.execute(text("SELECT claim_host, claim_pid FROM sandbox")).all()}
    registry.engine.dispose()
    assert recorded == sorted(names)
    assert columns == set()


def test_a_registry_newer_than_this_sandboxctl_is_refused_and_never_written(cli: Cli, registry_url: str) -> None:
    Registry(registry_url).engine.dispose()
    engine = create_engine(registry_url)
    with engine.begin() as conn:  # what a newer sandboxctl leaves behind
        conn.execute(
            text("INSERT INTO schema_migrations (name, applied_at) VALUES ('m999_from_the_future', :t)"),
            {"t": utcnow()},
        )
        if registry_url.startswith("sqlite"):
            conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    engine.dispose()
    for args in (["status"], ["create", "--backend", "local"], ["cleanup"]):
        result = cli("--db", registry_url, *args)
        assert result.returncode == 2, str(result)
        assert (
            result.stderr.count("\n") == 1
            and "newer schema" in result.stderr
            and "m999_from_the_future" in result.stderr
        )
    assert scalar(registry_url, "SELECT count(*) FROM sandbox") == 0


@pytest.mark.slow
def test_hosts_starting_at_once_on_an_empty_database_create_the_schema_once(cli: Cli, pg_url: str) -> None:
    procs = [spawn(["--db", pg_url, "status", "--json"], {**cli.env, "SANDBOXCTL_HOSTNAME": f"h{n}"}) for n in range(6)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(code == 0 for code, _ in results), results
    assert scalar(pg_url, "SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)
    assert scalar(pg_url, "SELECT count(*) FROM registry_meta WHERE key = 'registry_id'") == 1


# -- the URL's password is never printed --------------------------------------------------------
def test_the_password_is_never_printed(cli: Cli, pg_cluster: Any, pg_url: str) -> None:
    password = pg_cluster.password
    shown = cli.ok("--db", pg_url, "config", "show", "--json").json()["db"]
    assert shown == {"value": pg_url.replace(password, "***"), "source": "flag"}
    assert password not in cli.ok("config", "show", env={"SANDBOXCTL_DB": pg_url}).stdout
    closed = f"postgresql+psycopg://sandboxctl:{password}@127.0.0.1:1/nowhere"
    for args in (["status"], ["--debug", "status"], ["create", "--backend", "local"], ["--debug", "cleanup"]):
        result = cli("--db", closed, *args)
        assert result.returncode == 1, str(result)
        assert password not in result.stdout + result.stderr, str(result)
        assert "is unavailable" in result.stderr
        if "--debug" not in args:
            assert result.stderr.count("\n") == 1, str(result)
    # URLs SQLAlchemy cannot use: exit 2, the password masked in the message too.
    bad_driver = f"postgresql+nodriver://sandboxctl:{password}@127.0.0.1:1/x"
    for url in (bad_driver, f"postgresql+psycopg://sandboxctl:{password}@127.0.0.1:notaport/x"):
        result = cli("--debug", "status", env={"SANDBOXCTL_DB": url})
        assert result.returncode == 2 and "bad registry URL" in result.stderr, str(result)
        assert password not in result.stdout + result.stderr, str(result)


# -- every command on PostgreSQL -----------------------------------------------------------------
def test_every_everyday_command_uses_the_postgresql_registry(cli: Cli, db: str | None, home: Path) -> None:
    made = cli.ok("create", "--backend", "local", "--name", "fleet-one", "--json").json()
    assert cli.ok("exec", "fleet-one", "--", "echo", "hi").stdout == "hi\n"
    assert [r["id"] for r in cli.ok("status", "--json").json()] == [made["id"]]
    cli.ok("delete", "fleet-one")
    assert cli.ok("status", "--all", "--json").json()[0]["status"] == "deleted"
    assert (home / "registry.db").exists() == (db is None)  # on PostgreSQL no SQLite file appears


@pytest.mark.slow
def test_four_processes_creating_25_each_lose_nothing(cli: Cli, pg_url: str) -> None:
    script = 'for i in $(seq 25); do "$0" create --backend local --label fleet=par >/dev/null || exit 1; done'
    env = {**cli.env, "SANDBOXCTL_DB": pg_url}
    procs = [
        subprocess.Popen(["sh", "-c", script, SANDBOXCTL], env=env, stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0, 0, 0], [p.stderr.read() for p in procs if p.stderr]
    rows = cli.ok("status", "--json", env={"SANDBOXCTL_DB": pg_url}).json()
    assert len(rows) == len({r["id"] for r in rows}) == 100


# -- claims that scale ---------------------------------------------------------------------------
@pytest.mark.slow
def test_three_cleanups_from_three_homes_split_the_work_and_clean_each_once(
    cli: Cli, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOXCTL_DB", pg_url)
    ids = seed_expired(60, "split")
    homes = [tmp_path / f"home{n}" for n in range(3)]
    args = ["cleanup", "--label", "fleet-test=split", "--concurrency", "2", "--json"]
    procs = [spawn(args, {**cli.env, "SANDBOXCTL_DB": pg_url, "SANDBOXCTL_HOME": str(h)}) for h in homes]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    import json

    reports = [json.loads(out) for out, _err in outputs]
    cleaned = [[i["sandbox_id"] for i in r["sandboxes"] if i["result"] == "cleaned"] for r in reports]
    all_cleaned = [sandbox for run in cleaned for sandbox in run]
    assert sorted(all_cleaned) == sorted(ids)  # each exactly once, none missed
    assert sum(1 for run in cleaned if run) >= 2, [len(run) for run in cleaned]
    assert scalar(pg_url, "SELECT count(*) FROM sandbox") == 0
    assert scalar(pg_url, "SELECT count(*) FROM sandbox_archive") == 60
    assert not any((Path(cli.env["SANDBOXCTL_HOME"]) / "local").glob("[0-9a-f]*"))


@pytest.mark.slow
def test_a_server_restart_mid_cleanup_fails_cleanly_and_the_next_run_finishes(
    cli: Cli, pg_cluster: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOXCTL_DB", pg_url)
    ids = seed_expired(400, "restart")
    env = {**cli.env, "SANDBOXCTL_DB": pg_url}
    run = spawn(["cleanup", "--label", "fleet-test=restart", "--limit", "1000", "--concurrency", "1"], env)
    deadline = time.monotonic() + 120
    while scalar(pg_url, "SELECT count(*) FROM sandbox_archive") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    pg_cluster.restart()
    _out, err = run.communicate(timeout=300)
    assert run.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "unavailable" in err, err
    assert pg_cluster.password not in err
    archived = scalar(pg_url, "SELECT count(*) FROM sandbox_archive")
    assert 0 < archived < 400  # it really stopped half-way
    assert scalar(pg_url, "SELECT count(*) FROM sandbox") + archived == 400  # nothing lost
    finished = cli("cleanup", "--label", "fleet-test=restart", "--limit", "1000", "--json", env=env)
    assert finished.returncode == 0, str(finished)
    assert scalar(pg_url, "SELECT count(*) FROM sandbox") == 0
    assert scalar(pg_url, "SELECT count(*) FROM sandbox_archive") == 400
    assert set(ids) == set(ids)


# -- orphans and liveness across hosts -----------------------------------------------------------
def test_a_dead_create_is_judged_only_on_its_own_host(cli: Cli, db: str | None) -> None:
    """A `creating` record whose pid is dead: its own host takes it at once, another waits for the grace."""
    registry = Context(settings=Settings.load()).registry
    made = cli.ok("create", "--backend", "local", "--json").json()
    with registry.engine.begin() as conn:
        conn.execute(text("UPDATE sandbox SET status = 'creating', pid = 999999999 WHERE id = :id"), {"id": made["id"]})
    registry.engine.dispose()
    elsewhere = cli("cleanup", "--json", env={"SANDBOXCTL_HOSTNAME": "another-host"})
    assert elsewhere.returncode == 0 and elsewhere.json()["sandboxes"] == [], str(elsewhere)
    here = cli.ok("cleanup", "--json", env={"SANDBOXCTL_HOSTNAME": made["host"]}).json()
    assert [(i["sandbox_id"], i["reason"], i["result"]) for i in here["sandboxes"]] == [
        (made["id"], "stale_create", "cleaned")
    ]


def test_cleanup_elsewhere_skips_local_sandboxes_and_the_vanished_check_goes_on(
    cli: Cli, db: str | None, home: Path
) -> None:
    ours = cli.ok("create", "--backend", "local", "--ttl", "1s", "--label", "t=x", "--json").json()
    h2 = {"SANDBOXCTL_HOSTNAME": "h2"}
    theirs = cli.ok("create", "--backend", "local", "--ttl", "1s", "--label", "t=x", "--json", env=h2).json()
    # Not due, and not in this host's listing: the vanished check used to stop on it with one error.
    theirs_live = cli.ok("create", "--backend", "local", "--label", "t=x", "--json", env=h2).json()
    gone = cli.ok("create", "--backend", "local", "--label", "t=x", "--json").json()
    os.rename(home / "local" / gone["id"], home / "local" / f"x{gone['id']}")  # vanished behind our back
    time.sleep(1.1)
    theirs_expired = cli.ok("cleanup", "--label", "t=x", "--orphans", "--json").json()
    by_id = {i["sandbox_id"]: i for i in theirs_expired["sandboxes"]}
    assert by_id[theirs["id"]]["result"] == "skipped" and by_id[theirs["id"]]["reason"] == "other_host"
    assert "'h2'" in by_id[theirs["id"]]["note"]
    assert by_id[ours["id"]]["result"] == "cleaned"
    assert by_id[gone["id"]]["reason"] == "vanished" and by_id[gone["id"]]["result"] == "cleaned"
    assert theirs_expired["errors"] == []
    status = {r["id"]: r["status"] for r in cli.ok("status", "--all", "--json").json()}
    assert status[theirs["id"]] == status[theirs_live["id"]] == "running"  # never archived elsewhere
    assert theirs_live["id"] not in by_id
    assert (home / "local" / theirs["id"]).is_dir()
