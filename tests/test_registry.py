"""The registry file: private modes, WAL, schema version migrated on open, parallel writers, policies."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sandboxctl.config import Settings
from sandboxctl.registry.models import SandboxStatus, sandbox_json
from sandboxctl.registry.store import MIGRATIONS, SCHEMA_VERSION, Registry
from sandboxctl.services.context import Context
from sandboxctl.services.lifecycle import CreateOptions, create_sandbox

from .conftest import Cli

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_registry_file_is_private_and_in_wal_mode(cli: Cli, home: Path) -> None:
    cli.ok("status")
    db = home / "registry.db"
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        applied = [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert applied == [name for name, _ in MIGRATIONS]


def test_migrations_run_forward_on_an_old_registry(home: Path) -> None:
    """A registry at version 1 (only m001) gets the later migrations when opened."""
    url = f"sqlite:///{home / 'registry.db'}"
    Registry(url)
    with sqlite3.connect(home / "registry.db") as conn:
        conn.execute("DELETE FROM schema_migrations WHERE name != 'm001_initial'")
        conn.execute("PRAGMA user_version=1")
    Registry(url)
    with sqlite3.connect(home / "registry.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


def test_expiry_index_is_composite(home: Path) -> None:
    """A lone expires_at index makes the expiry scan 16x slower (research/perf-baseline.md)."""
    Registry(f"sqlite:///{home / 'registry.db'}")
    with sqlite3.connect(home / "registry.db") as conn:
        plan = " ".join(
            str(row)
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM sandbox WHERE status='running' AND expires_at < '2030' LIMIT 100"
            )
        )
    assert "ix_sandbox_status_expires" in plan, plan


@pytest.mark.parametrize(
    ("policy", "ttl", "expected"),
    [
        ("default", None, timedelta(hours=24)),
        ("extended", None, timedelta(days=7)),
        ("permanent", None, None),
        ("permanent", timedelta(minutes=5), timedelta(minutes=5)),
        ("default", timedelta(hours=1), timedelta(hours=1)),
    ],
)
def test_policy_sets_expiry_with_injected_time(
    home: Path, db: str | None, policy: str, ttl: timedelta | None, expected: timedelta | None
) -> None:
    ctx = Context(settings=Settings.load(), clock=lambda: T0)
    record = create_sandbox(ctx, CreateOptions(backend="local", image=None, policy=policy, ttl=ttl))
    assert record.created_at == T0
    assert record.expires_at == (T0 + expected if expected else None)
    stored = ctx.registry.get(record.id)
    assert stored is not None and stored.status == SandboxStatus.RUNNING
    assert stored.expires_at == record.expires_at


def test_idle_timeout_recorded_from_config(home: Path, db: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXCTL_IDLE_TIMEOUT", "30m")
    ctx = Context(settings=Settings.load(), clock=lambda: T0)
    record = create_sandbox(ctx, CreateOptions(backend="local", image=None))
    assert record.idle_timeout_seconds == 1800


def test_conditional_status_change_has_exactly_one_winner(home: Path, db: str | None) -> None:
    ctx = Context(settings=Settings.load(), clock=lambda: T0)
    record = create_sandbox(ctx, CreateOptions(backend="local", image=None))
    registry = ctx.registry
    assert registry.set_status(record.id, SandboxStatus.DELETING, now=T0) is True
    assert registry.set_status(record.id, SandboxStatus.DELETING, now=T0) is False  # already claimed
    assert registry.set_status(record.id, SandboxStatus.CREATING, now=T0) is False  # illegal: refused


def test_listing_rows_give_the_same_json_as_records(home: Path, db: str | None) -> None:
    """`status` lists plain rows for speed; they must render exactly as the ORM records do."""
    ctx = Context(settings=Settings.load())
    registry = ctx.registry
    made = [
        create_sandbox(ctx, CreateOptions(backend="local", image=None, labels={"team": team}, env={"TOKEN": "x"}))
        for team in ("a", "b", "a")
    ]
    registry.archive(made[0].id, reason="deleted", deletion={"success": True}, now=datetime.now(UTC))
    live = {r.id: r.to_json() for r in registry.list_live()}
    archived = {a["id"]: a for a in (sandbox_json(row) for row in registry.list_rows(archived=True))}
    assert {r["id"]: sandbox_json(r) for r in registry.list_rows()} == live
    assert set(live) == {made[1].id, made[2].id}
    assert archived[made[0].id] == registry.resolve(made[0].id).to_json()
    assert archived[made[0].id]["reason"] == "deleted" and archived[made[0].id]["status"] == "deleted"
    assert [r["id"] for r in registry.list_rows(selector={"team": "a"})] == [made[2].id]
