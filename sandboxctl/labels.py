"""`KEY=VALUE` parsing for `--label` and `--env`, and the reserved `sandboxctl.` label namespace."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sandboxctl.errors import UsageError

RESERVED_PREFIX = "sandboxctl."
LABEL_ID = "sandboxctl.id"
LABEL_EXPIRES_AT = "sandboxctl.expires-at"
LABEL_REGISTRY = "sandboxctl.registry"
LABEL_HOST = "sandboxctl.host"
LABEL_PID = "sandboxctl.pid"
LABEL_CREATED_AT = "sandboxctl.created-at"
LABEL_POLICY = "sandboxctl.policy"
LABEL_NAME = "sandboxctl.name"
LABEL_CREATED_BY = "sandboxctl.created-by"

_LABEL_KEY = re.compile(r"[A-Za-z0-9._/-]+")


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """Parse repeated `--label K=V`; keys in the reserved `sandboxctl.` namespace are refused."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY.fullmatch(key):
            raise UsageError(f"invalid label {item!r}: use KEY=VALUE with KEY made of A-Z a-z 0-9 . _ / -")
        if key.startswith(RESERVED_PREFIX):
            raise UsageError(f"invalid label {item!r}: the {RESERVED_PREFIX}* namespace is reserved")
        labels[key] = value
    return labels


def matches(labels: dict[str, str], selector: dict[str, str]) -> bool:
    """True when every selector label is present with the same value."""
    return all(labels.get(k) == v for k, v in selector.items())
