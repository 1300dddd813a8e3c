"""`sandboxctl exec SANDBOX [OPTIONS] -- CMD [ARG...]` (the hot path usually skips Typer: see exec_fast.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from sandboxctl.cli.exec_fast import run_exec
from sandboxctl.cli.options import EnvFileOption, EnvOption
from sandboxctl.errors import UsageError


def exec_cmd(
    ctx: typer.Context,
    sandbox: Annotated[str, typer.Argument(help="Id, name or unique id prefix.")],
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after `--`.")],
    *,
    timeout: Annotated[
        str | None, typer.Option("--timeout", metavar="DUR", help="Kill the command after DUR; exit 124.")
    ] = None,
    workdir: Annotated[str | None, typer.Option("--workdir", "-w", help="Working directory in the sandbox.")] = None,
    env: EnvOption = None,
    env_file: EnvFileOption = None,
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="Keep stdin open (always on).")] = False,
    tty: Annotated[
        bool, typer.Option("--tty", "-t", help="Allocate a terminal (as `shell`); needs one on stdin.")
    ] = False,
) -> None:
    """Run a command in a sandbox: output streamed live, stdin forwarded, its exit code returned."""
    if tty:
        from sandboxctl.cli.shell import run_terminal

        if timeout is not None:
            raise UsageError("--timeout does not apply with -t: exit the terminal's command instead")
        raise typer.Exit(run_terminal(ctx.obj, sandbox, command, workdir=workdir, env=env or [], what="`exec -t`"))
    code = run_exec(
        ctx.obj, sandbox, command, timeout=timeout, workdir=workdir, env=env or [], env_files=env_file or []
    )
    raise typer.Exit(code)
