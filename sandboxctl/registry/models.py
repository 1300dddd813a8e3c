"""Registry tables. One JSON shape per entity comes from `SandboxFields.to_json`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from sandboxctl.durations import isoformat
from sandboxctl.registry.states import IllegalTransition, Policy, SandboxStatus, check_transition

__all__ = [
    "ArchivedSandbox",
    "IllegalTransition",
    "Policy",
    "SandboxRecord",
    "SandboxStatus",
    "check_transition",
    "sandbox_json",
]


class SandboxFields(SQLModel):
    """Columns shared by live records and the archive."""

    id: str = Field(primary_key=True)
    name: str
    backend: str
    backend_id: str | None = None
    image: str | None = None
    status: str = SandboxStatus.CREATING
    policy: str = Policy.DEFAULT
    labels: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    env_keys: list[str] = Field(default_factory=list, sa_type=JSON)  # keys only: values are secrets
    cpus: float | None = None
    memory_bytes: int | None = None
    created_at: datetime
    last_accessed: datetime
    expires_at: datetime | None = None
    idle_timeout_seconds: int | None = None
    host: str
    pid: int
    delete_attempts: int = 0
    last_error: str | None = None
    status_changed_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The one JSON shape of a sandbox, used by create, status, delete and cleanup."""
        return sandbox_json({key: getattr(self, key) for key in type(self).model_fields})


def sandbox_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON shape from a record's values or a plain row (`status` over many rows skips the ORM)."""
    data = {
        "id": values["id"],
        "name": values["name"],
        "backend": values["backend"],
        "backend_id": values["backend_id"],
        "image": values["image"],
        "status": values["status"],
        "policy": values["policy"],
        "labels": dict(values["labels"] or {}),
        "env_keys": list(values["env_keys"] or []),
        "cpus": values["cpus"],
        "memory_bytes": values["memory_bytes"],
        "created_at": isoformat(values["created_at"]),
        "last_accessed": isoformat(values["last_accessed"]),
        "expires_at": isoformat(values["expires_at"]),
        "idle_timeout_seconds": values["idle_timeout_seconds"],
        "host": values["host"],
        "pid": values["pid"],
        "delete_attempts": values["delete_attempts"],
        "last_error": values["last_error"],
    }
    if "archived_at" in values:
        data.update(
            archived_at=isoformat(values["archived_at"]),
            reason=values["reason"],
            deletion=dict(values["deletion"] or {}),
        )
    return data


class SandboxRecord(SandboxFields, table=True):
    """A sandbox that may still exist somewhere. Deleted ones move to `ArchivedSandbox`."""

    __tablename__ = "sandbox"
    __table_args__ = (
        # (status, expires_at), never expires_at alone: the lone index makes the expiry scan 16x slower.
        Index("ix_sandbox_status_expires", "status", "expires_at"),
        Index("ux_sandbox_name", "name", unique=True),
        Index("ix_sandbox_backend_id", "backend", "backend_id"),
    )


class ArchivedSandbox(SandboxFields, table=True):
    """A sandbox that is gone, kept for `archive.retention` with why and how it went."""

    __tablename__ = "sandbox_archive"
    __table_args__ = (Index("ix_archive_archived_at", "archived_at"),)

    archived_at: datetime
    # deleted (the delete command, agent-run) | create_failed | vanished (its resource went behind our back)
    # | cleanup's: expired | idle | older_than | requested | stale_create | stale_claim | retry
    # | orphan_expired | orphan_dead_create | orphan_grace
    reason: str
    deletion: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class RegistryMeta(SQLModel, table=True):
    """Key/value facts about this registry, e.g. its own id stamped on every backend resource."""

    __tablename__ = "registry_meta"

    key: str = Field(primary_key=True)
    value: str


class SchemaMigration(SQLModel, table=True):
    """Named migrations applied to this registry, in order."""

    __tablename__ = "schema_migrations"

    name: str = Field(primary_key=True)
    applied_at: datetime


def ensure_transition(record: SandboxFields, target: SandboxStatus) -> None:
    check_transition(SandboxStatus(record.status), target)
