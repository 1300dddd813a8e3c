"""The exec hot path's registry access, on stdlib sqlite3 only.

`import sqlmodel` costs ~0.25-0.8 s, several times a `docker exec`. `exec` needs
one lookup and one timestamp update, so it reads the same SQLite file directly.
Anything unusual (no file, a non-SQLite registry, an archived or unknown ref, an
unexpected schema) returns None and the caller falls back to the full registry,
which owns migrations and error messages.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sandboxctl.errors import UsageError

_COLUMNS = "id, name, backend, backend_id, status"
# The text format SQLAlchemy's DateTime uses on SQLite (UTC, as sqlmodel's UTCDateTime stores it).
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True)
class ExecTarget:
    id: str
    name: str
    backend: str
    backend_id: str | None
    status: str


class LeanRegistry:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: no fsync per touch, as the full registry
        return conn

    def find_live(self, ref: str) -> ExecTarget | None:
        """The live record for an id, name or unique id prefix; None when the full registry must decide."""
        if not self.path.is_file() or not ref:
            return None
        try:
            with self._connect() as conn:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM sandbox WHERE id = ? OR name = ? LIMIT 1", (ref, ref)
                ).fetchone()
                if row is None:
                    escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                    rows = conn.execute(
                        f"SELECT {_COLUMNS} FROM sandbox WHERE id LIKE ? ESCAPE '\\' LIMIT 2", (escaped + "%",)
                    ).fetchall()
                    if len(rows) > 1:
                        raise UsageError(f"{ref!r} matches several sandboxes: give more of the id")
                    row = rows[0] if rows else None
        except sqlite3.Error:
            return None
        return ExecTarget(*row) if row else None

    def touch(self, sandbox_id: str, now: datetime) -> bool:
        """Set last_accessed; False when the lean path could not (the caller then uses the full registry)."""
        stamp = now.astimezone(UTC).strftime(_SQLITE_DATETIME)
        try:
            with self._connect() as conn:
                conn.execute("UPDATE sandbox SET last_accessed = ? WHERE id = ?", (stamp, sandbox_id))
        except sqlite3.Error:
            return False
        return True
