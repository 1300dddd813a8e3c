"""The sandbox state machine: allowed moves, and the refused ones."""

from __future__ import annotations

import pytest

from sandboxctl.registry.states import (
    ALLOWED_TRANSITIONS,
    LIVE_STATUSES,
    IllegalTransition,
    SandboxStatus,
    check_transition,
    sources_of,
)


def test_state_machine_happy_path_and_failed_from_any_live_state() -> None:
    S = SandboxStatus
    for current, target in [
        (S.CREATING, S.RUNNING),
        (S.RUNNING, S.STOPPED),
        (S.STOPPED, S.EXPIRED),
        (S.EXPIRED, S.DELETING),
        (S.DELETING, S.DELETED),
    ]:
        check_transition(current, target)
    for live in LIVE_STATUSES - {S.FAILED}:
        check_transition(live, S.FAILED)


def test_state_machine_refuses_illegal_moves() -> None:
    S = SandboxStatus
    for current, target in [(S.DELETED, S.RUNNING), (S.RUNNING, S.CREATING), (S.DELETING, S.RUNNING)]:
        with pytest.raises(IllegalTransition):
            check_transition(current, target)
    assert ALLOWED_TRANSITIONS[S.DELETED] == frozenset()
    assert S.DELETED not in sources_of(S.DELETING)
