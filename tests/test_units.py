"""Unit tests of the small leaves: durations, labels, the state machine, memory sizes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sandboxctl.durations import format_duration, parse_duration
from sandboxctl.errors import UsageError
from sandboxctl.labels import parse_env, parse_labels
from sandboxctl.limits import parse_memory
from sandboxctl.registry.states import (
    ALLOWED_TRANSITIONS,
    LIVE_STATUSES,
    IllegalTransition,
    SandboxStatus,
    check_transition,
    sources_of,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("24h", 86400), ("7d", 604800), ("1h30m", 5400), ("0s", 0), ("2w", 1209600)],
)
def test_parse_duration_accepts_contract_forms(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "-5m", "5x", "1h-30m", "m", "1.5h", " ", "h1"])
def test_parse_duration_rejects_bad_input(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_duration(text)
    assert info.value.exit_code == 2


def test_zero_duration_refused_where_it_makes_no_sense() -> None:
    with pytest.raises(UsageError):
        parse_duration("0s", allow_zero=False)


@pytest.mark.parametrize("seconds", [1, 59, 60, 3601, 5400, 86400 * 8 + 7])
def test_format_duration_round_trips(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


def test_labels_parse_and_refuse_reserved_namespace() -> None:
    assert parse_labels(["team=ml", "ci/job=42", "empty="]) == {"team": "ml", "ci/job": "42", "empty": ""}
    for bad in ["novalue", "=v", "sp ace=1", "sandboxctl.id=x"]:
        with pytest.raises(UsageError):
            parse_labels([bad])


def test_env_error_never_echoes_the_value() -> None:
    with pytest.raises(UsageError) as info:
        parse_env(["1BAD=hunter2-secret"])
    assert "hunter2-secret" not in str(info.value)
    assert parse_env(["TOKEN=a=b"]) == {"TOKEN": "a=b"}


def test_memory_sizes() -> None:
    assert parse_memory("512m") == 512 * 1024**2
    assert parse_memory("2g") == 2 * 1024**3
    assert parse_memory("1GiB") == 1024**3
    assert parse_memory("10000000") == 10000000
    with pytest.raises(UsageError):
        parse_memory("lots")


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


def test_exec_fast_parser_reads_the_contract_grammar() -> None:
    from sandboxctl.cli.exec_fast import parse_fast

    parsed = parse_fast(
        [
            "--db",
            "x.db",
            "exec",
            "sb1",
            "-t",
            "5s",
            "--workdir=/tmp",
            "-e",
            "A=1",
            "--env",
            "B=2",
            "--",
            "sh",
            "-c",
            "echo -t --env",
        ]
    )
    assert parsed is not None
    assert (parsed.db, parsed.sandbox, parsed.timeout, parsed.workdir) == ("x.db", "sb1", "5s", "/tmp")
    assert parsed.env == ["A=1", "B=2"] and parsed.command == ["sh", "-c", "echo -t --env"]


@pytest.mark.parametrize(
    "argv",
    [
        ["exec", "--help"],
        ["exec", "sb1", "--help", "--", "true"],
        ["exec", "sb1", "--bogus", "--", "true"],
        ["exec", "sb1", "--timeout"],
        ["exec", "sb1", "true"],  # no `--`: Typer decides
        ["exec", "sb1", "--"],  # no command
        ["status"],
        ["--version", "exec", "sb1", "--", "true"],
    ],
)
def test_exec_fast_parser_leaves_everything_else_to_typer(argv: list[str]) -> None:
    from sandboxctl.cli.exec_fast import parse_fast

    assert parse_fast(argv) is None


class _AlwaysBusy:
    """A backend whose delete always fails transiently: the retry window is the only thing under test."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def delete(self, backend_id: str) -> object:
        import time

        from sandboxctl.backends.base import Transient

        self.calls.append(time.monotonic())
        raise Transient("503 busy")


def test_deletion_retries_with_backoff_and_stops_inside_its_window() -> None:
    import time

    from sandboxctl.services.deletion import remove_backend_resource

    backend = _AlwaysBusy()
    started = time.monotonic()
    deletion = remove_backend_resource(backend, "sb-1", "c-1", within_seconds=1.5, wait_max=0.4)  # type: ignore[arg-type]
    assert not deletion.success
    assert deletion.error == "503 busy"
    assert deletion.retries_used == len(backend.calls) - 1 >= 3
    gaps = [b - a for a, b in zip(backend.calls, backend.calls[1:], strict=False)]
    assert gaps[1] > gaps[0]  # exponential, not a fixed interval
    assert backend.calls[-1] - started < 1.5  # no attempt starts after the window closed
