"""Carry out a cleanup plan: claim items in small batches just before deleting them (one
transaction each, `FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent cleanups never handle
a sandbox twice and split the work), delete with retries, archive or keep as `failed`; and
the whole run under the per-host lock file.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sandboxctl.errors import BackendUnavailable, CleanupLocked, RegistryUnavailable, SandboxctlError
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
    """Act on a claimed item (or an orphan), record. Sets the item's outcome; never raises."""
    started = time.monotonic()
    try:
        if item.record is not None:
            record = item.record
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
    except RegistryUnavailable as exc:
        item.outcome, item.error = Outcome.FAILED, str(exc)
        raise  # the run stops: execute_plan sees it
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
    """Handle every item with `concurrency` workers; outcomes are written into the items.

    Records are claimed as workers free up, a batch at a time, never far ahead of their
    deletion: what another cleanup claimed first (or holds locked) is `skipped`. A registry
    that goes away stops the run: the deletions under way finish, nothing more is claimed,
    and `RegistryUnavailable` propagates (their claims are finished by the next run).
    """
    total = len(items)
    if progress is not None:
        progress(0, total)
    pending = [item for item in items if item.outcome is Outcome.PLANNED]
    done = total - len(pending)
    if not pending:
        return
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(pending)), thread_name_prefix="cleanup")
    running: set[Future[None]] = set()
    lost: RegistryUnavailable | None = None
    try:
        while pending or running:
            batch, pending = pending[: concurrency - len(running)], pending[concurrency - len(running) :]
            for item in _claim(batch, registry, clock()):
                running.add(pool.submit(_execute_one, item, registry, backends, clock))
            done += sum(1 for item in batch if item.outcome is Outcome.SKIPPED)
            if running:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                done += len(finished)
                for future in finished:
                    error = future.exception()
                    if isinstance(error, RegistryUnavailable):
                        lost, pending = lost or error, []
            if progress is not None:
                progress(done, total)
    finally:
        # On Ctrl-C or a lost registry, finish the deletions under way (their records are claimed), start no more.
        pool.shutdown(wait=True, cancel_futures=True)
    if lost is not None:
        raise lost


def _claim(batch: Sequence[CleanupItem], registry: Registry, now: datetime) -> list[CleanupItem]:
    """Claim the batch's records in one transaction; orphans need no claim. Losers become `skipped`."""
    seen = [
        (item.record.id, SandboxStatus(item.record.status), item.record.status_changed_at)
        for item in batch
        if item.record is not None
    ]
    # A lease (a running exec or agent-run) refuses the claim, unless the sandbox was named with --force.
    leased_refuse = {
        item.sandbox_id
        for item in batch
        if item.record is not None and not item.forced and item.action is Action.DELETE
    }
    claimed = registry.claim_many(seen, now=now, unless_leased=leased_refuse)
    for item in batch:
        if item.record is not None and item.sandbox_id not in claimed:
            item.outcome = Outcome.SKIPPED
    return [item for item in batch if item.outcome is Outcome.PLANNED]


# -- the run ------------------------------------------------------------------
def _open_registry(ctx: Context, dry_run: bool) -> Registry | None:
    """The registry; None for a dry run over a registry file that does not exist (never create one)."""
    path = ctx.settings.paths.sqlite_file
    if dry_run and path is not None and not os.path.exists(path):
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
