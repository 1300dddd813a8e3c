"""`status` filters for people and scripts: --state, --expired, -q, --sort (newest first by default)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from sandboxctl.config import Settings
from sandboxctl.registry.reader import SandboxQuery
from sandboxctl.services.context import Context
from sandboxctl.services.listing import iter_sandboxes

from .conftest import Cli


@pytest.fixture
def made(cli: Cli, home: Path) -> dict[str, str]:
    """Four local sandboxes: `old` (past its TTL), `idle` (past its idle timeout), `live`, and `broken`."""
    ids = {}
    for name, args in (
        ("old", ["--ttl", "1s"]),
        ("idle", ["--idle-timeout", "1s"]),
        ("live", ["--label", "team=a"]),
        ("broken", ["--label", "team=a"]),
    ):
        ids[name] = cli.ok("create", "--backend", "local", "--name", name, *args).stdout.strip()
    with sqlite3.connect(home / "registry.db") as conn:
        conn.execute("UPDATE sandbox SET status = 'failed' WHERE id = ?", (ids["broken"],))
    time.sleep(1.5)  # past the 1 s TTL and idle timeout
    return ids


def test_status_lists_newest_first_and_quiet_prints_only_ids(cli: Cli, made: dict[str, str]) -> None:
    lines = cli.ok("status", "-q").stdout.splitlines()
    assert lines == [made["broken"], made["live"], made["idle"], made["old"]]
    assert cli.ok("status", "--sort", "created", "--quiet").stdout.splitlines() == lines[::-1]
    assert cli.ok("status", "--sort", "name", "-q").stdout.splitlines() == [
        made[n] for n in ("broken", "idle", "live", "old")
    ]
    assert cli.ok("status", "--sort=-name", "-q").stdout.splitlines() == [
        made[n] for n in ("old", "live", "idle", "broken")
    ]


def test_status_filters_by_state_expiry_and_label(cli: Cli, made: dict[str, str]) -> None:
    assert cli.ok("status", "--state", "failed", "-q").stdout.split() == [made["broken"]]
    both = cli.ok("status", "--state", "failed", "--state", "running", "-q").stdout.split()
    assert len(both) == 4
    assert set(cli.ok("status", "--expired", "-q").stdout.split()) == {made["old"], made["idle"]}
    assert cli.ok("status", "--label", "team=a", "--state", "running", "-q").stdout.split() == [made["live"]]
    assert [r["id"] for r in cli.ok("status", "--expired", "--sort", "expires", "--json").json()] == [
        made["old"],
        made["idle"],
    ]


def test_status_sort_and_filters_agree_on_both_registry_paths(cli: Cli, home: Path, made: dict[str, str]) -> None:
    cli.ok("delete", made["live"])
    fast = Context(settings=Settings.load())
    full = Context(settings=Settings.load(), _reader_checked=True)  # no reader: SQLModel only
    assert fast.reader is not None
    for query in (
        SandboxQuery(sort="-created"),
        SandboxQuery(sort="expires"),
        SandboxQuery(sort="-expires", states=("running",)),
        SandboxQuery(sort="name", expired_at=fast.now()),
        SandboxQuery(sort="status", backend="local"),
    ):
        for selector in (None, {"team": "a"}):
            rows = list(iter_sandboxes(fast, include_archived=True, selector=selector, query=query))
            assert rows == list(iter_sandboxes(full, include_archived=True, selector=selector, query=query)), query


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--state", "bogus"],
        ["status", "--sort", "colour"],
        ["status", "somesandbox", "--quiet"],
    ],
)
def test_status_bad_filters_are_usage_errors(cli: Cli, args: list[str]) -> None:
    result = cli(*args)
    assert result.returncode == 2, result
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stdout == ""


def test_status_label_filter_in_sql_takes_keys_and_values_literally(cli: Cli) -> None:
    odd = cli.ok("create", "--backend", "local", "--label", 'a.b/c-d_e=it\'s "$x"').stdout.strip()
    cli.ok("create", "--backend", "local", "--label", "a.b/c-d_e=other")
    assert cli.ok("status", "-q", "--label", 'a.b/c-d_e=it\'s "$x"').stdout.split() == [odd]
    assert cli.ok("status", "-q", "--label", "a=b").stdout == ""
