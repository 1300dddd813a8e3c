"""Engine, migrations and queries of the registry: SQLite by default, PostgreSQL for a fleet.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts
with `BEGIN IMMEDIATE`, so parallel processes queue for the write lock instead
of failing with "database is locked". On PostgreSQL, migrations run under an
advisory lock (hosts starting at once create the schema once), cleanup claims
with `FOR UPDATE SKIP LOCKED`, and a lost connection is one `RegistryUnavailable`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, case, event, func, not_, or_, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, InterfaceError, OperationalError
from sqlmodel import Session, col, create_engine, delete, select

from sandboxctl.dburl import masked
from sandboxctl.durations import utcnow
from sandboxctl.errors import RegistryError, RegistryUnavailable, UsageError
from sandboxctl.hostid import this_host
from sandboxctl.labels import matches
from sandboxctl.quota import PG_ADVISORY_LOCK_KEY, LiveQuota
from sandboxctl.registry.migrations import MIGRATIONS
from sandboxctl.registry.models import (
    AgentRun,
    ArchivedSandbox,
    Policy,
    RegistryMeta,
    SandboxRecord,
    SandboxStatus,
    SchemaMigration,
)
from sandboxctl.registry.reader import (
    AGENT_RUN,
    SANDBOX,
    SCHEMA_VERSION,
    SandboxQuery,
    new_sandbox_id,
    registry_error,
    resolve_ref,
)
from sandboxctl.registry.states import LIVE_STATUSES, check_transition, sources_of

BUSY_TIMEOUT_MS = 60_000
# pg_advisory_xact_lock key held while migrating: any constant shared by every sandboxctl.
MIGRATION_LOCK_KEY = 0x5A4D_C7_0001
# Fail fast when a registry server is down instead of hanging a cron job.
PG_CONNECT_TIMEOUT_S = 10


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Registry", "new_sandbox_id"]


def prepare_sqlite_file(path: Path) -> None:
    """Directory 0700, file 0600, before SQLite creates anything (its -wal/-shm copy the file's mode)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def _ensure_wal(cursor: Any) -> None:
    """Put the database in WAL mode (it persists, so this switches only a new file).

    The switch takes an exclusive lock without waiting on busy_timeout: processes opening a
    new registry at the same moment got "database is locked". They retry here instead.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (pysqlite's implicit BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _ensure_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _writable(path: Path) -> bool:
    """SQLite writes the file and, in WAL mode, creates its -wal/-shm beside it."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _claimer() -> dict[str, Any]:
    """The claim columns: this process on this host (see the planner's stale-claim rule)."""
    return {"claim_host": this_host(), "claim_pid": os.getpid()}


def _naive(moment: datetime) -> datetime:
    """A stored time as the ORM reads it (zone dropped), to compare with what the planner saw."""
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment


def _local_of(host: str, this: bool) -> Any:
    """Records that are not `local` sandboxes of other hosts (this=True), or only those (this=False).

    A local backend id is `HOST:/dir`; one without a colon predates host-bound ids and is this host's.
    """
    backend_id = col(SandboxRecord.backend_id)
    prefix = f"{host}:"
    elsewhere = and_(
        col(SandboxRecord.backend) == "local",
        backend_id.contains(":", autoescape=True),
        func.substr(backend_id, 1, len(prefix)) != prefix,
    )
    return or_(backend_id.is_(None), not_(elsewhere)) if this else elsewhere


class Registry:
    """The registry of one SQLAlchemy URL. Open it once per command."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.display = masked(url)  # what messages show: never the password
        self.is_sqlite = url.startswith("sqlite")
        self.path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
        if self.path is not None and str(self.path) == ":memory:":
            self.path = None
        # A registry we may read but not write (a read-only SANDBOXCTL_HOME) still serves the read-only
        # commands; `writing()` refuses with one clear line instead of SQLite's error mid-command.
        self.read_only = self.path is not None and self.path.exists() and not _writable(self.path)
        connect_url = url
        if self.path is not None:
            if self.read_only:
                connect_url = f"sqlite:///file:{self.path}?mode=ro&uri=true"
            else:
                try:
                    prepare_sqlite_file(self.path)
                except OSError as exc:
                    raise RegistryError(f"cannot create registry {self.path}: {exc.strerror}") from None
        self.is_postgres = url.startswith("postgresql")
        connect_args: dict[str, Any] = {}
        if self.is_sqlite:
            connect_args = {"timeout": BUSY_TIMEOUT_MS / 1000}
        elif self.is_postgres:
            # Timestamps are stored without a zone: read and write them in UTC whatever the server's TimeZone.
            connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_S, "options": "-c TimeZone=UTC"}
        try:
            self.engine = create_engine(connect_url, connect_args=connect_args)
        except ImportError as exc:  # e.g. psycopg missing: the postgres extra is not installed
            raise RegistryError(
                f"registry {self.display} needs a driver that is not installed ({exc}): "
                "pip install 'sandboxctl[postgres]'"
            ) from None
        except (ArgumentError, ValueError) as exc:  # NoSuchModuleError is an ArgumentError
            raise RegistryError(
                f"bad registry URL {self.display} ({exc}): use a SQLite path or postgresql+psycopg://USER@HOST/DB"
            ) from None
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)
        self._write_engine = self.engine.execution_options(sqlite_immediate=True)
        try:
            with self._server_errors():
                self._migrate()
        except DatabaseError as exc:
            if self.path is None:
                # e.g. the role may not create tables: one line naming the (masked) URL, fixed by an admin.
                detail = " ".join(str(exc.orig or exc).split())
                raise RegistryError(f"cannot use registry {self.display}: {detail}") from None
            raise registry_error(self.path, exc.orig) from None

    @contextmanager
    def _server_errors(self) -> Iterator[None]:
        """A server that is down, restarting or dropped the connection -> one `RegistryUnavailable` line."""
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            if self.is_sqlite:
                raise
            detail = " ".join(str(exc.orig or exc).split()) or type(exc).__name__
            raise RegistryUnavailable(f"registry {self.display} is unavailable: {detail}") from None

    # -- sessions --------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._server_errors(), Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A write transaction holding SQLite's write lock from its first statement; commits on exit."""
        if self.read_only:
            raise RegistryError.read_only(self.path or self.display)
        with self._server_errors(), Session(self._write_engine, expire_on_commit=False) as session:
            yield session
            session.commit()

    def _applied(self, conn: Connection) -> set[str]:
        """Names recorded in `schema_migrations`; a name this sandboxctl does not know is refused (exit 2)."""
        if not sa_inspect(conn).has_table(SchemaMigration.__tablename__):
            return set()
        done = set(conn.execute(select(SchemaMigration.name)).scalars())
        unknown = sorted(done - {name for name, _ in MIGRATIONS})
        if unknown:
            raise RegistryError.newer(self.path or self.display, unknown)
        return done

    def _migrate(self) -> None:
        """Bring the schema to this sandboxctl's, never past or around a newer one.

        Read first (cheap, and a read-only or newer registry is never written), then migrate in
        one transaction; on PostgreSQL under an advisory lock, so hosts starting at once against
        an empty database create the schema once (DDL is transactional there).
        """
        with self.engine.connect() as conn:
            version = conn.exec_driver_sql("PRAGMA user_version").scalar() if self.is_sqlite else None
            done = self._applied(conn) if version != SCHEMA_VERSION else None
            conn.rollback()
        if done is None or (not self.is_sqlite and len(done) == len(MIGRATIONS)):
            return
        if self.read_only:
            raise RegistryError.read_only(self.path or self.display)
        with self._write_engine.begin() as conn:
            if self.is_postgres:
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            SchemaMigration.__table__.create(conn, checkfirst=True)
            done = self._applied(conn)
            for name, migration in MIGRATIONS:
                if name in done:
                    continue
                migration(conn)
                conn.execute(SchemaMigration.__table__.insert().values(name=name, applied_at=utcnow()))
            if self.is_sqlite:
                conn.exec_driver_sql(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- facts -----------------------------------------------------------
    def registry_id(self) -> str:
        with self.reading() as session:
            meta = session.get(RegistryMeta, "registry_id")
        return meta.value if meta else ""

    # -- records ---------------------------------------------------------
    def insert(self, record: SandboxRecord, quota: LiveQuota | None = None) -> SandboxRecord:
        """Commit a new record; a taken name is a usage error (exit 2).

        With a quota, the live records are counted in the insert's own transaction, serialised
        with every other quota-checked insert: SQLite's BEGIN IMMEDIATE write lock, PostgreSQL's
        transaction-scoped advisory lock (released at commit or rollback)."""
        try:
            with self.writing() as session:
                if quota is not None:
                    self._check_quota(session, quota)
                session.add(record)
        except IntegrityError:
            raise UsageError(f"a sandbox named {record.name!r} already exists: choose another --name") from None
        return record

    def live_name_or_id_taken(self, name: str) -> bool:
        """True when a live sandbox already has this name, or this id (create's check; see the reader's twin)."""
        query = select(SandboxRecord.id).where((SandboxRecord.name == name) | (SandboxRecord.id == name)).limit(1)
        with self.reading() as session:
            return session.exec(query).first() is not None

    def _check_quota(self, session: Session, quota: LiveQuota) -> None:
        if self.engine.dialect.name == "postgresql":
            session.connection().exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_ADVISORY_LOCK_KEY})")
        mine = case((col(SandboxRecord.created_by) == quota.user, 1), else_=0)
        live, of_user = session.exec(
            select(func.count(), func.coalesce(func.sum(mine), 0)).where(
                col(SandboxRecord.status).in_([s.value for s in LIVE_STATUSES])
            )
        ).one()
        quota.check(int(live), int(of_user))

    def insert_sandbox(self, values: Mapping[str, Any], quota: LiveQuota | None = None) -> None:
        """Commit a new record from its column values (create's write; the reader has a stdlib twin)."""
        self.insert(SandboxRecord(**values), quota)

    def get(self, sandbox_id: str) -> SandboxRecord | None:
        with self.reading() as session:
            return session.get(SandboxRecord, sandbox_id)

    def resolve(self, ref: str) -> SandboxRecord | ArchivedSandbox:
        """The live or archived record `ref` names, by the one lookup rule (`reader.resolve_ref`):
        exact id, exact name, unique id prefix. Unknown -> exit 3; an ambiguous prefix -> exit 2."""

        def by_id(sandbox_id: str) -> SandboxRecord | ArchivedSandbox | None:
            with self.reading() as session:
                return session.get(SandboxRecord, sandbox_id) or session.get(ArchivedSandbox, sandbox_id)

        def by_name(name: str) -> SandboxRecord | ArchivedSandbox | None:
            with self.reading() as session:
                live = session.exec(select(SandboxRecord).where(SandboxRecord.name == name)).first()
                if live is not None:
                    return live
                newest = (
                    select(ArchivedSandbox)
                    .where(ArchivedSandbox.name == name)
                    .order_by(col(ArchivedSandbox.archived_at).desc(), col(ArchivedSandbox.id).desc())
                    .limit(1)
                )
                return session.exec(newest).first()

        def ids_with_prefix(prefix: str) -> list[str]:
            ids: set[str] = set()
            with self.reading() as session:
                for model in (SandboxRecord, ArchivedSandbox):
                    # substr, not LIKE: SQLite's LIKE ignores case, PostgreSQL's does not.
                    query = select(model.id).where(func.substr(model.id, 1, len(prefix)) == prefix)
                    ids.update(session.exec(query.order_by(col(model.id)).limit(2)).all())
            return sorted(ids)[:2]

        return resolve_ref(ref, SANDBOX, by_id=by_id, by_name=by_name, ids_with_prefix=ids_with_prefix)

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

        One conditional UPDATE, so concurrent callers can never both win (`delete` claims
        this way; cleanup uses `claim_many`). Returns False when the record was not in an allowed status.
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

    def archive(
        self, sandbox_id: str, *, reason: str, deletion: Mapping[str, Any], now: datetime
    ) -> ArchivedSandbox | None:
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

    def list_rows(
        self,
        *,
        archived: bool = False,
        backend: str | None = None,
        selector: Mapping[str, str] | None = None,
        query: SandboxQuery | None = None,
    ) -> list[Mapping[str, Any]]:
        """Live (or archived) records as plain column mappings, oldest first unless `query.sort`, for listing.

        `status` lists thousands of rows; ORM objects would cost twice the query itself. The filters are
        the reader's (`SandboxQuery`), in the same SQL.
        """
        query = query or SandboxQuery(backend=backend)
        table = (ArchivedSandbox if archived else SandboxRecord).__table__
        column_name, descending = query.order(archived)
        column, id_column = table.c[column_name], table.c.id
        statement = sa_select(table).order_by(
            column.is_(None), column.desc() if descending else column, id_column.desc() if descending else id_column
        )
        statuses = query.states or ([] if archived else [s.value for s in LIVE_STATUSES])
        if statuses:
            statement = statement.where(table.c.status.in_(list(statuses)))
        if backend or query.backend:
            statement = statement.where(table.c.backend == (backend or query.backend))
        for key, value in query.labels:
            statement = statement.where(table.c.labels[key].as_string() == value)
        if query.expired_at is not None:
            statement = statement.where(
                (table.c.status == SandboxStatus.EXPIRED.value)
                | (table.c.expires_at <= query.expired_at)
                | table.c.idle_timeout_seconds.is_not(None)
            )
        if query.created_by is not None:
            statement = statement.where(table.c.created_by == query.created_by)
        with self.reading() as session:
            rows = session.connection().execute(statement).mappings().all()
        return [r for r in rows if (not selector or matches(r["labels"] or {}, selector)) and query.idle_expired(r)]

    def purge_archive(self, before: datetime) -> int:
        """Drop archive rows older than the retention; returns how many went."""
        with self.writing() as session:
            result = session.exec(delete(ArchivedSandbox).where(col(ArchivedSandbox.archived_at) < before))
            return result.rowcount

    def count_live(self) -> int:
        with self.reading() as session:
            return session.exec(select(func.count()).select_from(SandboxRecord)).one()

    # -- cleanup ---------------------------------------------------------
    def claim(
        self,
        sandbox_id: str,
        *,
        seen_status: SandboxStatus,
        seen_changed_at: datetime,
        now: datetime,
        unless_leased: bool = False,
    ) -> bool:
        """Move one record to `deleting` only if it is exactly as the caller saw it (status and its time).

        Of several cleanups that planned the same sandbox exactly one wins, and none acts on a record
        that changed after it was judged. `claim_many` for one record: one mechanism for both.
        """
        refuse = {sandbox_id} if unless_leased else set()
        return sandbox_id in self.claim_many(
            [(sandbox_id, seen_status, seen_changed_at)], now=now, unless_leased=refuse
        )

    def claim_many(
        self,
        seen: Sequence[tuple[str, SandboxStatus, datetime]],
        *,
        now: datetime,
        unless_leased: Collection[str] = (),
    ) -> set[str]:
        """Claim (move to `deleting`) those of `seen` (id, status, status time as planned) that are still so,
        except those of `unless_leased` on which someone holds a live lease (`registry/leases.py`).

        One transaction: the rows are selected `FOR UPDATE SKIP LOCKED` on PostgreSQL, so a row
        another cleanup is claiming right now is passed over, not waited for, and cleanups on
        several hosts split the work; SQLite's `BEGIN IMMEDIATE` serialises claims anyway.
        Returns the ids claimed; each is claimed by exactly one caller.
        """
        expected = {sandbox_id: (status.value, _naive(changed_at)) for sandbox_id, status, changed_at in seen}
        for _id, status, _at in seen:
            if status is not SandboxStatus.DELETING:
                check_transition(status, SandboxStatus.DELETING)
        if not expected:
            return set()
        table = SandboxRecord.__table__
        with self.writing() as session:
            rows = session.connection().execute(
                sa_select(table.c.id, table.c.status, table.c.status_changed_at)
                .where(table.c.id.in_(list(expected)))
                .with_for_update(skip_locked=True)
            )
            claimed = [row.id for row in rows if expected[row.id] == (row.status, _naive(row.status_changed_at))]
            guarded = [sandbox_id for sandbox_id in claimed if sandbox_id in unless_leased]
            if guarded:
                from sandboxctl.registry.leases import LEASED_AMONG, stamp

                held = session.connection().execute(
                    text(LEASED_AMONG).bindparams(bindparam("ids", expanding=True)),
                    {"ids": guarded, "lease_now": stamp(now)},
                )
                leased = {row[0] for row in held}
                claimed = [sandbox_id for sandbox_id in claimed if sandbox_id not in leased]
            if claimed:
                session.connection().execute(
                    update(table)
                    .where(table.c.id.in_(claimed))
                    .values(status=SandboxStatus.DELETING.value, status_changed_at=now, **_claimer())
                )
        return set(claimed)

    def any_local_elsewhere(self, host: str) -> bool:
        """Whether any live record is a `local` sandbox of another host (an index-only probe)."""
        with self.reading() as session:
            return session.exec(select(SandboxRecord.id).where(_local_of(host, False)).limit(1)).first() is not None

    def past_deadline(
        self,
        now: datetime,
        *,
        statuses: Sequence[SandboxStatus],
        older_than: timedelta | None = None,
        backend: str | None = None,
        selector: Mapping[str, str] | None = None,
        created_by: str | None = None,
        exclude_permanent: bool = False,
        limit: int | None = None,
        local_host: tuple[str, bool] | None = None,
    ) -> list[SandboxRecord]:
        """The oldest `limit` records in `statuses` past their expiry or idle timeout, or (with
        `older_than`) created before `now - older_than`, oldest first.

        Every filter is in SQL and each (status, test) pair is an indexed range query with its own
        LIMIT, so planning costs O(limit) however many rows are due or archived: the union of each
        query's oldest `limit` rows holds the oldest `limit` overall.
        """

        def query(status: SandboxStatus, *conditions: Any) -> Any:
            # One status per query: an IN list would make SQLite sort every match before the LIMIT.
            q = select(SandboxRecord).where(col(SandboxRecord.status) == status.value, *conditions)
            if backend:
                q = q.where(SandboxRecord.backend == backend)
            if created_by is not None:
                q = q.where(SandboxRecord.created_by == created_by)
            for key, value in (selector or {}).items():
                q = q.where(col(SandboxRecord.labels)[key].as_string() == value)
            if exclude_permanent:
                q = q.where(col(SandboxRecord.policy) != Policy.PERMANENT.value)
            if local_host is not None:
                q = q.where(_local_of(*local_host))
            q = q.order_by(col(SandboxRecord.created_at), col(SandboxRecord.id))
            return q.limit(limit) if limit is not None else q

        found: dict[str, SandboxRecord] = {}
        with self.reading() as session:
            tests: list[tuple[Any, ...]] = [(col(SandboxRecord.expires_at) <= now,)]
            # One range test per distinct idle timeout (few in practice) keeps `last_accessed` indexed
            # and avoids database-specific date arithmetic.
            timeouts = session.exec(
                select(SandboxRecord.idle_timeout_seconds)
                .where(col(SandboxRecord.idle_timeout_seconds).is_not(None))
                .distinct()
            ).all()
            tests += [
                (
                    SandboxRecord.idle_timeout_seconds == seconds,
                    col(SandboxRecord.last_accessed) <= now - timedelta(seconds=seconds),
                )
                for seconds in timeouts
            ]
            if older_than is not None:
                tests.append((col(SandboxRecord.created_at) < now - older_than,))
            for status in statuses:
                for conditions in tests:
                    for record in session.exec(query(status, *conditions)).all():
                        found.setdefault(record.id, record)
        ordered = sorted(found.values(), key=lambda r: (r.created_at, r.id))
        return ordered[:limit] if limit is not None else ordered

    def get_many(self, sandbox_ids: Sequence[str]) -> list[SandboxRecord]:
        with self.reading() as session:
            return list(session.exec(select(SandboxRecord).where(col(SandboxRecord.id).in_(list(sandbox_ids)))).all())

    def live_refs(self, *, backend: str | None = None) -> list[Row[Any]]:
        """(id, backend, backend_id, status) of every live record: cheap rows for matching backend resources."""
        query = select(SandboxRecord.id, SandboxRecord.backend, SandboxRecord.backend_id, SandboxRecord.status)
        if backend:
            query = query.where(SandboxRecord.backend == backend)
        with self.reading() as session:
            return list(session.exec(query).all())

    def archive_orphan(self, archived: ArchivedSandbox) -> bool:
        """Record a backend resource deleted without a live record; False when its id is already known."""
        with self.writing() as session:
            if session.get(ArchivedSandbox, archived.id) is not None or session.get(SandboxRecord, archived.id):
                return False
            session.add(archived)
        return True

    def count_archived_before(self, before: datetime) -> int:
        with self.reading() as session:
            query = select(func.count()).select_from(ArchivedSandbox).where(col(ArchivedSandbox.archived_at) < before)
            return session.exec(query).one()

    def count_past_expiry(self, now: datetime) -> int:
        """Live records whose expiry has passed (a growing number means cleanup is not keeping up)."""
        with self.reading() as session:
            query = (
                select(func.count())
                .select_from(SandboxRecord)
                .where(
                    col(SandboxRecord.status).in_([s.value for s in LIVE_STATUSES]),
                    col(SandboxRecord.expires_at) <= now,
                )
            )
            return session.exec(query).one()

    # -- agent runs --------------------------------------------------------
    def insert_run(self, run: AgentRun) -> None:
        with self.writing() as session:
            session.add(run)

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self.writing() as session:
            session.exec(update(AgentRun).where(col(AgentRun.id) == run_id).values(**fields))

    def resolve_run(self, ref: str) -> AgentRun:
        """A run id or unique id prefix -> its row, by the same rule as sandboxes (runs have no names)."""

        def by_id(run_id: str) -> AgentRun | None:
            with self.reading() as session:
                return session.get(AgentRun, run_id)

        def ids_with_prefix(prefix: str) -> list[str]:
            query = select(AgentRun.id).where(func.substr(AgentRun.id, 1, len(prefix)) == prefix)
            with self.reading() as session:
                return list(session.exec(query.order_by(col(AgentRun.id)).limit(2)).all())

        return resolve_ref(ref, AGENT_RUN, by_id=by_id, by_name=None, ids_with_prefix=ids_with_prefix)

    def list_runs(
        self,
        *,
        limit: int | None = None,
        states: Collection[str] | None = None,
        since: datetime | None = None,
    ) -> list[AgentRun]:
        """Newest first; `states` matches the state (or, in rows older than m006, the status); `since`: started at
        or after it."""
        query = select(AgentRun).order_by(col(AgentRun.started_at).desc(), col(AgentRun.id).desc())
        if states is not None:
            wanted = list(states)
            query = query.where(
                or_(
                    col(AgentRun.state).in_(wanted),
                    and_(col(AgentRun.state).is_(None), col(AgentRun.status).in_(wanted)),
                )
            )
        if since is not None:
            query = query.where(col(AgentRun.started_at) >= since)
        if limit is not None:
            query = query.limit(limit)
        with self.reading() as session:
            return list(session.exec(query).all())
