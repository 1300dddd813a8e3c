"""Quotas on live sandboxes: refused with exit 5, nothing recorded, and atomic under parallel creates."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import Cli, Result

QUOTA_EXIT = 5


def _parallel_creates(cli: Cli, count: int, *root: str) -> list[Result]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: cli(*root, "create", "--backend", "local", "--json"), range(count)))


def _assert_five_of_ten(cli: Cli, results: list[Result], *root: str) -> None:
    created = [r for r in results if r.returncode == 0]
    refused = [r for r in results if r.returncode == QUOTA_EXIT]
    assert len(created) == 5 and len(refused) == 5, "\n".join(map(str, results))
    for result in refused:
        assert result.stderr.startswith("error: quota.max_live is 5 and 5 sandboxes are live"), str(result)
        assert result.stderr.count("\n") == 1 and result.stdout == "", str(result)
    live = cli.ok(*root, "status", "--all", "--json").json()
    assert sorted(r["id"] for r in live) == sorted(r.json()["id"] for r in created)  # refusals recorded nothing
    assert all(r["status"] == "running" for r in live)


def test_ten_parallel_creates_with_max_live_5_give_exactly_5_on_sqlite(cli: Cli) -> None:
    cli.ok("config", "set", "quota.max_live", "5")
    results = _parallel_creates(cli, 10)
    _assert_five_of_ten(cli, results)


def test_ten_parallel_creates_with_max_live_5_give_exactly_5_on_postgresql(cli: Cli, pg_url: str) -> None:
    url = pg_url  # an empty database: the ten creates also race to create the schema (under the migration lock)
    cli.ok("config", "set", "quota.max_live", "5")
    results = _parallel_creates(cli, 10, "--db", url)
    _assert_five_of_ten(cli, results, "--db", url)


def test_quota_counts_live_sandboxes_and_frees_on_delete(cli: Cli) -> None:
    first = cli.ok("create", "--backend", "local").stdout.strip()
    cli.ok("config", "set", "quota.max_live", "1")
    refused = cli("create", "--backend", "local", "--name", "second")
    assert refused.returncode == QUOTA_EXIT, str(refused)
    assert "quota.max_live is 1 and 1 sandboxes are live" in refused.stderr
    assert cli("status", "second").returncode == 3  # not recorded, not even archived
    cli.ok("delete", first)
    cli.ok("create", "--backend", "local", "--name", "second")


def test_per_user_quota_names_the_user_and_spares_others(cli: Cli) -> None:
    cli.ok("config", "set", "quota.max_live_per_user", "2")
    alice = {"SANDBOXCTL_USER": "alice"}
    for _ in range(2):
        cli.ok("create", "--backend", "local", env=alice)
    refused = cli("create", "--backend", "local", env=alice)
    assert refused.returncode == QUOTA_EXIT, str(refused)
    assert refused.stderr == (
        "error: quota.max_live_per_user is 2 and user 'alice' has 2 live sandboxes: "
        "delete some (or raise the quota) before creating more\n"
    )
    cli.ok("create", "--backend", "local", env={"SANDBOXCTL_USER": "bob"})
    assert len(cli.ok("status", "--json").json()) == 3


def test_quota_from_the_environment_refuses_with_exit_5(cli: Cli) -> None:
    env = {"SANDBOXCTL_QUOTA_MAX_LIVE": "1"}
    cli.ok("create", "--backend", "local", env=env)
    refused = cli("create", "--backend", "local", "--json", env=env)
    assert refused.returncode == QUOTA_EXIT, str(refused)
    assert refused.stdout == ""
    assert len(cli.ok("status", "--all", "--json").json()) == 1


def test_bad_quota_value_is_a_usage_error_and_records_nothing(cli: Cli) -> None:
    result = cli("create", "--backend", "local", env={"SANDBOXCTL_QUOTA_MAX_LIVE": "zero"})
    assert result.returncode == 2, str(result)
    assert result.stderr.startswith("error: bad value for quota.max_live (SANDBOXCTL_QUOTA_MAX_LIVE)")
    assert cli.ok("status", "--all", "--json").json() == []


def test_quota_exit_code_is_in_the_reference() -> None:
    reference = (Path(__file__).resolve().parent.parent / "docs" / "reference.md").read_text()
    assert "| 5 | `create` or `agent-run` refused by a quota" in reference


def test_agent_run_beyond_the_quota_exits_5_without_a_sandbox(cli: Cli) -> None:
    existing = cli.ok("create", "--backend", "local").stdout.strip()
    result = cli("agent-run", "--backend", "local", "--", "true", env={"SANDBOXCTL_QUOTA_MAX_LIVE": "1"})
    assert result.returncode == QUOTA_EXIT, str(result)
    assert result.stderr.splitlines()[-1].startswith("error: quota.max_live is 1 and 1 sandboxes are live")
    [summary] = cli.ok("agent", "list", "--json").json()  # the run is recorded, as refused: its sandbox is not
    assert (summary["status"], summary["exit_code"], summary["sandbox_id"]) == ("error", QUOTA_EXIT, None)
    assert [r["id"] for r in cli.ok("status", "--all", "--json").json()] == [existing]


@pytest.mark.parametrize("fast", [True, False], ids=["reader", "sqlmodel"])
def test_both_registry_paths_refuse_alike_and_record_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    """The reader's stdlib insert and SQLModel's both count per user inside their transaction."""
    from sandboxctl.config import Settings
    from sandboxctl.errors import QuotaExceeded
    from sandboxctl.services.context import Context
    from sandboxctl.services.lifecycle import CreateOptions, create_sandbox

    monkeypatch.setenv("SANDBOXCTL_QUOTA_MAX_LIVE_PER_USER", "1")
    db = home / "registry.db"
    ctx = Context(settings=Settings.load(str(db)))
    ctx.registry  # noqa: B018 - migrated, so the reader can serve
    if not fast:
        ctx._reader_checked = True  # the full path only: no reader
    assert (ctx.reader is not None) == fast
    monkeypatch.setenv("SANDBOXCTL_USER", "alice")
    create_sandbox(ctx, CreateOptions(backend="local", image=None))
    with pytest.raises(QuotaExceeded, match=r"quota\.max_live_per_user is 1 and user 'alice' has 1 live"):
        create_sandbox(ctx, CreateOptions(backend="local", image=None, name="refused"))
    monkeypatch.setenv("SANDBOXCTL_USER", "bob")
    create_sandbox(ctx, CreateOptions(backend="local", image=None))
    with sqlite3.connect(db) as conn:
        users = sorted(row[0] for row in conn.execute("SELECT created_by FROM sandbox"))
        assert conn.execute("SELECT count(*) FROM sandbox_archive").fetchone()[0] == 0
    assert users == ["alice", "bob"]
    assert len(list((home / "local").iterdir())) == 2  # the refused one never reached the backend
