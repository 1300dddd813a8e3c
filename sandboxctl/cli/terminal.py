"""Our own terminal during `shell` / `exec -it`: raw mode, window size, and the byte relay to the session.

Raw mode turns off our line discipline, so Ctrl-C travels as \\x03 to the
remote terminal, whose line discipline turns it into SIGINT for the remote
foreground job. Whatever ends the session (exit, exception, SIGTERM, SIGHUP),
`raw_terminal`'s `finally` puts the saved attributes back.
"""

from __future__ import annotations

import os
import select
import signal
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sandboxctl.backends.tty import TtySession

# How often the relay looks for a command that ended while a child still holds its terminal.
_POLL_SECONDS = 0.5


def window_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of the terminal on `fd`; 24x80 when it reports none."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 24, 80
    return (size.lines or 24), (size.columns or 80)


def _hang_up(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwind through every `finally`: terminal restored, remote command killed


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode on `fd` for the block; the saved attributes come back however it ends."""
    saved = termios.tcgetattr(fd)
    previous = {sig: signal.signal(sig, _hang_up) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def forward_resizes(session: TtySession, fd: int) -> Iterator[None]:
    """Send our window size to the session on every SIGWINCH."""

    def resized(signum: int, frame: Any) -> None:
        session.resize(*window_size(fd))

    previous = signal.signal(signal.SIGWINCH, resized)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def relay(session: TtySession, stdin_fd: int, stdout_fd: int) -> int:
    """Copy keystrokes to the session and its output to us until it ends; return its exit code."""
    watched = [session.fileno(), stdin_fd]
    while True:
        if session.buffered:
            ready = [session.fileno()]
        else:
            ready, _, _ = select.select(watched, [], [], _POLL_SECONDS)
        if session.fileno() in ready:
            data = session.read()
            if not data:
                break
            _write_all(stdout_fd, data)
        if stdin_fd in ready:
            keys = os.read(stdin_fd, 65536)
            if keys:
                session.write(keys)
            else:
                watched.remove(stdin_fd)  # our input ended: keep showing output until the command ends
        if not ready and session.poll() is not None:
            break  # the command ended, but a background child keeps the terminal open
    return session.wait()
