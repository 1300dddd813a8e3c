"""What a cleanup run did (or, dry, would do): the items and the run's summary.

Kept apart from the planner and the executor so that readers of a report (the CLI's
renderer, `metrics.py`) import neither the registry nor the backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sandboxctl.durations import isoformat

if TYPE_CHECKING:
    from sandboxctl.backends.base import BackendSandbox
    from sandboxctl.registry.models import SandboxRecord

STUCK_AFTER = 3
# The reason of a skipped `local` record of another host: only its own host deletes it.
OTHER_HOST = "other_host"


class Action(StrEnum):
    DELETE = "delete"  # a record: claim, delete its resource, archive
    CLOSE = "close"  # a record whose resource vanished: claim, archive
    DELETE_ORPHAN = "delete-orphan"  # a resource without a live record: delete, archive a row from its labels


class Outcome(StrEnum):
    PLANNED = "planned"
    CLEANED = "cleaned"
    FAILED = "failed"
    SKIPPED = "skipped"  # claimed by another cleanup, or changed since it was planned
    IN_USE = "in_use"  # due, but a running exec or agent-run holds a lease on it: left alone


@dataclass
class CleanupItem:
    """One sandbox the run plans to handle, and (after execution) what happened to it."""

    sandbox_id: str
    name: str | None
    backend: str
    backend_id: str | None
    reason: str
    action: Action
    seen_status: str  # the record's status when planned; `orphan` for a resource without record
    attempts: int = 0  # failed deletions so far (this run's included once executed)
    created_at: datetime | None = None
    expires_at: datetime | None = None
    record: SandboxRecord | None = field(default=None, repr=False)
    resource: BackendSandbox | None = field(default=None, repr=False)
    outcome: Outcome = Outcome.PLANNED
    error: str | None = None
    freed_bytes: int | None = None
    retries_used: int = 0
    forced: bool = False  # named with --force: taken even while leased
    note: str | None = None  # why a planned item was skipped without trying (e.g. another host's)

    @property
    def stuck(self) -> bool:
        return self.attempts >= STUCK_AFTER and self.outcome in (Outcome.PLANNED, Outcome.FAILED)

    def to_json(self) -> dict[str, Any]:
        return {
            "sandbox_id": self.sandbox_id,
            "name": self.name,
            "backend": self.backend,
            "backend_id": self.backend_id,
            "status": self.seen_status,
            "reason": self.reason,
            "action": str(self.action),
            "result": str(self.outcome),
            "error": self.error,
            "attempts": self.attempts,
            "stuck": self.stuck,
            "freed_bytes": self.freed_bytes,
            "retries_used": self.retries_used,
            "note": self.note,
            "created_at": isoformat(self.created_at),
            "expires_at": isoformat(self.expires_at),
        }


@dataclass
class CleanupReport:
    """What one run did (or, dry, would do). `to_json` holds the CONTRACT's summary fields first."""

    started_at: datetime
    completed_at: datetime
    duration_seconds: float
    dry_run: bool
    items: list[CleanupItem]
    errors: list[dict[str, Any]] = field(default_factory=list)  # not tied to one sandbox: a backend scan failed
    skipped_backends: list[dict[str, str]] = field(default_factory=list)
    archive_purged: int = 0
    active_count: int = 0
    expired_count: int = 0

    def _count(self, outcome: Outcome) -> int:
        return sum(1 for item in self.items if item.outcome is outcome)

    @property
    def processed(self) -> int:
        if self.dry_run:
            return len(self.items) - self._count(Outcome.IN_USE)
        return self._count(Outcome.CLEANED) + self._count(Outcome.FAILED)

    @property
    def cleaned(self) -> int:
        return self._count(Outcome.CLEANED)

    @property
    def failed(self) -> int:
        return self._count(Outcome.FAILED)

    @property
    def freed_bytes(self) -> int:
        return sum(item.freed_bytes or 0 for item in self.items if item.outcome is Outcome.CLEANED)

    @property
    def all_errors(self) -> list[dict[str, Any]]:
        failed = [
            {
                "sandbox_id": i.sandbox_id,
                "error": i.error,
                "backend": i.backend,
                "attempts": i.attempts,
                "stuck": i.stuck,
            }
            for i in self.items
            if i.outcome is Outcome.FAILED
        ]
        return failed + self.errors

    @property
    def ok(self) -> bool:
        return not self.all_errors

    def to_json(self) -> dict[str, Any]:
        return {
            "cleanup_started_at": isoformat(self.started_at),
            "cleanup_completed_at": isoformat(self.completed_at),
            "duration_seconds": round(self.duration_seconds, 3),
            "dry_run": self.dry_run,
            "sandboxes_processed": self.processed,
            "sandboxes_cleaned": self.cleaned,
            "sandboxes_failed": self.failed,
            "disk_space_freed_mb": round(self.freed_bytes / 1_000_000, 3),
            "errors": self.all_errors,
            "disk_space_freed_bytes": self.freed_bytes,
            "sandboxes_skipped": self._count(Outcome.SKIPPED),
            "sandboxes_in_use": self._count(Outcome.IN_USE),
            "stuck": [item.sandbox_id for item in self.items if item.stuck],
            "archive_purged": self.archive_purged,
            "skipped_backends": self.skipped_backends,
            "sandbox_active_count": self.active_count,
            "sandbox_expired_count": self.expired_count,
            "sandboxes": [item.to_json() for item in self.items],
        }
