"""`sandboxctl extend`: a new lifetime counted from now, through the installed CLI (local and Docker)."""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sandboxctl.durations import parse_timestamp

from .conftest import Cli, sandbox_containers


def create(cli: Cli, *args: str) -> str:
    return cli.ok("create", "--backend", "local", *args).stdout.strip()


def record(cli: Cli, sandbox: str) -> dict:
    return cli.ok("status", sandbox, "--json").json()


def near(stamp: str | None, expected: datetime, slack: timedelta = timedelta(minutes=1)) -> bool:
    return stamp is not None and abs(parse_timestamp(stamp) - expected) < slack


def test_extend_ttl_counts_from_now_and_cleanup_keeps_the_sandbox(cli: Cli) -> None:
    sandbox = create(cli, "--ttl", "1s")
    time.sleep(1.5)  # past its creation-time expiry
    result = cli.ok("extend", sandbox, "--ttl", "1h")
    now = datetime.now(UTC)
    assert near(result.stdout.strip(), now + timedelta(hours=1)), str(result)
    assert result.stdout.count("\n") == 1 and result.stderr == "", str(result)
    assert record(cli, sandbox)["expires_at"] == result.stdout.strip()
    summary = cli.ok("cleanup", "--json").json()
    assert summary["sandboxes_cleaned"] == 0 and summary["sandboxes"] == [], summary
    assert record(cli, sandbox)["status"] == "running"


def test_extend_can_shorten_too(cli: Cli) -> None:
    sandbox = create(cli, "--policy", "extended")
    cli.ok("extend", sandbox, "--ttl", "1s")
    time.sleep(1.5)
    summary = cli.ok("cleanup", "--json").json()
    assert [(s["sandbox_id"], s["reason"], s["result"]) for s in summary["sandboxes"]] == [
        (sandbox, "expired", "cleaned")
    ]


def test_extend_policy_sets_its_ttl_from_now_and_permanent_never_expires(cli: Cli) -> None:
    sandbox = create(cli, "--name", "kept-box", "--ttl", "1m")
    extended = cli.ok("extend", "kept-box", "--policy", "extended", "--json").json()
    assert extended["id"] == sandbox and extended["policy"] == "extended"
    assert near(extended["expires_at"], datetime.now(UTC) + timedelta(days=7))
    permanent = cli.ok("extend", sandbox[:6], "--policy", "permanent", "--json").json()
    assert (permanent["policy"], permanent["expires_at"]) == ("permanent", None)
    assert cli.ok("extend", sandbox, "--policy", "permanent").stdout == "never\n"
    # --ttl on a permanent sandbox gives it an expiry, so it becomes `default` (cleanup ignores permanent ones).
    again = cli.ok("extend", sandbox, "--ttl", "2h", "--json").json()
    assert again["policy"] == "default" and near(again["expires_at"], datetime.now(UTC) + timedelta(hours=2))


def test_extend_idle_timeout_restarts_the_idle_clock_and_keeps_the_expiry(cli: Cli) -> None:
    sandbox = create(cli, "--ttl", "3h", "--idle-timeout", "1s")
    before = record(cli, sandbox)
    time.sleep(1.5)  # idle by now
    changed = cli.ok("extend", sandbox, "--idle-timeout", "1h", "--json").json()
    assert changed["idle_timeout_seconds"] == 3600
    assert changed["expires_at"] == before["expires_at"]
    assert parse_timestamp(changed["last_accessed"]) > parse_timestamp(before["last_accessed"])
    assert cli.ok("cleanup", "--json").json()["sandboxes"] == []
    assert cli.ok("extend", sandbox, "--idle-timeout", "0s", "--json").json()["idle_timeout_seconds"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to change"),
        (("--ttl", "0s"), "must be greater than 0s"),
        (("--ttl", "5"), "invalid duration"),
        (("--policy", "forever"), "forever"),
        (("--policy", "permanent", "--ttl", "1h"), "never expires"),
        (("--idle-timeout", "-1m"), "invalid duration"),
    ],
)
def test_bad_input_is_exit_2_and_changes_nothing(cli: Cli, args: tuple[str, ...], message: str) -> None:
    sandbox = create(cli)
    before = record(cli, sandbox)
    result = cli("extend", sandbox, *args)
    assert result.returncode == 2, str(result)
    assert result.stdout == "" and message in result.stderr and "Traceback" not in result.stderr, str(result)
    assert record(cli, sandbox) == before


def test_unknown_sandbox_is_exit_3_and_deleted_is_exit_1(cli: Cli) -> None:
    result = cli("extend", "no-such-box", "--ttl", "1h")
    assert result.returncode == 3, str(result)
    assert result.stderr.startswith("error: no sandbox 'no-such-box'") and result.stdout == "", str(result)
    sandbox = create(cli)
    cli.ok("delete", sandbox)
    result = cli("extend", sandbox, "--ttl", "1h")
    assert result.returncode == 1, str(result)
    assert result.stderr.startswith(f"error: sandbox {sandbox} (") and "was deleted on" in result.stderr, str(result)
    assert cli.ok("status", sandbox, "--json").json()["status"] == "deleted"


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_orphans_never_delete_a_container_whose_live_record_is_extended(cli: Cli, docker_image: str) -> None:
    tag = f"extend-{uuid.uuid4().hex[:10]}"
    sandbox = cli.ok("create", "--image", docker_image, "--ttl", "3s", "--label", f"extend-test={tag}").stdout.strip()
    cli.ok("extend", sandbox, "--ttl", "1h")
    [container] = sandbox_containers(sandbox)
    label = subprocess.run(
        ["docker", "inspect", "-f", '{{index .Config.Labels "sandboxctl.expires-at"}}', container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    expires_label = parse_timestamp(label)  # Docker labels cannot change: still the creation-time expiry
    assert expires_label < datetime.now(UTC) + timedelta(seconds=5)
    while datetime.now(UTC) <= expires_label + timedelta(seconds=1):
        time.sleep(0.5)
    summary = cli.ok("cleanup", "--orphans", "--label", f"extend-test={tag}", "--json").json()
    assert summary["sandboxes"] == [] and summary["errors"] == [], summary
    assert sandbox_containers(sandbox) == [container]
    assert cli.ok("exec", sandbox, "--", "echo", "alive").stdout == "alive\n"


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
def test_another_registry_judges_an_extended_container_by_its_label(
    cli: Cli, docker_image: str, tmp_path: Path
) -> None:
    """Documented limit: a registry that does not hold the record sees only the labels, and Docker labels
    cannot change, so its `cleanup --orphans` deletes the container once the creation-time expiry passed.
    The owning registry then closes its record as `vanished`."""
    tag = f"extend-{uuid.uuid4().hex[:10]}"
    sandbox = cli.ok("create", "--image", docker_image, "--ttl", "2s", "--label", f"extend-test={tag}").stdout.strip()
    cli.ok("extend", sandbox, "--ttl", "1h")
    time.sleep(3)
    other = Cli({**cli.env, "SANDBOXCTL_HOME": str(tmp_path / "other-home")})
    summary = other.ok("cleanup", "--orphans", "--label", f"extend-test={tag}", "--json").json()
    assert [(s["sandbox_id"], s["reason"], s["result"]) for s in summary["sandboxes"]] == [
        (sandbox, "orphan_expired", "cleaned")
    ], summary
    assert sandbox_containers(sandbox) == []
    closed = cli.ok("cleanup", "--orphans", "--label", f"extend-test={tag}", "--json").json()
    assert [(s["sandbox_id"], s["reason"]) for s in closed["sandboxes"]] == [(sandbox, "vanished")], closed
