"""create / exec / status / delete: record first, act second."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import NamedTuple

from sandboxctl.backends.base import CreateSpec
from sandboxctl.durations import isoformat
from sandboxctl.errors import QuotaExceeded, UsageError
from sandboxctl.hostid import this_host, this_user
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
)
from sandboxctl.limits import MEMORY_MAX_BYTES, MEMORY_MIN_BYTES, check_cpus
from sandboxctl.logs import log_event
from sandboxctl.registry.reader import SandboxRow, looks_like_id, new_sandbox_id
from sandboxctl.registry.states import Policy, SandboxStatus
from sandboxctl.services.context import Context

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class CreateOptions(NamedTuple):
    backend: str
    image: str | None
    name: str | None = None
    policy: Policy = Policy.DEFAULT
    ttl: timedelta | None = None  # overrides the policy's TTL
    idle_timeout: timedelta | None = None
    labels: Mapping[str, str] = MappingProxyType({})
    env: Mapping[str, str] = MappingProxyType({})  # values are secrets: only keys are recorded
    cpus: float | None = None
    memory_bytes: int | None = None


def check_name(ctx: Context, name: str) -> None:
    """A name must be well formed, must not look like an id (so it can never shadow one) and must be free."""
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"invalid name {name!r}: use up to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if looks_like_id(name):
        raise UsageError(f"invalid name {name!r}: 12 hex digits look like a sandbox id; choose another --name")
    reader = ctx.reader
    taken = reader.live_name_or_id_taken(name) if reader is not None else ctx.registry.live_name_or_id_taken(name)
    if taken:
        raise UsageError(f"a sandbox named {name!r} already exists: choose another --name")


def create_sandbox(ctx: Context, options: CreateOptions) -> SandboxRow:
    """Commit a `creating` record, then create the backend resource labelled with it.

    A crash between the two leaves either a record naming its host and pid, or a
    resource labelled with the record's id: `cleanup --orphans` finds both.
    """
    started = time.monotonic()
    if options.name is not None:
        check_name(ctx, options.name)
    if options.cpus is not None:
        check_cpus(options.cpus)
    if options.memory_bytes is not None and not MEMORY_MIN_BYTES <= options.memory_bytes <= MEMORY_MAX_BYTES:
        raise UsageError("invalid --memory: must be between 6m and 16t")
    backend = ctx.backend(options.backend)  # unknown backend / unreachable daemon fail before any record
    now = ctx.now()
    ttl = options.ttl if options.ttl is not None else ctx.settings.ttl_for(options.policy)
    idle = options.idle_timeout if options.idle_timeout is not None else ctx.settings.idle_timeout
    sandbox_id = new_sandbox_id()
    user = this_user()
    quota = ctx.settings.quota(user)  # a bad quota value fails here, before any record
    image = options.image or (ctx.settings.image if options.backend != "local" else None)
    record = dict(
        id=sandbox_id,
        name=options.name or f"sandbox-{sandbox_id}",
        backend=options.backend,
        image=image,
        status=SandboxStatus.CREATING.value,
        policy=Policy(options.policy).value,
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
        created_by=user,
        status_changed_at=now,
        delete_attempts=0,
        last_error=None,
        backend_id=None,
    )
    # On a current SQLite registry these few writes need no SQLModel (the reader's twins, parity-tested).
    registry = ctx.reader or ctx.registry
    try:
        registry.insert_sandbox(record, quota)  # refuses (exit 5) beyond a quota, atomically with the insert
    except QuotaExceeded as exc:
        log_event("failed", action="create", sandbox_id=None, backend=options.backend, error=str(exc))
        raise
    labels = {
        **options.labels,
        LABEL_ID: sandbox_id,
        LABEL_NAME: record["name"],
        LABEL_POLICY: str(options.policy),
        LABEL_CREATED_AT: isoformat(now) or "",
        LABEL_EXPIRES_AT: isoformat(record["expires_at"]) or "never",
        LABEL_REGISTRY: registry.registry_id(),
        LABEL_HOST: record["host"],
        LABEL_PID: str(record["pid"]),
        LABEL_CREATED_BY: user,
    }
    spec = CreateSpec(
        sandbox_id=sandbox_id,
        name=record["name"],
        image=image,
        labels=labels,
        env=options.env,
        cpus=options.cpus,
        memory_bytes=options.memory_bytes,
        ttl_seconds=int(ttl.total_seconds()) if ttl is not None else None,
        idle_timeout_seconds=record["idle_timeout_seconds"],
    )
    try:
        created = backend.create(spec)
    except BaseException as exc:
        # The backend removed what it half-made; close the record so nothing points at nothing.
        failed_at = ctx.now()
        message = str(exc) or type(exc).__name__
        registry.set_status(sandbox_id, SandboxStatus.FAILED, now=failed_at, last_error=message)
        registry.archive(sandbox_id, reason="create_failed", deletion={"error": message}, now=failed_at)
        log_event(
            "failed",
            action="create",
            sandbox_id=sandbox_id,
            backend=options.backend,
            duration_seconds=time.monotonic() - started,
            error=message,
            redact=_env_redactor(options.env),
        )
        raise
    registry.set_status(
        sandbox_id, SandboxStatus.RUNNING, now=ctx.now(), expect=[SandboxStatus.CREATING], backend_id=created.backend_id
    )
    record.update(backend_id=created.backend_id, status=SandboxStatus.RUNNING.value)
    log_event("created", sandbox_id=sandbox_id, backend=options.backend, duration_seconds=time.monotonic() - started)
    return SandboxRow(record)


def _env_redactor(env: dict[str, str]) -> Callable[[str], str]:
    """Masks the sandbox's env values in what is logged (an SDK error may echo its request)."""
    from sandboxctl.services.events import Redactor

    return Redactor(env.values())
