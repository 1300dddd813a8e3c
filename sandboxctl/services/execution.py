"""`exec`: the hot path. Imports neither SQLModel nor any backend it does not use."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import BinaryIO

from sandboxctl.backends.base import ExecRequest, ExecResult, NotFound, OutputSink
from sandboxctl.errors import OperationFailed, UsageError
from sandboxctl.registry.reader import SandboxRow
from sandboxctl.registry.states import SandboxStatus
from sandboxctl.services.context import Context

_RUNNABLE = (SandboxStatus.RUNNING, SandboxStatus.STOPPED)


def _live(ctx: Context, ref: str) -> SandboxRow:
    found = ctx.find_sandbox(ref)  # exit 3 unknown, exit 2 ambiguous
    if found.archived:
        raise OperationFailed(found.deleted_message())
    return found


def _touch(ctx: Context, sandbox_id: str) -> None:
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
    target = _live(ctx, ref)
    if target.status not in _RUNNABLE or target.backend_id is None:
        raise OperationFailed(f"sandbox {target.id} is {target.status}: it cannot run commands")
    backend = ctx.backend(target.backend)
    _touch(ctx, target.id)
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
        result = backend.exec(target.backend_id, request)
    except NotFound:
        raise OperationFailed(
            f"sandbox {target.id} no longer exists on {target.backend} (removed outside sandboxctl); "
            "`sandboxctl cleanup --orphans` closes its record"
        ) from None
    _touch(ctx, target.id)
    return result
