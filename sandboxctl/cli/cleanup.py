"""`sandboxctl cleanup` (placeholder until the cleanup service lands)."""

from __future__ import annotations

import typer


def cleanup_cmd(ctx: typer.Context) -> None:
    """Delete expired, idle and orphaned sandboxes."""
    raise typer.Exit(1)
