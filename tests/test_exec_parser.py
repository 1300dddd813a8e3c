"""`exec`'s fast argv parser: the contract's grammar, and everything else left to Typer."""

from __future__ import annotations

import pytest


def test_exec_fast_parser_reads_the_contract_grammar() -> None:
    from sandboxctl.cli.exec_fast import parse_fast

    parsed = parse_fast(
        [
            "--db",
            "x.db",
            "exec",
            "sb1",
            "--timeout",
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
