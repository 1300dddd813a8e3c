"""Find and kill every process a `local` sandbox started, even after setsid, nohup or a double fork.

Each command a local sandbox runs carries `SANDBOXCTL_SANDBOX_ID=<id>` in its
environment, and children inherit it; /proc/*/environ tells who has it. This is
bookkeeping, NOT isolation: a process that clears its environment (`env -i`)
escapes it, as it escapes everything else on `local`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

SANDBOX_VAR = "SANDBOXCTL_SANDBOX_ID"
_PROC = Path("/proc")


def processes_with(variable: str, value: str) -> list[int]:
    """Pids of our processes whose environment holds `variable=value` exactly (never this process)."""
    wanted = f"{variable}={value}".encode()
    found = []
    me = os.getpid()
    for entry in _PROC.glob("[0-9]*"):
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours
            continue
        if wanted in environ.split(b"\0") and int(entry.name) != me:
            found.append(int(entry.name))
    return found


def kill_all_with(variable: str, value: str, *, rounds: int = 50) -> int:
    """SIGSTOP then SIGKILL every matching process until a scan finds none; returns how many were killed.

    Stopping first freezes a forking process so its children cannot slip between scan and kill.
    """
    killed: set[int] = set()
    for _ in range(rounds):
        pids = [pid for pid in processes_with(variable, value) if pid not in killed]
        if not pids:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        killed.update(pids)
    return len(killed)
