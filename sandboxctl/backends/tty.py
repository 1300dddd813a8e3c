"""Interactive terminal sessions (`shell`, `exec -it`): the request, the session contract, one opener per backend.

A session is a pseudo-terminal in the sandbox that the CLI relays our own
terminal to. It is not part of the `Backend` protocol, so a backend without one
needs no stub: `open_tty` refuses it with a usage error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sandboxctl.errors import UsageError


@dataclass(frozen=True)
class TtyRequest:
    """One command to run on a terminal of `rows` x `cols` in the sandbox."""

    command: tuple[str, ...]
    rows: int
    cols: int
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None


class TtySession(Protocol):
    """A running command on a pseudo-terminal in a sandbox.

    Its output is a single raw byte stream (a terminal merges stdout and stderr).
    `fileno` is readable when output or its end is waiting, except for what is
    already `buffered`; `read` then returns at least one byte, or b"" at the end.
    """

    @property
    def buffered(self) -> bool: ...

    def fileno(self) -> int: ...

    def read(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def resize(self, rows: int, cols: int) -> None: ...

    def poll(self) -> int | None:
        """The exit code once the command has ended even if a child still holds the terminal, else None."""
        ...

    def wait(self) -> int:
        """The command's exit code, after `read` returned b""."""
        ...

    def close(self, *, kill: bool) -> None:
        """Release the terminal; with `kill`, also kill the command and its children (we were interrupted)."""
        ...


def _docker(backend: Any, backend_id: str, request: TtyRequest) -> TtySession:
    from sandboxctl.backends.tty_docker import open_docker_tty

    return open_docker_tty(backend, backend_id, request)


def _local(backend: Any, backend_id: str, request: TtyRequest) -> TtySession:
    from sandboxctl.backends.tty_local import open_local_tty

    return open_local_tty(backend, backend_id, request)


def _daytona(backend: Any, backend_id: str, request: TtyRequest) -> TtySession:
    from sandboxctl.backends.tty_daytona import open_daytona_tty

    return open_daytona_tty(backend, backend_id, request)


OPENERS: dict[str, Callable[[Any, str, TtyRequest], TtySession]] = {
    "docker": _docker,
    "local": _local,
    "daytona": _daytona,
}


def open_tty(backend: Any, backend_id: str, request: TtyRequest) -> TtySession:
    """Start `request` on a new pseudo-terminal; a backend without terminals is a usage error (exit 2)."""
    opener = OPENERS.get(backend.name)
    if opener is None:
        raise UsageError(
            f"interactive terminals are not supported on {backend.name} yet: "
            "use `sandboxctl exec SANDBOX -- CMD` (stdin is forwarded)"
        )
    return opener(backend, backend_id, request)
