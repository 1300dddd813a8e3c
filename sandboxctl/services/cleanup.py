"""`cleanup`: one planner shared by real runs and `--dry-run`, then claimed, parallel deletions.

plan (reads only) -> claim each item (one conditional UPDATE, so concurrent cleanups
never handle a sandbox twice) -> delete with retries -> archive, or keep as `failed`
with the attempt count for the next run. The planner takes `now` and a process
probe, so its rules are tested without sleeping.

Which records are taken, and why (`reason`):
- `expired` (now >= expires_at), `idle` (last_accessed + idle timeout <= now),
  `older_than` (created more than --older-than ago), `requested` (named on the
  command line): records that are running, stopped, expired or failed; `permanent`
  ones only with --force.
- `stale_create`: a `creating` record whose create is dead (this host, pid gone) or
  older than `cleanup.orphan_grace` (no create takes that long).
- `stale_claim`: a `deleting` record claimed more than CLAIM_TIMEOUT ago (its
  deleter died mid-way).
- `retry`: a `failed` record whose deletion already failed; after STUCK_AFTER
  failed attempts it is reported as `stuck` (and still retried).
The last three finish a deletion already decided, so they ignore --force.
- `in_use` (not taken): a record due by expiry, idleness, age or name on which a
  running exec or agent-run holds a lease (services/leases.py); only a record named
  with --force is taken anyway.
Label and backend selectors and --limit apply to all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandboxctl.durations import isoformat
from sandboxctl.errors import BackendUnavailable, CleanupLocked, SandboxctlError, SandboxNotFound
from sandboxctl.labels import LABEL_CREATED_AT, LABEL_EXPIRES_AT, LABEL_ID, LABEL_NAME, matches
from sandboxctl.registry.models import Policy, SandboxRecord, SandboxStatus
from sandboxctl.services.context import Context
from sandboxctl.services.deletion import SandboxDeletion, record_deletion, remove_backend_resource
from sandboxctl.services.orphans import (
    VANISHED,
    ProcessProbe,
    find_orphans,
    find_vanished,
    label_time,
    orphan_archive_row,
    process_alive,
)

if TYPE_CHECKING:
    from sandboxctl.backends.base import Backend, BackendSandbox
    from sandboxctl.registry.store import Registry

STUCK_AFTER = 3
# Far beyond one deletion's worst case (60 s of retries plus Docker's 60 s request timeout).
CLAIM_TIMEOUT = timedelta(minutes=10)
# Statuses judged by expiry, idleness, age or name; `creating` and `deleting` have their own rules.
JUDGED = (SandboxStatus.RUNNING, SandboxStatus.STOPPED, SandboxStatus.EXPIRED, SandboxStatus.FAILED)
# Backends always scanned by --orphans when reachable, even without records (a lost registry).
ALWAYS_SCANNED = ("docker", "local")

Progress = Callable[[int, int], None]


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


@dataclass(frozen=True)
class CleanupRequest:
    ids: tuple[str, ...] = ()
    older_than: timedelta | None = None
    force: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    backend: str | None = None
    limit: int = 100
    orphans: bool = False
    dry_run: bool = False
    concurrency: int = 8
    metrics_file: Path | None = None


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


@dataclass
class Plan:
    items: list[CleanupItem] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # not tied to one sandbox: a backend scan failed
    skipped_backends: list[dict[str, str]] = field(default_factory=list)  # unavailable, and no records on them


# -- planning -----------------------------------------------------------------
def _record_item(record: SandboxRecord, reason: str, action: Action = Action.DELETE) -> CleanupItem:
    return CleanupItem(
        sandbox_id=record.id,
        name=record.name,
        backend=record.backend,
        backend_id=record.backend_id,
        reason=reason,
        action=action,
        seen_status=record.status,
        attempts=record.delete_attempts,
        created_at=record.created_at,
        expires_at=record.expires_at,
        record=record,
    )


def _deadline_reason(record: SandboxRecord, now: datetime, older_than: timedelta | None) -> str | None:
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    idle = record.idle_timeout_seconds
    if idle is not None and record.last_accessed + timedelta(seconds=idle) <= now:
        return "idle"
    if older_than is not None and record.created_at < now - older_than:
        return "older_than"
    return None


def _unfinished_reason(record: SandboxRecord, now: datetime, grace: timedelta, is_alive: ProcessProbe) -> str | None:
    """Why a record left half-way (dead create, dead claim, failed deletion) should be finished now."""
    if record.status == SandboxStatus.CREATING:
        if is_alive(record.host, record.pid) is False or record.created_at + grace <= now:
            return "stale_create"
    elif record.status == SandboxStatus.DELETING:
        if record.status_changed_at + CLAIM_TIMEOUT <= now:
            return "stale_claim"
    elif record.status == SandboxStatus.FAILED and record.delete_attempts > 0:
        return "retry"
    return None


def plan_records(
    registry: Registry, request: CleanupRequest, *, now: datetime, grace: timedelta, is_alive: ProcessProbe
) -> list[CleanupItem]:
    """The registry's candidates, oldest first, before --limit. Reads only."""
    selector = dict(request.labels)
    unfinished_statuses = [SandboxStatus.CREATING, SandboxStatus.DELETING, SandboxStatus.FAILED]
    if request.ids:
        records = [found for ref in request.ids if isinstance(found := registry.resolve(ref), SandboxRecord)]
        records = [r for r in records if not request.backend or r.backend == request.backend]
        judged = {r.id: "requested" for r in records if r.status in JUDGED}
    else:
        deadline = registry.past_deadline(
            now,
            statuses=JUDGED,
            older_than=request.older_than,
            backend=request.backend,
            selector=selector,
            exclude_permanent=not request.force,
            limit=request.limit,
        )
        records = deadline + registry.list_live(backend=request.backend, statuses=unfinished_statuses)
        judged = {r.id: reason for r in deadline if (reason := _deadline_reason(r, now, request.older_than))}
    items: dict[str, CleanupItem] = {}
    for record in records:
        if record.id in items or (selector and not matches(record.labels, selector)):
            continue
        reason = judged.get(record.id)
        if reason is not None and record.policy == Policy.PERMANENT and not request.force:
            reason = None
        reason = reason or _unfinished_reason(record, now, grace, is_alive)
        if reason is not None:
            items[record.id] = _record_item(record, reason)
    _spare_leased(registry, list(items.values()), request, now=now, is_alive=is_alive)
    return sorted(items.values(), key=lambda item: (item.created_at or now, item.sandbox_id))


def _spare_leased(
    registry: Registry, items: list[CleanupItem], request: CleanupRequest, *, now: datetime, is_alive: ProcessProbe
) -> None:
    """Judged items whose sandbox is leased become `in_use`, unless named with --force (see services/leases.py)."""
    from sandboxctl.services.leases import leased

    judged = [item for item in items if item.reason in ("expired", "idle", "older_than", "requested")]
    held = leased(registry, [i.sandbox_id for i in judged], now=now, is_alive=is_alive, prune=not request.dry_run)
    for item in judged:
        if item.reason == "requested" and request.force:
            item.forced = True
        elif item.sandbox_id in held:
            item.reason = item.outcome = Outcome.IN_USE


def _orphan_item(resource: BackendSandbox, backend: str, reason: str) -> CleanupItem:
    return CleanupItem(
        sandbox_id=resource.labels[LABEL_ID],
        name=resource.labels.get(LABEL_NAME) or resource.name,
        backend=backend,
        backend_id=resource.backend_id,
        reason=reason,
        action=Action.DELETE_ORPHAN,
        seen_status="orphan",
        created_at=label_time(resource.labels.get(LABEL_CREATED_AT)) or resource.created_at,
        expires_at=label_time(resource.labels.get(LABEL_EXPIRES_AT)),
        resource=resource,
    )


def _backends_to_scan(ctx: Context, request: CleanupRequest, recorded: set[str]) -> list[str]:
    """--backend, else every backend with live records plus docker and local. Daytona only when in play
    (records, --backend, or an API key): importing its SDK alone costs seconds."""
    if request.backend:
        return [request.backend]
    wanted = recorded | set(ALWAYS_SCANNED)
    if ctx.settings.get("daytona.api_key"):
        wanted.add("daytona")
    return sorted(wanted)


def plan_reconciliation(
    ctx: Context,
    registry: Registry | None,
    backends: BackendPool,
    request: CleanupRequest,
    *,
    now: datetime,
    grace: timedelta,
    is_alive: ProcessProbe,
    planned: set[str],
    only_ids: set[str] | None,
) -> Plan:
    """--orphans: orphan resources to delete and vanished records to close, plus errors of unreadable backends.

    A backend without live records that is unavailable (no Docker on this machine) is only noted
    in `skipped_backends`; one with records, or one failing otherwise, is an error.
    """
    registry_id = registry.registry_id() if registry is not None else ""
    recorded = {row.backend for row in registry.live_refs()} if registry is not None else set()
    required = {request.backend} if request.backend else recorded
    selector = dict(request.labels)
    found = Plan()
    for name in _backends_to_scan(ctx, request, recorded):
        if name == "local" and name not in required and not ctx.settings.paths.local_root.is_dir():
            continue
        try:
            backend = backends.get(name)
            resources = backend.list_owned(selector or None)  # listed before the records are read: see find_orphans
        except Exception as exc:  # noqa: BLE001 - one unreadable backend must not stop the others
            if name not in required and isinstance(exc, BackendUnavailable):
                found.skipped_backends.append({"backend": name, "reason": str(exc)})
            else:
                found.errors.append({"sandbox_id": None, "backend": name, "error": f"cannot scan {name}: {exc}"})
            continue
        refs = registry.live_refs() if registry is not None else []
        for resource, reason in find_orphans(
            resources,
            live_ids={ref.id for ref in refs},
            registry_id=registry_id,
            now=now,
            grace=grace,
            is_alive=is_alive,
        ):
            if only_ids is None or resource.labels[LABEL_ID] in only_ids:
                found.items.append(_orphan_item(resource, name, reason))
        listed = {resource.backend_id for resource in resources}
        unlisted = [
            ref.id
            for ref in refs
            if ref.backend == name
            and ref.backend_id not in listed
            and ref.id not in planned
            and (only_ids is None or ref.id in only_ids)
        ]
        if not unlisted or registry is None:
            continue
        candidates = [r for r in registry.get_many(unlisted) if not selector or matches(r.labels, selector)]
        try:
            vanished = find_vanished(backend, candidates)
        except Exception as exc:  # noqa: BLE001 - reported, the rest of the run goes on
            found.errors.append({"sandbox_id": None, "backend": name, "error": f"cannot check {name} records: {exc}"})
            continue
        found.items.extend(_record_item(record, VANISHED, Action.CLOSE) for record in vanished)
    return found


def plan_cleanup(
    ctx: Context,
    registry: Registry | None,
    backends: BackendPool,
    request: CleanupRequest,
    *,
    now: datetime,
    is_alive: ProcessProbe = process_alive,
) -> Plan:
    """The whole plan, limited: registry candidates first (oldest first), then vanished records and orphans."""
    if request.ids and registry is None:
        raise SandboxNotFound(f"no sandbox {request.ids[0]!r}: the registry is empty")
    grace: timedelta = ctx.settings.get("cleanup.orphan_grace")
    items = plan_records(registry, request, now=now, grace=grace, is_alive=is_alive) if registry is not None else []
    plan = Plan(items=items)
    if request.orphans:
        # Ids named on the command line, archived ones included (their resource may linger).
        only_ids = {registry.resolve(ref).id for ref in request.ids} if registry is not None and request.ids else None
        plan = plan_reconciliation(
            ctx,
            registry,
            backends,
            request,
            now=now,
            grace=grace,
            is_alive=is_alive,
            planned={item.sandbox_id for item in items},
            only_ids=only_ids,
        )
        plan.items[:0] = items
    plan.items = plan.items[: request.limit]
    return plan


# -- execution ----------------------------------------------------------------
class BackendPool:
    """Backends opened once per run, on first use, from any worker thread; a failed open is remembered."""

    def __init__(self, ctx: Context, workers: int) -> None:
        self._ctx = ctx
        self._workers = workers
        self._lock = threading.Lock()
        self._opened: dict[str, Backend | str] = {}

    def get(self, name: str) -> Backend:
        with self._lock:
            if name not in self._opened:
                try:
                    self._opened[name] = self._open(name)
                except Exception as exc:  # noqa: BLE001 - e.g. an SDK that fails to import: reported per sandbox
                    self._opened[name] = str(exc) or type(exc).__name__
            opened = self._opened[name]
        if isinstance(opened, str):
            raise BackendUnavailable(opened)
        return opened

    def _open(self, name: str) -> Backend:
        if name == "docker" and self._workers > 10:
            # The SDK's default pool holds 10 connections; more threads would churn and warn.
            from sandboxctl.backends.docker import DockerBackend

            return DockerBackend(max_pool_size=self._workers)
        return self._ctx.backend(name)


def _failure(item: CleanupItem, error: str) -> SandboxDeletion:
    return SandboxDeletion(item.sandbox_id, False, "deletion failed", error=error)


def _delete_resource(item: CleanupItem, backends: BackendPool) -> SandboxDeletion:
    try:
        backend = backends.get(item.backend)
    except SandboxctlError as exc:
        return _failure(item, str(exc))
    return remove_backend_resource(backend, item.sandbox_id, item.backend_id)


def _execute_one(item: CleanupItem, registry: Registry, backends: BackendPool, clock: Callable[[], datetime]) -> None:
    """Claim, act, record. Sets the item's outcome; never raises."""
    try:
        if item.record is not None:
            record = item.record
            seen = SandboxStatus(record.status)
            claimed = registry.claim(
                record.id,
                seen_status=seen,
                seen_changed_at=record.status_changed_at,
                now=clock(),
                unless_leased=not item.forced and item.action is Action.DELETE,
            )
            if not claimed:
                item.outcome = Outcome.SKIPPED
                return
            if item.action is Action.CLOSE:
                closed = SandboxDeletion(item.sandbox_id, True, "backend resource vanished")
                registry.archive(item.sandbox_id, reason=VANISHED, deletion=closed.to_json(), now=clock())
                item.outcome = Outcome.CLEANED
                return
            deletion = _delete_resource(item, backends)
            record_deletion(registry, record, deletion, reason=item.reason, now=clock())
        else:
            deletion = _delete_resource(item, backends)
            if deletion.success and item.resource is not None:
                row = orphan_archive_row(
                    item.resource, item.backend, reason=item.reason, deletion=deletion.to_json(), now=clock()
                )
                registry.archive_orphan(row)
    except Exception as exc:  # noqa: BLE001 - e.g. the registry locked for a minute: reported, the run goes on
        # A claimed record left `deleting` is re-claimed after CLAIM_TIMEOUT.
        deletion = _failure(item, str(exc) if isinstance(exc, SandboxctlError) else f"{type(exc).__name__}: {exc}")
    item.retries_used = deletion.retries_used
    item.freed_bytes = deletion.freed_bytes
    if deletion.success:
        item.outcome = Outcome.CLEANED
    else:
        item.outcome = Outcome.FAILED
        item.error = deletion.error
        if item.record is not None:
            item.attempts += 1


def execute_plan(
    items: Sequence[CleanupItem],
    registry: Registry,
    backends: BackendPool,
    *,
    clock: Callable[[], datetime],
    concurrency: int,
    progress: Progress | None = None,
) -> None:
    """Handle every item with `concurrency` workers; outcomes are written into the items."""
    if progress is not None:
        progress(0, len(items))
    if not items:
        return
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix="cleanup")
    try:
        futures = [pool.submit(_execute_one, item, registry, backends, clock) for item in items]
        for done, _future in enumerate(as_completed(futures), start=1):
            if progress is not None:
                progress(done, len(items))
    finally:
        # On Ctrl-C, finish the deletions under way (their records are claimed) but start no more.
        pool.shutdown(wait=True, cancel_futures=True)


# -- the run ------------------------------------------------------------------
def _open_registry(ctx: Context, dry_run: bool) -> Registry | None:
    """The registry; None for a dry run over a registry file that does not exist (never create one)."""
    path = ctx.settings.paths.sqlite_path
    if dry_run and path is not None and not path.exists():
        return None
    return ctx.registry


def run_cleanup(ctx: Context, request: CleanupRequest, *, progress: Progress | None = None) -> CleanupReport:
    """One cleanup run under the cron lock (a dry run takes no lock: it changes nothing)."""
    if request.dry_run:
        return _run(ctx, request, progress)
    from filelock import FileLock, Timeout

    lock_path = ctx.settings.paths.cleanup_lock
    lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = FileLock(lock_path, timeout=0, mode=0o600)
    try:
        lock.acquire()
    except Timeout:
        raise CleanupLocked(f"another cleanup is running (it holds {lock_path}); skipped") from None
    try:
        return _run(ctx, request, progress)
    finally:
        lock.release()


def _run(ctx: Context, request: CleanupRequest, progress: Progress | None) -> CleanupReport:
    started = ctx.now()
    clock_started = time.monotonic()
    registry = _open_registry(ctx, request.dry_run)
    backends = BackendPool(ctx, request.concurrency)
    plan = plan_cleanup(ctx, registry, backends, request, now=started)
    items = plan.items
    purged = 0
    retention: timedelta = ctx.settings.get("archive.retention")
    if request.dry_run:
        purged = registry.count_archived_before(started - retention) if registry is not None else 0
    elif registry is not None:
        actionable = [item for item in items if item.outcome is Outcome.PLANNED]
        execute_plan(actionable, registry, backends, clock=ctx.now, concurrency=request.concurrency, progress=progress)
        purged = registry.purge_archive(ctx.now() - retention)
    completed = ctx.now()
    report = CleanupReport(
        started_at=started,
        completed_at=completed,
        duration_seconds=time.monotonic() - clock_started,
        dry_run=request.dry_run,
        items=list(items),
        errors=plan.errors,
        skipped_backends=plan.skipped_backends,
        archive_purged=purged,
        active_count=registry.count_live() if registry is not None else 0,
        expired_count=registry.count_past_expiry(completed) if registry is not None else 0,
    )
    if request.metrics_file is not None and not request.dry_run:
        from sandboxctl.services.metrics import write_cleanup_metrics

        try:
            write_cleanup_metrics(request.metrics_file, report)
        except OSError as exc:
            report.errors.append({"sandbox_id": None, "error": f"cannot write {request.metrics_file}: {exc}"})
    return report
