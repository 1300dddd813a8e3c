"""Deleting one sandbox: backend removal with retries, then the record to the archive (or kept, failed).

Shared by `delete`, `cleanup` and `agent-run`, so all three retry, count and
record the same way.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sandboxctl.backends.base import Backend, NotFound, Transient, Unavailable, Unresponsive
from sandboxctl.backends.retry import RETRY_WITHIN_SECONDS, RetriesExhausted, retry_after
from sandboxctl.errors import SandboxctlError
from sandboxctl.labels import LABEL_ID
from sandboxctl.logs import log_event
from sandboxctl.registry.states import SandboxStatus


class DeletableRecord(Protocol):
    """What a deletion needs of a record: a `SandboxRecord` or the reader's `SandboxRow`."""

    @property
    def id(self) -> str: ...

    @property
    def backend_id(self) -> str | None: ...

    @property
    def delete_attempts(self) -> int: ...


class RecordsDeletions(Protocol):
    """The two writes a deletion makes: the full `Registry`, or the reader's stdlib-sqlite twins of them."""

    def set_status(self, sandbox_id: str, target: SandboxStatus, *, now: datetime, **fields: Any) -> bool: ...

    def archive(self, sandbox_id: str, *, reason: str, deletion: dict[str, Any], now: datetime) -> object: ...


class SandboxDeletion(NamedTuple):
    """The outcome of one deletion, as reported by delete, cleanup and agent-run."""

    sandbox_id: str
    success: bool
    message: str
    retries_used: int = 0
    error: str | None = None
    skipped: bool = False
    skip_reason: str | None = None
    freed_bytes: int | None = None
    # The backend could not be reached (exit 4 rather than 1); not part of the JSON shape.
    unavailable: bool = False

    def to_json(self) -> dict[str, Any]:
        data = self._asdict()
        data.pop("unavailable")
        return data


def remove_backend_resource(
    backend: Backend,
    sandbox_id: str,
    backend_id: str | None,
    *,
    within_seconds: float = RETRY_WITHIN_SECONDS,
    wait_max: float = 8.0,
) -> SandboxDeletion:
    """Delete the resource, retrying `Transient` errors with exponential backoff; not-found is done.

    With no `backend_id` (a create that died before recording it) the resource is
    found by its `sandboxctl.id` label. Never raises a SandboxctlError: failures are
    returned so callers can record them.
    """
    attempts = 0

    def _once() -> int | None:
        nonlocal attempts
        attempts += 1
        if backend_id is not None:
            targets = [backend_id]
        else:
            targets = [found.backend_id for found in backend.list_owned({LABEL_ID: sandbox_id})]
        freed: int | None = None
        for target in targets:
            try:
                size = backend.delete(target).freed_bytes
            except NotFound:
                continue
            if size is not None:
                freed = (freed or 0) + size
        return freed

    started = time.monotonic()
    try:
        try:
            freed = _once()  # most deletions take one attempt, and then need no retry machinery
        except (Transient, Unresponsive) as first:
            freed = retry_after(first, _once, started=started, within_seconds=within_seconds, wait_max=wait_max)
    except RetriesExhausted as exc:
        return SandboxDeletion(sandbox_id, False, "deletion failed", attempts - 1, error=str(exc.last))
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the sandbox, never lost
        error = str(exc) if isinstance(exc, SandboxctlError) else f"{type(exc).__name__}: {exc}"
        return SandboxDeletion(
            sandbox_id, False, "deletion failed", attempts - 1, error=error, unavailable=isinstance(exc, Unavailable)
        )
    return SandboxDeletion(sandbox_id, True, "deleted", attempts - 1, freed_bytes=freed)


def record_deletion(
    registry: RecordsDeletions, record: DeletableRecord, deletion: SandboxDeletion, *, reason: str, now: datetime
) -> None:
    """Success -> the record moves to the archive; failure -> it stays, `failed`, with attempts and error."""
    if deletion.success:
        registry.archive(record.id, reason=reason, deletion=deletion.to_json(), now=now)
        return
    registry.set_status(
        record.id,
        SandboxStatus.FAILED,
        now=now,
        delete_attempts=record.delete_attempts + 1,
        last_error=deletion.error,
    )


def delete_sandbox(
    registry: RecordsDeletions, backend: Backend, record: DeletableRecord, *, now: datetime, reason: str = "deleted"
) -> SandboxDeletion:
    """Claim (-> deleting), remove with retries, then archive or keep as failed."""
    started = time.monotonic()
    registry.set_status(record.id, SandboxStatus.DELETING, now=now)
    deletion = remove_backend_resource(backend, record.id, record.backend_id)
    record_deletion(registry, record, deletion, reason=reason, now=now)
    log_deletion(deletion, backend=getattr(record, "backend", None), duration_seconds=time.monotonic() - started)
    return deletion


def log_deletion(
    deletion: SandboxDeletion, *, backend: str | None, duration_seconds: float, event: str = "deleted", **fields: Any
) -> None:
    """`deleted` (or the caller's success event), or `failed` with the error: the record was kept as failed."""
    if deletion.success:
        log_event(event, sandbox_id=deletion.sandbox_id, backend=backend, duration_seconds=duration_seconds, **fields)
        return
    log_event(
        "failed",
        action="cleanup" if event == "cleaned" else "delete",
        sandbox_id=deletion.sandbox_id,
        backend=backend,
        duration_seconds=duration_seconds,
        error=deletion.error or deletion.message,
        **fields,
    )
