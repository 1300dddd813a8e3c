"""Named migrations, applied in order and recorded in `schema_migrations`: append, never edit.

They use nothing but the tables in models.py and SQL: no migration calls back into
the code that uses the registry, and nothing patches a registry outside this list.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from sandboxctl.registry.models import AgentRun, ArchivedSandbox, RegistryMeta, SandboxRecord, SchemaMigration
from sandboxctl.registry.reader import SCHEMA_VERSION


def _m001_initial(conn: Connection) -> None:
    tables = [SandboxRecord.__table__, ArchivedSandbox.__table__, RegistryMeta.__table__, SchemaMigration.__table__]
    SQLModel.metadata.create_all(conn, tables=tables)
    conn.execute(RegistryMeta.__table__.insert().values(key="registry_id", value=uuid.uuid4().hex))


def _create_agent_runs(conn: Connection) -> None:
    AgentRun.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]


def _m003_cleanup_indexes(conn: Connection) -> None:
    """Indexes for the cleanup planner's idle and --older-than scans (the expiry scan has its own)."""
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_sandbox_idle ON sandbox (idle_timeout_seconds, last_accessed)")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_sandbox_status_created ON sandbox (status, created_at)")


def _m005_sandbox_leases(conn: Connection) -> None:
    """Who is using a sandbox right now (`registry/leases.py`): cleanup spares leased sandboxes.

    Times are fixed-width UTC text, which sorts like the time itself on every database.
    """
    conn.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS sandbox_lease ("
        " sandbox_id VARCHAR NOT NULL,"
        " holder VARCHAR NOT NULL,"
        " host VARCHAR NOT NULL,"
        " pid INTEGER NOT NULL,"
        " expires_at VARCHAR NOT NULL,"
        " PRIMARY KEY (sandbox_id, holder))"
    )


def _m006_agent_run_states(conn: Connection) -> None:
    """The run's state machine position, the kept sandbox's expiry, and `agent cancel`'s request.

    Plain `ADD COLUMN` (SQLite and PostgreSQL); a table that m002/m004 created from today's model has them already.
    """
    present = {column["name"] for column in sa_inspect(conn).get_columns("agent_runs")}
    timestamp = "TIMESTAMP" if conn.dialect.name == "postgresql" else "DATETIME"
    for name, sql_type in (("state", "VARCHAR"), ("kept_until", timestamp), ("cancel_requested_at", timestamp)):
        if name not in present:
            conn.exec_driver_sql(f"ALTER TABLE agent_runs ADD COLUMN {name} {sql_type}")


def _m007_created_by(conn: Connection) -> None:
    """Audit: who created each sandbox and run. Older rows stay null (unknown). m001/m002/m004 build tables
    from today's models, so a new registry already has the column: add it only where missing."""
    for table in ("sandbox", "sandbox_archive", "agent_runs"):
        if "created_by" not in {column["name"] for column in sa_inspect(conn).get_columns(table)}:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN created_by VARCHAR")
    # status --user, cleanup --user and the per-user quota count select by it.
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_sandbox_created_by ON sandbox (created_by, status)")


def _m008_cleanup_claimer(conn: Connection) -> None:
    """Who claimed a `deleting` record, so a dead claimer's work is finished without waiting CLAIM_TIMEOUT.

    m001 creates the tables from today's models, claim columns included: add only what is missing.
    """
    for table in ("sandbox", "sandbox_archive"):
        present = {column["name"] for column in sa_inspect(conn).get_columns(table)}
        for column, sql_type in (("claim_host", "VARCHAR"), ("claim_pid", "INTEGER")):
            if column not in present:
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")


MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("m001_initial", _m001_initial),
    ("m002_agent_runs", _create_agent_runs),
    ("m003_cleanup_indexes", _m003_cleanup_indexes),
    # m002 was once a placeholder: registries migrated then lack `agent_runs`. This creates it where missing
    # (and does nothing elsewhere), replacing the run-time `ensure_tables` patch of four call sites.
    ("m004_agent_runs_where_missing", _create_agent_runs),
    ("m005_sandbox_leases", _m005_sandbox_leases),
    ("m006_agent_run_states", _m006_agent_run_states),
    ("m007_created_by", _m007_created_by),
    ("m008_cleanup_claimer", _m008_cleanup_claimer),
]

if len(MIGRATIONS) != SCHEMA_VERSION:  # the reader must know the version without importing SQLModel
    raise RuntimeError(f"reader.SCHEMA_VERSION is {SCHEMA_VERSION} but there are {len(MIGRATIONS)} migrations")
