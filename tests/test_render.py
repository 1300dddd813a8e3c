"""Table cells of `status`: the relative times, computed directly from seconds (the per-row hot path)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from sandboxctl.cli import render
from sandboxctl.durations import format_duration, isoformat, parse_timestamp

NOW = datetime(2026, 11, 26, 1, 0, 0, 250_000, tzinfo=UTC)


def _reference(iso: str, now: datetime, future: bool) -> str:
    """The former spelling: format_duration of the delta, then its two largest units."""
    delta = parse_timestamp(iso) - now

    def coarse(d: timedelta) -> str:
        return "".join((n + u for n, u in re.findall(r"(\d+)([dhms])", format_duration(d))[:2]))

    return f"in {coarse(delta)}" if future and delta.total_seconds() > 0 else f"{coarse(-delta)} ago"


OFFSETS = [0, 0.4, 0.6, 1, 59, 60, 61, 3599, 3600, 3661, 86399, 86400, 90061, 7 * 86400 + 5, 400 * 86400 + 3600]


@pytest.mark.parametrize("future", [False, True])
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("offset", OFFSETS)
def test_relative_matches_the_full_duration_spelling(offset: float, sign: int, future: bool) -> None:
    moment = NOW + timedelta(seconds=sign * offset)
    for iso in (isoformat(moment), moment.isoformat(), moment.replace(tzinfo=None).isoformat()):
        assert iso is not None
        assert render.relative(iso, NOW, future=future) == _reference(iso, NOW, future)


def test_relative_keeps_two_units_and_absent_values() -> None:
    assert render.relative(isoformat(NOW - timedelta(days=1, hours=2, minutes=3)), NOW) == "1d2h ago"
    assert render.relative(isoformat(NOW + timedelta(days=1, minutes=3, seconds=4)), NOW, future=True) == "in 1d3m"
    assert render.relative(None, NOW) == "-"
    assert render.relative(None, NOW, future=True) == "never"
