"""What only real Daytona can show: that the service accepts and keeps what we ask of it.

Skipped unless SANDBOXCTL_TEST_DAYTONA_REAL=1 (with DAYTONA_API_KEY); see the README, "Daytona".
"""

from __future__ import annotations

import contextlib

import pytest

from sandboxctl.backends.base import BackendState, NotFound
from sandboxctl.backends.daytona import DaytonaBackend

from .conftest import REAL, Target, make_spec

pytestmark = [
    pytest.mark.daytona,
    pytest.mark.skipif(not REAL, reason="real Daytona: set SANDBOXCTL_TEST_DAYTONA_REAL=1 and DAYTONA_API_KEY"),
]


def test_daytona_keeps_our_lifecycle_settings(
    backend: DaytonaBackend, target: Target, suite_label: dict[str, str]
) -> None:
    """ttl -> ttlMinutes (the service destroys it by itself), idle timeout -> auto-stop then auto-delete."""
    created = backend.create(make_spec(target.image, suite_label, ttl_seconds=7200, idle_timeout_seconds=1800))
    try:
        raw = backend.client.get(created.backend_id)
        assert raw.auto_destroy_at, "Daytona did not schedule the TTL destruction"
        assert (raw.auto_stop_interval, raw.auto_delete_interval) == (30, 0)
        assert raw.labels[next(iter(suite_label))] == next(iter(suite_label.values()))
    finally:
        with contextlib.suppress(NotFound):
            backend.delete(created.backend_id)


@pytest.mark.slow
def test_an_image_is_built_with_resources_and_runs(backend: DaytonaBackend, suite_label: dict[str, str]) -> None:
    """The image path (Daytona builds a snapshot from `FROM image` on first use: minutes)."""
    created = backend.create(make_spec("python:3.12-slim", suite_label, cpus=1.0, memory_bytes=1024**3))
    try:
        assert created.state is BackendState.RUNNING
        raw = backend.client.get(created.backend_id)
        assert (raw.cpu, raw.memory) == (1, 1)
    finally:
        with contextlib.suppress(NotFound):
            backend.delete(created.backend_id)
