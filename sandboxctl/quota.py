"""Quotas on live sandboxes: the rule, apart from the registries that count under their write lock.

Both registries (the stdlib reader and SQLModel's) count the live records and call `check` inside
the very transaction that inserts the new `creating` record, so parallel `create`s cannot all see
room for themselves (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock).
"""

from __future__ import annotations

from typing import NamedTuple

from sandboxctl.errors import QuotaExceeded

# Any fixed 64-bit key: every sandboxctl process serialises its quota-checked inserts on it.
PG_ADVISORY_LOCK_KEY = 0x5A4E_DB0C_7100_0001


class LiveQuota(NamedTuple):
    """The limits a new sandbox created by `user` must fit; None means no limit."""

    user: str
    max_live: int | None = None
    max_live_per_user: int | None = None

    def check(self, live: int, live_of_user: int) -> None:
        """Refuse one more sandbox when a limit is reached, naming the quota, its value and the count."""
        if self.max_live is not None and live >= self.max_live:
            raise QuotaExceeded(
                f"quota.max_live is {self.max_live} and {live} sandboxes are live: "
                "delete some (or raise the quota) before creating more"
            )
        if self.max_live_per_user is not None and live_of_user >= self.max_live_per_user:
            raise QuotaExceeded(
                f"quota.max_live_per_user is {self.max_live_per_user} and user {self.user!r} has "
                f"{live_of_user} live sandboxes: delete some (or raise the quota) before creating more"
            )
