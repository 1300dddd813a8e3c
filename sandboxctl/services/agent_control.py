"""`agent send`, `agent list`, `agent show`: talk to a running agent, look at past runs."""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
from typing import Any

from sandboxctl.backends.base import ExecRequest
from sandboxctl.errors import OperationFailed, SandboxctlError
from sandboxctl.registry.models import AgentRun, AgentRunStatus, ArchivedSandbox
from sandboxctl.services.agent_run import INBOX_FILE
from sandboxctl.services.context import Context
from sandboxctl.services.events import timestamp
from sandboxctl.services.orphans import process_alive


def _describe(run: AgentRun) -> dict[str, Any]:
    """The run's JSON, with a `running` run whose process died on this host shown as `abandoned`."""
    data = run.to_json()
    if run.status == AgentRunStatus.RUNNING and process_alive(run.host, run.pid) is False:
        data["status"] = "abandoned"
    return data


def show_run(ctx: Context, ref: str) -> dict[str, Any]:
    registry = ctx.registry
    data = _describe(registry.resolve_run(ref))
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


def list_agent_runs(ctx: Context, *, limit: int | None = None) -> list[dict[str, Any]]:
    return [_describe(run) for run in ctx.registry.list_runs(limit=limit)]


def send_message(ctx: Context, ref: str, text: str) -> dict[str, Any]:
    """Append `{"ts", "text"}` as one JSON line to the running agent's inbox inside its sandbox."""
    registry = ctx.registry
    run = registry.resolve_run(ref)
    status = _describe(run)["status"]
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
