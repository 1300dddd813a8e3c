"""Engine, migrations and queries of the registry (SQLite by default, any SQLAlchemy URL works).

SQLite runs in WAL mode with a busy timeout, and every write transaction starts
with `BEGIN IMMEDIATE`, so parallel processes queue for the write lock instead
of failing with "database is locked".
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, or_, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, create_engine, delete, select

from sandboxctl.errors import SandboxNotFound, UsageError
from sandboxctl.labels import matches
from sandboxctl.registry.models import (
    ArchivedSandbox,
    RegistryMeta,
    SandboxRecord,
    SandboxStatus,
    SchemaMigration,
)
from sandboxctl.registry.states import LIVE_STATUSES, sources_of

BUSY_TIMEOUT_MS = 60_000


def new_sandbox_id() -> str:
    """12 hex digits: short enough to type, long enough never to collide in one registry."""
    return secrets.token_hex(6)


def _m001_initial(conn: Connection) -> None:
    tables = [SandboxRecord.__table__, ArchivedSandbox.__table__, RegistryMeta.__table__, SchemaMigration.__table__]
    SQLModel.metadata.create_all(conn, tables=tables)
    conn.execute(RegistryMeta.__table__.insert().values(key="registry_id", value=uuid.uuid4().hex))


# Named migrations, applied in order and recorded in `schema_migrations`; append, never edit.
def _m002_agent_runs(conn: Connection) -> None:
    from sandboxctl.registry.agent_runs import create_tables

    create_tables(conn)


MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("m001_initial", _m001_initial),
    ("m002_agent_runs", _m002_agent_runs),
]
SCHEMA_VERSION = len(MIGRATIONS)


def prepare_sqlite_file(path: Path) -> None:
    """Directory 0700, file 0600, before SQLite creates anything (its -wal/-shm copy the file's mode)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (pysqlite's implicit BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Registry:
    """The registry of one SQLAlchemy URL. Open it once per command."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite and url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            prepare_sqlite_file(Path(url.removeprefix("sqlite:///")))
        self.engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000} if self.is_sqlite else {})
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)
        self._write_engine = self.engine.execution_options(sqlite_immediate=True)
        self._migrate()

    # -- sessions --------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A write transaction holding SQLite's write lock from its first statement; commits on exit."""
        with Session(self._write_engine, expire_on_commit=False) as session:
            yield session
            session.commit()

    def _migrate(self) -> None:
        if self.is_sqlite:
            with self.engine.connect() as conn:
                version = conn.exec_driver_sql("PRAGMA user_version").scalar()
                conn.rollback()
            if version == SCHEMA_VERSION:
                return
        with self._write_engine.begin() as conn:
            SchemaMigration.__table__.create(conn, checkfirst=True)
            done = set(conn.execute(select(SchemaMigration.name)).scalars())
            for name, migration in MIGRATIONS:
                if name in done:
                    continue
                migration(conn)
                from sandboxctl.durations import utcnow

                conn.execute(SchemaMigration.__table__.insert().values(name=name, applied_at=utcnow()))
            if self.is_sqlite:
                conn.exec_driver_sql(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- facts -----------------------------------------------------------
    def registry_id(self) -> str:
        with self.reading() as session:
            meta = session.get(RegistryMeta, "registry_id")
        return meta.value if meta else ""

    # -- records ---------------------------------------------------------
    def insert(self, record: SandboxRecord) -> SandboxRecord:
        """Commit a new record; a taken name is a usage error (exit 2)."""
        try:
            with self.writing() as session:
                session.add(record)
        except IntegrityError:
            raise UsageError(f"a sandbox named {record.name!r} already exists: choose another --name") from None
        return record

    def get(self, sandbox_id: str) -> SandboxRecord | None:
        with self.reading() as session:
            return session.get(SandboxRecord, sandbox_id)

    def resolve(self, ref: str) -> SandboxRecord | ArchivedSandbox:
        """An id, a name or a unique id prefix -> the live record, else the newest archived one.

        Unknown to the registry -> `SandboxNotFound` (exit 3); an ambiguous prefix -> exit 2.
        """
        for model in (SandboxRecord, ArchivedSandbox):
            with self.reading() as session:
                exact = session.exec(
                    select(model)
                    .where(or_(model.id == ref, model.name == ref))
                    .order_by(col(model.created_at).desc())
                    .limit(1)
                ).first()
                if exact is not None:
                    return exact
                if not ref:
                    break
                prefixed = session.exec(select(model).where(col(model.id).startswith(ref, autoescape=True)).limit(2)).all()
            if len(prefixed) > 1:
                raise UsageError(f"{ref!r} matches several sandboxes: give more of the id")
            if prefixed:
                return prefixed[0]
        raise SandboxNotFound(f"no sandbox {ref!r}: `sandboxctl status --all` lists the known ones")

    def set_status(
        self,
        sandbox_id: str,
        target: SandboxStatus,
        *,
        now: datetime,
        expect: Sequence[SandboxStatus] | None = None,
        **fields: Any,
    ) -> bool:
        """Move one record to `target` if the state machine (and `expect`) allow it from its current status.

        One conditional UPDATE, so concurrent callers can never both win: this is how
        cleanup claims a sandbox. Returns False when the record was not in an allowed status.
        """
        allowed = sources_of(target)
        if expect is not None:
            allowed = allowed & frozenset(expect)
        with self.writing() as session:
            result = session.exec(
                update(SandboxRecord)
                .where(col(SandboxRecord.id) == sandbox_id, col(SandboxRecord.status).in_([s.value for s in allowed]))
                .values(status=target.value, status_changed_at=now, **fields)
            )
            return result.rowcount == 1

    def update_fields(self, sandbox_id: str, **fields: Any) -> None:
        with self.writing() as session:
            session.exec(update(SandboxRecord).where(col(SandboxRecord.id) == sandbox_id).values(**fields))

    def touch(self, sandbox_id: str, now: datetime) -> None:
        """Record use (exec): the idle timeout counts from here."""
        self.update_fields(sandbox_id, last_accessed=now)

    def archive(self, sandbox_id: str, *, reason: str, deletion: Mapping[str, Any], now: datetime) -> ArchivedSandbox | None:
        """Move a record to the archive (status `deleted`) in one transaction; None if already moved."""
        with self.writing() as session:
            record = session.get(SandboxRecord, sandbox_id)
            if record is None:
                return None
            values = record.model_dump()
            values.update(status=SandboxStatus.DELETED.value, status_changed_at=now)
            archived = ArchivedSandbox(**values, archived_at=now, reason=reason, deletion=dict(deletion))
            session.delete(record)
            session.flush()
            session.add(archived)
        return archived

    def list_live(
        self,
        *,
        backend: str | None = None,
        selector: Mapping[str, str] | None = None,
        statuses: Sequence[SandboxStatus] | None = None,
    ) -> list[SandboxRecord]:
        query = select(SandboxRecord).where(
            col(SandboxRecord.status).in_([s.value for s in (statuses or LIVE_STATUSES)])
        )
        if backend:
            query = query.where(SandboxRecord.backend == backend)
        with self.reading() as session:
            records = list(session.exec(query.order_by(col(SandboxRecord.created_at))).all())
        return [r for r in records if matches(r.labels, selector)] if selector else records

    def list_archived(self, *, backend: str | None = None, selector: Mapping[str, str] | None = None) -> list[ArchivedSandbox]:
        query = select(ArchivedSandbox)
        if backend:
            query = query.where(ArchivedSandbox.backend == backend)
        with self.reading() as session:
            records = list(session.exec(query.order_by(col(ArchivedSandbox.archived_at))).all())
        return [r for r in records if matches(r.labels, selector)] if selector else records

    def purge_archive(self, before: datetime) -> int:
        """Drop archive rows older than the retention; returns how many went."""
        with self.writing() as session:
            result = session.exec(delete(ArchivedSandbox).where(col(ArchivedSandbox.archived_at) < before))
            return result.rowcount

    def count_live(self) -> int:
        with self.reading() as session:
            return session.exec(select(func.count()).select_from(SandboxRecord)).one()
