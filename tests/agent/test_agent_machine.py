"""The agent run's state machine and outcome rule, as data: no sandbox, no registry."""

from __future__ import annotations

import pytest

from sandboxctl.services.agent_machine import (
    ACTIVE,
    ALLOWED_MOVES,
    CANCEL,
    TERMINAL,
    CommandExit,
    IllegalRunMove,
    Outcome,
    RunFacts,
    RunState,
    check_move,
    decide_outcome,
)

R = RunState
HAPPY_PATH = [R.PENDING, R.PREPARING, R.CREATING, R.UPLOADING, R.SETUP, R.RUNNING, R.COLLECTING, R.PUSHING]


def test_every_state_has_a_row_and_ends_are_final() -> None:
    assert set(ALLOWED_MOVES) == set(RunState)
    for end in TERMINAL:
        assert ALLOWED_MOVES[end] == frozenset()
    assert set(RunState) == TERMINAL | ACTIVE and not TERMINAL & ACTIVE


def test_the_happy_path_is_allowed_step_by_step() -> None:
    state = R.PENDING
    for target in [*HAPPY_PATH[1:], R.FINALIZING, R.SUCCEEDED]:
        state = check_move(state, target)
    assert state is R.SUCCEEDED


@pytest.mark.parametrize("active", [R.PENDING, R.PREPARING, R.CREATING, R.UPLOADING, R.SETUP, R.RUNNING])
def test_a_stopped_active_step_goes_to_collecting(active: RunState) -> None:
    assert check_move(active, R.COLLECTING) is R.COLLECTING


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (R.PENDING, R.RUNNING),  # skipping the sandbox
        (R.RUNNING, R.SUCCEEDED),  # an end without collecting and finalizing
        (R.COLLECTING, R.RUNNING),  # backwards
        (R.FINALIZING, R.RUNNING),
        (R.SUCCEEDED, R.FAILED),  # out of an end
        (R.CANCELLED, R.COLLECTING),
        (R.PENDING, R.PENDING),
    ],
)
def test_an_illegal_move_is_refused(current: RunState, target: RunState) -> None:
    with pytest.raises(IllegalRunMove, match=f"from {current} to {target}"):
        check_move(current, target)


def test_only_finalizing_reaches_an_end() -> None:
    for state, targets in ALLOWED_MOVES.items():
        if targets & TERMINAL:
            assert state is R.FINALIZING


OK = CommandExit(0)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (RunFacts(setup=OK, agent=OK), Outcome(R.SUCCEEDED, 0)),
        (RunFacts(agent=OK), Outcome(R.SUCCEEDED, 0)),
        (RunFacts(agent=CommandExit(3)), Outcome(R.FAILED, 3)),
        (RunFacts(setup=CommandExit(7)), Outcome(R.FAILED, 7)),
        (RunFacts(agent=OK, output_failed=True), Outcome(R.FAILED, 1)),
        (RunFacts(agent=CommandExit(4), output_failed=True), Outcome(R.FAILED, 4)),
        (RunFacts(agent=CommandExit(None, timed_out=True)), Outcome(R.TIMED_OUT, 124)),
        (RunFacts(setup=CommandExit(None, timed_out=True)), Outcome(R.TIMED_OUT, 124)),
        (RunFacts(error_exit_code=4), Outcome(R.ERROR, 4)),
        (RunFacts(setup=OK, error_exit_code=1), Outcome(R.ERROR, 1)),
        (RunFacts(stop="SIGTERM", agent=OK), Outcome(R.INTERRUPTED, 143)),
        (RunFacts(stop="SIGINT"), Outcome(R.INTERRUPTED, 130)),
        (RunFacts(stop="SIGHUP", error_exit_code=4), Outcome(R.INTERRUPTED, 129)),
        (RunFacts(stop=CANCEL, agent=CommandExit(None, timed_out=True)), Outcome(R.CANCELLED, 130)),
        (RunFacts(), Outcome(R.ERROR, 1)),  # nothing ran and nothing failed: never reported as success
    ],
)
def test_the_outcome_is_decided_in_one_place(facts: RunFacts, expected: Outcome) -> None:
    assert decide_outcome(facts) == expected
    assert expected.state in TERMINAL
