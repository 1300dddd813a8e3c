"""One `Context` per invocation: settings, and the registry and backends opened on first use.

Everyday commands read through `reader` (stdlib sqlite3, no SQLModel) when the registry is
a current SQLite file; everything else, and every write but exec's touch, uses `registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sandboxctl.config import Settings
from sandboxctl.durations import utcnow
from sandboxctl.registry.reader import RegistryReader, SandboxRow

if TYPE_CHECKING:
    from sandboxctl.backends.base import Backend
    from sandboxctl.registry.store import Registry


class Context:
    """Handed from the CLI to every service. Opening is lazy so `--help` and `config` stay light.

    One per thread: the reader holds one SQLite connection for the command's life.

    `_reader_checked=True` starts with no reader: every read goes through SQLModel (the parity tests).
    """

    def __init__(
        self, settings: Settings, clock: Callable[[], datetime] = utcnow, *, _reader_checked: bool = False
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._registry: Registry | None = None
        self._backends: dict[str, Backend] = {}
        self._reader: RegistryReader | None = None
        self._reader_checked = _reader_checked

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from sandboxctl.registry.store import Registry

            self._registry = Registry(self.settings.paths.db_url)
        return self._registry

    @property
    def reader(self) -> RegistryReader | None:
        """The SQLModel-free reader, or None when only the full registry will do (not SQLite, not migrated)."""
        if not self._reader_checked:
            self._reader = RegistryReader.open(self.settings.paths.sqlite_file)
            self._reader_checked = True
        return self._reader

    def find_sandbox(self, ref: str) -> SandboxRow:
        """The sandbox `ref` names, live or archived: one lookup rule, whichever path reads it."""
        reader = self.reader
        if reader is not None:
            return reader.resolve(ref)
        return SandboxRow(self.registry.resolve(ref).model_dump())

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            from sandboxctl.backends import get_backend

            self._backends[name] = get_backend(name, self.settings)
        return self._backends[name]

    def now(self) -> datetime:
        return self.clock()
