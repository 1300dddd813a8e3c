"""`exec`: the hot path. Imports neither SQLModel nor any backend it does not use."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import BinaryIO

from sandboxctl.backends.base import ExecRequest, ExecResult, NotFound, OutputSink
from sandboxctl.errors import OperationFailed, UsageError
from sandboxctl.registry.lean import ExecTarget, LeanRegistry
from sandboxctl.registry.states import SandboxStatus
from sandboxctl.services.context import Context
from sandboxctl.services.leases import hold

_RUNNABLE = (SandboxStatus.RUNNING, SandboxStatus.STOPPED)


def _resolve(ctx: Context, ref: str) -> tuple[ExecTarget, LeanRegistry | None]:
    sqlite_path = ctx.settings.paths.sqlite_path
    lean = LeanRegistry(sqlite_path) if sqlite_path is not None else None
    target = lean.find_live(ref) if lean is not None else None
    if target is not None:
        return target, lean
    from sandboxctl.durations import isoformat
    from sandboxctl.registry.models import ArchivedSandbox

    found = ctx.registry.resolve(ref)  # raises SandboxNotFound (3) / ambiguous (2)
    if isinstance(found, ArchivedSandbox):
        raise OperationFailed(f"sandbox {found.id} ({found.name}) was deleted on {isoformat(found.archived_at)}")
    return ExecTarget(found.id, found.name, found.backend, found.backend_id, found.status), None


def _touch(ctx: Context, lean: LeanRegistry | None, sandbox_id: str) -> None:
    if lean is None or not lean.touch(sandbox_id, ctx.now()):
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
    target, lean = _resolve(ctx, ref)
    if target.status not in _RUNNABLE or target.backend_id is None:
        raise OperationFailed(f"sandbox {target.id} is {target.status}: it cannot run commands")
    backend = ctx.backend(target.backend)
    _touch(ctx, lean, target.id)
    request = ExecRequest(
        command=tuple(command),
        on_stdout=on_stdout,
        on_stderr=on_stderr,
        env=env or {},
        workdir=workdir,
        stdin=stdin,
        timeout_seconds=timeout.total_seconds() if timeout else None,
    )
    try:
        with hold(ctx, target.id):  # cleanup spares a sandbox in use (services/leases.py)
            result = backend.exec(target.backend_id, request)
    except NotFound:
        raise OperationFailed(
            f"sandbox {target.id} no longer exists on {target.backend} (removed outside sandboxctl); "
            "`sandboxctl cleanup --orphans` closes its record"
        ) from None
    _touch(ctx, lean, target.id)
    return result
