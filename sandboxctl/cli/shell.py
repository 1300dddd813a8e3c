"""`sandboxctl shell SANDBOX [-- CMD]`, and the body of `exec -it`: an interactive terminal in a sandbox."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from sandboxctl.cli.options import EnvOption
from sandboxctl.envvars import collect_env
from sandboxctl.errors import UsageError
from sandboxctl.services.context import Context


def run_terminal(
    app: Context, sandbox: str, command: Sequence[str], *, workdir: str | None, env: list[str], what: str
) -> int:
    """Relay our terminal to a new pseudo-terminal in the sandbox; return the remote exit code."""
    from sandboxctl.cli.terminal import forward_resizes, raw_terminal, relay, window_size
    from sandboxctl.services.terminal import terminal_session

    stdin_fd, stdout_fd = 0, 1
    if sys.stdin is None or not os.isatty(stdin_fd):
        raise UsageError(f"{what} needs a terminal on stdin: from a script use `sandboxctl exec SANDBOX -- CMD`")
    rows, cols = window_size(stdin_fd)
    extra = collect_env(env)
    if "TERM" not in extra:
        extra["TERM"] = os.environ.get("TERM") or "xterm"
    with (
        terminal_session(app, sandbox, command, rows=rows, cols=cols, env=extra, workdir=workdir) as session,
        raw_terminal(stdin_fd),
        forward_resizes(session, stdin_fd),
    ):
        return relay(session, stdin_fd, stdout_fd)


# `\b` keeps Click from rewrapping the lines; shown after the options, so help ends with them.
EXAMPLES = """\b
Examples:
  sandboxctl shell tour                      # the sandbox's login shell
  sandboxctl shell 3f2a -- vi /etc/hosts     # one program on a terminal (id prefix)
  sandboxctl exec -it tour -w /tmp -- top    # the same through exec
"""


def shell_cmd(
    ctx: typer.Context,
    sandbox: Annotated[str, typer.Argument(help="Id, name or unique id prefix.")],
    command: Annotated[
        list[str] | None, typer.Argument(help="A command to run instead of the login shell, after `--`.")
    ] = None,
    *,
    workdir: Annotated[str | None, typer.Option("--workdir", "-w", help="Working directory in the sandbox.")] = None,
    env: EnvOption = None,
) -> None:
    """Open an interactive shell in a sandbox: its $SHELL, else bash, else sh, on a real terminal.

    Raw mode, window resizes and Ctrl-C reach the sandbox; your terminal is restored on exit and the
    shell's exit code is returned. Needs a terminal (from scripts, use `exec`). Docker, local and Daytona.
    """
    code = run_terminal(ctx.obj, sandbox, command or [], workdir=workdir, env=env or [], what="`shell`")
    raise typer.Exit(code)
