"""The only module that prints data. Data goes to stdout, messages to stderr.

With `--json` a command calls `emit_json` and returns before any rich code runs.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sandboxctl.durations import format_duration, parse_timestamp, utcnow


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


def fields(values: Mapping[str, Any]) -> None:
    """One `key  value` line per field, keys aligned, empty values as `-` (one record without --json)."""
    width = max((len(key) for key in values), default=0)
    for key, value in values.items():
        emit_line(f"{key.ljust(width)}  {'-' if value in (None, '', [], {}) else value}")


def message(text: str) -> None:
    """A human message (progress, warnings): stderr, so stdout stays parseable."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> None:
    """A rich table on a terminal; plain aligned columns otherwise (fast, and greppable in cron mail)."""
    if _stdout_is_terminal():
        from rich.console import Console
        from rich.table import Table

        rich_table = Table(title=title, show_edge=False, header_style="bold")
        for column in columns:
            rich_table.add_column(column, overflow="fold")
        for row in rows:
            rich_table.add_row(*row)
        Console(highlight=False).print(rich_table)
        return
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    sys.stdout.write("\n".join(lines) + "\n")


def relative(iso: str | None, now: datetime | None = None, *, future: bool = False) -> str:
    """`3m ago` / `in 23h` for tables; `-` when absent."""
    if not iso:
        return "never" if future else "-"
    delta = parse_timestamp(iso) - (now or utcnow())
    if future and delta.total_seconds() > 0:
        return f"in {_coarse(delta)}"
    return f"{_coarse(-delta)} ago"


def _coarse(delta: timedelta) -> str:
    """The two largest units are enough in a table: `1h59m`, not `1h59m53s`."""
    text = format_duration(delta)
    units = [part + unit for part, unit in re.findall(r"(\d+)([dhms])", text)]
    return "".join(units[:2])


SANDBOX_COLUMNS = ("ID", "NAME", "BACKEND", "STATUS", "POLICY", "IMAGE", "CREATED", "EXPIRES")


def sandbox_rows(records: Iterable[dict[str, Any]]) -> list[list[str]]:
    now = utcnow()
    return [
        [
            r["id"],
            r["name"],
            r["backend"],
            r["status"],
            r["policy"],
            r.get("image") or "-",
            relative(r["created_at"], now),
            "-" if r["status"] == "deleted" else relative(r["expires_at"], now, future=True),
        ]
        for r in records
    ]
