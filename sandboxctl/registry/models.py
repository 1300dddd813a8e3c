"""Registry tables, every one of them: the schema the migrations create and the full write path uses.

One JSON shape per entity: `SandboxFields.to_json` (via `reader.sandbox_json`) and `AgentRun.to_json`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from sandboxctl.durations import isoformat
from sandboxctl.registry.reader import sandbox_json
from sandboxctl.registry.states import IllegalTransition, Policy, SandboxStatus, check_transition

__all__ = [
    "AgentRun",
    "AgentRunStatus",
    "ArchivedSandbox",
    "IllegalTransition",
    "Policy",
    "SandboxRecord",
    "SandboxStatus",
    "check_transition",
    "sandbox_json",
]


class SandboxFields(SQLModel):
    """Columns shared by live records and the archive."""

    id: str = Field(primary_key=True)
    name: str
    backend: str
    backend_id: str | None = None
    image: str | None = None
    status: str = SandboxStatus.CREATING
    policy: str = Policy.DEFAULT
    labels: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    env_keys: list[str] = Field(default_factory=list, sa_type=JSON)  # keys only: values are secrets
    cpus: float | None = None
    memory_bytes: int | None = None
    created_at: datetime
    last_accessed: datetime
    expires_at: datetime | None = None
    idle_timeout_seconds: int | None = None
    host: str
    pid: int
    created_by: str | None = None  # the OS user or $SANDBOXCTL_USER; null on records older than m005
    delete_attempts: int = 0
    last_error: str | None = None
    status_changed_at: datetime
    # Who last claimed it for deletion (m005): a dead claimer on its own host is re-claimed at once,
    # another host's claim only after CLAIM_TIMEOUT.
    claim_host: str | None = None
    claim_pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The one JSON shape of a sandbox, used by create, status, delete and cleanup."""
        return sandbox_json({key: getattr(self, key) for key in type(self).model_fields})


class SandboxRecord(SandboxFields, table=True):
    """A sandbox that may still exist somewhere. Deleted ones move to `ArchivedSandbox`."""

    __tablename__ = "sandbox"
    __table_args__ = (
        # (status, expires_at), never expires_at alone: the lone index makes the expiry scan 16x slower.
        Index("ix_sandbox_status_expires", "status", "expires_at"),
        Index("ux_sandbox_name", "name", unique=True),
        Index("ix_sandbox_backend_id", "backend", "backend_id"),
    )


class ArchivedSandbox(SandboxFields, table=True):
    """A sandbox that is gone, kept for `archive.retention` with why and how it went."""

    __tablename__ = "sandbox_archive"
    __table_args__ = (Index("ix_archive_archived_at", "archived_at"),)

    archived_at: datetime
    # deleted (the delete command, agent-run) | create_failed | vanished (its resource went behind our back)
    # | cleanup's: expired | idle | older_than | requested | stale_create | stale_claim | retry
    # | orphan_expired | orphan_dead_create | orphan_grace
    reason: str
    deletion: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class RegistryMeta(SQLModel, table=True):
    """Key/value facts about this registry, e.g. its own id stamped on every backend resource."""

    __tablename__ = "registry_meta"

    key: str = Field(primary_key=True)
    value: str


class SchemaMigration(SQLModel, table=True):
    """Named migrations applied to this registry, in order."""

    __tablename__ = "schema_migrations"

    name: str = Field(primary_key=True)
    applied_at: datetime


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
    state: str | None = None  # services/agent_machine.RunState; None in rows older than m006
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
    created_by: str | None = None  # as on sandboxes; null on runs older than m005
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
            "created_by": self.created_by,
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "duration_seconds": self.duration_seconds,
            "kept_until": isoformat(self.kept_until),
            "cancel_requested_at": isoformat(self.cancel_requested_at),
        }
