"""Memory sizes for `--memory`."""

from __future__ import annotations

import pytest

from sandboxctl.errors import UsageError
from sandboxctl.limits import parse_memory


def test_memory_sizes() -> None:
    assert parse_memory("512m") == 512 * 1024**2
    assert parse_memory("2g") == 2 * 1024**3
    assert parse_memory("1GiB") == 1024**3
    assert parse_memory("10000000") == 10000000
    with pytest.raises(UsageError):
        parse_memory("lots")
