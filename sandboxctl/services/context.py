"""One `Context` per invocation: settings, and the registry and backends opened on first use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sandboxctl.config import Settings
from sandboxctl.durations import utcnow

if TYPE_CHECKING:
    from sandboxctl.backends.base import Backend
    from sandboxctl.registry.store import Registry


@dataclass
class Context:
    """Handed from the CLI to every service. Opening is lazy so `--help` and `config` stay light."""

    settings: Settings
    clock: Callable[[], datetime] = utcnow
    _registry: Registry | None = None
    _backends: dict[str, Backend] = field(default_factory=dict)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from sandboxctl.registry.store import Registry

            self._registry = Registry(self.settings.paths.db_url)
        return self._registry

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            from sandboxctl.backends import get_backend

            self._backends[name] = get_backend(name, self.settings)
        return self._backends[name]

    def now(self) -> datetime:
        return self.clock()
