"""Named migrations, applied in order and recorded in `schema_migrations`: append, never edit.

They use nothing but the tables in models.py and SQL: no migration calls back into
the code that uses the registry, and nothing patches a registry outside this list.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import inspect
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


def _m005_cleanup_claimer(conn: Connection) -> None:
    """Who claimed a `deleting` record, so a dead claimer's work is finished without waiting CLAIM_TIMEOUT.

    m001 creates the tables from today's models, claim columns included: add only what is missing.
    """
    for table in ("sandbox", "sandbox_archive"):
        present = {column["name"] for column in inspect(conn).get_columns(table)}
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
    ("m005_cleanup_claimer", _m005_cleanup_claimer),
]

if len(MIGRATIONS) != SCHEMA_VERSION:  # the reader must know the version without importing SQLModel
    raise RuntimeError(f"reader.SCHEMA_VERSION is {SCHEMA_VERSION} but there are {len(MIGRATIONS)} migrations")
