"""`shell` and `exec -it`: open a pseudo-terminal session in a sandbox, by the same lookup and idle rules as `exec`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from sandboxctl.backends.base import NotFound
from sandboxctl.backends.tty import TtyRequest, TtySession, open_tty
from sandboxctl.errors import OperationFailed
from sandboxctl.services.context import Context
from sandboxctl.services.execution import runnable_sandbox, touch

# The sandbox's login shell, decided inside it in the same exec that runs it: $SHELL when it names
# a program there, else bash, else sh. (Every image with a shell at all has /bin/sh.)
LOGIN_SHELL: tuple[str, ...] = (
    "/bin/sh",
    "-c",
    'if [ -n "$SHELL" ] && command -v "$SHELL" >/dev/null 2>&1; then exec "$SHELL" -l; '
    "elif command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi",
)


@contextmanager
def terminal_session(
    ctx: Context,
    ref: str,
    command: Sequence[str],
    *,
    rows: int,
    cols: int,
    env: Mapping[str, str],
    workdir: str | None = None,
) -> Iterator[TtySession]:
    """Yield a running terminal session; on leaving, release it (killing the command if interrupted).

    The idle clock restarts when the session starts and again when it ends.
    """
    target, backend_id = runnable_sandbox(ctx, ref)
    backend = ctx.backend(target.backend)
    request = TtyRequest(command=tuple(command) or LOGIN_SHELL, rows=rows, cols=cols, env=env, workdir=workdir)
    try:
        session = open_tty(backend, backend_id, request)
    except NotFound:
        raise OperationFailed(
            f"sandbox {target.id} no longer exists on {target.backend} (removed outside sandboxctl); "
            "`sandboxctl cleanup --orphans` closes its record"
        ) from None
    touch(ctx, target.id)  # after the start: a refused terminal records nothing
    ended = False
    try:
        yield session
        ended = True
    finally:
        session.close(kill=not ended)
        touch(ctx, target.id)
