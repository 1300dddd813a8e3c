"""A pseudo-terminal for a `local` sandbox: `pty.openpty` and a child that makes it its controlling terminal."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import struct
import subprocess
import termios
from pathlib import Path

from sandboxctl.backends.base import BackendError
from sandboxctl.backends.local import LocalBackend, command_env
from sandboxctl.backends.tty import TtyRequest


def set_window_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_controlling_terminal() -> None:
    # Runs in the child after setsid (start_new_session): fd 0 is the pty slave; make it the
    # session's controlling terminal so Ctrl-C (\x03) and resizes reach the foreground job.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def start_in_pty(
    backend: LocalBackend, backend_id: str, request: TtyRequest, slave: int
) -> subprocess.Popen[bytes] | int:
    """Start the command in the sandbox with `slave` as its terminal: the one place a local tty process starts.

    Same environment and working directory as `LocalBackend.exec`, in a new session (own process group).
    A command that cannot start is told on the terminal and its exit code returned (127, 126), as `exec` does.
    """
    sandbox = Path(backend.workspace_path(backend_id)).parent
    backend.inspect(backend_id)  # NotFound when the sandbox is gone
    workspace = sandbox / "workspace"
    cwd = workspace / request.workdir if request.workdir else workspace
    env = command_env(sandbox, request.env)
    try:
        return subprocess.Popen(
            list(request.command),
            cwd=cwd,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_take_controlling_terminal,  # safe: this CLI process runs no threads yet
        )
    except FileNotFoundError as exc:
        if exc.filename == str(cwd) or not cwd.is_dir():
            raise BackendError(f"working directory {request.workdir} does not exist") from None
        return _not_started(slave, f"{request.command[0]}: command not found", 127)
    except OSError as exc:  # not executable, not a program (ENOEXEC)...
        return _not_started(slave, f"{request.command[0]}: {(exc.strerror or str(exc)).lower()}", 126)


def _not_started(slave: int, text: str, code: int) -> int:
    os.write(slave, f"sandboxctl: {text}\n".encode())
    return code


class LocalTtySession:
    """The master side of the pty; the child runs in its own session and process group.

    `process` is the exit code instead when the command could not start.
    """

    def __init__(self, master: int, process: subprocess.Popen[bytes] | int) -> None:
        self.master = master
        self.process = process
        self._closed = False

    @property
    def buffered(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.master

    def read(self) -> bytes:
        try:
            return os.read(self.master, 65536)
        except OSError as exc:
            if exc.errno == errno.EIO:  # Linux: every slave descriptor is closed
                return b""
            raise

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view) :]

    def resize(self, rows: int, cols: int) -> None:
        # The kernel sends SIGWINCH to the terminal's foreground process group.
        set_window_size(self.master, rows, cols)

    def poll(self) -> int | None:
        if isinstance(self.process, int):
            return self.process
        code = self.process.poll()
        return None if code is None else _exit_status(code)

    def wait(self) -> int:
        return self.process if isinstance(self.process, int) else _exit_status(self.process.wait())

    def close(self, *, kill: bool) -> None:
        if self._closed:
            return
        self._closed = True
        if kill and not isinstance(self.process, int):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self.master)  # the session's remaining processes get SIGHUP, as from a closed terminal window


def _exit_status(code: int) -> int:
    return code if code >= 0 else 128 - code


def open_local_tty(backend: LocalBackend, backend_id: str, request: TtyRequest) -> LocalTtySession:
    master, slave = os.openpty()
    try:
        set_window_size(slave, request.rows, request.cols)
        process = start_in_pty(backend, backend_id, request, slave)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)  # only the child holds it now, so its exit ends our reads with EIO
    return LocalTtySession(master, process)
