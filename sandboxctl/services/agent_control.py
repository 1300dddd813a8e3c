"""`agent send`, `agent list`, `agent show`, `agent cancel`: talk to a running agent, stop it, look at past runs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import signal
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from sandboxctl.backends.base import ExecRequest
from sandboxctl.errors import OperationFailed, SandboxctlError, UsageError
from sandboxctl.hostid import this_host
from sandboxctl.registry.models import AgentRun, AgentRunStatus, ArchivedSandbox
from sandboxctl.services.agent_machine import ACTIVE, RunState
from sandboxctl.services.agent_run import INBOX_FILE
from sandboxctl.services.context import Context
from sandboxctl.services.events import timestamp
from sandboxctl.services.orphans import process_alive


def describe_run(run: AgentRun) -> dict[str, Any]:
    """The run's JSON, with a `running` run whose process died on this host shown as `abandoned`."""
    data = run.to_json()
    if run.status == AgentRunStatus.RUNNING and process_alive(run.host, run.pid) is False:
        data["status"] = "abandoned"
    return data


def show_run(ctx: Context, ref: str) -> dict[str, Any]:
    registry = ctx.registry
    data = describe_run(registry.resolve_run(ref))
    sandbox_status: str | None = None
    if data["sandbox_id"]:
        try:
            found = registry.resolve(data["sandbox_id"])
        except SandboxctlError:
            found = None
        if found is not None:
            sandbox_status = "deleted" if isinstance(found, ArchivedSandbox) else found.status
    data["sandbox_status"] = sandbox_status
    return data


ABANDONED = "abandoned"
# `--state running` means "in progress" (any active state), as the `status` field does; `abandoned` is a run in
# progress whose process died. The other names match the run's state exactly.
LIST_STATES = (*(str(s) for s in RunState), ABANDONED)


def list_agent_runs(
    ctx: Context, *, limit: int | None = None, states: Sequence[str] = (), since: timedelta | None = None
) -> list[dict[str, Any]]:
    """Newest first, optionally only runs in `states` and started within `since` of now."""
    unknown = sorted(set(states) - set(LIST_STATES))
    if unknown:
        raise UsageError(f"unknown state {unknown[0]!r}: use one of {', '.join(LIST_STATES)}")
    wanted = set(states)
    in_progress = bool(wanted & {str(RunState.RUNNING), ABANDONED})
    stored = {*(wanted - {ABANDONED}), *((str(s) for s in ACTIVE) if in_progress else ())}
    registry = ctx.registry
    rows = registry.list_runs(
        limit=None if in_progress else limit,  # whether a run is abandoned is known only once its row is read
        states=stored if wanted else None,
        since=ctx.now() - since if since is not None else None,
    )
    runs = [describe_run(run) for run in rows]
    if wanted:
        runs = [
            run
            for run in runs
            if run["status"] in wanted or (run["state"] in wanted and run["state"] != RunState.RUNNING)
        ]
    return runs[:limit] if limit is not None else runs


def send_message(ctx: Context, ref: str, text: str) -> dict[str, Any]:
    """Append `{"ts", "text"}` as one JSON line to the running agent's inbox inside its sandbox."""
    registry = ctx.registry
    run = registry.resolve_run(ref)
    status = describe_run(run)["status"]
    if status != AgentRunStatus.RUNNING:
        raise OperationFailed(f"agent run {run.id} is {status}: nothing reads its inbox any more")
    sandbox = registry.get(run.sandbox_id) if run.sandbox_id else None
    if sandbox is None or sandbox.backend_id is None or run.workspace_path is None:
        raise OperationFailed(f"agent run {run.id} has no workspace yet: try again in a moment")
    inbox = posixpath.join(run.workspace_path, INBOX_FILE)
    message = {"ts": timestamp(), "text": text}
    errors = bytearray()
    # One write of one line with O_APPEND: concurrent senders never interleave within a line.
    request = ExecRequest(
        command=("sh", "-c", 'cat >> "$1"', "sh", inbox),
        on_stdout=lambda _chunk: None,
        on_stderr=errors.extend,
        stdin=io.BytesIO((json.dumps(message) + "\n").encode()),
        timeout_seconds=30,
    )
    result = ctx.backend(sandbox.backend).exec(sandbox.backend_id, request)
    if result.exit_code != 0:
        detail = errors.decode(errors="replace").strip() or f"exit {result.exit_code}"
        raise OperationFailed(f"could not append to {inbox} in sandbox {sandbox.id}: {detail}")
    with contextlib.suppress(SandboxctlError):
        registry.touch(sandbox.id, ctx.now())
    return {"run_id": run.id, "sandbox_id": sandbox.id, "inbox": inbox, **message}


def _run_process_is_ours(pid: int) -> bool:
    """Whether `pid` still runs sandboxctl (a recycled pid must never be signalled); True where /proc cannot tell."""
    try:
        return b"sandboxctl" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True


def cancel_run(ctx: Context, ref: str, *, wait: timedelta) -> dict[str, Any]:
    """Record the request, then SIGTERM the run's process (same host only), which finalizes it by its keep policy
    and records `cancelled`. Waits up to `wait` for the run to end; returns the run as `agent show` does."""
    registry = ctx.registry
    run = registry.resolve_run(ref)
    status = describe_run(run)["status"]
    if status == ABANDONED:
        raise OperationFailed(f"agent run {run.id} is abandoned: its process is gone, there is nothing to cancel")
    if status != AgentRunStatus.RUNNING:
        raise OperationFailed(f"agent run {run.id} already finished ({status}): there is nothing to cancel")
    here = this_host()
    if run.host != here:
        raise OperationFailed(
            f"agent run {run.id} runs on host {run.host!r}, not on this one ({here!r}): "
            f"run `sandboxctl agent cancel {run.id}` there"
        )
    if not _run_process_is_ours(run.pid):
        raise OperationFailed(f"agent run {run.id}: process {run.pid} is no longer sandboxctl; the run is abandoned")
    registry.update_run(run.id, cancel_requested_at=ctx.now())
    try:
        os.kill(run.pid, signal.SIGTERM)
    except ProcessLookupError:
        raise OperationFailed(f"agent run {run.id}: its process {run.pid} ended before it could be cancelled") from None
    deadline = time.monotonic() + wait.total_seconds()
    while True:
        current = registry.resolve_run(run.id)
        data = describe_run(current)
        if data["status"] != AgentRunStatus.RUNNING or time.monotonic() >= deadline:
            return data
        time.sleep(0.2)
