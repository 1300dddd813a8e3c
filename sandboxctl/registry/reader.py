"""How a reference becomes a record, and registry rows read with stdlib sqlite3 (no SQLModel).

`import sqlmodel` costs 0.6-0.85 s, several times a `docker exec`, so the everyday
commands (`status`, `exec`, `delete`, `create`'s checks) read a SQLite registry
here. SQLModel (models.py, store.py) stays the schema and the write path; this
module only mirrors the columns it reads, and parity tests (tests/test_reader.py)
prove that both paths give the same records, the same lookups and the same
timestamps. When the registry is not SQLite, not yet created, or not at the
current schema version, `RegistryReader.open` returns None and callers use the
full registry, which migrates.

The lookup rule, for every command and both paths (`resolve_ref`):
exact id, then exact name, then a unique id prefix (several: exit 2; none: exit 3).
A name can never shadow an id: ids are tried first, and `create` refuses names
that look like ids.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from sandboxctl.durations import isoformat
from sandboxctl.errors import RegistryError, SandboxNotFound, UsageError
from sandboxctl.registry.states import LIVE_STATUSES, SandboxStatus, sources_of

if TYPE_CHECKING:
    from pathlib import Path

    from sandboxctl.quota import LiveQuota

# The number of migrations in `registry/migrations.py` (checked there at import): a registry
# at another version is left to the full registry, which migrates it.
SCHEMA_VERSION = 8

SANDBOX_COLUMNS: tuple[str, ...] = (
    "id",
    "name",
    "backend",
    "backend_id",
    "image",
    "status",
    "policy",
    "labels",
    "env_keys",
    "cpus",
    "memory_bytes",
    "created_at",
    "last_accessed",
    "expires_at",
    "idle_timeout_seconds",
    "host",
    "pid",
    "created_by",
    "delete_attempts",
    "last_error",
    "status_changed_at",
    "claim_host",
    "claim_pid",
)
ARCHIVE_COLUMNS: tuple[str, ...] = (*SANDBOX_COLUMNS, "archived_at", "reason", "deletion")
JSON_COLUMNS = frozenset({"labels", "env_keys", "deletion"})
DATETIME_COLUMNS = frozenset({"created_at", "last_accessed", "expires_at", "status_changed_at", "archived_at"})
# How SQLAlchemy's DateTime stores a UTC moment on SQLite (naive text); tests/test_reader.py derives it
# from SQLAlchemy's own bind processor and fails if the two ever differ.
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"

_ID_LIKE = re.compile(r"[0-9a-fA-F]{12}")
BUSY_TIMEOUT_S = 60


def new_sandbox_id() -> str:
    """12 hex digits: short enough to type, long enough never to collide in one registry."""
    return os.urandom(6).hex()  # what secrets.token_hex(6) does, without importing hmac/hashlib (~3 ms)


def looks_like_id(text: str) -> bool:
    """12 hex digits: the shape of every sandbox and run id, so never allowed as a name."""
    return bool(_ID_LIKE.fullmatch(text))


# -- the lookup rule ----------------------------------------------------------------
class RefKind(NamedTuple):
    """What is being looked up, for the error messages."""

    plural: str
    not_found: str  # a format string with {ref!r}


SANDBOX = RefKind("sandboxes", "no sandbox {ref!r}: `sandboxctl status --all` lists the known ones")
AGENT_RUN = RefKind("agent runs", "no agent run {ref!r}: `sandboxctl agent list` lists the known ones")

T = TypeVar("T")


def resolve_ref(
    ref: str,
    kind: RefKind,
    *,
    by_id: Callable[[str], T | None],
    by_name: Callable[[str], T | None] | None,
    ids_with_prefix: Callable[[str], Sequence[str]],
) -> T:
    """Exact id, then exact name, then a unique id prefix; the one rule every command follows.

    `ids_with_prefix` returns at most two distinct ids starting (case-sensitively) with the prefix.
    """
    if ref:
        found = by_id(ref)
        if found is None and by_name is not None:
            found = by_name(ref)
        if found is not None:
            return found
        ids = ids_with_prefix(ref)
        if len(ids) > 1:
            raise UsageError(f"{ref!r} matches several {kind.plural}: give more of the id")
        if ids and (found := by_id(ids[0])) is not None:
            return found
    raise SandboxNotFound(kind.not_found.format(ref=ref))


# -- listing filters (status) -----------------------------------------------------------
SORT_COLUMNS = {
    "created": "created_at",
    "expires": "expires_at",
    "accessed": "last_accessed",
    "name": "name",
    "status": "status",
    "backend": "backend",
}


class SandboxQuery:
    """What `status` lists: applied in SQL by both paths, so rows still stream.

    `sort` is a field of SORT_COLUMNS, ascending, or descending with a `-` prefix; empty values
    (a permanent sandbox's `expires`) sort last either way, and ties go by id, so the order is stable.
    `expired_at`: only records expired at that moment (status `expired`, past `expires_at`, or idle
    past their idle timeout). `labels`: every one must match (a selector; keys as labels.py allows).
    `created_by`: the audit column (records older than it have none, and never match).

    A plain class rather than a dataclass: the everyday commands import neither `dataclasses` nor
    what it pulls in (`inspect`, `ast`, ~10 ms per run), and it validates as it is built.
    """

    __slots__ = ("backend", "created_by", "expired_at", "labels", "sort", "states")

    def __init__(
        self,
        *,
        backend: str | None = None,
        states: tuple[str, ...] = (),
        expired_at: datetime | None = None,
        sort: str | None = None,
        labels: tuple[tuple[str, str], ...] = (),
        created_by: str | None = None,
    ) -> None:
        unknown = sorted(set(states) - {s.value for s in SandboxStatus})
        if unknown:
            raise UsageError(f"unknown state {unknown[0]!r}: one of {', '.join(s.value for s in SandboxStatus)}")
        if sort is not None and sort.removeprefix("-") not in SORT_COLUMNS:
            raise UsageError(f"cannot sort by {sort!r}: one of {', '.join(SORT_COLUMNS)} (`-` prefix: descending)")
        self.backend = backend
        self.states = states
        self.expired_at = expired_at
        self.sort = sort
        self.labels = labels
        self.created_by = created_by

    def with_labels(self, labels: tuple[tuple[str, str], ...]) -> SandboxQuery:
        """The same query, selecting by `labels` too (every field carried over, whatever fields there are)."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        return SandboxQuery(**{**fields, "labels": labels})

    def order(self, archived: bool) -> tuple[str, bool]:
        """(column, descending); the historical order (oldest first) without `sort`."""
        if self.sort is None:
            return ("archived_at" if archived else "created_at"), False
        return SORT_COLUMNS[self.sort.removeprefix("-")], self.sort.startswith("-")

    def idle_expired(self, row: Mapping[str, Any]) -> bool:
        """The part of `expired_at` SQL cannot say in both dialects: idle past the idle timeout."""
        if self.expired_at is None:
            return True
        if row["status"] == SandboxStatus.EXPIRED.value or _before(row["expires_at"], self.expired_at):
            return True
        idle, accessed = row["idle_timeout_seconds"], row["last_accessed"]
        if idle is None or accessed is None:
            return False
        moment = datetime.fromisoformat(accessed) if isinstance(accessed, str) else accessed
        return moment + timedelta(seconds=idle) <= self.expired_at


def _before(value: datetime | str | None, now: datetime) -> bool:
    if value is None:
        return False
    return (datetime.fromisoformat(value) if isinstance(value, str) else value) <= now


def listing_source(
    query: SandboxQuery, *, archived: bool, backend: str | None = None, also: Sequence[str] = ()
) -> tuple[str, list[Any]]:
    """`FROM table WHERE ...` and its parameters for what `query` lists: the one SQL filter of `iter_rows` and
    of `status`'s SQL-written table (registry/status_table.py), so both list the same rows.

    With `expired_at` this over-selects rows that have an idle timeout; `query.idle_expired` decides those
    (in SQL, `idle_expired_sql`, given in `also`: more conditions, without parameters)."""
    conditions: list[str] = []
    params: list[Any] = []
    statuses = sorted(query.states or (() if archived else LIVE_STATUSES))
    if statuses:
        # Every live status (no --state) keeps nearly every row of the live table: `+` keeps SQLite from the
        # status indexes, whose lookup a row cost more than reading the table through (status over 10,000).
        column = "status" if query.states else "+status"
        conditions.append(f"{column} IN ({', '.join('?' * len(statuses))})")
        params += statuses
    if backend or query.backend:
        conditions.append("backend = ?")
        params.append(backend or query.backend)
    for key, value in query.labels:
        conditions.append("json_extract(labels, ?) = ?")
        params += [f'$."{key}"', value]
    if query.expired_at is not None:
        conditions.append("(status = ? OR expires_at <= ? OR idle_timeout_seconds IS NOT NULL)")
        params += [SandboxStatus.EXPIRED.value, to_sqlite_datetime(query.expired_at)]
    if query.created_by is not None:
        conditions.append("created_by = ?")
        params.append(query.created_by)
    conditions += also
    sql = f"FROM {'sandbox_archive' if archived else 'sandbox'}"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return sql, params


def listing_order(query: SandboxQuery, *, archived: bool, prefix: str = "") -> str:
    """`ORDER BY` for `query`: empty values last either way, ties by id. `prefix` names the columns of a
    subquery (`status`'s table selects the sort column as `{prefix}{column}`)."""
    column, descending = query.order(archived)
    direction = " DESC" if descending else ""
    key = f"{prefix}{column}"
    return f"ORDER BY {key} IS NULL, {key}{direction}, id{direction}"


# -- rows -----------------------------------------------------------------------------
def to_sqlite_datetime(moment: datetime) -> str:
    """The text SQLAlchemy's DateTime writes on SQLite for this moment (stored as naive UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(SQLITE_DATETIME)


def from_sqlite_datetime(text: str | None) -> datetime | None:
    """Read back what SQLAlchemy wrote: naive UTC text -> aware UTC datetime."""
    if text is None:
        return None
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def encode_value(column: str, value: Any) -> Any:
    """A Python value as the full registry stores it in this column (JSON text, naive UTC text)."""
    if value is None:
        return None
    if column in JSON_COLUMNS:
        return json.dumps(value)
    if column in DATETIME_COLUMNS:
        return to_sqlite_datetime(value)
    return value


def decode_row(columns: Sequence[str], values: Sequence[Any], *, iso_text: bool = False) -> dict[str, Any]:
    """Column values as Python values; with `iso_text` datetimes become their JSON text directly
    (`status` over 20,000 rows: parsing and re-formatting each moment was a third of its time)."""
    return row_decoder(columns, iso_text=iso_text)(values)


# Labels and env_keys repeat across rows (a CI job's labels): their decoded values are cached by text and
# copied per row (a shallow copy is enough, both are flat). Bounded, so a registry of unique texts
# costs only the first entries.
_FLAT_JSON_COLUMNS = frozenset({"labels", "env_keys"})
_JSON_CACHE_SIZE = 256
_scan_json = json.scanner.make_scanner(json.decoder.JSONDecoder())  # type: ignore[attr-defined]


def _loads(text: str) -> Any:
    """json.loads without its whitespace regex passes; anything unusual goes through json.loads itself."""
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        return json.loads(text)  # raises the usual JSONDecodeError
    return value if end == len(text) else json.loads(text)


def row_decoder(columns: Sequence[str], *, iso_text: bool = False) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """`decode_row` for many rows of the same columns: the column work is done once, not per row
    (`status` over 10,000 records spent most of its per-row time here)."""
    flat = [c for c in columns if c in _FLAT_JSON_COLUMNS]
    other_json = [c for c in columns if c in JSON_COLUMNS and c not in _FLAT_JSON_COLUMNS]
    moments = [c for c in columns if c in DATETIME_COLUMNS]
    convert = sqlite_text_to_iso if iso_text else from_sqlite_datetime
    cache: dict[str, Any] = {}

    def decode(values: Sequence[Any]) -> dict[str, Any]:
        row = dict(zip(columns, values, strict=True))
        for key in flat:
            text = row[key]
            if text is not None:
                value = cache.get(text)
                if value is None:
                    value = _loads(text)
                    if len(cache) < _JSON_CACHE_SIZE and isinstance(value, dict | list):
                        cache[text] = value
                row[key] = value.copy() if isinstance(value, dict | list) else value
        for key in other_json:
            if row[key] is not None:
                row[key] = _loads(row[key])
        for key in moments:
            row[key] = convert(row[key])
        return row

    return decode


def sqlite_text_to_iso(text: str | None) -> str | None:
    """`2026-01-02 03:04:05.000006` -> `2026-01-02T03:04:05+00:00`: what `isoformat` makes of the moment."""
    return None if text is None else f"{text[:10]}T{text[11:19]}+00:00"


def _iso(value: datetime | str | None) -> str | None:
    return value if isinstance(value, str) else isoformat(value)


def sandbox_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """The one JSON shape of a sandbox, from a record's values or a plain row (create, status, delete, cleanup)."""
    data = {
        "id": values["id"],
        "name": values["name"],
        "backend": values["backend"],
        "backend_id": values["backend_id"],
        "image": values["image"],
        "status": values["status"],
        "policy": values["policy"],
        "labels": dict(values["labels"] or {}),
        "env_keys": list(values["env_keys"] or []),
        "cpus": values["cpus"],
        "memory_bytes": values["memory_bytes"],
        "created_at": _iso(values["created_at"]),
        "last_accessed": _iso(values["last_accessed"]),
        "expires_at": _iso(values["expires_at"]),
        "idle_timeout_seconds": values["idle_timeout_seconds"],
        "host": values["host"],
        "pid": values["pid"],
        "created_by": values["created_by"],
        "delete_attempts": values["delete_attempts"],
        "last_error": values["last_error"],
    }
    if "archived_at" in values:
        data.update(
            archived_at=_iso(values["archived_at"]),
            reason=values["reason"],
            deletion=dict(values["deletion"] or {}),
        )
    return data


class SandboxRow:
    """A sandbox as found by a lookup: its column values, live or archived."""

    __slots__ = ("values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    @property
    def archived(self) -> bool:
        return "archived_at" in self.values

    @property
    def id(self) -> str:
        return str(self.values["id"])

    @property
    def name(self) -> str:
        return str(self.values["name"])

    @property
    def backend(self) -> str:
        return str(self.values["backend"])

    @property
    def backend_id(self) -> str | None:
        return self.values["backend_id"]

    @property
    def status(self) -> str:
        return str(self.values["status"])

    @property
    def delete_attempts(self) -> int:
        return int(self.values["delete_attempts"])

    def __getattr__(self, column: str) -> Any:
        """Every other column as an attribute, as on a `SandboxRecord` (`row.expires_at`)."""
        if column == "values":  # not set yet (copy, pickle): no recursion
            raise AttributeError(column)
        try:
            return self.values[column]
        except KeyError:
            raise AttributeError(column) from None

    def to_json(self) -> dict[str, Any]:
        return sandbox_json(self.values)

    def deleted_message(self) -> str:
        return f"sandbox {self.id} ({self.name}) was deleted on {isoformat(self.values['archived_at'])}"


def registry_error(path: str | Path, exc: sqlite3.Error) -> RegistryError:
    """sqlite3's error as the one line a user can act on."""
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return RegistryError.read_only(path)
    if isinstance(exc, sqlite3.OperationalError) and "not a database" not in text and "malformed" not in text:
        return RegistryError(f"cannot use registry {path}: {text}")
    return RegistryError.corrupt(path, text)


def _select(columns: Sequence[str]) -> str:
    return ", ".join(columns)


# -- the reader -----------------------------------------------------------------------
class RegistryReader:
    """Reads (and touches) a current SQLite registry with stdlib sqlite3."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def open(cls, path: str | Path | None) -> RegistryReader | None:
        """A reader for a SQLite registry at the current schema version; None when the full registry must open it."""
        if path is None or not os.path.isfile(path):
            return None
        reader = cls(path)
        version = reader._connect().execute("PRAGMA user_version").fetchone()[0]  # a corrupt file fails here
        return reader if version == SCHEMA_VERSION else None

    def _connect(self) -> sqlite3.Connection:
        """One connection for the command's life, read-only when the file or its directory is (a read-only
        SANDBOXCTL_HOME still serves reads). Never closed per statement: closing the last connection
        checkpoints the WAL, which cost exec two such closes (~30 ms)."""
        if self._conn is not None:
            return self._conn
        writable = os.access(self.path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(self.path)), os.W_OK)
        uri = f"file:{self.path}" + ("" if writable else "?mode=ro")
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL, as the full registry
            conn.execute("PRAGMA user_version").fetchone()  # reads the header: a corrupt file fails here
        except sqlite3.Error as exc:
            conn.close()
            raise registry_error(self.path, exc) from None
        self._conn = conn
        return conn

    def connection(self) -> sqlite3.Connection:
        """The open autocommit connection, for another table's small writes in the same command (leases)."""
        return self._connect()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connect().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise registry_error(self.path, exc) from None

    # -- lookups ---------------------------------------------------------------------
    def _by_id(self, ref: str) -> SandboxRow | None:
        for table, columns in (("sandbox", SANDBOX_COLUMNS), ("sandbox_archive", ARCHIVE_COLUMNS)):
            rows = self._query(f"SELECT {_select(columns)} FROM {table} WHERE id = ?", (ref,))
            if rows:
                return SandboxRow(decode_row(columns, rows[0]))
        return None

    def _by_name(self, ref: str) -> SandboxRow | None:
        rows = self._query(f"SELECT {_select(SANDBOX_COLUMNS)} FROM sandbox WHERE name = ?", (ref,))
        if rows:
            return SandboxRow(decode_row(SANDBOX_COLUMNS, rows[0]))
        rows = self._query(
            f"SELECT {_select(ARCHIVE_COLUMNS)} FROM sandbox_archive WHERE name = ? "
            "ORDER BY archived_at DESC, id DESC LIMIT 1",
            (ref,),
        )
        return SandboxRow(decode_row(ARCHIVE_COLUMNS, rows[0])) if rows else None

    def _ids_with_prefix(self, prefix: str) -> list[str]:
        # substr, not LIKE: SQLite's LIKE ignores case, PostgreSQL's does not; ids compare exactly everywhere.
        rows = self._query(
            "SELECT id FROM sandbox WHERE substr(id, 1, ?) = ? "
            "UNION SELECT id FROM sandbox_archive WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT 2",
            (len(prefix), prefix, len(prefix), prefix),
        )
        return [row[0] for row in rows]

    def resolve(self, ref: str) -> SandboxRow:
        """The sandbox `ref` names (live or archived), by the one lookup rule."""
        return resolve_ref(
            ref, SANDBOX, by_id=self._by_id, by_name=self._by_name, ids_with_prefix=self._ids_with_prefix
        )

    def live_name_or_id_taken(self, name: str) -> bool:
        """True when a live sandbox already has this name, or this id (create's check)."""
        return bool(self._query("SELECT 1 FROM sandbox WHERE name = ? OR id = ? LIMIT 1", (name, name)))

    # -- listings --------------------------------------------------------------------
    def iter_rows(
        self,
        *,
        archived: bool = False,
        backend: str | None = None,
        iso_text: bool = False,
        query: SandboxQuery | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Live (or archived) rows, oldest first unless `query.sort`, one at a time: `status` over 20,000 rows
        never holds them all.

        `iso_text`: datetimes as their JSON text (enough for `sandbox_json`, and much cheaper)."""
        query = query or SandboxQuery(backend=backend)
        columns = ARCHIVE_COLUMNS if archived else SANDBOX_COLUMNS
        source, params = listing_source(query, archived=archived, backend=backend)
        sql = f"SELECT {_select(columns)} {source} {listing_order(query, archived=archived)}"
        decode = row_decoder(columns, iso_text=iso_text)
        try:
            for values in self._connect().execute(sql, params):
                row = decode(values)
                if query.idle_expired(row):
                    yield row
        except sqlite3.Error as exc:
            raise registry_error(self.path, exc) from None

    def count_rows(self, query: SandboxQuery, *, archived: bool, limit: int) -> int:
        """How many rows `iter_rows` would read for `query`, counted up to `limit` (a size, not a listing:
        `--expired`'s idle rule is left out)."""
        source, params = listing_source(query, archived=archived)
        return int(self._query(f"SELECT count(*) FROM (SELECT 1 {source} LIMIT {int(limit)})", params)[0][0])

    # -- the few small writes of the everyday commands ----------------------------------
    # Each is one short transaction, written exactly as the full registry writes it (same columns,
    # same text): tests/test_reader.py applies each through both paths and compares the rows.
    def _write(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in one `BEGIN IMMEDIATE` transaction; returns their row counts."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            counts = [conn.execute(sql, params).rowcount for sql, params in statements]
            conn.execute("COMMIT")
            return counts
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            raise
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise registry_error(self.path, exc) from None

    def registry_id(self) -> str:
        rows = self._query("SELECT value FROM registry_meta WHERE key = 'registry_id'")
        return str(rows[0][0]) if rows else ""

    def insert_sandbox(self, values: Mapping[str, Any], quota: LiveQuota | None = None) -> None:
        """`Registry.insert_sandbox` on stdlib sqlite3; a taken name is a usage error (exit 2).

        With a quota, the live records are counted inside the same BEGIN IMMEDIATE transaction
        as the insert: parallel creates queue on SQLite's write lock, each seeing the others' rows."""
        columns = [c for c in SANDBOX_COLUMNS if c in values]
        sql = f"INSERT INTO sandbox ({_select(columns)}) VALUES ({', '.join('?' * len(columns))})"
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            if quota is not None:
                statuses = sorted(LIVE_STATUSES)
                live, of_user = conn.execute(
                    "SELECT count(*), coalesce(sum(CASE WHEN created_by = ? THEN 1 ELSE 0 END), 0) FROM sandbox "
                    f"WHERE status IN ({', '.join('?' * len(statuses))})",
                    (quota.user, *statuses),
                ).fetchone()
                quota.check(int(live), int(of_user))
            conn.execute(sql, [encode_value(c, values[c]) for c in columns])
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            raise UsageError(f"a sandbox named {values['name']!r} already exists: choose another --name") from None
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise registry_error(self.path, exc) from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def set_status(
        self,
        sandbox_id: str,
        target: SandboxStatus,
        *,
        now: datetime,
        expect: Sequence[SandboxStatus] | None = None,
        **fields: Any,
    ) -> bool:
        """`Registry.set_status` on stdlib sqlite3: one conditional UPDATE the state machine allows."""
        allowed = sources_of(target)
        if expect is not None:
            allowed = allowed & frozenset(expect)
        values = {"status": target.value, "status_changed_at": now, **fields}
        assignments = ", ".join(f"{column} = ?" for column in values)
        marks = ", ".join("?" * len(allowed))
        sql = f"UPDATE sandbox SET {assignments} WHERE id = ? AND status IN ({marks})"
        params = [encode_value(column, value) for column, value in values.items()]
        return self._write([(sql, [*params, sandbox_id, *sorted(s.value for s in allowed)])])[0] == 1

    def archive(self, sandbox_id: str, *, reason: str, deletion: Mapping[str, Any], now: datetime) -> bool:
        """`Registry.archive` on stdlib sqlite3: the row moves to the archive, `deleted`, in one transaction."""
        copied = _select([c for c in SANDBOX_COLUMNS if c not in ("status", "status_changed_at")])
        added = "status, status_changed_at, archived_at, reason, deletion"
        insert = (
            f"INSERT INTO sandbox_archive ({copied}, {added}) SELECT {copied}, ?, ?, ?, ?, ? FROM sandbox WHERE id = ?"
        )
        stamp = to_sqlite_datetime(now)
        params = [
            SandboxStatus.DELETED.value,
            stamp,
            stamp,
            reason,
            encode_value("deletion", dict(deletion)),
            sandbox_id,
        ]
        moved, _ = self._write([(insert, params), ("DELETE FROM sandbox WHERE id = ?", [sandbox_id])])
        return moved == 1

    def touch(self, sandbox_id: str, now: datetime) -> bool:
        """Set last_accessed; False when this path could not (the caller then uses the full registry)."""
        try:
            self._write([("UPDATE sandbox SET last_accessed = ? WHERE id = ?", (to_sqlite_datetime(now), sandbox_id))])
        except (sqlite3.Error, RegistryError):
            return False
        return True
