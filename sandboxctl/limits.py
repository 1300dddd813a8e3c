"""Bounds on user-given sizes and counts: absurd values are usage errors (exit 2) before anything is recorded.

The bounds are host-independent, so the same command is refused the same way
everywhere; the backend may still refuse a value inside them (e.g. more CPUs
than the host has).
"""

from __future__ import annotations

import math
import re

from sandboxctl.errors import UsageError

MIB = 1024**2
# Docker refuses a memory limit under 6 MiB; above 16 TiB no host we target has the memory.
MEMORY_MIN_BYTES = 6 * MIB
MEMORY_MAX_BYTES = 16 * 1024**4
# Docker's CPU quota granularity is 0.01 CPU; 1024 CPUs is beyond any single host.
CPUS_MIN = 0.01
CPUS_MAX = 1024.0

_SIZE = re.compile(r"(\d{1,20}(?:\.\d{1,9})?)([kmgt]?)(i?b?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": MIB, "g": 1024**3, "t": 1024**4}


def parse_memory(text: str) -> int:
    """`512m`, `2g`, `1GiB`, `1073741824` -> bytes (binary units, as Docker reads them), within the bounds."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise UsageError(f"invalid memory size {text!r}: use e.g. 512m, 2g or a number of bytes")
    number, unit, _suffix = match.groups()
    size = int(float(number) * _SIZE_UNITS[unit.lower()])
    if not MEMORY_MIN_BYTES <= size <= MEMORY_MAX_BYTES:
        raise UsageError(f"invalid memory size {text!r}: must be between 6m and 16t")
    return size


def check_cpus(value: float) -> float:
    """A finite CPU count in [0.01, 1024]; nan, inf, 0 and negatives are usage errors."""
    if not math.isfinite(value) or not CPUS_MIN <= value <= CPUS_MAX:
        raise UsageError(f"invalid --cpus {value}: must be a number from {CPUS_MIN} to {CPUS_MAX:g}")
    return value
