"""`status`'s plain table written by SQLite (registry/status_table.py) against the Python table it replaces.

The relative times (`render.relative`) and the layout (`render.table`) exist twice, in Python and in SQL: the
same records go through both, over a sweep of ages and expiries from seconds to centuries, past and future,
absent moments, sub-second edges, non-ASCII, very long and control-character names and images, and every
filter and sort of `status`; any difference fails.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterable
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandboxctl.cli import render
from sandboxctl.config import Settings
from sandboxctl.registry import status_table
from sandboxctl.registry.reader import ARCHIVE_COLUMNS, SandboxQuery, encode_value, sqlite_text_to_iso
from sandboxctl.registry.status_table import relative_sql, status_lines
from sandboxctl.registry.store import Registry
from sandboxctl.services.context import Context
from sandboxctl.services.listing import SQL_TABLE_MIN_RECORDS, iter_sandboxes, status_table_text

from .conftest import Cli

NOW = datetime(2026, 11, 26, 1, 0, 0, 250_000, tzinfo=UTC)
DAY = 86400.0
YEAR = 365 * DAY
# Seconds to centuries, with the sub-second edges: whole seconds are cut from the stored text (`.9996` must not
# round up), and `now` itself has a fraction.
OFFSETS = [
    *(0, 0.1, 0.25, 0.4, 0.6, 0.9996, 0.999999, 1, 1.5, 2, 59, 59.9996, 60, 61, 62, 119, 3599, 3600, 3601, 3602),
    *(
        3660,
        3661,
        3662,
        86399,
        DAY,
        DAY + 1,
        DAY + 2,
        DAY + 60,
        DAY + 61,
        DAY + 3600,
        DAY + 3601,
        90061,
        7 * DAY + 5,
        400 * DAY + 3600,
        30 * YEAR,
        99 * YEAR,
    ),
    *(250 * YEAR + 0.999999, 2000 * YEAR + 0.5),
]
NAMES = [
    "plain",
    "é-accent",
    "e\u0301-combining",
    "名前-wide",
    "emoji-😀",
    "tab\there",
    "new\nline",
    "cr\rreturn",
    "esc-\x1b[31mred\x1b[0m",
    "space at end ",
    "n" * 300,
]
IMAGES = [None, "", "busybox:latest", "ünï/imäge:1", "i" * 500, "a\tb", "   "]
STATUSES = ["running", "stopped", "failed", "expired", "creating", "deleting"]


def _sqlite_text(moment: datetime) -> str:
    return str(encode_value("created_at", moment))


def _python_relative(text: str | None, *, future: bool) -> str:
    """What the Python table shows for a stored moment: the reader cuts it to its JSON text first."""
    return render.relative(sqlite_text_to_iso(text), NOW, future=future)


def _moments() -> list[datetime]:
    moments = []
    for offset in OFFSETS:
        for sign in (1, -1):
            moment = NOW + sign * timedelta(seconds=offset)
            if datetime(1000, 1, 1, tzinfo=UTC) < moment < datetime(9999, 1, 1, tzinfo=UTC):
                moments.append(moment)
    return moments


def test_relative_times_in_sql_match_render_relative() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x DATETIME)")
    texts = [_sqlite_text(moment) for moment in _moments()]
    conn.executemany("INSERT INTO t VALUES (?)", [(text,) for text in [*texts, None]])
    now_us = (NOW - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    delta = f"unixepoch(substr(x, 1, 19)) * 1000000 - {now_us}"
    for future in (False, True):
        sql = f"SELECT x, {relative_sql(delta, future=future, absent='x IS NULL')} FROM t"
        got = conn.execute(sql).fetchall()
        assert len(got) == len(texts) + 1
        for text, shown in got:
            assert shown == _python_relative(text, future=future), (text, future)
    # The sweep reaches every branch of the spelling.
    shown = {_python_relative(text, future=True) for text in texts}
    spelled = {"in 1d", "in 1d1s", "in 1d1m", "in 1d1h", "in 1h", "in 1h1s", "in 1h1m", "in 1m", "in 1m1s", "in 1s"}
    assert spelled | {"0s ago", "1s ago", "1d1h ago", "1h1m ago", "1m1s ago"} <= shown


def _row(i: int, **values: Any) -> dict[str, Any]:
    created = NOW - timedelta(seconds=OFFSETS[i % len(OFFSETS)] % (50 * YEAR))
    row: dict[str, Any] = dict(
        id=f"{i:012x}",
        name=f"{NAMES[i % len(NAMES)]}-{i}",
        backend=("local", "docker", "daytona")[i % 3],
        backend_id=f"b{i}",
        image=IMAGES[i % len(IMAGES)],
        status=STATUSES[i % len(STATUSES)],
        policy=("default", "extended", "permanent")[i % 3],
        labels={"team": "a"} if i % 4 == 0 else {"team": "b", "k.x/y-z": "v w"},
        env_keys=[],
        created_at=created,
        last_accessed=created,
        expires_at=None
        if i % 9 == 0
        else NOW + (1 if i % 2 else -1) * timedelta(seconds=OFFSETS[(i * 7) % len(OFFSETS)]),
        idle_timeout_seconds=None,
        host="h",
        pid=1,
        created_by=("alice", "bob", None)[i % 3],
        delete_attempts=0,
        status_changed_at=created,
    )
    row.update(values)
    return row


def _insert(db: Path, table: str, rows: Iterable[dict[str, Any]]) -> None:
    with sqlite3.connect(db) as conn:
        for row in rows:
            columns = list(row)
            conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [encode_value(column, row[column]) for column in columns],
            )


@pytest.fixture
def ctx(home: Path) -> Context:
    """A registry holding the sweep, live and archived, and a Context whose clock is NOW."""
    home.mkdir(parents=True, exist_ok=True)
    db = home / "registry.db"
    Registry(f"sqlite:///{db}")  # creates the current schema
    live = [_row(i) for i in range(len(OFFSETS) * 2)]
    # --expired's idle rule on whole seconds: idle past NOW only once last_accessed is cut to its second.
    live += [
        _row(
            100, status="running", expires_at=None, idle_timeout_seconds=60, last_accessed=NOW - timedelta(seconds=60.2)
        ),
        _row(
            101, status="running", expires_at=None, idle_timeout_seconds=60, last_accessed=NOW - timedelta(seconds=59.1)
        ),
        _row(  # 59.9 s ago, but 60 s once cut to its second: idle
            106, status="running", expires_at=None, idle_timeout_seconds=60, last_accessed=NOW - timedelta(seconds=59.9)
        ),
        _row(102, status="running", expires_at=NOW + timedelta(seconds=0.1), idle_timeout_seconds=3600),
        _row(103, status="running", expires_at=NOW - timedelta(seconds=0.1)),
        _row(104, status="stopped", created_at=NOW - timedelta(seconds=0.9996), image="x"),
        _row(105, name="deleted-but-live", status="deleted"),
    ]
    _insert(db, "sandbox", live)
    archived = []
    for i in range(200, 200 + len(NAMES) + 3):
        row = _row(i, status="deleted")
        row.update(archived_at=NOW - timedelta(hours=i - 199), reason="cleanup", deletion={"success": True})
        archived.append(row)
    # An orphan rebuilt from a backend's labels: any id, name and policy.
    archived.append(
        _row(300, id="not-an-id \u00e9", name="orphan\t名", policy="weird", status="deleted")
        | dict(archived_at=NOW, reason="orphan", deletion={})
    )
    _insert(db, "sandbox_archive", archived)
    assert set(archived[0]) <= set(ARCHIVE_COLUMNS)
    return Context(settings=Settings.load(), clock=lambda: NOW)


def _python_table(ctx: Context, *, include_archived: bool, selector: dict[str, str], query: SandboxQuery) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        records = iter_sandboxes(ctx, include_archived=include_archived, selector=selector, query=query)
        render.table(render.SANDBOX_COLUMNS, render.sandbox_rows(records, NOW))
    return out.getvalue()


def _sql_table(ctx: Context, *, include_archived: bool, selector: dict[str, str], query: SandboxQuery) -> str:
    text = status_table_text(
        ctx, render.SANDBOX_COLUMNS, include_archived=include_archived, selector=selector, query=query, min_records=0
    )
    assert text is not None
    return "".join(text)


SORTS = [None, *(f"{d}{f}" for f in ("created", "expires", "accessed", "name", "status", "backend") for d in "-+")]
QUERIES = [
    *(SandboxQuery(sort=sort.removeprefix("+") if sort else None) for sort in SORTS),
    SandboxQuery(sort="-created", states=("running",)),
    SandboxQuery(sort="name", states=("failed", "expired", "deleted")),
    SandboxQuery(sort="-created", backend="docker"),
    SandboxQuery(sort="expires", expired_at=NOW),
    SandboxQuery(sort="-created", expired_at=NOW, backend="local"),
    SandboxQuery(sort="-created", created_by="alice"),
    SandboxQuery(sort="-accessed", created_by="nobody"),
]


def test_sql_table_is_the_python_table(ctx: Context) -> None:
    for include_archived in (False, True):
        for selector in ({}, {"team": "a"}, {"k.x/y-z": "v w"}):
            for query in QUERIES:
                python = _python_table(ctx, include_archived=include_archived, selector=selector, query=query)
                sql = _sql_table(ctx, include_archived=include_archived, selector=selector, query=query)
                assert sql == python, (include_archived, selector, query)


def test_the_sweep_reaches_what_the_parity_is_about(ctx: Context) -> None:
    table = _sql_table(ctx, include_archived=True, selector={}, query=SandboxQuery(sort="-created"))
    for needle in ("new\nline", "tab\there", "名前-wide", "emoji-😀", "n" * 300, "i" * 500, "never", "weird"):
        assert needle in table
    assert " ago  " in table and "d ago" in table and "d1h ago" in table
    expired = _sql_table(ctx, include_archived=False, selector={}, query=SandboxQuery(sort="name", expired_at=NOW))
    assert [f"{i:012x}" in expired for i in (100, 101, 102, 103, 106)] == [True, False, True, True, True]


def _many(home: Path, count: int) -> None:
    """Plain records, for `status` to reach SQL_TABLE_MIN_RECORDS (ids and names new at each call)."""
    with sqlite3.connect(home / "registry.db") as conn:
        start = 1000 + conn.execute("SELECT count(*) FROM sandbox").fetchone()[0]
    rows = [_row(start + i, name=f"many-{start + i}", status="running") for i in range(count)]
    _insert(home / "registry.db", "sandbox", rows)


def _table(ctx: Context, **options: Any) -> str | None:
    text = status_table_text(
        ctx, render.SANDBOX_COLUMNS, include_archived=False, selector={}, query=SandboxQuery(sort="-created"), **options
    )
    return None if text is None else "".join(text)


def test_a_nul_in_a_cell_leaves_the_table_to_python(ctx: Context, home: Path, cli: Cli) -> None:
    """SQLite's text functions stop at a NUL; Python prints it: that table stays Python's, byte for byte."""
    _many(home, SQL_TABLE_MIN_RECORDS)
    assert _table(ctx) is not None
    _insert(home / "registry.db", "sandbox", [_row(400, name="nul\x00name", image="img\x00tail")])
    assert _table(ctx) is None
    shown = cli.ok("status", "--sort", "name").stdout
    assert "nul\x00name" in shown and "img\x00tail" in shown


def test_few_records_keep_the_python_table(ctx: Context, home: Path) -> None:
    """Below SQL_TABLE_MIN_RECORDS SQLite's statements cost more than the Python table (the 10-record case)."""
    listed = len(list(iter_sandboxes(ctx, query=SandboxQuery(sort="-created"))))
    assert _table(ctx) is None and _table(ctx, min_records=0) is not None
    _many(home, SQL_TABLE_MIN_RECORDS - listed - 1)
    assert _table(ctx) is None
    _many(home, 1)
    assert _table(ctx) is not None


def test_the_full_registry_path_keeps_the_python_table(ctx: Context) -> None:
    full = Context(settings=ctx.settings, clock=ctx.clock, _reader_checked=True)  # no reader: PostgreSQL, old schema
    text = status_table_text(
        full, render.SANDBOX_COLUMNS, include_archived=True, selector={}, query=SandboxQuery(), min_records=0
    )
    assert text is None
    reader = ctx.reader
    assert reader is not None
    lines = status_lines(reader, render.SANDBOX_COLUMNS, tables=(False,), query=SandboxQuery(), now=NOW)
    assert lines is not None and next(iter(lines)).startswith("ID ")


def test_status_plain_output_from_sql_has_every_record_and_json_is_unchanged(
    ctx: Context, home: Path, cli: Cli
) -> None:
    """Through the CLI, over enough records for the SQL table: every record once, the header first (a record's
    id starts its line even when an earlier name held a newline); `--json` still streams every record."""
    _many(home, SQL_TABLE_MIN_RECORDS)
    assert _table(ctx) is not None
    lines = cli.ok("status", "--all", "--sort", "name").stdout.split("\n")
    assert lines[0].split() == list(render.SANDBOX_COLUMNS)
    records = cli.ok("status", "--all", "--json").json()
    assert len(records) > SQL_TABLE_MIN_RECORDS
    for record in records:
        assert sum(line.startswith(record["id"] + " ") for line in lines) == 1, record["id"]
    assert json.loads(cli.ok("status", "--json").stdout) == [r for r in records if "archived_at" not in r]


def test_a_sqlite_without_unixepoch_keeps_the_python_table(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """unixepoch() came with SQLite 3.38: an older library (Python's own build may bundle one) renders in Python."""
    assert _table(ctx, min_records=0) is not None
    monkeypatch.setattr(status_table, "MIN_SQLITE", (sqlite3.sqlite_version_info[0] + 1, 0, 0))
    assert _table(ctx, min_records=0) is None
