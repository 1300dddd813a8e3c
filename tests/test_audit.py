"""Audit: every record says who created it (`created_by`), and --user selects by it."""

from __future__ import annotations

import getpass
import json
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import Cli

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _create(cli: Cli, *args: str, user: str | None = None) -> str:
    env = {"SANDBOXCTL_USER": user} if user else {}
    return cli.ok("create", "--backend", "local", *args, env=env).stdout.strip()


def test_created_by_is_the_os_user_or_sandboxctl_user_and_survives_deletion(cli: Cli, home: Path) -> None:
    person = _create(cli)
    bot = _create(cli, user="ci-bot")
    listed = {r["id"]: r["created_by"] for r in cli.ok("status", "--json").json()}
    assert listed == {person: getpass.getuser(), bot: "ci-bot"}
    assert cli.ok("status", bot, "--json").json()["created_by"] == "ci-bot"
    # The backend resource carries it too, so orphans can be told apart by user.
    labels = json.loads((home / "local" / bot / "sandbox.json").read_text())["labels"]
    assert labels["sandboxctl.created-by"] == "ci-bot"
    cli.ok("delete", bot)
    archived = cli.ok("status", "--all", "--json").json()
    assert [(r["id"], r["created_by"], r["status"]) for r in archived if r["id"] == bot] == [(bot, "ci-bot", "deleted")]


def test_status_user_lists_only_that_users_sandboxes(cli: Cli) -> None:
    alice = _create(cli, user="alice")
    _create(cli, user="bob")
    assert [r["id"] for r in cli.ok("status", "--user", "alice", "--json").json()] == [alice]
    assert cli.ok("status", "--user", "nobody", "--json").json() == []
    # The Typer path (an option the fast parser leaves to Typer) selects alike.
    assert [r["id"] for r in cli.ok("status", "-u", "alice", "--json", "--").json()] == [alice]
    table = cli.ok("status", "--user", "alice").stdout
    assert alice in table


def test_cleanup_user_takes_only_that_users_sandboxes(cli: Cli) -> None:
    alice = _create(cli, "--ttl", "0s", user="alice")
    bob = _create(cli, "--ttl", "0s", user="bob")
    summary = cli.ok("cleanup", "--user", "alice", "--json").json()
    assert [s["sandbox_id"] for s in summary["sandboxes"]] == [alice]
    assert [r["id"] for r in cli.ok("status", "--json").json()] == [bob]
    dry = cli.ok("cleanup", "--user", "alice", "--dry-run", "--json").json()
    assert dry["sandboxes"] == []


def test_cleanup_orphans_user_selects_orphans_by_their_created_by_label(cli: Cli, home: Path) -> None:
    mine = f"audit-test={uuid.uuid4().hex[:12]}"
    alice = _create(cli, "--ttl", "0s", "--label", mine, user="alice")
    bob = _create(cli, "--ttl", "0s", "--label", mine, user="bob")
    for path in home.glob("registry.db*"):
        path.unlink()
    summary = cli.ok("cleanup", "--orphans", "--backend", "local", "--label", mine, "--user", "alice", "--json").json()
    assert [(s["sandbox_id"], s["reason"]) for s in summary["sandboxes"]] == [(alice, "orphan_expired")]
    assert not (home / "local" / alice).exists() and (home / "local" / bob).is_dir()
    archived = cli.ok("status", "--all", "--json").json()
    assert [(r["id"], r["created_by"]) for r in archived] == [(alice, "alice")]
    cli.ok("cleanup", "--orphans", "--backend", "local", "--label", mine)


def test_records_older_than_the_audit_column_show_null(cli: Cli, home: Path) -> None:
    home.mkdir(mode=0o700)
    with sqlite3.connect(home / "registry.db") as conn:
        conn.executescript((FIXTURES / "registry_v3.sql").read_text())
        conn.execute(
            "INSERT INTO sandbox VALUES ('0123456789ab', 'old', 'local', '0123456789ab', NULL, 'running', 'default', "
            "'{}', '[]', NULL, NULL, '2026-11-20 10:00:00.000000', '2026-11-20 10:00:00.000000', NULL, NULL, 'h', 1, "
            "0, NULL, '2026-11-20 10:00:00.000000')"
        )
    old = cli.ok("status", "--json").json()
    assert [(r["name"], r["created_by"]) for r in old] == [("old", None)]
    assert cli.ok("status", "--user", "alice", "--json").json() == []
    assert "created_by" in cli.ok("status", "old").stdout


def test_agent_show_keeps_created_by(cli: Cli) -> None:
    run = cli("agent-run", "--backend", "local", "--json", "--", "true", env={"SANDBOXCTL_USER": "agent-bot"})
    assert run.returncode == 0, str(run)
    shown = cli.ok("agent", "show", run.json()["run_id"], "--json").json()
    assert shown["created_by"] == "agent-bot"
    archived = cli.ok("status", "--all", "--json").json()
    assert [r["created_by"] for r in archived] == ["agent-bot"]


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_docker_container_carries_the_created_by_label(cli: Cli, docker_image: str) -> None:
    sandbox = cli.ok(
        "create", "--backend", "docker", "--image", docker_image, env={"SANDBOXCTL_USER": "ci-bot"}
    ).stdout.strip()
    label = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label=sandboxctl.id={sandbox}",
            "--format",
            '{{.Label "sandboxctl.created-by"}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert label == "ci-bot"
    cli.ok("delete", sandbox)
