"""`sandboxctl extend` on Daytona: the sandbox's own TTL and auto-stop follow the registry (against the stand-in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sandboxctl.durations import parse_timestamp

from ..conftest import Cli
from .conftest import STANDIN_IMAGE
from .standin import StandIn, StandInSandbox

pytestmark = pytest.mark.daytona


def created(standin_cli: Cli, standin: StandIn, *args: str) -> tuple[str, StandInSandbox]:
    sandbox_id = standin_cli.ok("create", "--backend", "daytona", "--image", STANDIN_IMAGE, *args).stdout.strip()
    backend_id = standin_cli.ok("status", sandbox_id, "--json").json()["backend_id"]
    return sandbox_id, standin.sandboxes[backend_id]


@pytest.fixture
def standin_cli(cli: Cli, standin: StandIn) -> Cli:
    return Cli({**cli.env, "DAYTONA_API_URL": standin.api_url, "DAYTONA_API_KEY": standin.api_key})


def test_extend_mirrors_ttl_and_idle_timeout_to_daytona(standin_cli: Cli, standin: StandIn) -> None:
    sandbox_id, remote = created(standin_cli, standin, "--ttl", "10m")
    assert (remote.ttl_minutes, remote.auto_stop_interval, remote.ttl_from) == (10, 0, None)
    record = standin_cli.ok("extend", sandbox_id, "--ttl", "2h", "--idle-timeout", "30m", "--json").json()
    assert near(record["expires_at"], datetime.now(UTC) + timedelta(hours=2))
    assert remote.ttl_minutes == 120 and remote.ttl_from is not None  # counted from the call, not from creation
    assert (remote.auto_stop_interval, remote.auto_delete_interval) == (30, 0)
    standin_cli.ok("extend", sandbox_id, "--policy", "permanent", "--idle-timeout", "0s")
    assert (remote.ttl_minutes, remote.auto_stop_interval, remote.auto_delete_interval) == (0, 0, -1)


def test_a_daytona_failure_changes_nothing_in_the_registry(standin_cli: Cli, standin: StandIn) -> None:
    sandbox_id, remote = created(standin_cli, standin, "--ttl", "10m")
    before = standin_cli.ok("status", sandbox_id, "--json").json()
    standin.add_fault(method="POST", path="/ttl/", status=400, message="ttl refused", times=-1)
    result = standin_cli("extend", sandbox_id, "--ttl", "2h")
    assert result.returncode == 1, str(result)
    assert result.stderr.startswith("error: ") and "ttl refused" in result.stderr, str(result)
    assert len(result.stderr.splitlines()) == 1 and result.stdout == "", str(result)
    after = standin_cli.ok("status", sandbox_id, "--json").json()
    assert after["expires_at"] == before["expires_at"] and remote.ttl_minutes == 10


def near(stamp: str | None, expected: datetime) -> bool:
    return stamp is not None and abs(parse_timestamp(stamp) - expected) < timedelta(minutes=1)
