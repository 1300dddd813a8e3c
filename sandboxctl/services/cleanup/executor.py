"""Carry out a cleanup plan: claim each item (one conditional UPDATE, so concurrent cleanups
never handle a sandbox twice), delete with retries, archive or keep as `failed`; and the
whole run under the cron lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sandboxctl.errors import BackendUnavailable, CleanupLocked, SandboxctlError
from sandboxctl.registry.models import SandboxStatus
from sandboxctl.services.cleanup.planner import CleanupRequest, plan_cleanup
from sandboxctl.services.cleanup.report import Action, CleanupItem, CleanupReport, Outcome
from sandboxctl.services.context import Context
from sandboxctl.services.deletion import SandboxDeletion, log_deletion, record_deletion, remove_backend_resource
from sandboxctl.services.leases import drop_dead_leases
from sandboxctl.services.orphans import VANISHED, orphan_archive_row, process_alive

if TYPE_CHECKING:
    from sandboxctl.backends.base import Backend
    from sandboxctl.registry.store import Registry

Progress = Callable[[int, int], None]


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
    started = time.monotonic()
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
                log_deletion(closed, backend=item.backend, duration_seconds=0.0, event="cleaned", reason=item.reason)
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
    log_deletion(
        deletion, backend=item.backend, duration_seconds=time.monotonic() - started, event="cleaned", reason=item.reason
    )
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
        # Leases of holders known to be dead would make the claims refuse their sandboxes: drop them first.
        drop_dead_leases(registry, [item.sandbox_id for item in actionable], now=started, is_alive=process_alive)
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
