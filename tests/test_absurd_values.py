"""Issue 9.9: absurd durations, CPU counts and memory sizes are usage errors that create nothing."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from sandboxctl.durations import parse_duration
from sandboxctl.errors import UsageError
from sandboxctl.limits import check_cpus, parse_memory

from .conftest import Cli

ABSURD_CREATE = [
    ["--ttl", "3000000d"],
    ["--ttl", "9" * 5000 + "s"],  # more digits than Python converts to int
    ["--idle-timeout", "99999999999999999999w"],
    ["--cpus", "nan"],
    ["--cpus", "inf"],
    ["--cpus", "0"],
    ["--cpus", "-1"],
    ["--cpus", "4096"],
    ["--memory", "1"],
    ["--memory", "0"],
    ["--memory", "5m"],
    ["--memory", "99999999999999999999t"],
]


def _containers_with_label(label: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


@pytest.mark.docker
@pytest.mark.usefixtures("docker_cleanup")
@pytest.mark.parametrize("flags", ABSURD_CREATE, ids=lambda f: " ".join(f)[:30])
def test_absurd_create_value_is_usage_error_and_creates_nothing(cli: Cli, docker_image: str, flags: list[str]) -> None:
    label = f"test.absurd={uuid.uuid4().hex}"
    result = cli("create", "--backend", "docker", "--image", docker_image, "--label", label, *flags)
    assert result.returncode == 2, str(result)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, str(result)
    assert "unexpected" not in result.stderr
    assert cli.ok("status", "--all", "--json").json() == []
    assert _containers_with_label(label) == []


def test_absurd_cleanup_older_than_is_usage_error(cli: Cli) -> None:
    result = cli("cleanup", "--older-than", "99999999999999999d")
    assert result.returncode == 2, str(result)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, str(result)
    assert "100 years" in result.stderr


def test_bounds_accept_the_edges() -> None:
    assert parse_duration("36600d").days == 36600
    with pytest.raises(UsageError):
        parse_duration("36601d")
    assert parse_memory("6m") == 6 * 1024**2
    assert parse_memory("16t") == 16 * 1024**4
    assert check_cpus(0.01) == 0.01
    assert check_cpus(1024) == 1024
    for bad in (float("nan"), float("-inf"), 0.0, 0.001, 1024.5):
        with pytest.raises(UsageError):
            check_cpus(bad)
