"""`sandboxctl delete SANDBOX...`."""

from __future__ import annotations

from typing import Annotated

import typer

from sandboxctl.cli import fast
from sandboxctl.cli.options import JsonOption


def delete_cmd(
    ctx: typer.Context,
    sandboxes: Annotated[list[str], typer.Argument(metavar="SANDBOX...", help="Ids, names or unique id prefixes.")],
    *,
    json_: JsonOption = False,
) -> None:
    """Delete sandboxes now. Idempotent: what is already gone counts as deleted."""
    code = fast.delete(ctx.obj, sandboxes, json_=json_)
    if code:
        raise typer.Exit(code)
