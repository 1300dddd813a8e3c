"""The backend contract: a Protocol, the value objects it trades in, and its errors.

Backends know nothing of the registry: they take and return these plain frozen
values, and translate SDK types and exceptions inside the adapter so that
neither ever reaches a service.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import BinaryIO, ClassVar, NamedTuple, Protocol, runtime_checkable

from sandboxctl.errors import EXIT_TIMEOUT, BackendUnavailable, SandboxctlError

# Commands run by `exec` carry a per-exec token in their environment, so that a timeout or
# an interrupt can kill the command *and* its children inside the sandbox.
EXEC_TOKEN_VAR = "SANDBOXCTL_EXEC_TOKEN"


def kill_by_token_script(token: str) -> str:
    """A POSIX sh script killing every process whose environment holds this exec's token.

    All of them are stopped before any is killed: killed one by one, a shell whose child
    (`sleep`) died first would run its next command before its own turn came. Three rounds
    catch a child forked while the first was being collected.
    """
    return (
        "for round in 1 2 3; do pids=; for d in /proc/[0-9]*; do "
        f'grep -q "{EXEC_TOKEN_VAR}={token}" "$d/environ" 2>/dev/null && pids="$pids ${{d#/proc/}}"; done; '
        '[ -z "$pids" ] && break; kill -STOP $pids 2>/dev/null; kill -9 $pids 2>/dev/null; done; true'
    )


class BackendError(SandboxctlError):
    """The backend refused or failed an operation for a reason retrying won't fix."""


class NotFound(BackendError):
    """The backend resource does not exist (deleting it again is success)."""


class Transient(BackendError):
    """A failure worth retrying with backoff: 429, 5xx, a dropped connection.

    `retry_after`: the seconds the server asked us to wait (HTTP Retry-After), if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(BackendUnavailable):
    """The backend cannot be reached or rejects our credentials (exit 4)."""


class Unresponsive(Unavailable):
    """The backend took the request but did not answer in time: retried, and exit 4 once retries run out."""


class BackendState(StrEnum):
    """What the backend says of a resource, normalised across backends."""

    CREATING = "creating"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    DELETING = "deleting"
    UNKNOWN = "unknown"


class CreateSpec(NamedTuple):
    """Everything a backend needs to create one sandbox.

    `labels` already holds sandboxctl's own `sandboxctl.*` labels. `env` values
    are secrets: pass them to the backend, never log or store them.
    `ttl_seconds` lets a managed service expire the sandbox on its own even when
    no cleanup ever runs (None: never).
    """

    sandbox_id: str
    name: str
    image: str | None
    labels: Mapping[str, str]
    env: Mapping[str, str] = MappingProxyType({})
    cpus: float | None = None
    memory_bytes: int | None = None
    ttl_seconds: int | None = None
    idle_timeout_seconds: int | None = None


class BackendSandbox(NamedTuple):
    """A backend resource as the backend sees it."""

    backend_id: str
    state: BackendState
    labels: Mapping[str, str]
    created_at: datetime | None = None
    name: str | None = None


OutputSink = Callable[[bytes], None]


class ExecRequest(NamedTuple):
    """One command to run in a sandbox.

    Output is streamed live as it arrives: `on_stdout` / `on_stderr` receive raw
    chunks, kept apart. `stdin`, when given, is forwarded until EOF and then closed.
    On `timeout_seconds` the backend kills the process and returns `timed_out=True`.
    """

    command: tuple[str, ...]
    on_stdout: OutputSink
    on_stderr: OutputSink
    env: Mapping[str, str] = MappingProxyType({})
    workdir: str | None = None
    stdin: BinaryIO | None = None
    timeout_seconds: float | None = None


class ExecResult(NamedTuple):
    exit_code: int
    timed_out: bool = False


TIMED_OUT = ExecResult(exit_code=EXIT_TIMEOUT, timed_out=True)  # what every backend returns past the deadline


class ChunkStream(io.RawIOBase):
    """A readable binary stream over an iterable of byte chunks (an HTTP body), one chunk in memory at a time."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class DeleteResult(NamedTuple):
    """What a deletion freed; `freed_bytes` is None where the backend can't tell."""

    freed_bytes: int | None = None


@runtime_checkable
class Backend(Protocol):
    """What every backend implements. One file per backend plus one line in `backends.FACTORIES`."""

    name: ClassVar[str]

    def create(self, spec: CreateSpec) -> BackendSandbox:
        """Create and start the sandbox, labelled with `spec.labels`; return once it runs commands.

        On failure remove whatever was half-created, then raise.
        """
        ...

    def inspect(self, backend_id: str) -> BackendSandbox:
        """Return the live state. Raise `NotFound` when the resource is gone."""
        ...

    def list_owned(self, selector: Mapping[str, str] | None = None) -> list[BackendSandbox]:
        """Every resource carrying a `sandboxctl.id` label (and all `selector` labels), any state."""
        ...

    def exec(self, backend_id: str, request: ExecRequest) -> ExecResult:
        """Run a command, streaming output to the request's sinks. Raise `NotFound` if gone."""
        ...

    def delete(self, backend_id: str) -> DeleteResult:
        """Remove the resource at once (no grace period). Raise `NotFound` when already gone,
        `Transient` when a retry may succeed."""
        ...

    def workspace_path(self, backend_id: str) -> str:
        """The absolute path inside the sandbox where agent-run puts the repository."""
        ...

    def upload_archive(self, backend_id: str, dest_dir: str, archive: BinaryIO) -> None:
        """Extract the uncompressed tar read from `archive` into `dest_dir` (created if missing) in the
        sandbox, streaming it: never hold it whole in memory."""
        ...

    def download_archive(
        self, backend_id: str, path: str, *, max_file: int | None = None
    ) -> AbstractContextManager[BinaryIO]:
        """A context yielding an uncompressed tar of `path` in the sandbox as a stream (never whole in
        memory); members are named relative to `path`'s parent (as `docker cp` / `get_archive` do).
        Where the sandbox builds the tar itself, files over `max_file` bytes may be left out there. The
        content is hostile: extract it with `sandboxctl.safe_extract` only."""
        ...

    def set_lifetime(self, backend_id: str, *, ttl_seconds: int | None, idle_timeout_seconds: int | None) -> None:
        """Mirror a lifetime changed by `extend` where the backend enforces one itself: `ttl_seconds` from now
        (None: never expires), the idle timeout (None: none). A no-op where the registry alone decides."""
        ...
