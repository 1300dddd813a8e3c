"""The sandbox state machine as data. Light on purpose: the exec fast path uses it without SQLModel."""

from __future__ import annotations

from enum import StrEnum

from sandboxctl.errors import SandboxctlError


class SandboxStatus(StrEnum):
    CREATING = "creating"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    EXPIRED = "expired"
    DELETING = "deleting"
    DELETED = "deleted"


class Policy(StrEnum):
    DEFAULT = "default"
    EXTENDED = "extended"
    PERMANENT = "permanent"


S = SandboxStatus
LIVE_STATUSES: frozenset[SandboxStatus] = frozenset(s for s in S if s is not S.DELETED)

# creating -> running -> (stopped) -> expired -> deleting -> deleted; failed from any live state.
# A deletion that failed goes deleting -> failed (kept, retried by the next cleanup).
ALLOWED_TRANSITIONS: dict[SandboxStatus, frozenset[SandboxStatus]] = {
    S.CREATING: frozenset({S.RUNNING, S.FAILED, S.DELETING}),
    S.RUNNING: frozenset({S.STOPPED, S.EXPIRED, S.DELETING, S.FAILED}),
    S.STOPPED: frozenset({S.RUNNING, S.EXPIRED, S.DELETING, S.FAILED}),
    S.EXPIRED: frozenset({S.DELETING, S.FAILED}),
    S.DELETING: frozenset({S.DELETED, S.FAILED}),
    S.FAILED: frozenset({S.DELETING, S.DELETED}),
    S.DELETED: frozenset(),
}


class IllegalTransition(SandboxctlError):
    """A status change the state machine forbids: a bug or a race, never silently applied."""


def sources_of(target: SandboxStatus) -> frozenset[SandboxStatus]:
    """Every status from which `target` may be reached."""
    return frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if target in targets)


def check_transition(current: SandboxStatus, target: SandboxStatus) -> None:
    if target not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(f"sandbox status cannot go from {current} to {target}")
