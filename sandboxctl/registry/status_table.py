"""`status`'s plain table (stdout not a terminal) laid out by SQLite.

Over 10,000 records the Python table cost ~11 us a row (fetch 23 columns, decode, JSON shape, cells, layout),
so `status` took 3.4x its time over 10 records. Here one aggregate query measures the text columns, and a
second returns each row as two strings: its cells padded by `printf` (widths counted in characters) followed
by its CREATED text, and its EXPIRES text. Python pads the first to the longest and joins, with str methods
over whole columns: no Python code runs once a row.

This is a second spelling of `render.relative` and of `render.table`'s plain layout: tests/test_status_table.py
drives the same records through both and fails on any difference. It reads with the filters and order of
`RegistryReader.iter_rows` (`listing_source`, `listing_order`), and `--expired`'s idle rule is `idle_expired_sql`,
the SQL form of `SandboxQuery.idle_expired`. Anything this module cannot write exactly as Python would (a NUL
character, which SQLite's text functions stop at; a SQLite without `unixepoch`) returns None, and `status`
renders in Python.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat

from sandboxctl.registry.reader import RegistryReader, SandboxQuery, listing_order, listing_source, registry_error
from sandboxctl.registry.states import SandboxStatus

MIN_SQLITE = (3, 38, 0)  # unixepoch()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def supported() -> bool:
    return sqlite3.sqlite_version_info >= MIN_SQLITE


def epoch_us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (naive means UTC, as the registry stores it)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _moment_us(column: str) -> str:
    """A stored moment as whole seconds, in microseconds: `sqlite_text_to_iso` keeps `text[:19]`. (unixepoch of
    the whole text would round `.9996` up to the next second.)"""
    return f"unixepoch(substr({column}, 1, 19)) * 1000000"


_UNIT_SECONDS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))  # render._UNITS


def coarse_sql(seconds: str, *, before: str = "", after: str = "") -> str:
    """`before + render._coarse(seconds) + after` in SQL (`seconds`: an integer expression): the two largest
    non-zero units. One printf a cell, its format chosen by the first non-zero smaller unit (a third cheaper
    than concatenating the parts)."""
    s = seconds
    # A unit's count within the next larger one (days are whole).
    counts = {
        unit: f"{s} % {larger} / {size}"
        for (unit, size), (_, larger) in zip(_UNIT_SECONDS[1:], _UNIT_SECONDS[:-1], strict=True)
    }
    branches = []
    for i, (unit, size) in enumerate(_UNIT_SECONDS[:-1]):
        smaller = [u for u, _ in _UNIT_SECONDS[i + 1 :]]
        formats = " ".join(f"WHEN {counts[u]} > 0 THEN '{before}%d{unit}%d{u}{after}'" for u in smaller)
        second = " ".join(f"WHEN {counts[u]} > 0 THEN {counts[u]}" for u in smaller)
        branches.append(
            f"WHEN {s} >= {size} THEN printf(CASE {formats} ELSE '{before}%d{unit}{after}' END,"
            f" {s} / {size}, CASE {second} ELSE 0 END)"
        )
    return (
        f"CASE WHEN {s} <= 0 THEN '{before}0s{after}' {' '.join(branches)} ELSE printf('{before}%ds{after}', {s}) END"
    )


def relative_sql(delta_us: str, *, future: bool, absent: str) -> str:
    """`render.relative` in SQL, given `moment - now` in microseconds (`absent`: the SQL that is true when there
    is no moment). Integer division truncates toward zero; below zero any value spells `0s`, so this agrees with
    `render.relative`'s floor."""
    delta = f"({delta_us})"
    ago = coarse_sql(f"((-{delta}) / 1000000)", after=" ago")
    text = f"CASE WHEN {delta} > 0 THEN {coarse_sql(f'({delta} / 1000000)', before='in ')} ELSE {ago} END"
    return f"CASE WHEN {absent} THEN '{'never' if future else '-'}' ELSE {text if future else ago} END"


def idle_expired_sql(expired_at: datetime) -> str:
    """`SandboxQuery.idle_expired` on the rows `status` reads (moments cut to whole seconds), in SQL."""
    now = epoch_us(expired_at)
    return (
        f"(status = '{SandboxStatus.EXPIRED.value}'"
        f" OR (expires_at IS NOT NULL AND {_moment_us('expires_at')} <= {now})"
        " OR (idle_timeout_seconds IS NOT NULL AND last_accessed IS NOT NULL"
        f" AND {_moment_us('last_accessed')} + idle_timeout_seconds * 1000000 <= {now}))"
    )


# The cells of `render.sandbox_rows`, in its column order; `a` and `e` are the created and expiry moments less
# now (microseconds), computed once a row in the inner queries.
_TEXT_CELLS = ("id", "name", "backend", "status", "policy", "coalesce(nullif(image, ''), '-')")
_TEXT_NAMES = ("id", "name", "backend", "status", "policy", "image")
_CREATED = relative_sql("a", future=False, absent="a IS NULL")
_EXPIRES = (
    f"CASE WHEN status = '{SandboxStatus.DELETED.value}' THEN '-'"
    f" ELSE {relative_sql('e', future=True, absent='e IS NULL')} END"
)
# Written from user input (image) or, in the archive, from a backend's labels (orphans): may hold a NUL.
_MAY_HOLD_NUL = {False: ("name", "image"), True: ("id", "name", "policy", "image")}


def _source(query: SandboxQuery, *, archived: bool) -> tuple[str, list[object]]:
    """`iter_rows`' filter, with in SQL what it decides in Python (`--expired`'s idle rule)."""
    also = [] if query.expired_at is None else [idle_expired_sql(query.expired_at)]
    return listing_source(query, archived=archived, also=also)


def _relative_to(column: str, now_us: int) -> str:
    return f"{_moment_us(column)} - {now_us}"


def status_lines(
    reader: RegistryReader,
    columns: Sequence[str],
    *,
    tables: Sequence[bool],
    query: SandboxQuery,
    now: datetime,
) -> Iterator[str] | None:
    """The plain table of `render.table(columns, render.sandbox_rows(...))` over `tables` (archived or not, in
    that order) as chunks of text, or None when only the Python table can write these records exactly."""
    if not supported():
        return None
    now_us = epoch_us(now)
    widths = [len(column) for column in columns[: len(_TEXT_CELLS)]]
    conn = reader.connection()
    try:
        for archived in tables:
            source, params = _source(query, archived=archived)
            nuls = _MAY_HOLD_NUL[archived]
            measures = [f"max(length({cell}))" for cell in _TEXT_CELLS] + [f"max(instr({c}, char(0)))" for c in nuls]
            found = conn.execute(f"SELECT {', '.join(measures)} {source}", params).fetchone()
            if any(found[len(_TEXT_CELLS) :]):
                return None
            lengths = found[: len(_TEXT_CELLS)]
            widths = [max(width, length or 0) for width, length in zip(widths, lengths, strict=True)]
        # The text cells laid out by SQLite, then the CREATED text; its width (the longest) is known once every
        # row is read, so Python pads that cell: with str methods over whole columns, no Python code a row.
        rows: list[tuple[str, str]] = []
        for archived in tables:
            rows += _rows(conn, widths, archived=archived, query=query, now_us=now_us)
    except sqlite3.Error as exc:
        raise registry_error(reader.path, exc) from None
    heads, expiries = zip(*rows, strict=True) if rows else ((), ())
    return _lines(columns, widths, heads, expiries)


def _rows(
    conn: sqlite3.Connection, widths: Sequence[int], *, archived: bool, query: SandboxQuery, now_us: int
) -> list[tuple[str, str]]:
    """(the text cells padded, then the CREATED text; the EXPIRES text) for each row, in `query`'s order."""
    source, params = _source(query, archived=archived)
    column, _ = query.order(archived)
    # The inner query computes `a` and `e` once a row (OFFSET keeps SQLite from flattening it, which would parse
    # the date again at each of the CASEs' uses of them).
    inner = ", ".join(
        [f"{cell} AS {name}" for cell, name in zip(_TEXT_CELLS, _TEXT_NAMES, strict=True)]
        + [f"{_relative_to('created_at', now_us)} AS a", f"{_relative_to('expires_at', now_us)} AS e"]
        + [f"{column} AS sort_{column}"]
    )
    pattern = "%!-*s  " * len(_TEXT_NAMES) + "%s"
    arguments = ", ".join(f"{width}, {name}" for width, name in zip(widths, _TEXT_NAMES, strict=True))
    sql = (
        f"SELECT printf('{pattern}', {arguments}, {_CREATED}), {_EXPIRES}"
        f" FROM (SELECT {inner} {source} LIMIT -1 OFFSET 0)"
        f" {listing_order(query, archived=archived, prefix='sort_')}"
    )
    return conn.execute(sql, params).fetchall()


def _lines(
    columns: Sequence[str], widths: Sequence[int], heads: Sequence[str], expiries: Sequence[str]
) -> Iterator[str]:
    """`render.table`'s layout: each cell left-aligned to its width, two spaces apart, the line's end stripped
    (the last cell, an expiry, never ends in a space, so it is simply not padded)."""
    # Every text cell is padded to exactly its width, so the heads differ in length only by their CREATED text.
    created_at = sum(widths) + 2 * len(widths)
    head_width = max(created_at + len(columns[-2]), max(map(len, heads), default=0))
    all_widths = [*widths, head_width - created_at, len(columns[-1])]
    yield "  ".join(f"{column:<{width}}" for column, width in zip(columns, all_widths, strict=True)).rstrip() + "\n"
    lines = zip(map(str.ljust, heads, repeat(head_width)), repeat("  "), expiries, repeat("\n"))
    yield "".join(chain.from_iterable(lines))
