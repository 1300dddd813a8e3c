"""Which sandboxes a cleanup run takes, and why: reads only, so real runs and --dry-run share it.

The planner takes `now` and a process probe, so its rules are tested without sleeping;
it reads the registry and the backends it is given, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sandboxctl.errors import BackendUnavailable, SandboxNotFound
from sandboxctl.hostid import this_host
from sandboxctl.labels import LABEL_CREATED_AT, LABEL_CREATED_BY, LABEL_EXPIRES_AT, LABEL_ID, LABEL_NAME, matches
from sandboxctl.registry.models import Policy, SandboxRecord, SandboxStatus
from sandboxctl.services.cleanup.report import OTHER_HOST, Action, CleanupItem, Outcome
from sandboxctl.services.context import Context
from sandboxctl.services.orphans import (
    VANISHED,
    ProcessProbe,
    find_orphans,
    find_vanished,
    label_time,
    process_alive,
)

if TYPE_CHECKING:
    from sandboxctl.backends.base import Backend, BackendSandbox
    from sandboxctl.registry.store import Registry

# Far beyond one deletion's worst case (60 s of retries plus Docker's 60 s request timeout).
CLAIM_TIMEOUT = timedelta(minutes=10)
# Statuses judged by expiry, idleness, age or name; `creating` and `deleting` have their own rules.
JUDGED = (SandboxStatus.RUNNING, SandboxStatus.STOPPED, SandboxStatus.EXPIRED, SandboxStatus.FAILED)
# Backends always scanned by --orphans when reachable, even without records (a lost registry).
ALWAYS_SCANNED = ("docker", "local")


class BackendSource(Protocol):
    """Where the planner gets a backend by name (the executor's BackendPool)."""

    def get(self, name: str) -> Backend: ...


@dataclass(frozen=True)
class CleanupRequest:
    """What the command line asked for; the planner reads the selectors, the executor the rest."""

    ids: tuple[str, ...] = ()
    older_than: timedelta | None = None
    force: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    created_by: str | None = None  # --user: records by `created_by`, orphans by their created-by label
    backend: str | None = None
    limit: int = 100
    orphans: bool = False
    dry_run: bool = False
    concurrency: int = 8
    metrics_file: Path | None = None


@dataclass
class Plan:
    items: list[CleanupItem] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # not tied to one sandbox: a backend scan failed
    skipped_backends: list[dict[str, str]] = field(default_factory=list)  # unavailable, and no records on them


def other_host(record: SandboxRecord) -> str | None:
    """The host a `local` record lives on when that is not this host (its backend id is `HOST:/dir`)."""
    if record.backend != "local" or not record.backend_id:
        return None
    host, sep, _where = record.backend_id.partition(":")
    return host if sep and host != this_host() else None


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
        # A claimer is judged dead only on its own host; elsewhere its claim times out.
        if is_alive(record.claim_host, record.claim_pid) is False or record.status_changed_at + CLAIM_TIMEOUT <= now:
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
        due = {
            "now": now,
            "statuses": JUDGED,
            "older_than": request.older_than,
            "backend": request.backend,
            "selector": selector,
            "created_by": request.created_by,
            "exclude_permanent": not request.force,
            "limit": request.limit,
        }
        # Other hosts' local sandboxes apart: however many of them wait for their own host, they never
        # take this host's --limit (they come back as notes).
        host = this_host()
        deadline = registry.past_deadline(**due, local_host=(host, True))
        # Their scans are index ranges of due rows, except `--older-than`'s: finding none of them (the common
        # case), no LIMIT stops it, and it walks every live row (~150 ms over 100,000). A probe (~10 ms there)
        # skips it when there are none.
        if request.older_than is None or registry.any_local_elsewhere(host):
            deadline += registry.past_deadline(**due, local_host=(host, False))
        records = deadline + registry.list_live(backend=request.backend, statuses=unfinished_statuses)
        judged = {r.id: reason for r in deadline if (reason := _deadline_reason(r, now, request.older_than))}
    items: dict[str, CleanupItem] = {}
    for record in records:
        if record.id in items or (selector and not matches(record.labels, selector)):
            continue
        if request.created_by is not None and record.created_by != request.created_by:
            continue
        reason = judged.get(record.id)
        if reason is not None and record.policy == Policy.PERMANENT and not request.force:
            reason = None
        reason = reason or _unfinished_reason(record, now, grace, is_alive)
        if reason is not None:
            host = other_host(record)
            if host is None:
                items[record.id] = _record_item(record, reason)
            else:
                # Only its own host can delete it: noted, never claimed, archived or counted as a failure.
                item = items[record.id] = _record_item(record, OTHER_HOST)
                item.outcome = Outcome.SKIPPED
                item.note = f"{reason}, but a local sandbox of host {host!r}: only cleanup there deletes it"
    _spare_leased(registry, list(items.values()), request, now=now, is_alive=is_alive)
    return sorted(items.values(), key=lambda item: (item.created_at or now, item.sandbox_id))


def _spare_leased(
    registry: Registry, items: list[CleanupItem], request: CleanupRequest, *, now: datetime, is_alive: ProcessProbe
) -> None:
    """Judged items whose sandbox is leased become `in_use`, unless named with --force (see services/leases.py)."""
    from sandboxctl.services.leases import leased

    judged = [item for item in items if item.reason in ("expired", "idle", "older_than", "requested")]
    held = leased(registry, [i.sandbox_id for i in judged], now=now, is_alive=is_alive)
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
    backends: BackendSource,
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
    owned_selector = dict(selector)
    if request.created_by is not None:  # orphans have no record: their label says who made them
        owned_selector[LABEL_CREATED_BY] = request.created_by
    found = Plan()
    for name in _backends_to_scan(ctx, request, recorded):
        if name == "local" and name not in required and not ctx.settings.paths.local_root.is_dir():
            continue
        try:
            backend = backends.get(name)
            resources = backend.list_owned(
                owned_selector or None
            )  # listed before the records are read: see find_orphans
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
        # Another host's local sandbox is not in this host's listing, and cannot be asked about here.
        candidates = [
            r
            for r in registry.get_many(unlisted)
            if (not selector or matches(r.labels, selector))
            and (request.created_by is None or r.created_by == request.created_by)
            and other_host(r) is None
        ]
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
    backends: BackendSource,
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
    # --limit counts what this run may act on; notes (another host's local sandboxes) come on top.
    actionable = [item for item in plan.items if item.outcome is Outcome.PLANNED][: request.limit]
    plan.items = actionable + [item for item in plan.items if item.outcome is not Outcome.PLANNED]
    return plan
