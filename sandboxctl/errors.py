"""The error hierarchy. Each class carries its exit code; `cli.main` is the one place that maps them."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from pathlib import Path

EXIT_TIMEOUT = 124  # `exec` / `agent-run` past `--timeout`, as timeout(1) exits


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


class RegistryError(UsageError):
    """The registry file cannot be used as it is (corrupt, or read-only for a write): exit 2, like a bad
    config file, because the fix is in the user's environment, not in a retry."""

    @classmethod
    def corrupt(cls, path: Path | str, detail: object) -> RegistryError:
        return cls(
            f"registry {path} is not a usable SQLite database ({detail}): move it aside "
            "(sandboxctl then starts a new one) or restore it from a backup"
        )

    @classmethod
    def newer(cls, where: Path | str, unknown: list[str]) -> RegistryError:
        return cls(
            f"registry {where} has a newer schema than this sandboxctl (unknown migrations: {', '.join(unknown)}): "
            "upgrade sandboxctl; nothing was changed"
        )

    @classmethod
    def read_only(cls, path: Path | str) -> RegistryError:
        return cls(
            f"registry {path} is read-only and this command writes to it: "
            "run it where SANDBOXCTL_HOME (or --db) is writable"
        )


class RegistryUnavailable(OperationFailed):
    """A registry server (PostgreSQL) cannot be reached or dropped the connection (exit 1: retry later)."""


class SandboxNotFound(SandboxctlError):
    """The registry never knew this sandbox (exit 3)."""

    exit_code = 3


class BackendUnavailable(SandboxctlError):
    """The backend cannot be reached or refuses our credentials (exit 4)."""

    exit_code = 4


class QuotaExceeded(SandboxctlError):
    """A quota (`quota.max_live`, `quota.max_live_per_user`) refuses another sandbox (exit 5): distinct from
    a failure, so a CI job can wait and retry instead of reporting a broken build."""

    exit_code = 5


class CleanupLocked(SandboxctlError):
    """Another cleanup holds the lock; cron should just try next time (exit 75)."""

    exit_code = 75


class CommandTimedOut(SandboxctlError):
    """`exec` / `agent-run` hit `--timeout` (exit 124)."""

    exit_code = EXIT_TIMEOUT
