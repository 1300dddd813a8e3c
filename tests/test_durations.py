"""Durations: the contract's forms (`30s`, `1h30m`, `2w`), refusals, and round trips."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sandboxctl.durations import format_duration, parse_duration
from sandboxctl.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("24h", 86400), ("7d", 604800), ("1h30m", 5400), ("0s", 0), ("2w", 1209600)],
)
def test_parse_duration_accepts_contract_forms(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "-5m", "5x", "1h-30m", "m", "1.5h", " ", "h1"])
def test_parse_duration_rejects_bad_input(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_duration(text)
    assert info.value.exit_code == 2


def test_zero_duration_refused_where_it_makes_no_sense() -> None:
    with pytest.raises(UsageError):
        parse_duration("0s", allow_zero=False)


@pytest.mark.parametrize("seconds", [1, 59, 60, 3601, 5400, 86400 * 8 + 7])
def test_format_duration_round_trips(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta
