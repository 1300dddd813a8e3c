"""What `agent-run` is asked to do. Light on purpose: the CLI imports it for `--help` without SQLModel."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from sandboxctl.registry.states import Policy

DEFAULT_HEARTBEAT_SECONDS = 5.0


class KeepPolicy(StrEnum):
    """What happens to the sandbox after the run."""

    ON_FAILURE = "on-failure"  # delete when the run succeeded, keep it for debugging otherwise
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True)
class AgentRunOptions:
    command: tuple[str, ...]
    backend: str
    image: str | None = None
    repo: str | None = None  # a local path or a git URL; None: an empty workspace
    ref: str | None = None  # None: HEAD
    task: str = ""
    setup: str | None = None
    timeout: timedelta | None = None  # None: config `agent.timeout`; bounds setup and agent together
    keep: KeepPolicy = KeepPolicy.ON_FAILURE
    env: dict[str, str] = field(default_factory=dict)  # values are secrets: only keys are recorded
    labels: dict[str, str] = field(default_factory=dict)
    output_dir: Path | None = None  # None: <data dir>/runs/<run id>
    events_path: Path | None = None
    push_branch: str | None = None
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    max_collect: int | None = None  # bytes of returned content; None: config `agent.max_collect`
    keep_for: timedelta | None = None  # None: config `agent.keep_for`; a kept sandbox's life after a failed run
    # The sandbox's own lifetime, as `create` takes it. None: the policy's TTL, never less than the timeout + 1h.
    ttl: timedelta | None = None
    idle_timeout: timedelta | None = None
    policy: Policy = Policy.DEFAULT
