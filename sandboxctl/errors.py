"""The error hierarchy. Each class carries its exit code; `cli.main` is the one place that maps them."""

from __future__ import annotations

from typing import ClassVar


class SandboxctlError(Exception):
    """Base of every error meant for the user: the message is shown as one line."""

    exit_code: ClassVar[int] = 1


class OperationFailed(SandboxctlError):
    """The operation ran but something failed (exit 1)."""


class UsageError(SandboxctlError):
    """Bad flag, duration, label or configuration (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """config.toml is unreadable or holds a bad value (exit 2)."""


class SandboxNotFound(SandboxctlError):
    """The registry never knew this sandbox (exit 3)."""

    exit_code = 3


class BackendUnavailable(SandboxctlError):
    """The backend cannot be reached or refuses our credentials (exit 4)."""

    exit_code = 4


class CleanupLocked(SandboxctlError):
    """Another cleanup holds the lock; cron should just try next time (exit 75)."""

    exit_code = 75


class CommandTimedOut(SandboxctlError):
    """`exec` / `agent-run` hit `--timeout` (exit 124)."""

    exit_code = 124
