"""The `sandbox_lease` table: who is using a sandbox right now, so cleanup leaves it alone.

One row per holder (an `exec` or an `agent-run`), with the holder's host and pid and
an expiry the holder pushes forward while it runs. A holder that dies stops
refreshing, so its lease lapses on its own; on the holder's own host a dead pid
voids it at once.

Plain SQL with named parameters, run either on stdlib sqlite3 (a SQLite file: the
exec hot path must not import SQLAlchemy) or on a SQLAlchemy connection (any other
URL). Times are stored as fixed-width UTC text, which sorts like the time itself on
every database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import Engine

# Written only while the sandbox can run commands: once cleanup has claimed it (`deleting`), no lease can start,
# and once a lease is live, cleanup's claim refuses it (`LEASED_AMONG`). One of the two always sees the other:
# on SQLite because writers are serialised (BEGIN IMMEDIATE); on PostgreSQL because the lease holds the sandbox
# row FOR SHARE until it commits, so a claim in progress (FOR UPDATE) makes it wait and then see `deleting`, and
# a claim that comes during the lease passes the row over (SKIP LOCKED) or waits and then sees the lease.
_ACQUIRE = (
    "INSERT INTO sandbox_lease (sandbox_id, holder, host, pid, expires_at)"
    " SELECT :sandbox_id, :holder, :host, :pid, :expires_at"
    # `:sandbox` repeats `:sandbox_id`: PostgreSQL cannot type one parameter used as text and as varchar.
    " WHERE EXISTS (SELECT 1 FROM sandbox WHERE id = :sandbox AND status IN ('running', 'stopped'){lock})"
    " ON CONFLICT (sandbox_id, holder) DO UPDATE SET expires_at = excluded.expires_at"
)
_RELEASE = "DELETE FROM sandbox_lease WHERE sandbox_id = :sandbox_id AND holder = :holder"
_PRUNE = "DELETE FROM sandbox_lease WHERE expires_at <= :now"
_LIVE = "SELECT sandbox_id, holder, host, pid FROM sandbox_lease WHERE expires_at > :now AND sandbox_id IN ({ids})"

# For cleanup's batch claim: which of these sandboxes (`:ids`, an expanding parameter) are leased right now.
LEASED_AMONG = "SELECT DISTINCT sandbox_id FROM sandbox_lease WHERE expires_at > :lease_now AND sandbox_id IN :ids"


def stamp(moment: datetime) -> str:
    """Fixed-width UTC text: compares as the time does, on SQLite and PostgreSQL alike."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class Holder(NamedTuple):
    """Who holds a lease: a name unique to this use (e.g. `exec 3f2a…`) and the process doing it."""

    name: str
    host: str
    pid: int


class LiveLease(NamedTuple):
    sandbox_id: str
    holder: str
    host: str
    pid: int


class LeaseTable:
    """`sandbox_lease` through stdlib sqlite3 (`sqlite_path`) or a SQLAlchemy `engine`; exactly one is given.

    `connection`: an open autocommit connection to `sqlite_path` to use instead of one per call (exec's
    reader already has one; opening another costs a schema parse and, on a loaded machine, a few ms).
    It is not closed here.
    """

    def __init__(
        self,
        *,
        sqlite_path: str | Path | None = None,
        engine: Engine | None = None,
        connection: sqlite3.Connection | None = None,
    ) -> None:
        if (sqlite_path is None) == (engine is None):
            raise ValueError("give either sqlite_path or engine")
        if connection is not None and sqlite_path is None:
            raise ValueError("a connection goes with its sqlite_path")
        self.sqlite_path = sqlite_path
        self.engine = engine
        self.connection = connection

    def detached(self) -> LeaseTable:
        """The same table with a connection per call: for another thread (the lease refresher)."""
        return LeaseTable(sqlite_path=self.sqlite_path, engine=self.engine)

    def _write_on(self, conn: sqlite3.Connection, statements: Sequence[tuple[str, Mapping[str, Any]]]) -> list[int]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            counts = [conn.execute(sql, dict(params)).rowcount for sql, params in statements]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return counts

    def _write(self, statements: Sequence[tuple[str, Mapping[str, Any]]]) -> list[int]:
        """Run the statements in one write transaction; their row counts."""
        if self.connection is not None:
            return self._write_on(self.connection, statements)
        if self.sqlite_path is not None:
            conn = sqlite3.connect(self.sqlite_path, timeout=60, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout=60000")
                conn.execute("PRAGMA synchronous=NORMAL")
                return self._write_on(conn, statements)
            finally:
                conn.close()  # an uncommitted transaction is rolled back here
        from sqlalchemy import text

        assert self.engine is not None
        with self.engine.execution_options(sqlite_immediate=True).begin() as sa_conn:
            return [sa_conn.execute(text(sql), dict(params)).rowcount for sql, params in statements]

    def _read(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        if self.connection is not None:
            return self.connection.execute(sql, dict(params)).fetchall()
        if self.sqlite_path is not None:
            conn = sqlite3.connect(self.sqlite_path, timeout=60, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout=60000")
                return conn.execute(sql, dict(params)).fetchall()
            finally:
                conn.close()
        from sqlalchemy import text

        assert self.engine is not None
        with self.engine.connect() as sa_conn:
            return [tuple(row) for row in sa_conn.execute(text(sql), dict(params))]

    def acquire(self, sandbox_id: str, holder: Holder, *, expires_at: datetime) -> bool:
        """Take or refresh the lease; False when the sandbox cannot run commands (gone, or claimed by cleanup)."""
        params = {
            "sandbox_id": sandbox_id,
            "sandbox": sandbox_id,
            "holder": holder.name,
            "host": holder.host,
            "pid": holder.pid,
            "expires_at": stamp(expires_at),
        }
        locking = self.engine is not None and self.engine.dialect.name == "postgresql"
        [count] = self._write([(_ACQUIRE.format(lock=" FOR SHARE" if locking else ""), params)])
        return count == 1

    def release(self, sandbox_id: str, holder: Holder, *, now: datetime) -> None:
        """Drop the lease, and every lapsed one with it (so the table stays as small as the sandboxes in use)."""
        self._write([(_RELEASE, {"sandbox_id": sandbox_id, "holder": holder.name}), (_PRUNE, {"now": stamp(now)})])

    def live(self, sandbox_ids: Iterable[str], *, now: datetime) -> list[LiveLease]:
        """Unexpired leases on these sandboxes."""
        ids = list(dict.fromkeys(sandbox_ids))
        found: list[LiveLease] = []
        for start in range(0, len(ids), 500):  # well under every database's bound-parameter limit
            chunk = ids[start : start + 500]
            params: dict[str, Any] = {f"id{i}": sandbox_id for i, sandbox_id in enumerate(chunk)}
            params["now"] = stamp(now)
            sql = _LIVE.format(ids=", ".join(f":id{i}" for i in range(len(chunk))))
            found += [LiveLease(*row) for row in self._read(sql, params)]
        return found

    def drop(self, leases: Iterable[LiveLease]) -> None:
        """Remove leases whose holder is known dead, so a claim no longer sees them."""
        statements = [(_RELEASE, {"sandbox_id": lease.sandbox_id, "holder": lease.holder}) for lease in leases]
        if statements:
            self._write(statements)
