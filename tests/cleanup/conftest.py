"""Helpers for the cleanup tests: records with chosen times, and a per-test label for Docker resources."""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandboxctl.registry.models import SandboxRecord, SandboxStatus
from sandboxctl.registry.store import Registry, new_sandbox_id

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOST = socket.gethostname()


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    """A real registry on both engines: a SQLite file (an in-memory one is a different database in every
    thread) and a PostgreSQL database of its own."""
    opened = Registry(registry_url)
    yield opened
    opened.engine.dispose()


def add_record(
    registry: Registry,
    *,
    age: timedelta = timedelta(minutes=10),
    ttl: timedelta | None = timedelta(hours=1),
    idle: timedelta | None = None,
    last_used: timedelta | None = None,
    now: datetime = T0,
    **fields: Any,
) -> SandboxRecord:
    """A record created `age` before `now`, expiring `ttl` after creation, last used `last_used` ago."""
    sandbox_id = fields.pop("id", None) or new_sandbox_id()
    created_at = now - age
    values: dict[str, Any] = dict(
        id=sandbox_id,
        name=f"sandbox-{sandbox_id}",
        backend="local",
        backend_id=sandbox_id,
        status=SandboxStatus.RUNNING,
        created_at=created_at,
        last_accessed=now - last_used if last_used is not None else created_at,
        expires_at=created_at + ttl if ttl is not None else None,
        idle_timeout_seconds=int(idle.total_seconds()) if idle is not None else None,
        host=HOST,
        pid=1,
        status_changed_at=created_at,
    )
    values.update(fields)
    return registry.insert(SandboxRecord(**values))


@pytest.fixture
def tag() -> Iterator[str]:
    """A label value unique to one test; every Docker resource the test makes carries `cleanup-test=<tag>`,
    and `--orphans` runs select on it so they never touch containers of other tests or people."""
    value = uuid.uuid4().hex[:12]
    yield value
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=cleanup-test={value}"], capture_output=True, text=True
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
