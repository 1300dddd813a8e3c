"""`sandboxctl cleanup` through the installed CLI on the `local` backend: lock, usage errors, output modes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from filelock import FileLock

from ..conftest import Cli

CONTRACT_FIELDS = {
    "cleanup_started_at",
    "cleanup_completed_at",
    "duration_seconds",
    "dry_run",
    "sandboxes_processed",
    "sandboxes_cleaned",
    "sandboxes_failed",
    "disk_space_freed_mb",
    "errors",
}


def create(cli: Cli, *args: str) -> str:
    return cli.ok("create", "--backend", "local", *args).stdout.strip()


def test_second_cleanup_while_the_lock_is_held_exits_75_at_once(cli: Cli, db: str | None, home: Path) -> None:
    cli.ok("status")  # the home exists
    with FileLock(home / "cleanup.lock", timeout=0):
        result = cli("cleanup", timeout=120)  # a run waiting for the lock would never return: the guard fails it
        assert result.returncode == 75, str(result)
        assert result.stdout == "" and result.stderr.startswith("error: another cleanup is running"), str(result)
        assert len(result.stderr.splitlines()) == 1, str(result)
        # A dry run changes nothing, so it takes no lock and runs anyway.
        assert cli("cleanup", "--dry-run").returncode == 0
    assert cli("cleanup").returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ("--older-than", "5"),
        ("--older-than", "-1h"),
        ("--label", "novalue"),
        ("--label", "sandboxctl.id=x"),
        ("--limit", "0"),
        ("--concurrency", "0"),
        ("--backend", "nope"),
    ],
)
def test_bad_flags_are_usage_errors(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli("cleanup", *args)
    assert result.returncode == 2, str(result)
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, str(result)


def test_quiet_when_nothing_to_do_and_json_has_the_contract_fields(cli: Cli) -> None:
    create(cli, "--ttl", "1h")
    result = cli.ok("cleanup")
    assert result.stdout == "" and result.stderr == "", str(result)
    summary = cli.ok("cleanup", "--json").json()
    assert set(summary) >= CONTRACT_FIELDS, summary
    assert summary["dry_run"] is False and summary["sandboxes_processed"] == 0 and summary["errors"] == []


def test_plain_output_is_one_line_per_sandbox(cli: Cli, db: str | None) -> None:
    first = create(cli, "--ttl", "0s")
    second = create(cli, "--ttl", "0s")
    result = cli.ok("cleanup")
    assert sorted(result.stdout.splitlines()) == sorted([f"cleaned {first} expired", f"cleaned {second} expired"])
    assert [r["reason"] for r in cli.ok("status", "--all", "--json").json()] == ["expired", "expired"]


def test_unknown_sandbox_named_is_exit_3(cli: Cli, db: str | None) -> None:
    create(cli)
    result = cli("cleanup", "feedfacecafe")
    assert result.returncode == 3, str(result)


def test_named_sandboxes_are_taken_whatever_their_expiry(cli: Cli, db: str | None) -> None:
    keep = create(cli, "--name", "keep")
    take = create(cli, "--name", "take")
    summary = cli.ok("cleanup", "take", "--json").json()
    done = [(s["sandbox_id"], s["reason"], s["result"]) for s in summary["sandboxes"]]
    assert done == [(take, "requested", "cleaned")]
    assert [r["id"] for r in cli.ok("status", "--json").json()] == [keep]


def test_local_orphans_are_judged_by_their_labels_after_the_registry_is_lost(cli: Cli, home: Path) -> None:
    mine = f"cleanup-test={uuid.uuid4().hex[:12]}"
    expired = create(cli, "--ttl", "0s", "--label", mine)
    unexpired = create(cli, "--ttl", "1h", "--label", mine)
    for path in home.glob("registry.db*"):
        path.unlink()
    # --backend local and this test's label: other (expired) sandboxes on this machine are not its business.
    summary = cli.ok("cleanup", "--orphans", "--backend", "local", "--label", mine, "--json").json()
    assert [(s["sandbox_id"], s["reason"]) for s in summary["sandboxes"]] == [(expired, "orphan_expired")]
    assert not (home / "local" / expired).exists() and (home / "local" / unexpired).is_dir()
    archived = cli.ok("status", "--all", "--json").json()
    assert [(r["id"], r["reason"]) for r in archived] == [(expired, "orphan_expired")]
