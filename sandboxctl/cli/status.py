"""`sandboxctl status [SANDBOX]`."""

from __future__ import annotations

from typing import Annotated

import typer

from sandboxctl.cli import fast
from sandboxctl.cli.options import BackendOption, JsonOption, LabelOption, UserOption


def status_cmd(
    ctx: typer.Context,
    sandbox: Annotated[str | None, typer.Argument(help="Id, name or unique id prefix; omit for a list.")] = None,
    *,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include deleted (archived) sandboxes.")] = False,
    backend: BackendOption = None,
    label: LabelOption = None,
    user: UserOption = None,
    json_: JsonOption = False,
) -> None:
    """One sandbox with its live backend state, or a table of live sandboxes."""
    fast.show_status(ctx.obj, sandbox, all_=all_, backend=backend, label=label or [], user=user, json_=json_)
