"""`cleanup --orphans`: judge backend resources by their own labels, and find records whose resource vanished.

The rule for a labelled resource with no live record (the registry may be new or lost):
- its own `sandboxctl.expires-at` has passed -> delete, whichever registry made it;
- else, only if it carries *this* registry's id: the create that made it is dead
  (same host, pid gone) or it is older than `cleanup.orphan_grace` -> delete;
- else keep it: another registry (another machine, another user, a lost registry)
  decides about its own unexpired sandboxes.
A resource whose record is live is never an orphan; the record's own rules apply
(a `creating` record of a live process is left alone).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta

from sandboxctl.backends.base import Backend, BackendSandbox, NotFound
from sandboxctl.durations import parse_timestamp
from sandboxctl.hostid import this_host
from sandboxctl.labels import (
    LABEL_CREATED_AT,
    LABEL_CREATED_BY,
    LABEL_EXPIRES_AT,
    LABEL_HOST,
    LABEL_ID,
    LABEL_NAME,
    LABEL_PID,
    LABEL_POLICY,
    LABEL_REGISTRY,
    RESERVED_PREFIX,
)
from sandboxctl.registry.models import ArchivedSandbox, Policy, SandboxRecord, SandboxStatus

# Answers "is the process `pid` on `host` alive?": True/False on this host, None when it cannot tell.
ProcessProbe = Callable[[str | None, int | None], bool | None]

ORPHAN_EXPIRED = "orphan_expired"
ORPHAN_DEAD_CREATE = "orphan_dead_create"
ORPHAN_GRACE = "orphan_grace"
VANISHED = "vanished"


def process_alive(host: str | None, pid: int | None) -> bool | None:
    """Whether a process of this host lives; None for another host's (nobody here can tell)."""
    if not host or host != this_host() or not pid or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, it is just not ours
        return True
    return True


def label_time(value: str | None) -> datetime | None:
    """A timestamp label; None when absent, `never` or unreadable (unreadable never means expired)."""
    if not value or value == "never":
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def label_pid(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def judge_orphan(
    resource: BackendSandbox, *, registry_id: str, now: datetime, grace: timedelta, is_alive: ProcessProbe
) -> str | None:
    """Why an unrecorded labelled resource should go (a reason), or None to keep it. See the module rule."""
    labels = resource.labels
    expires_at = label_time(labels.get(LABEL_EXPIRES_AT))
    if expires_at is not None and expires_at <= now:
        return ORPHAN_EXPIRED
    if not registry_id or labels.get(LABEL_REGISTRY) != registry_id:
        return None
    if is_alive(labels.get(LABEL_HOST), label_pid(labels.get(LABEL_PID))) is False:
        return ORPHAN_DEAD_CREATE
    created_at = label_time(labels.get(LABEL_CREATED_AT)) or resource.created_at
    if created_at is not None and created_at + grace <= now:
        return ORPHAN_GRACE
    return None


def find_orphans(
    resources: Sequence[BackendSandbox],
    *,
    live_ids: Collection[str],
    registry_id: str,
    now: datetime,
    grace: timedelta,
    is_alive: ProcessProbe,
) -> list[tuple[BackendSandbox, str]]:
    """(resource, reason) for each resource that no live record owns and `judge_orphan` condemns.

    `resources` must have been listed *before* `live_ids` was read: records are committed
    before their resource exists, so a resource listed earlier cannot be missing a record
    that was merely created later.
    """
    found = []
    for resource in resources:
        sandbox_id = resource.labels.get(LABEL_ID)
        if not sandbox_id or sandbox_id in live_ids:
            continue
        reason = judge_orphan(resource, registry_id=registry_id, now=now, grace=grace, is_alive=is_alive)
        if reason is not None:
            found.append((resource, reason))
    return found


def find_vanished(backend: Backend, records: Sequence[SandboxRecord]) -> list[SandboxRecord]:
    """Of records missing from a listing, those whose resource, asked one by one, is gone.

    The listing alone is not proof: a sandbox created after it was taken is simply not in it.
    Records still being created or deleted are left to their own rules.
    """
    closable = {SandboxStatus.RUNNING, SandboxStatus.STOPPED, SandboxStatus.EXPIRED, SandboxStatus.FAILED}
    gone = []
    for record in records:
        if record.status not in closable or record.backend_id is None:
            continue
        try:
            backend.inspect(record.backend_id)
        except NotFound:
            gone.append(record)
    return gone


def orphan_archive_row(
    resource: BackendSandbox, backend: str, *, reason: str, deletion: Mapping[str, object], now: datetime
) -> ArchivedSandbox:
    """An archive row rebuilt from a deleted orphan's labels, so `status --all` shows what cleanup removed."""
    labels = resource.labels
    created_at = label_time(labels.get(LABEL_CREATED_AT)) or resource.created_at or now
    policy = labels.get(LABEL_POLICY) or Policy.DEFAULT
    with contextlib.suppress(ValueError):
        policy = Policy(policy)
    return ArchivedSandbox(
        id=labels[LABEL_ID],
        name=labels.get(LABEL_NAME) or resource.name or f"orphan-{labels[LABEL_ID]}",
        backend=backend,
        backend_id=resource.backend_id,
        status=SandboxStatus.DELETED,
        policy=policy,
        labels={k: v for k, v in labels.items() if not k.startswith(RESERVED_PREFIX)},
        created_at=created_at,
        last_accessed=created_at,
        expires_at=label_time(labels.get(LABEL_EXPIRES_AT)),
        host=labels.get(LABEL_HOST) or "",
        pid=label_pid(labels.get(LABEL_PID)) or 0,
        created_by=labels.get(LABEL_CREATED_BY),
        status_changed_at=now,
        archived_at=now,
        reason=reason,
        deletion=dict(deletion),
    )
