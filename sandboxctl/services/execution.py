"""`exec`: the hot path. Imports neither SQLModel nor any backend it does not use."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import BinaryIO

from sandboxctl.backends.base import ExecRequest, ExecResult, NotFound, OutputSink
from sandboxctl.errors import OperationFailed, UsageError
from sandboxctl.logs import log_event
from sandboxctl.registry.reader import SandboxRow
from sandboxctl.registry.states import SandboxStatus
from sandboxctl.services.context import Context
from sandboxctl.services.leases import hold

_RUNNABLE = (SandboxStatus.RUNNING, SandboxStatus.STOPPED)


def runnable_sandbox(ctx: Context, ref: str) -> tuple[SandboxRow, str]:
    """The live record of a sandbox that can run commands, and its backend id.

    Exit 3 unknown, 2 ambiguous, 1 deleted or not running.
    """
    found = ctx.find_sandbox(ref)
    if found.archived:
        raise OperationFailed(found.deleted_message())
    if found.status not in _RUNNABLE or found.backend_id is None:
        raise OperationFailed(f"sandbox {found.id} is {found.status}: it cannot run commands")
    return found, found.backend_id


def touch(ctx: Context, sandbox_id: str) -> None:
    """Restart the idle clock (the reader's stdlib write where it can, else the full registry)."""
    reader = ctx.reader
    if reader is None or not reader.touch(sandbox_id, ctx.now()):
        ctx.registry.touch(sandbox_id, ctx.now())


def exec_in_sandbox(
    ctx: Context,
    ref: str,
    command: Sequence[str],
    *,
    on_stdout: OutputSink,
    on_stderr: OutputSink,
    stdin: BinaryIO | None = None,
    env: dict[str, str] | None = None,
    workdir: str | None = None,
    timeout: timedelta | None = None,
) -> ExecResult:
    """Run a command; the idle clock restarts at its start and again at its end."""
    if not command:
        raise UsageError("no command given: use `sandboxctl exec SANDBOX -- CMD [ARG...]`")
    target, backend_id = runnable_sandbox(ctx, ref)
    backend = ctx.backend(target.backend)
    touch(ctx, target.id)
    request = ExecRequest(
        command=tuple(command),
        on_stdout=on_stdout,
        on_stderr=on_stderr,
        env=env or {},
        workdir=workdir,
        stdin=stdin,
        timeout_seconds=timeout.total_seconds() if timeout else None,
    )
    started = time.monotonic()
    log_event("exec_started", sandbox_id=target.id, backend=target.backend)
    try:
        with hold(ctx, target.id):  # cleanup spares a sandbox in use (services/leases.py)
            result = backend.exec(backend_id, request)
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
        duration = time.monotonic() - started
        log_event(
            "failed",
            action="exec",
            sandbox_id=target.id,
            backend=target.backend,
            duration_seconds=duration,
            error=error,
            redact=_redactor(env),
        )
        if not isinstance(exc, NotFound):
            raise
        raise OperationFailed(
            f"sandbox {target.id} no longer exists on {target.backend} (removed outside sandboxctl); "
            "`sandboxctl cleanup --orphans` closes its record"
        ) from None
    touch(ctx, target.id)
    log_event(
        "exec_ended",
        sandbox_id=target.id,
        backend=target.backend,
        duration_seconds=time.monotonic() - started,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
    )
    return result


def _redactor(env: dict[str, str] | None) -> Callable[[str], str] | None:
    if not env:
        return None
    from sandboxctl.services.events import Redactor

    return Redactor(env.values())
