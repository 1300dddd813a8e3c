"""Deletion retries: exponential backoff inside a window that no attempt starts after."""

from __future__ import annotations

import time

from sandboxctl.backends.base import Transient
from sandboxctl.services.deletion import remove_backend_resource


class _AlwaysBusy:
    """A backend whose delete always fails transiently: the retry window is the only thing under test."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def delete(self, backend_id: str) -> object:
        self.calls.append(time.monotonic())
        raise Transient("503 busy")


def test_deletion_retries_with_backoff_and_stops_inside_its_window() -> None:
    """Load-proof: a loaded machine only sleeps longer, so it can make fewer attempts, never more.

    Waits are 0.25 s, then 0.4 s (wait_max). Stopping *before* a sleep that would cross the 3 s
    window allows at most 8 attempts (0.25 + 6 x 0.4 = 2.65 s of sleep; a 7th sleep would end at
    3.05 s); stopping only *after* the window closed would make a 9th attempt, past it.
    """
    backend = _AlwaysBusy()
    deletion = remove_backend_resource(backend, "sb-1", "c-1", within_seconds=3, wait_max=0.4)  # type: ignore[arg-type]
    assert not deletion.success
    assert deletion.error == "503 busy"
    assert deletion.retries_used == len(backend.calls) - 1
    assert 3 <= len(backend.calls) <= 8, len(backend.calls)  # retried, and no attempt after the window
    gaps = [b - a for a, b in zip(backend.calls, backend.calls[1:], strict=False)]
    assert gaps[0] >= 0.25 and gaps[1] >= 0.4  # backoff grows (a sleep never ends early)
