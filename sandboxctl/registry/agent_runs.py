"""The `agent_runs` table (owned by agent-run). Placeholder until agent-run lands."""

from __future__ import annotations

from sqlalchemy.engine import Connection


def create_tables(conn: Connection) -> None:
    """Create this module's tables (migration m002)."""
