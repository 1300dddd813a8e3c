"""`sandboxctl delete SANDBOX...`."""

from __future__ import annotations

from typing import Annotated

import typer

from sandboxctl.cli import render
from sandboxctl.cli.options import JsonOption
from sandboxctl.services.context import Context


def delete_cmd(
    ctx: typer.Context,
    sandboxes: Annotated[list[str], typer.Argument(metavar="SANDBOX...", help="Ids, names or unique id prefixes.")],
    *,
    json_: JsonOption = False,
) -> None:
    """Delete sandboxes now. Idempotent: what is already gone counts as deleted."""
    from sandboxctl.services.lifecycle import delete_sandboxes  # lazy: keeps --help free of SQLModel

    app: Context = ctx.obj
    outcomes = delete_sandboxes(app, sandboxes)
    failed = [o for o in outcomes if not o.success]
    if json_:
        render.emit_json([o.to_json() for o in outcomes])
    else:
        for outcome in outcomes:
            if outcome.success:
                render.emit_line(outcome.sandbox_id)
    for outcome in failed:
        render.message(f"error: could not delete {outcome.sandbox_id}: {outcome.error} (kept as failed; retry later)")
    if failed:
        raise typer.Exit(4 if all(o.unavailable for o in failed) else 1)
