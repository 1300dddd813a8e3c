"""`sandboxctl exec SANDBOX -- CMD [ARG...]`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, BinaryIO

import typer

from sandboxctl.cli.options import EnvOption
from sandboxctl.durations import format_duration, parse_duration
from sandboxctl.errors import CommandTimedOut
from sandboxctl.labels import parse_env
from sandboxctl.services.context import Context


def _writer(stream: BinaryIO) -> Callable[[bytes], None]:
    def write(chunk: bytes) -> None:
        stream.write(chunk)
        stream.flush()

    return write


def exec_cmd(
    ctx: typer.Context,
    sandbox: Annotated[str, typer.Argument(help="Id, name or unique id prefix.")],
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after `--`.")],
    *,
    timeout: Annotated[
        str | None, typer.Option("--timeout", "-t", metavar="DUR", help="Kill the command after DUR; exit 124.")
    ] = None,
    workdir: Annotated[str | None, typer.Option("--workdir", "-w", help="Working directory in the sandbox.")] = None,
    env: EnvOption = None,
) -> None:
    """Run a command in a sandbox: output streamed live, stdin forwarded, its exit code returned."""
    from sandboxctl.services.execution import exec_in_sandbox
    app: Context = ctx.obj
    limit = parse_duration(timeout, allow_zero=False) if timeout is not None else None
    result = exec_in_sandbox(
        app,
        sandbox,
        command,
        on_stdout=_writer(sys.stdout.buffer),
        on_stderr=_writer(sys.stderr.buffer),
        stdin=None if sys.stdin is None or sys.stdin.closed else sys.stdin.buffer,
        env=parse_env(env or []),
        workdir=workdir,
        timeout=limit,
    )
    if result.timed_out and limit is not None:
        raise CommandTimedOut(f"command timed out after {format_duration(limit)} and was killed")
    raise typer.Exit(result.exit_code)
