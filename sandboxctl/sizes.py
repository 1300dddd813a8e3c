"""Byte sizes like `200K`, `100MiB`, `1g` (binary units) for limits on returned content."""

from __future__ import annotations

import re

from sandboxctl.errors import UsageError

_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
MAX_SIZE = 1024**5  # 1 PiB: anything larger is a typo, not a limit


def parse_size(text: str) -> int:
    """`100MiB`, `1g`, `512k`, `1048576` -> bytes; zero, fractions, negatives and absurd values are usage errors."""
    match = _SIZE.fullmatch(text.strip())
    value = int(match.group(1)) * _UNITS[match.group(2).lower()] if match else 0
    if not match or not 0 < value <= MAX_SIZE:
        raise UsageError(f"invalid size {text!r}: use a positive number of bytes or e.g. 200K, 100MiB, 1G (up to 1P)")
    return value
