"""The body of `exec`, and a Typer-free parser for its hot path.

`parse_fast` reads the contract's exact exec grammar before Typer is even
imported: Typer costs ~0.07 s to import and Typer 0.29 validates every parameter
through pydantic (~0.1 s), together more than the exec itself. Anything it does
not recognise (help, unknown or misplaced flags) returns None and Typer parses
as usual; both paths then run `run_exec` with the same values.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
from collections.abc import Callable, Sequence
from typing import BinaryIO, TextIO

from sandboxctl.config import Settings, configure_logs, take_log_format
from sandboxctl.durations import format_duration, parse_duration
from sandboxctl.envvars import collect_env
from sandboxctl.errors import CommandTimedOut
from sandboxctl.services.context import Context


def _writer(stream: BinaryIO) -> Callable[[bytes], None]:
    def write(chunk: bytes) -> None:
        stream.write(chunk)
        stream.flush()

    return write


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _input(stream: TextIO | None) -> BinaryIO | None:
    """Our stdin to forward, or None when there is nothing to read: closed, or /dev/null.

    With None the command's stdin in the sandbox is /dev/null as well, and no stream is attached:
    CI steps and cron run with stdin on /dev/null, and attaching it costs ~15 ms of every exec.
    """
    if stream is None or stream.closed:
        return None
    try:
        info = os.fstat(stream.fileno())
        if stat.S_ISCHR(info.st_mode) and info.st_rdev == os.stat(os.devnull).st_rdev:
            return None
    except (OSError, ValueError):  # no file descriptor (an embedding that replaced sys.stdin): forward it
        pass
    return stream.buffer


def run_exec(
    app: Context,
    sandbox: str,
    command: Sequence[str],
    *,
    timeout: str | None,
    workdir: str | None,
    env: list[str],
    env_files: Sequence[str] = (),
) -> int:
    """The body of `exec`: returns the command's exit code, raises CommandTimedOut (124)."""
    from sandboxctl.services.execution import exec_in_sandbox

    limit = parse_duration(timeout, allow_zero=False) if timeout is not None else None
    variables = collect_env(env, env_files)
    # A cancelled CI step sends SIGTERM: unwind like Ctrl-C so the command in the sandbox is killed too.
    signal.signal(signal.SIGTERM, _interrupt)
    result = exec_in_sandbox(
        app,
        sandbox,
        command,
        on_stdout=_writer(sys.stdout.buffer),
        on_stderr=_writer(sys.stderr.buffer),
        stdin=_input(sys.stdin),
        env=variables,
        workdir=workdir,
        timeout=limit,
    )
    if result.timed_out and limit is not None:
        raise CommandTimedOut(f"command timed out after {format_duration(limit)} and was killed")
    return result.exit_code


class FastExec:
    """The values `parse_fast` read, filled in as it goes."""

    def __init__(self) -> None:
        self.db: str | None = None
        self.sandbox = ""
        self.command: list[str] = []
        self.timeout: str | None = None
        self.workdir: str | None = None
        self.env: list[str] = []
        self.env_files: list[str] = []
        self.log_format: str | None = None

    def run(self) -> int:
        settings = Settings.load(self.db)
        configure_logs(settings, self.log_format)
        return run_exec(
            Context(settings=settings),
            self.sandbox,
            self.command,
            timeout=self.timeout,
            workdir=self.workdir,
            env=self.env,
            env_files=self.env_files,
        )


_VALUED = {"--timeout": "timeout", "--workdir": "workdir", "-w": "workdir"}


def parse_fast(argv: Sequence[str]) -> FastExec | None:
    """`[--db URL] [--debug] [--log-format F] exec SANDBOX [-t DUR] [-w DIR] [-e K=V|K]... [--env-file F]... --
    CMD...`, or None."""
    parsed = FastExec()
    args = list(argv)
    while args and args[0] != "exec":  # root options
        if args[0] == "--debug":
            args.pop(0)
        elif args[0] == "--db" and len(args) > 1:
            parsed.db = args[1]
            del args[:2]
        elif (log_format := take_log_format(args)) is not None:
            parsed.log_format = log_format
        else:
            return None
    if len(args) < 4 or "--" not in args or args[1].startswith("-"):
        return None
    split = args.index("--")
    parsed.sandbox, options, parsed.command = args[1], args[2:split], args[split + 1 :]
    while options:
        flag, _, inline = options.pop(0).partition("=")
        if not inline:
            if not options:
                return None
            inline = options.pop(0)
        if flag in _VALUED:
            setattr(parsed, _VALUED[flag], inline)
        elif flag in ("--env", "-e"):
            parsed.env.append(inline)
        elif flag == "--env-file":
            parsed.env_files.append(inline)
        else:
            return None
    return parsed if parsed.command else None
