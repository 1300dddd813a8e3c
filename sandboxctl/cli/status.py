"""`sandboxctl status [SANDBOX]`."""

from __future__ import annotations

from typing import Annotated

import typer

from sandboxctl.cli import render
from sandboxctl.cli.options import BackendOption, JsonOption, LabelOption
from sandboxctl.labels import parse_labels
from sandboxctl.services.context import Context


def status_cmd(
    ctx: typer.Context,
    sandbox: Annotated[str | None, typer.Argument(help="Id, name or unique id prefix; omit for a list.")] = None,
    *,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include deleted (archived) sandboxes.")] = False,
    backend: BackendOption = None,
    label: LabelOption = None,
    json_: JsonOption = False,
) -> None:
    """One sandbox with its live backend state, or a table of live sandboxes."""
    from sandboxctl.services.listing import iter_sandboxes, sandbox_status  # lazy: keeps --help light

    app: Context = ctx.obj
    if sandbox is not None:
        record = sandbox_status(app, sandbox)
        if json_:
            render.emit_json(record)
            return
        render.fields(record)
        return
    records = iter_sandboxes(app, include_archived=all_, backend=backend, selector=parse_labels(label or []))
    if json_:
        render.emit_json_array(records)  # streamed: 20,000 records never sit in memory at once
        return
    render.table(render.SANDBOX_COLUMNS, render.sandbox_rows(records))
