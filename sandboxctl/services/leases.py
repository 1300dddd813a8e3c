"""Leases: a sandbox in use is never cleaned up from under its user.

A running `exec` holds a lease for its whole run (`hold`, refreshed by a background
timer); a running `agent-run` renews one at every heartbeat (`renew`). `cleanup`
asks `leased` which of its candidates are held and spares those (`in_use`), unless
the user named the sandbox with `--force`.

A lease lasts LEASE_TTL past its last refresh, so a holder killed with SIGKILL
releases by expiry; on the holder's own host a dead pid voids it at once.
This module is on the exec hot path: it imports neither SQLAlchemy nor SQLModel
when the registry is a SQLite file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sandboxctl.errors import OperationFailed
from sandboxctl.hostid import this_host
from sandboxctl.registry.leases import Holder, LeaseTable, LiveLease

if TYPE_CHECKING:
    from sandboxctl.registry.store import Registry
    from sandboxctl.services.context import Context
    from sandboxctl.services.orphans import ProcessProbe

LEASE_TTL = timedelta(minutes=2)
REFRESH_SECONDS = 30.0  # four refreshes per LEASE_TTL: one slow or failed write never lets a lease lapse


def lease_table(ctx: Context, *, on_reader: bool = False) -> LeaseTable:
    """stdlib sqlite3 on a SQLite file, else the registry's own engine.

    `on_reader`: use the reader's open connection (only from the thread that uses the reader: exec's
    main thread), saving a connection per write."""
    path = ctx.settings.paths.sqlite_file
    if path is not None:
        reader = ctx.reader if on_reader else None
        return LeaseTable(sqlite_path=path, connection=reader.connection() if reader is not None else None)
    return LeaseTable(engine=ctx.registry.engine)


def this_process(kind: str, key: str | None = None) -> Holder:
    """A holder of this process: `kind` (exec, agent-run) and a key unique to the use (default: random)."""
    return Holder(name=f"{kind} {key or os.urandom(6).hex()}", host=this_host(), pid=os.getpid())


def _acquire(ctx: Context, table: LeaseTable, sandbox_id: str, holder: Holder) -> bool:
    try:
        return table.acquire(sandbox_id, holder, expires_at=ctx.now() + LEASE_TTL)
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
    ctx.registry  # noqa: B018 - opening the full registry applies the migration that creates the table
    return table.acquire(sandbox_id, holder, expires_at=ctx.now() + LEASE_TTL)


class _Refresher:
    """Pushes one lease's expiry forward every REFRESH_SECONDS from a daemon thread until stopped."""

    def __init__(self, ctx: Context, table: LeaseTable, sandbox_id: str, holder: Holder) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._loop, args=(ctx, table, sandbox_id, holder), name="sandbox-lease", daemon=True
        )

    def _loop(self, ctx: Context, table: LeaseTable, sandbox_id: str, holder: Holder) -> None:
        while not self.stopped.wait(REFRESH_SECONDS):
            # A locked or unreachable registry: the next refresh retries, well before the lease lapses.
            with contextlib.suppress(Exception):
                table.acquire(sandbox_id, holder, expires_at=ctx.now() + LEASE_TTL)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


@contextmanager
def hold(ctx: Context, sandbox_id: str, *, kind: str = "exec") -> Iterator[Holder]:
    """Hold a lease on the sandbox for the body's duration (an `exec`).

    Refused (exit 1) when the sandbox can no longer run commands, e.g. a cleanup has just claimed it.
    """
    table = lease_table(ctx, on_reader=True)
    holder = this_process(kind)
    if not _acquire(ctx, table, sandbox_id, holder):
        raise OperationFailed(f"sandbox {sandbox_id} is being deleted or is gone: it cannot run commands")
    refresher = _Refresher(ctx, table.detached(), sandbox_id, holder)  # its own connections: another thread
    refresher.thread.start()
    try:
        yield holder
    finally:
        refresher.stop()
        with contextlib.suppress(Exception):  # the lease then lapses by itself within LEASE_TTL
            table.release(sandbox_id, holder, now=ctx.now())


def renew(ctx: Context, sandbox_id: str | None, key: str, *, kind: str = "agent-run") -> None:
    """Take or refresh `kind key`'s lease (agent-run's heartbeat); best effort, never raises.

    Nothing to do before the sandbox exists. The lease ends when the process does (same host)
    or LEASE_TTL after the last heartbeat.
    """
    if sandbox_id is None:
        return
    with contextlib.suppress(Exception):  # a missed heartbeat is covered by the next one
        _acquire(ctx, lease_table(ctx), sandbox_id, this_process(kind, key))


def _live_and_dead(
    registry: Registry, sandbox_ids: Iterable[str], now: datetime, is_alive: ProcessProbe
) -> tuple[list[LiveLease], list[LiveLease]]:
    ids = list(sandbox_ids)
    if not ids:
        return [], []
    leases = LeaseTable(engine=registry.engine).live(ids, now=now)
    return leases, [lease for lease in leases if is_alive(lease.host, lease.pid) is False]


def leased(registry: Registry, sandbox_ids: Iterable[str], *, now: datetime, is_alive: ProcessProbe) -> set[str]:
    """Which of these sandboxes are in use: an unexpired lease whose holder is not known to be dead (reads only)."""
    leases, dead = _live_and_dead(registry, sandbox_ids, now, is_alive)
    return {lease.sandbox_id for lease in leases if lease not in dead}


def drop_dead_leases(registry: Registry, sandbox_ids: Iterable[str], *, now: datetime, is_alive: ProcessProbe) -> None:
    """Delete the leases of holders known to be dead, so that cleanup's claims do not trip over them."""
    _leases, dead = _live_and_dead(registry, sandbox_ids, now, is_alive)
    if dead:
        LeaseTable(engine=registry.engine).drop(dead)
