"""The only module that prints data. Data goes to stdout, messages to stderr.

With `--json` a command calls `emit_json` and returns before any rich code runs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sandboxctl.durations import utcnow


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def emit_json_array(documents: Iterable[Any]) -> None:
    """A JSON array written one element at a time, one compact element per line.

    For long listings (`status --json` over 20,000 records): nothing is held in memory, and the
    C encoder is used (an indented dump goes through json's pure-Python encoder, ~10x slower).
    """
    first = True
    for document in documents:
        sys.stdout.write(("[\n" if first else ",\n") + json.dumps(document))
        first = False
    sys.stdout.write("[]\n" if first else "\n]\n")
    sys.stdout.flush()


def emit_json_line(document: Any, *, stderr: bool = False) -> None:
    """One compact JSON document on one line (event streams), flushed at once."""
    emit_text(json.dumps(document, ensure_ascii=False) + "\n", stderr=stderr)


def emit_text(text: str, *, stderr: bool = False) -> None:
    """Text passed through as it arrives (an agent's output), flushed at once."""
    stream = sys.stderr if stderr else sys.stdout
    stream.write(text)
    stream.flush()


def emit_line(text: str) -> None:
    sys.stdout.write(text + "\n")


def emit_chunks(chunks: Iterable[str]) -> None:
    """Text already laid out (`status`'s table written by SQLite), in one write as `table` writes its plain
    lines: a reader that stops early (`| head`) ends the command as it did before (exit 0), not mid-table."""
    sys.stdout.write("".join(chunks))


def fields(values: Mapping[str, Any]) -> None:
    """One `key  value` line per field, keys aligned, empty values as `-` (one record without --json)."""
    width = max((len(key) for key in values), default=0)
    for key, value in values.items():
        emit_line(f"{key.ljust(width)}  {'-' if value in (None, '', [], {}) else value}")


def message(text: str) -> None:
    """A human message (progress, warnings): stderr, so stdout stays parseable."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def stdout_is_terminal() -> bool:
    """Where `table` draws a rich table; elsewhere its plain columns (which `status` may have SQLite write)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> None:
    """A rich table on a terminal; plain aligned columns otherwise (fast, and greppable in cron mail)."""
    if stdout_is_terminal():
        from rich.console import Console
        from rich.table import Table

        rich_table = Table(title=title, show_edge=False, header_style="bold")
        for column in columns:
            rich_table.add_column(column, overflow="fold")
        for row in rows:
            rich_table.add_row(*row)
        Console(highlight=False).print(rich_table)
        return
    # Column by column and one format string per line: the per-cell Python work was most of `status`'s
    # rendering time over 10,000 records.
    widths = [len(column) for column in columns]
    if rows:
        cells = zip(*rows, strict=True)
        widths = [max(width, *map(len, column)) for width, column in zip(widths, cells, strict=True)]
    line = "  ".join(f"{{:<{width}}}" for width in widths).format
    lines = [line(*columns).rstrip(), *(line(*row).rstrip() for row in rows)]
    sys.stdout.write("\n".join(lines) + "\n")


def relative(iso: str | None, now: datetime | None = None, *, future: bool = False) -> str:
    """`3m ago` / `in 23h` for tables; `-` when absent. Whole seconds toward zero, in integer microseconds (exact
    at any distance, as its SQL spelling in registry/status_table.py)."""
    if not iso:
        return "never" if future else "-"
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:  # as parse_timestamp reads it: naive text is UTC
        moment = moment.replace(tzinfo=UTC)
    delta = (moment - (now or utcnow())) // _MICROSECOND
    if future and delta > 0:
        return f"in {_coarse(delta // 1_000_000)}"
    return f"{_coarse(-delta // 1_000_000)} ago"  # floor, not toward zero, only below 0: "0s" either way


_MICROSECOND = timedelta(microseconds=1)
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def _coarse(seconds: int) -> str:
    """The two largest non-zero units of `format_duration`'s spelling are enough in a table: `1h59m`, not
    `1h59m53s`. Built directly from the seconds: `status` calls this twice per row (20,000 times over 10,000
    records), and formatting then re-parsing the full spelling was a third of that command's time."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
            if len(parts) == 2:
                break
    return "".join(parts)


SANDBOX_COLUMNS = ("ID", "NAME", "BACKEND", "STATUS", "POLICY", "IMAGE", "CREATED", "EXPIRES")


def sandbox_rows(records: Iterable[dict[str, Any]], now: datetime | None = None) -> list[list[str]]:
    now = now or utcnow()
    ages: dict[str | None, str] = {}  # moments repeat (same expiry, same second of creation): each computed once
    expiries: dict[str | None, str] = {}

    def age(iso: str | None) -> str:
        text = ages.get(iso)
        if text is None:
            text = ages[iso] = relative(iso, now)
        return text

    def expiry(iso: str | None) -> str:
        text = expiries.get(iso)
        if text is None:
            text = expiries[iso] = relative(iso, now, future=True)
        return text

    return [
        [
            r["id"],
            r["name"],
            r["backend"],
            r["status"],
            r["policy"],
            r.get("image") or "-",
            age(r["created_at"]),
            "-" if r["status"] == "deleted" else expiry(r["expires_at"]),
        ]
        for r in records
    ]
