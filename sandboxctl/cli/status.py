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
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state", "-s", metavar="STATE", help="Only sandboxes in this state (running, failed...); repeatable."
        ),
    ] = None,
    expired: Annotated[
        bool, typer.Option("--expired", help="Only sandboxes past their TTL or idle timeout (what cleanup takes).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only ids, one per line (for xargs).")] = False,
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            metavar="FIELD",
            help="created, expires, accessed, name, status or backend; `-FIELD` descending. Default: -created.",
        ),
    ] = None,
    user: UserOption = None,
    json_: JsonOption = False,
) -> None:
    """One sandbox with its live backend state, or a list of live sandboxes, newest first.

    Filters combine (AND); they run in the registry's SQL, so long lists stream. With --all the
    archive (deleted sandboxes) follows the live ones.
    """
    fast.show_status(
        ctx.obj,
        sandbox,
        all_=all_,
        backend=backend,
        label=label or [],
        json_=json_,
        state=state or [],
        expired=expired,
        quiet=quiet,
        sort=sort,
        user=user,
    )
