"""Durations like `30s`, `15m`, `1h30m`, `7d` to and from `timedelta`, and the UTC clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sandboxctl.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")
# 100 years: far beyond any sandbox's life, and far inside what `datetime` arithmetic can hold.
MAX_SECONDS = 100 * 366 * 86400


def parse_duration(text: str, *, allow_zero: bool = True) -> timedelta:
    """Parse `1h30m`; unit-less, negative, empty, unknown units or over 100 years are usage errors (exit 2)."""
    value = text.strip().lower()
    if not _WHOLE.fullmatch(value):
        raise UsageError(
            f"invalid duration {text!r}: use a number with a unit s, m, h, d or w, e.g. 30s, 15m, 1h30m, 7d"
        )
    parts = _PART.findall(value)
    # Digits are bounded before `int()`: Python refuses to convert over 4300 of them (ValueError).
    seconds = sum(int(n) * _UNITS[u] for n, u in parts) if all(len(n) <= 18 for n, _u in parts) else MAX_SECONDS + 1
    if seconds > MAX_SECONDS:
        raise UsageError(f"invalid duration {text[:40]!r}: at most 100 years (36600d)")
    if seconds == 0 and not allow_zero:
        raise UsageError(f"invalid duration {text!r}: must be greater than 0s")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest spelling that `parse_duration` reads back: 5400 s -> `1h30m`."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def utcnow() -> datetime:
    """Timezone-aware now: sqlmodel rejects naive datetimes, and so do we."""
    return datetime.now(UTC)


def isoformat(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`-free `+00:00` offset, as JSON output promises."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_timestamp(text: str) -> datetime:
    """Read back an ISO 8601 timestamp (labels, registry), always aware UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
