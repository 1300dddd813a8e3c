"""Change a live record's lifetime (`extend`) in one conditional UPDATE."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col

from sandboxctl.registry.models import SandboxRecord, SandboxStatus
from sandboxctl.registry.store import Registry


def set_lifetime(
    registry: Registry,
    sandbox_id: str,
    *,
    statuses: Collection[SandboxStatus],
    policy: str,
    expires_at: datetime | None,
    idle_timeout_seconds: int | None,
    now: datetime,
) -> bool:
    """Set expiry, policy and idle timeout, and restart the idle clock, only while the record is in `statuses`.

    False when it is not (e.g. cleanup claimed it since it was read): a sandbox being
    deleted must not come back with a fresh expiry.
    """
    with registry.writing() as session:
        result = session.exec(
            update(SandboxRecord)
            .where(
                col(SandboxRecord.id) == sandbox_id,
                col(SandboxRecord.status).in_([s.value for s in statuses]),
            )
            .values(
                policy=policy,
                expires_at=expires_at,
                idle_timeout_seconds=idle_timeout_seconds,
                last_accessed=now,
            )
        )
        return result.rowcount == 1
