"""`sandboxctl agent-run` and `sandboxctl agent ...` (placeholder until agent-run lands)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Talk to and inspect agent runs.", no_args_is_help=True)


def agent_run_cmd(ctx: typer.Context) -> None:
    """Run one agent task in a fresh sandbox."""
    raise typer.Exit(1)
