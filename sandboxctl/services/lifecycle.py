"""create / exec / status / delete: record first, act second."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sandboxctl.backends.base import (
    BackendError,
    CreateSpec,
    NotFound,
)
from sandboxctl.durations import isoformat
from sandboxctl.errors import OperationFailed, UsageError
from sandboxctl.host import this_host
from sandboxctl.labels import (
    LABEL_CREATED_AT,
    LABEL_EXPIRES_AT,
    LABEL_HOST,
    LABEL_ID,
    LABEL_NAME,
    LABEL_PID,
    LABEL_POLICY,
    LABEL_REGISTRY,
)
from sandboxctl.registry.models import ArchivedSandbox, Policy, SandboxRecord, SandboxStatus, sandbox_json
from sandboxctl.registry.store import new_sandbox_id
from sandboxctl.services.context import Context
from sandboxctl.services.deletion import SandboxDeletion, delete_sandbox

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)([kmgt]?)(i?b?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(text: str) -> int:
    """`512m`, `2g`, `1GiB`, `1073741824` -> bytes (binary units, as Docker reads them)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise UsageError(f"invalid memory size {text!r}: use e.g. 512m, 2g or a number of bytes")
    number, unit, _suffix = match.groups()
    return int(float(number) * _SIZE_UNITS[unit.lower()])


@dataclass(frozen=True)
class CreateOptions:
    backend: str
    image: str | None
    name: str | None = None
    policy: Policy = Policy.DEFAULT
    ttl: timedelta | None = None  # overrides the policy's TTL
    idle_timeout: timedelta | None = None
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # values are secrets: only keys are recorded
    cpus: float | None = None
    memory_bytes: int | None = None


def create_sandbox(ctx: Context, options: CreateOptions) -> SandboxRecord:
    """Commit a `creating` record, then create the backend resource labelled with it.

    A crash between the two leaves either a record naming its host and pid, or a
    resource labelled with the record's id: `cleanup --orphans` finds both.
    """
    if options.name is not None and not _NAME.fullmatch(options.name):
        raise UsageError(
            f"invalid name {options.name!r}: use up to 63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if options.cpus is not None and options.cpus <= 0:
        raise UsageError("invalid --cpus: must be greater than 0")
    backend = ctx.backend(options.backend)  # unknown backend / unreachable daemon fail before any record
    now = ctx.now()
    ttl = options.ttl if options.ttl is not None else ctx.settings.ttl_for(options.policy)
    idle = options.idle_timeout if options.idle_timeout is not None else ctx.settings.idle_timeout
    sandbox_id = new_sandbox_id()
    image = options.image or (ctx.settings.image if options.backend != "local" else None)
    record = SandboxRecord(
        id=sandbox_id,
        name=options.name or f"sandbox-{sandbox_id}",
        backend=options.backend,
        image=image,
        status=SandboxStatus.CREATING,
        policy=options.policy,
        labels=dict(options.labels),
        env_keys=sorted(options.env),
        cpus=options.cpus,
        memory_bytes=options.memory_bytes,
        created_at=now,
        last_accessed=now,
        expires_at=now + ttl if ttl is not None else None,
        idle_timeout_seconds=int(idle.total_seconds()) if idle else None,
        host=this_host(),
        pid=os.getpid(),
        status_changed_at=now,
    )
    registry = ctx.registry
    registry.insert(record)
    labels = {
        **options.labels,
        LABEL_ID: sandbox_id,
        LABEL_NAME: record.name,
        LABEL_POLICY: str(options.policy),
        LABEL_CREATED_AT: isoformat(now) or "",
        LABEL_EXPIRES_AT: isoformat(record.expires_at) or "never",
        LABEL_REGISTRY: registry.registry_id(),
        LABEL_HOST: record.host,
        LABEL_PID: str(record.pid),
    }
    spec = CreateSpec(
        sandbox_id=sandbox_id,
        name=record.name,
        image=image,
        labels=labels,
        env=options.env,
        cpus=options.cpus,
        memory_bytes=options.memory_bytes,
        ttl_seconds=int(ttl.total_seconds()) if ttl is not None else None,
        idle_timeout_seconds=record.idle_timeout_seconds,
    )
    try:
        created = backend.create(spec)
    except BaseException as exc:
        # The backend removed what it half-made; close the record so nothing points at nothing.
        failed_at = ctx.now()
        message = str(exc) or type(exc).__name__
        registry.set_status(sandbox_id, SandboxStatus.FAILED, now=failed_at, last_error=message)
        registry.archive(sandbox_id, reason="create_failed", deletion={"error": message}, now=failed_at)
        raise
    registry.set_status(
        sandbox_id, SandboxStatus.RUNNING, now=ctx.now(), expect=[SandboxStatus.CREATING], backend_id=created.backend_id
    )
    record.backend_id = created.backend_id
    record.status = SandboxStatus.RUNNING
    return record


def _live_record(ctx: Context, ref: str) -> SandboxRecord:
    found = ctx.registry.resolve(ref)
    if isinstance(found, ArchivedSandbox):
        raise OperationFailed(f"sandbox {found.id} ({found.name}) was deleted on {isoformat(found.archived_at)}")
    return found


def sandbox_status(ctx: Context, ref: str) -> dict[str, Any]:
    """One record, with what the backend says of it right now (`backend_state`)."""
    found = ctx.registry.resolve(ref)
    data = found.to_json()
    if isinstance(found, ArchivedSandbox) or found.backend_id is None:
        data["backend_state"] = "gone" if isinstance(found, ArchivedSandbox) else None
        return data
    try:
        data["backend_state"] = str(ctx.backend(found.backend).inspect(found.backend_id).state)
    except NotFound:
        data["backend_state"] = "gone"
    except BackendError as exc:
        data["backend_state"] = "unknown"
        data["backend_error"] = str(exc)
    return data


def list_sandboxes(
    ctx: Context, *, include_archived: bool = False, backend: str | None = None, selector: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Live records (and with `include_archived` the archive), oldest first."""
    registry = ctx.registry
    rows = [sandbox_json(r) for r in registry.list_rows(backend=backend, selector=selector)]
    if include_archived:
        rows = [sandbox_json(a) for a in registry.list_rows(archived=True, backend=backend, selector=selector)] + rows
    return rows


def delete_sandboxes(ctx: Context, refs: Sequence[str]) -> list[SandboxDeletion]:
    """Resolve every ref first (an unknown one fails before anything is deleted), then delete each.

    Idempotent: an already archived sandbox reports success without touching the backend.
    """
    resolved = [ctx.registry.resolve(ref) for ref in refs]
    outcomes: list[SandboxDeletion] = []
    for found in resolved:
        if isinstance(found, ArchivedSandbox):
            outcomes.append(SandboxDeletion(found.id, True, "already deleted"))
            continue
        outcomes.append(delete_sandbox(ctx.registry, ctx.backend(found.backend), found, now=ctx.now()))
    return outcomes
