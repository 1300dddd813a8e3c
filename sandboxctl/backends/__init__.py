"""Backend name -> factory. Each factory imports its adapter (and its SDK) only when called."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sandboxctl.errors import UsageError

if TYPE_CHECKING:
    from sandboxctl.backends.base import Backend
    from sandboxctl.config import Settings


def _docker(settings: Settings) -> Backend:
    from sandboxctl.backends.docker import DockerBackend

    return DockerBackend()


def _local(settings: Settings) -> Backend:
    from sandboxctl.backends.local import LocalBackend

    return LocalBackend(settings.paths.local_root)


def _daytona(settings: Settings) -> Backend:
    from sandboxctl.backends.daytona import DaytonaBackend

    return DaytonaBackend.from_settings(settings)


FACTORIES: dict[str, Callable[[Settings], Backend]] = {
    "docker": _docker,
    "daytona": _daytona,
    "local": _local,
}


def check_backend_name(name: str) -> str:
    if name not in FACTORIES:
        raise UsageError(f"unknown backend {name!r}: choose one of {', '.join(FACTORIES)}")
    return name


def get_backend(name: str, settings: Settings) -> Backend:
    """Build the named backend; unknown names are usage errors (exit 2)."""
    return FACTORIES[check_backend_name(name)](settings)
