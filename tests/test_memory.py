"""Memory sizes for `--memory`."""

from __future__ import annotations

import pytest

from sandboxctl.errors import UsageError
from sandboxctl.services.lifecycle import parse_memory


def test_memory_sizes() -> None:
    assert parse_memory("512m") == 512 * 1024**2
    assert parse_memory("2g") == 2 * 1024**3
    assert parse_memory("1GiB") == 1024**3
    assert parse_memory("1000") == 1000
    with pytest.raises(UsageError):
        parse_memory("lots")
