"""`extend`: give a sandbox a new lifetime counted from now.

The registry is what `cleanup` judges, so it is the authority; a backend that
enforces lifetimes itself (Daytona's TTL and auto-stop) is told first, so a
failure there changes nothing. Docker labels cannot change after creation: a
container's `sandboxctl.expires-at` stays the creation-time value, and `cleanup
--orphans` never judges a container by its labels while its record is live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sandboxctl.durations import isoformat
from sandboxctl.errors import OperationFailed, UsageError
from sandboxctl.registry.models import ArchivedSandbox, Policy, SandboxRecord, SandboxStatus
from sandboxctl.services.context import Context

EXTENDABLE = (SandboxStatus.RUNNING, SandboxStatus.STOPPED)


@dataclass(frozen=True)
class LifetimeChange:
    """What `extend` was asked for; None leaves that part as it is."""

    ttl: timedelta | None = None  # from now; overrides the policy's TTL
    policy: Policy | None = None
    idle_timeout: timedelta | None = None  # 0: no idle timeout


def _new_policy_and_expiry(
    ctx: Context, record: SandboxRecord, change: LifetimeChange
) -> tuple[Policy, timedelta | None]:
    """The policy and the lifetime from now (None: never expires)."""
    if change.policy is Policy.PERMANENT and change.ttl is not None:
        raise UsageError("--policy permanent never expires: drop --ttl, or choose another policy")
    if change.policy is not None:
        return change.policy, change.ttl if change.ttl is not None else ctx.settings.ttl_for(change.policy)
    current = Policy(record.policy)
    if change.ttl is not None:
        # An expiry on a permanent sandbox would be ignored by cleanup: it becomes `default`.
        return (Policy.DEFAULT if current is Policy.PERMANENT else current), change.ttl
    remaining = record.expires_at - ctx.now() if record.expires_at is not None else None
    return current, remaining


def extend_sandbox(ctx: Context, ref: str, change: LifetimeChange) -> SandboxRecord:
    """Apply `change` to a running or stopped sandbox; the idle clock restarts too. Returns the new record.

    Unknown -> exit 3; deleted, or not running/stopped (being created or deleted, failed) -> exit 1.
    """
    if change.ttl is None and change.policy is None and change.idle_timeout is None:
        raise UsageError("nothing to change: give --ttl, --policy or --idle-timeout")
    registry = ctx.registry
    found = registry.resolve(ref)
    if isinstance(found, ArchivedSandbox):
        raise OperationFailed(f"sandbox {found.id} ({found.name}) was deleted on {isoformat(found.archived_at)}")
    if found.status not in EXTENDABLE or found.backend_id is None:
        raise OperationFailed(
            f"sandbox {found.id} is {found.status}: only a running or stopped sandbox can be extended"
        )
    policy, lifetime = _new_policy_and_expiry(ctx, found, change)
    if change.idle_timeout is not None:
        idle_seconds = int(change.idle_timeout.total_seconds()) or None
    else:
        idle_seconds = found.idle_timeout_seconds
    ctx.backend(found.backend).set_lifetime(
        found.backend_id,
        ttl_seconds=max(0, int(lifetime.total_seconds())) if lifetime is not None else None,
        idle_timeout_seconds=idle_seconds,
    )
    from sandboxctl.registry.lifetimes import set_lifetime

    now = ctx.now()
    expires_at = now + lifetime if lifetime is not None else None
    if change.ttl is None and change.policy is None:
        expires_at = found.expires_at  # only the idle timeout changes: keep the expiry to the microsecond
    if not set_lifetime(
        registry,
        found.id,
        statuses=EXTENDABLE,
        policy=policy,
        expires_at=expires_at,
        idle_timeout_seconds=idle_seconds,
        now=now,
    ):
        raise OperationFailed(f"sandbox {found.id} changed while extending it (a cleanup may be deleting it)")
    updated = registry.get(found.id)
    if updated is None:
        raise OperationFailed(f"sandbox {found.id} was deleted while extending it")
    return updated
