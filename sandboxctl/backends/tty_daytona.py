"""A pseudo-terminal in a Daytona sandbox: the SDK's PTY session (`process.create_pty_session`), over its WebSocket.

Daytona's PTY API starts the daemon's shell, not a command. So the command is
typed into that shell as one line that first prints a marker and then `exec`s
the command: everything before the marker (the shell's banner, prompt and the
echo of our line) is dropped, and from the marker on the terminal belongs to
the command, whose exit code becomes the PTY's. The marker is written with
octal escapes, so the echoed line never contains it; keystrokes wait until it
has been seen, so none reach the daemon's shell.

The SDK delivers output from a blocking WebSocket iterator; a pump thread copies
it into a pipe, so the CLI's relay can `select` on it as on the other backends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import threading
import time
from typing import TYPE_CHECKING, Any

from sandboxctl.backends.base import BackendError, NotFound
from sandboxctl.backends.tty import TtyRequest
from sandboxctl.errors import UsageError

if TYPE_CHECKING:
    from daytona.handle.pty_handle import PtyHandle

    from sandboxctl.backends.daytona import DaytonaBackend

# A terminal in canonical mode takes at most 4095 bytes per line (Linux N_TTY_BUF_SIZE).
MAX_LINE = 4000
PRELUDE_LIMIT = 64 * 1024  # bytes of pre-marker output kept, shown only if the command never started
EXIT_WAIT = 10.0  # seconds to wait for the rest of the output once the command has exited
# Seconds for the start line to take effect. Until then keys are held (Ctrl-C included), so a daemon
# shell that never runs it (a non-POSIX shell, a stuck profile) must end the session, not hang it.
START_TIMEOUT = 20.0
CLOSE_WAIT = 2.0  # seconds for the daemon to close the WebSocket after the session was deleted
_SIZE_LIMIT = 1000  # the PTY API's bound on rows and cols


def _clamp(value: int) -> int:
    return min(max(value, 1), _SIZE_LIMIT)


def start_line(request: TtyRequest, token: str) -> bytes:
    """The line typed into the daemon's shell: the marker, the working directory, then `exec` the command.

    A leading space keeps it out of a shell's history (HISTCONTROL=ignorespace); `exec` means
    the history is never written anyway.
    """
    parts = [f"printf '\\036sbx%s\\036' {token}"]
    if request.workdir:
        parts.append(f"cd -- {shlex.quote(request.workdir)} || exit 126")
    parts.append(f"exec {shlex.join(request.command)}")
    line = " " + "; ".join(parts) + "\n"
    if len(line.encode()) > MAX_LINE:
        raise UsageError(f"the command is too long for a Daytona terminal (over {MAX_LINE} bytes)")
    return line.encode()


def marker(token: str) -> bytes:
    return b"\x1esbx" + token.encode() + b"\x1e"


class DaytonaTtySession:
    """One PTY session; output reaches `fileno()` through a pipe fed by the pump thread."""

    def __init__(self, backend: DaytonaBackend, process: Any, handle: PtyHandle, token: str) -> None:
        self.backend = backend
        self.process = process
        self.handle = handle
        self._marker = marker(token)
        self._started = False
        self._pending = b""  # keystrokes typed before the command started
        self._send_lock = threading.Lock()
        self._read_fd, self._write_fd = os.pipe()
        self._closed = False
        self._start_by = time.monotonic() + START_TIMEOUT
        self._pump = threading.Thread(target=self._run_pump, daemon=True, name="daytona-pty")
        self._pump.start()

    # -- output --------------------------------------------------------------
    def _run_pump(self) -> None:
        prelude = b""
        try:
            for data in self.handle:
                if self._started:
                    _write_all(self._write_fd, data)
                    continue
                prelude = (prelude + data)[-PRELUDE_LIMIT:]
                found = prelude.find(self._marker)
                if found < 0:
                    continue
                rest, prelude = prelude[found + len(self._marker) :], b""
                self._begin()
                if rest:
                    _write_all(self._write_fd, rest)
            if not self._started and prelude:  # it never started: show why (a missing shell, say)
                _write_all(self._write_fd, prelude)
        except (OSError, BackendError):
            pass  # our end of the pipe is closed (the session is being released), or the input was lost
        finally:
            with contextlib.suppress(OSError):
                os.close(self._write_fd)

    def _begin(self) -> None:
        with self._send_lock:
            self._started = True
            pending, self._pending = self._pending, b""
            if pending:
                self._send(pending)

    @property
    def buffered(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._read_fd

    def read(self) -> bytes:
        return os.read(self._read_fd, 65536)

    # -- input and control -------------------------------------------------------
    def write(self, data: bytes) -> None:
        with self._send_lock:
            if not self._started:
                self._pending += data
                return
            self._send(data)

    def _send(self, data: bytes) -> None:
        from daytona import DaytonaError

        try:
            self.handle.send_input(data)
        except DaytonaError as exc:
            if self.handle.is_connected():
                raise self.backend._translate(exc, "send input to the Daytona terminal") from None
            # it has ended: the pump reports the end and the exit code

    def resize(self, rows: int, cols: int) -> None:
        """Resizes are idempotent and retried; a wrong size is never worth failing the session for."""
        from daytona.common.pty import PtySize

        with contextlib.suppress(BackendError):
            size = PtySize(rows=_clamp(rows), cols=_clamp(cols))
            self.backend._call(
                "resize the Daytona terminal", self.process.resize_pty_session, self.handle.session_id, size
            )

    def poll(self) -> int | None:
        """The exit code once the daemon said the command exited (a background child may hold the terminal).

        Raises when the command has not started within `START_TIMEOUT`.
        """
        if not self._started and self.handle.is_connected() and time.monotonic() > self._start_by:
            raise BackendError(
                f"the command did not start on the Daytona terminal within {START_TIMEOUT:g} s "
                "(the sandbox's PTY shell did not run sandboxctl's start line)"
            )
        return None if self.handle.is_connected() else self.handle.exit_code

    def wait(self) -> int:
        self._pump.join(EXIT_WAIT)
        code = self.handle.exit_code
        if code is None:
            reason = self.handle.error or "the connection closed without an exit status"
            raise BackendError(f"the Daytona terminal ended abnormally: {self.backend._scrub(reason)}")
        return int(code)

    def close(self, *, kill: bool) -> None:
        """Delete the PTY session (which kills what still runs on it, `kill` or not), then drop the connection.

        Deleting is idempotent, so it is retried; "not found" means it is already gone, and a delete
        that still fails is not allowed to replace the exit code or the interrupt being reported.
        """
        if self._closed:
            return
        self._closed = True
        try:
            with contextlib.suppress(BackendError):
                _kill_session(self.backend, self.process, self.handle.session_id)
            # Let the daemon's close frame end the pump: once we disconnect, the SDK's receive never returns.
            self._pump.join(CLOSE_WAIT)
        finally:
            self.handle.disconnect()
            os.close(self._read_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _kill_session(backend: DaytonaBackend, process: Any, session_id: str) -> None:
    with contextlib.suppress(NotFound):
        backend._call("delete the Daytona terminal", process.kill_pty_session, session_id, request_timeout=10)


def open_daytona_tty(backend: DaytonaBackend, backend_id: str, request: TtyRequest) -> DaytonaTtySession:
    """Create the PTY session at the caller's size and start the command in it.

    The create is retried on transient failures with a fresh session id each time, deleting
    the previous id first: an attempt whose answer was lost may have created it.
    """
    from daytona.common.pty import PtySize

    sandbox = backend._runnable(backend_id)  # NotFound when the sandbox is gone
    process = sandbox.process
    token = secrets.token_hex(8)
    line = start_line(request, token)
    size = PtySize(rows=_clamp(request.rows), cols=_clamp(request.cols))
    ids: list[str] = []

    def forget_last() -> None:
        with contextlib.suppress(BackendError):
            _kill_session(backend, process, ids[-1])

    def attempt() -> PtyHandle:
        ids.append(f"sandboxctl-tty-{token}-{len(ids)}")
        return process.create_pty_session(ids[-1], envs=dict(request.env) or None, pty_size=size)

    handle = backend._call("open a Daytona terminal", attempt, before_retry=forget_last)
    session = DaytonaTtySession(backend, process, handle, token)
    try:
        with session._send_lock:
            session._send(line)
    except BaseException:
        session.close(kill=True)
        raise
    return session
