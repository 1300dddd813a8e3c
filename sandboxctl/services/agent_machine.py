"""The agent run as data: its states, the allowed moves between them, and the one rule that turns what happened
into an outcome (status + exit code).

`AgentRunner` moves through these states in order and persists each one; nothing
else decides where a run may go next or how it ended. Light on purpose (no
SQLModel): `agent list` and `agent logs` use the state names too.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import StrEnum

from sandboxctl.errors import EXIT_TIMEOUT, SandboxctlError

EXIT_CANCELLED = 130  # as a shell reports a command stopped by Ctrl-C: the user asked for it to stop
CANCEL = "cancel"  # the stop reason of `agent cancel` (a SIGTERM preceded by a recorded request)


class RunState(StrEnum):
    PENDING = "pending"  # recorded, nothing done yet
    PREPARING = "preparing"  # the host copy of the repository
    CREATING = "creating"  # the sandbox
    UPLOADING = "uploading"  # the workspace into the sandbox
    SETUP = "setup"
    RUNNING = "running"  # the agent
    COLLECTING = "collecting"  # the patch
    PUSHING = "pushing"
    FINALIZING = "finalizing"  # delete or keep the sandbox
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    ERROR = "error"


R = RunState
TERMINAL: frozenset[RunState] = frozenset({R.SUCCEEDED, R.FAILED, R.TIMED_OUT, R.INTERRUPTED, R.CANCELLED, R.ERROR})
ACTIVE: frozenset[RunState] = frozenset(s for s in R if s not in TERMINAL)

# Forward one step at a time; whatever stops the active steps (failure, timeout, signal, cancel) goes straight
# to collecting, which is why every step before it may move there. Finalizing is the only way to an end.
ALLOWED_MOVES: dict[RunState, frozenset[RunState]] = {
    R.PENDING: frozenset({R.PREPARING, R.COLLECTING}),
    R.PREPARING: frozenset({R.CREATING, R.COLLECTING}),
    R.CREATING: frozenset({R.UPLOADING, R.COLLECTING}),
    R.UPLOADING: frozenset({R.SETUP, R.RUNNING, R.COLLECTING}),
    R.SETUP: frozenset({R.RUNNING, R.COLLECTING}),
    R.RUNNING: frozenset({R.COLLECTING}),
    R.COLLECTING: frozenset({R.PUSHING, R.FINALIZING}),
    R.PUSHING: frozenset({R.FINALIZING}),
    R.FINALIZING: TERMINAL,
    **{end: frozenset() for end in TERMINAL},
}


class IllegalRunMove(SandboxctlError):
    """A move the run's state machine forbids: a bug, never silently applied."""


def check_move(current: RunState, target: RunState) -> RunState:
    """`target` if the table allows it from `current`; otherwise `IllegalRunMove`."""
    if target not in ALLOWED_MOVES[current]:
        raise IllegalRunMove(f"agent run cannot go from {current} to {target}")
    return target


@dataclass(frozen=True)
class CommandExit:
    """How setup or the agent ended: an exit code, or timed out (no code)."""

    exit_code: int | None
    timed_out: bool = False


@dataclass(frozen=True)
class RunFacts:
    """Everything the outcome depends on, gathered as the steps finish."""

    stop: str | None = None  # a signal name (SIGINT, SIGTERM, SIGHUP) or CANCEL
    error_exit_code: int | None = None  # sandboxctl itself failed (bad repo, backend down): its exit code
    setup: CommandExit | None = None
    agent: CommandExit | None = None
    output_failed: bool = False  # the agent succeeded but its patch could not be collected or pushed


@dataclass(frozen=True)
class Outcome:
    state: RunState
    exit_code: int


def signal_exit_code(name: str) -> int:
    """SIGINT -> 130, SIGTERM -> 143, SIGHUP -> 129, as a shell reports a command killed by that signal."""
    try:
        return 128 + signal.Signals[name].value
    except KeyError:
        return EXIT_CANCELLED


def decide_outcome(facts: RunFacts) -> Outcome:
    """The one place that says how a run ended. First match wins: a stop, a timeout, sandboxctl's own error,
    a failed setup, the agent's exit, then a result that could not be produced."""
    if facts.stop == CANCEL:
        return Outcome(R.CANCELLED, EXIT_CANCELLED)
    if facts.stop is not None:
        return Outcome(R.INTERRUPTED, signal_exit_code(facts.stop))
    last = facts.agent or facts.setup
    if last is not None and last.timed_out:
        return Outcome(R.TIMED_OUT, EXIT_TIMEOUT)
    if facts.error_exit_code is not None:
        return Outcome(R.ERROR, facts.error_exit_code)
    if facts.setup is not None and facts.setup.exit_code != 0:
        return Outcome(R.FAILED, facts.setup.exit_code or 1)
    if facts.agent is None or facts.agent.exit_code is None:  # no step failed, yet no agent ran: a bug
        return Outcome(R.ERROR, 1)
    if facts.agent.exit_code != 0:
        return Outcome(R.FAILED, facts.agent.exit_code)
    if facts.output_failed:
        return Outcome(R.FAILED, 1)
    return Outcome(R.SUCCEEDED, 0)
