"""The `agent_runs` table: one row per `agent-run`, written at every step so a run is never unaccounted for.

The row is committed before anything else happens (record first, act second);
its `host` and `pid` let `agent show` tell a run still in progress from one whose
process died. Env values never reach this table: only their keys.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Index, and_, or_
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel, col, select, update

from sandboxctl.durations import isoformat
from sandboxctl.errors import SandboxNotFound, UsageError

if TYPE_CHECKING:
    from sandboxctl.registry.store import Registry


class AgentRunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the agent exited 0 and its result was collected
    FAILED = "failed"  # setup or agent exited non-zero, or the result could not be collected/pushed
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"  # SIGINT / SIGTERM
    CANCELLED = "cancelled"  # `sandboxctl agent cancel`
    ERROR = "error"  # sandboxctl could not run the agent (bad repo, backend failure)


class AgentRun(SQLModel, table=True):
    __tablename__ = "agent_runs"
    __table_args__ = (Index("ix_agent_runs_started_at", "started_at"),)

    id: str = Field(primary_key=True)
    status: str = AgentRunStatus.RUNNING
    step: str = "prepare"  # the step in progress, or `done`
    state: str | None = None  # services/agent_machine.RunState; None in rows older than m004
    backend: str
    image: str | None = None
    sandbox_id: str | None = None  # sandboxctl's own sandbox id
    workspace_path: str | None = None  # inside the sandbox
    repo: str | None = None  # credentials stripped from URLs
    ref: str | None = None
    base_commit: str | None = None
    task: str = ""
    command: list[str] = Field(default_factory=list, sa_type=JSON)
    setup_command: str | None = None
    env_keys: list[str] = Field(default_factory=list, sa_type=JSON)  # keys only: values are secrets
    labels: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    keep: str
    timeout_seconds: int
    exit_code: int | None = None
    steps: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)  # step -> {status, started_at, ...}
    changed_files: list[dict[str, str]] = Field(default_factory=list, sa_type=JSON)
    output_dir: str
    patch_path: str | None = None
    push: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    sandbox_deletion: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    error: str | None = None
    host: str
    pid: int
    started_at: datetime
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    kept_until: datetime | None = None  # the kept sandbox's new expiry (--keep-for), None when not kept
    cancel_requested_at: datetime | None = None  # set by `agent cancel` before it signals the run

    def to_json(self) -> dict[str, Any]:
        """The one JSON shape of a run, used by `agent show`, `agent list` and the run summary."""
        return {
            "run_id": self.id,
            "status": self.status,
            "state": self.state or self.status,
            "step": self.step,
            "exit_code": self.exit_code,
            "backend": self.backend,
            "image": self.image,
            "sandbox_id": self.sandbox_id,
            "workspace_path": self.workspace_path,
            "repo": self.repo,
            "ref": self.ref,
            "base_commit": self.base_commit,
            "task": self.task,
            "command": list(self.command),
            "setup_command": self.setup_command,
            "env_keys": list(self.env_keys),
            "labels": dict(self.labels),
            "keep": self.keep,
            "timeout_seconds": self.timeout_seconds,
            "steps": dict(self.steps),
            "changed_files": list(self.changed_files),
            "output_dir": self.output_dir,
            "patch_path": self.patch_path,
            "push": self.push,
            "sandbox_deletion": self.sandbox_deletion,
            "error": self.error,
            "host": self.host,
            "pid": self.pid,
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "duration_seconds": self.duration_seconds,
            "kept_until": isoformat(self.kept_until),
            "cancel_requested_at": isoformat(self.cancel_requested_at),
        }


def create_tables(conn: Connection) -> None:
    """Create this module's tables (migration m002); existing ones are left alone."""
    AgentRun.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]


def insert_run(registry: Registry, run: AgentRun) -> None:
    with registry.writing() as session:
        session.add(run)


def update_run(registry: Registry, run_id: str, **fields: Any) -> None:
    with registry.writing() as session:
        session.exec(update(AgentRun).where(col(AgentRun.id) == run_id).values(**fields))


def resolve_run(registry: Registry, ref: str) -> AgentRun:
    """A run id or unique id prefix -> its row; unknown is exit 3, an ambiguous prefix exit 2."""
    with registry.reading() as session:
        exact = session.get(AgentRun, ref)
        if exact is not None:
            return exact
        found = session.exec(select(AgentRun).where(col(AgentRun.id).startswith(ref, autoescape=True)).limit(2)).all()
    if len(found) > 1:
        raise UsageError(f"{ref!r} matches several agent runs: give more of the id")
    if not found or not ref:
        raise SandboxNotFound(f"no agent run {ref!r}: `sandboxctl agent list` lists the known ones")
    return found[0]


def list_runs(
    registry: Registry,
    *,
    limit: int | None = None,
    states: Collection[str] | None = None,
    since: datetime | None = None,
) -> list[AgentRun]:
    """Newest first; `states` matches the state (or, in rows older than m004, the status); `since`: started at or
    after it."""
    query = select(AgentRun).order_by(col(AgentRun.started_at).desc(), col(AgentRun.id).desc())
    if states is not None:
        wanted = list(states)
        query = query.where(
            or_(col(AgentRun.state).in_(wanted), and_(col(AgentRun.state).is_(None), col(AgentRun.status).in_(wanted)))
        )
    if since is not None:
        query = query.where(col(AgentRun.started_at) >= since)
    if limit is not None:
        query = query.limit(limit)
    with registry.reading() as session:
        return list(session.exec(query).all())


def ensure_tables(registry: Registry) -> None:
    """Create the table if missing: a registry migrated while m002 was still a placeholder lacks it."""
    with registry.engine.begin() as conn:
        create_tables(conn)
